"""SLURMCluster, PBSCluster, SGECluster, LSFCluster, HTCondorCluster, OARCluster, MoabCluster:
dask-jobqueue 0.9.0's
classes, as BatchClusters that keep its defaults and read its keywords as it does.

Written from dask-jobqueue's documentation and its classes' behaviour (what each keyword puts
in a job script, compared by meaning in tests/jobqueue), not from its code.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from dask_hpc.config import SETTING_KEYWORDS, Configuration, walltime_as_read
from dask_hpc.errors import SessionError, SpecError
from dask_hpc.session.cluster import BatchCluster
from dask_hpc.spec import JobSpec
from dask_hpc.systems import get_system
from dask_hpc.systems.sge import NO_PARALLEL_ENVIRONMENT

__all__ = [
    "HTCondorCluster",
    "JobQueueCluster",
    "LSFCluster",
    "MoabCluster",
    "OARCluster",
    "PBSCluster",
    "SGECluster",
    "SLURMCluster",
]

#: dask-jobqueue's walltime when none is given or configured (its jobqueue.yaml): 30 minutes.
DEFAULT_WALLTIME = 1800
#: dask-jobqueue's job name when none is given or configured (its jobqueue.yaml's ``name``).
DEFAULT_JOB_NAME = "dask-worker"

#: dask-jobqueue's deprecated keywords: the name each was renamed to (its FutureWarnings).
RENAMED = {
    "extra": "worker_extra_args",
    "job_extra": "job_extra_directives",
    "env_extra": "job_script_prologue",
    "header_skip": "job_directives_skip",
}


class JobQueueCluster(BatchCluster):
    """dask-jobqueue's base class, on a dask-hpc session: one batch system's worker jobs and,
    by default, the scheduler in this process.

    ``SLURMCluster(cores=8, processes=4, memory="16GB", account="woodshole",
    walltime="01:00:00", queue="normal")``; ``cluster.scale(jobs=10)``; ``Client(cluster)``.
    The keywords are :class:`~dask_hpc.BatchCluster`'s (dask-jobqueue 0.9.0's, all of them),
    with dask-jobqueue's defaults where the user gives nothing and the configuration has
    nothing either:

    - ``scheduler="local"``: the scheduler runs here and ends with this process, as in
      dask-jobqueue; ``scheduler="job"`` is dask-hpc's (its own small batch job: the session
      outlives the notebook).
    - no TLS unless ``security`` (True, or a distributed ``Security``) or
      ``protocol="tls://"`` asks for it; with ``security=True`` the session gets its own CA.
    - ``processes``: near the square root of the cores (distributed's ``nprocesses_nthreads``:
      36 cores are 6 processes of 6 threads); ``walltime``: 30 minutes; ``job_name``:
      ``dask-worker``; ``cores`` and ``memory``: dask-hpc's (1 core, 2 GiB), where
      dask-jobqueue refuses to start without them.
    - ``name``: the session's name; a new one (``slurm-1a2b3c``) if None.
    - the deprecated ``extra``, ``job_extra``, ``env_extra``, ``header_skip`` and
      ``project`` (where it was renamed ``account``) work, with dask-jobqueue's
      FutureWarning; ``dashboard_address`` and ``host`` are refused, as there, for
      ``scheduler_options``.
    - a bare number of walltime (``"90"``) is read as the batch system reads it (SLURM and
      LSF: minutes; PBS and Grid Engine: seconds), since dask-jobqueue passes it on as is.
    """

    #: The batch system (dask-hpc's name) and dask-jobqueue's section of jobqueue.yaml.
    system_name: ClassVar[str] = ""
    default_config_name: ClassVar[str] = ""
    #: Whether ``project`` is this class's own name for the account (SGE, LSF: no warning).
    project_is_account: ClassVar[bool] = False
    #: The walltime when none is given or configured (seconds): dask-jobqueue's 30 minutes.
    default_walltime: ClassVar[int] = DEFAULT_WALLTIME
    _tls_by_default = False

    def __init__(
        self,
        n_workers: int = 0,
        job_cls: Any = None,
        loop: Any = None,
        *,
        scheduler: str = "local",
        name: str | None = None,
        walltime: str | int | None = None,
        dashboard_address: str | None = None,
        host: str | None = None,
        project: str | None = None,
        extra: Any = None,
        job_extra: Any = None,
        env_extra: Any = None,
        header_skip: Any = None,
        **keywords: Any,
    ) -> None:
        kind = type(self).__name__
        if not self.system_name:
            raise SessionError(
                "JobQueueCluster is dask-jobqueue's base class: use SLURMCluster, PBSCluster, "
                "SGECluster, LSFCluster, HTCondorCluster, OARCluster or MoabCluster"
            )
        if job_cls is not None:
            raise SessionError(
                f"job_cls: dask-hpc writes {self.system_name}'s job scripts itself; change them with "
                "job_extra_directives, job_script_prologue or job_directives_skip"
            )
        for keyword, value in (("dashboard_address", dashboard_address), ("host", host)):
            if value is not None:
                raise SessionError(
                    f"pass {keyword} through scheduler_options, as dask-jobqueue asks: "
                    f"{kind}(..., scheduler_options={{{keyword!r}: {value!r}}})"
                )
        deprecated = {
            "extra": extra,
            "job_extra": job_extra,
            "env_extra": env_extra,
            "header_skip": header_skip,
        }
        for old, value in deprecated.items():
            if value is None:
                continue
            new = RENAMED[old]
            warnings.warn(
                f"{old} has been renamed to {new}: {old} is used where {new} is not given "
                "(dask-jobqueue's rule); rename it",
                FutureWarning,
                stacklevel=2,
            )
            if not keywords.get(new):
                keywords[new] = value
        if project is not None:
            if not self.project_is_account:
                warnings.warn(
                    "project has been renamed to account (the -A option): project is used where "
                    "account is not given (dask-jobqueue's rule); rename it",
                    FutureWarning,
                    stacklevel=2,
                )
            if not keywords.get("account"):
                keywords["account"] = project
        keywords = self._translate(keywords)
        super().__init__(
            self.system_name,
            name=name,
            scheduler=scheduler,
            walltime=walltime_as_read(self.system_name, walltime),
            n_workers=n_workers,
            loop=loop,
            config_name=keywords.pop("config_name", None) or self.default_config_name,
            **keywords,
        )

    def _translate(self, keywords: dict[str, Any]) -> dict[str, Any]:
        """This class's keywords whose dask-jobqueue form differs from BatchCluster's."""
        return keywords

    def _with_defaults(self, options: dict[str, Any], configuration: Configuration) -> dict[str, Any]:
        from distributed.deploy.utils import nprocesses_nthreads

        options = dict(options)
        if "cores" not in options and "processes" in options:
            # dask-jobqueue asks for the cores; ours default to 1, too few for these processes.
            processes = options["processes"]
            raise SpecError(
                "cores",
                "not given",
                f"processes={processes} need as many cores: give cores, as dask-jobqueue asks "
                f"({type(self).__name__}(cores={processes}, processes={processes}, memory=...))",
            )
        options.setdefault("walltime", self.default_walltime)
        options.setdefault("job_name", DEFAULT_JOB_NAME)
        if "processes" not in options:
            cores = JobSpec.from_options(cores=options.get("cores", 1)).cores
            options["processes"] = nprocesses_nthreads(cores)[0]
        return options

    def _default_name(self, system: str) -> str:
        return f"{self.default_config_name}-{secrets.token_hex(3)}"

    def _known_keywords(self) -> list[str]:
        # This class's: not the system's (given positionally), not those it refuses, not
        # the settings of other batch systems.
        theirs = get_system(self.system_name).setting_keys
        refused = {"system", "job_cls", "dashboard_address", "host"}
        others = {k for k, key in SETTING_KEYWORDS.items() if key not in theirs}
        return [k for k in super()._known_keywords() if k not in refused | others]


class SLURMCluster(JobQueueCluster):
    """dask-jobqueue's SLURMCluster: ``SLURMCluster(cores=8, memory="16GB", queue="normal",
    account="woodshole", walltime="01:00:00")``; also ``job_cpu`` and ``job_mem``
    (``--cpus-per-task`` and ``--mem`` where they differ from cores and memory)."""

    system_name = "slurm"
    default_config_name = "slurm"


class PBSCluster(JobQueueCluster):
    """dask-jobqueue's PBSCluster: ``PBSCluster(cores=36, memory="100GB", account="P48500028",
    queue="premium", walltime="02:00:00", interface="ib0")``; ``resource_spec`` replaces
    the ``-l select=...`` line. Torque: ``config_name="pbs"`` with dask-hpc's ``torque``
    system is ``BatchCluster("torque", ...)``."""

    system_name = "pbs"
    default_config_name = "pbs"

    def _with_defaults(self, options: dict[str, Any], configuration: Configuration) -> dict[str, Any]:
        options = super()._with_defaults(options, configuration)
        if "account" not in options and os.environ.get("PBS_ACCOUNT"):
            options["account"] = os.environ["PBS_ACCOUNT"]  # as dask-jobqueue's PBSCluster reads it
        return options


class MoabCluster(PBSCluster):
    """dask-jobqueue's MoabCluster: PBSCluster's keywords and script (``#PBS`` lines, which
    ``msub`` reads), submitted with ``msub`` and cancelled with ``canceljob``. dask-hpc follows
    the jobs with the resource manager's ``qstat`` (Torque's), so ``msub`` must answer with
    its job ids (Moab's default over Torque), and asks for ``nodes=1:ppn=N`` as Torque reads
    it where dask-jobqueue writes PBS Pro's ``select``."""

    system_name = "moab"
    default_config_name = "moab"


class SGECluster(JobQueueCluster):
    """dask-jobqueue's SGECluster: ``SGECluster(queue="default.q", walltime="1500000",
    cores=1, memory="20GB", resource_spec="h_vmem=20G,mem_req=20G")``. ``project`` is
    Grid Engine's ``-P``. As in dask-jobqueue, no parallel environment is asked for unless
    the site configured one (``sge-parallel-environment``) or ``job_extra_directives`` has
    ``-pe``."""

    system_name = "sge"
    default_config_name = "sge"
    project_is_account = True

    def _system_settings(self, configuration: Configuration) -> dict[str, Any]:
        settings = configuration.system_settings()
        # dask-jobqueue writes no -pe: a job of several cores gets one slot, as the user said,
        # unless the site named its parallel environment.
        settings.setdefault("sge-parallel-environment", NO_PARALLEL_ENVIRONMENT)
        return settings


class LSFCluster(JobQueueCluster):
    """dask-jobqueue's LSFCluster: ``LSFCluster(queue="general", project="cpp",
    walltime="00:30", cores=15, memory="25GB")``: ``walltime`` is ``bsub -W``'s
    ``[HH:]MM``; ``project`` is ``-P``; also ``ncpus``, ``mem`` (bytes), ``lsf_units``,
    ``use_stdin``."""

    system_name = "lsf"
    default_config_name = "lsf"
    project_is_account = True


class HTCondorCluster(JobQueueCluster):
    """dask-jobqueue's HTCondorCluster: ``HTCondorCluster(cores=1, memory="2GB",
    disk="1GB", job_extra_directives={"+ProjectName": '"myproject"'})``: the extra
    directives are submit description commands (a mapping, or ``key = value`` lines);
    ``job_directives_skip`` names them (``"RequestDisk"``: ours is ``request_disk``);
    also ``submit_command_extra`` and ``cancel_command_extra``."""

    system_name = "htcondor"
    default_config_name = "htcondor"
    # dask-jobqueue's HTCondorCluster sets no walltime (HTCondor has none): a week, so that
    # workers are not removed while they work; give walltime= for less.
    default_walltime = 7 * 24 * 3600

    def _translate(self, keywords: dict[str, Any]) -> dict[str, Any]:
        skip = keywords.get("job_directives_skip")
        if skip:
            keywords = {**keywords, "job_directives_skip": tuple(_condor_command(s) for s in _as_tuple(skip))}
        return keywords


class OARCluster(JobQueueCluster):
    """dask-jobqueue's OARCluster: ``OARCluster(cores=16, memory="64GB", queue="default",
    project="myproject", walltime="01:00:00", memory_per_core_property_name="memcore")``.
    ``resource_spec`` replaces ``/nodes=1/core=N`` in the ``-l`` line (the walltime is added
    to it); ``memory_per_core_property_name`` is the resources' property of MiB per core that
    ``-p`` asks for (without it OAR is not asked for memory: a warning says so, as in
    dask-jobqueue; ``"not_applicable"`` says the site has none). ``project`` is
    ``--project``. A bare walltime is hours, as oarsub reads it."""

    system_name = "oar"
    default_config_name = "oar"
    project_is_account = True


def _condor_command(name: str) -> str:
    """A submit command dask-jobqueue's HTCondorCluster names (``RequestDisk``, ``batch_name``)
    as the start of our line of the same command (``request_disk =``); other text as it is."""
    from dask_hpc.systems.htcondor import HTCondorSystem

    wanted = name.replace("_", "").lower()
    for key in HTCondorSystem.directive_keys:
        if key.replace("_", "") == wanted:
            return f"{key} ="
    return name


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Mapping):
        return tuple(str(k) for k in value)
    return tuple(value)
