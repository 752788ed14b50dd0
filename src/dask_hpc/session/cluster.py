"""BatchCluster and connect(): the Python face of a session.

``BatchCluster`` takes dask-jobqueue's keyword names where the concept is the
same, so switching is a change of import. Unlike dask-jobqueue, the scheduler
runs in its own job by default (``scheduler="job"``), so the session outlives
the notebook; ``scheduler="local"`` runs it in this process instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Awaitable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from distributed.core import rpc
from distributed.deploy.cluster import Cluster

from dask_hpc.config import OWN_KEYS, SETTING_KEYWORDS, Configuration, flags, resolve
from dask_hpc.errors import SessionError, SpecError, UnknownOptionError
from dask_hpc.keeper import protocol
from dask_hpc.keeper.protocol import JobReport
from dask_hpc.keeper.scripts import worker_script
from dask_hpc.network import choose_interface, system_peers
from dask_hpc.security import create_tls_files, tls_files, worker_credentials, write_tls_files
from dask_hpc.session import lifecycle
from dask_hpc.session.link import Link
from dask_hpc.session.report import SessionStatus
from dask_hpc.spec import JobSpec, make_log_directory
from dask_hpc.state.ledger import load_ledger
from dask_hpc.state.session import DEFAULT_NAME, SESSION_VARIABLE, Session, SessionConfig
from dask_hpc.systems import get_system

if TYPE_CHECKING:
    from distributed import Client, Scheduler, Security

__all__ = ["BatchCluster", "client_security", "connect"]

#: Set by ``dask-hpc mpi --jupyter`` in its JupyterLab's kernels.
MPI_SCHEDULER_FILE_VARIABLE = "DASK_HPC_SCHEDULER_FILE"

#: BatchCluster's own keywords, besides a job's resources (JobSpec's fields).
_OWN = (
    "interface",
    "scheduler_walltime",
    "scheduler_memory",
    "scheduler_directives",
    "submit_from",
    "refresh",
    "timeout",
    "n_workers",
    "insecure",
    "protocol",
    "security",
    "scheduler_options",
    "scheduler_cls",
    "silence_logs",
    "shared_temp_directory",
    "config_name",
    *(keyword for keyword in SETTING_KEYWORDS),
)


def connect(name: str | None = None, *, timeout: float = 10.0) -> Client:
    """A Client of session ``name``.

    Without a name: in a JupyterLab started by ``dask-hpc up --jupyter``, its
    session; in one started by ``dask-hpc mpi --jupyter``, that cluster;
    elsewhere the session named ``default``.
    """
    from distributed import Client

    mpi_file = os.environ.get(MPI_SCHEDULER_FILE_VARIABLE)
    if name is None and mpi_file and not os.environ.get(SESSION_VARIABLE):
        from dask_hpc.mpi import client_security as mpi_security

        return Client(scheduler_file=mpi_file, timeout=timeout, security=mpi_security(mpi_file))
    session = Session(name or os.environ.get(SESSION_VARIABLE) or DEFAULT_NAME)
    _, scheduler = lifecycle.open_live(session)  # a clear error if there is no scheduler answering
    return Client(scheduler_file=str(session.scheduler_file), timeout=timeout, security=scheduler.security)


def client_security(name: str | None = None) -> Security | None:
    """The TLS settings a Client needs for session ``name``: ``Client(scheduler_file=...,
    security=dask_hpc.client_security(name))``. None for a session started with --insecure."""
    session = Session(name or os.environ.get(SESSION_VARIABLE) or DEFAULT_NAME)
    return lifecycle.session_security(session, session.read_config())


class BatchCluster(Cluster):
    """A session run from Python: the scheduler in its own small batch job (or here), worker
    jobs added with :meth:`scale` and :meth:`adapt`, TLS on; what ``dask-hpc up`` makes.

    ``BatchCluster("slurm", cores=36, memory="100GB", walltime="02:00:00", queue="debug")``.
    Every keyword of a job is dask-jobqueue 0.9.0's, with its meaning; a keyword left out
    (None) takes the configured value (:mod:`dask_hpc.config`: the environment, the user's
    and the site's files, jobqueue.yaml, a site profile; ``dask-hpc config`` shows them),
    else dask-hpc's default. :mod:`dask_hpc.jobqueue` has dask-jobqueue's class names
    (``SLURMCluster``...), which also keep its defaults (the scheduler here, plain tcp,
    processes near the square root of the cores, 30 minutes).

    Parameters
    ----------
    system
        The batch system: ``slurm``, ``pbs``, ``torque``, ``sge``, ``lsf``, ``htcondor``, or
        ``local`` (worker jobs are processes here). If None: dask-hpc's configuration
        (``dask-hpc.system``, a site profile), else ``local``.
    name
        The session's name (``dask-hpc status NAME`` etc.); ``default`` if None.
    scheduler
        ``"job"``: the scheduler runs in its own small batch job (it outlives this process);
        ``"local"``: in this process (it ends with it).
    cores, memory, processes, walltime, nodes
        Per worker job: cores; memory (``"8GiB"``, ``"8GB"`` or bytes); worker processes
        sharing them; walltime (``"HH:MM:SS"``, ``"90m"`` or seconds); nodes, each with
        those cores, memory and processes (SLURM: srun starts the workers on every node;
        they are named ``<job>@<node>``). Defaults: 1 core, 2 GiB, 1 process, 1 hour, 1 node.
    gpus
        GPUs on each node of a worker job, asked as the batch system asks for them (SLURM
        ``--gres=gpu:N``, PBS Pro ``ngpus``, Torque ``gpus``, LSF ``-gpu "num=N"``, HTCondor
        ``request_gpus``, Grid Engine the site's consumable ``sge-gpu-resource``); the worker
        processes share them evenly as the resource ``GPU``, for
        ``client.submit(f, resources={"GPU": 1})``. Default 0.
    queue, account, job_name
        The queue (partition), the account (project) to charge, the jobs' name.
    job_extra_directives, job_script_prologue, job_script_epilogue, job_directives_skip
        Extra directive lines (a mapping: ``key = value`` lines, HTCondor's submit
        description, as dask-jobqueue's HTCondorCluster takes them); shell lines run before
        the workers, and after them; substrings of our own directive lines to leave out.
    environment, log_directory, shebang
        ``NAME=VALUE`` pairs (or a mapping) for the workers' environment; where the jobs'
        logs go (made if missing); the scripts' first line (``#!/usr/bin/env bash``).
    worker_extra_args, local_directory, death_timeout, nanny, python, worker_command, worker_class
        What the workers run, as ``dask worker`` takes it: more arguments
        (``["--resources", "GPU=1"]``); node-local storage (``"$TMPDIR"``: the node's);
        seconds to wait for the scheduler (60); a nanny per worker (True); the workers'
        Python (this one); the module ``python -m`` runs (``dask worker``, ours, which
        names workers after their job and retires them before the walltime); the workers'
        class (dask-mpi's name): a subclass of ``distributed.Worker``, or
        ``"dask_cuda.CUDAWorker"`` (run by ``dask cuda worker``, a worker a GPU: ``gpus`` ==
        ``processes``), chosen by default for one GPU a worker where the nodes have dask-cuda.
    resource_spec, job_cpu, job_mem, ncpus, mem, lsf_units, use_stdin, disk, \
submit_command_extra, cancel_command_extra, memory_per_core_property_name, array_throttle
        One batch system's own, as dask-jobqueue's class for it takes them (refused for
        another): PBS, Grid Engine and OAR's ``-l`` line of resources; OAR's property of
        MiB per core (``memcore``: ``-p memcore>=N``); SLURM's most tasks of an array
        running at once (``--array=1-N%K``, dask-hpc's own); SLURM's
        ``--cpus-per-task`` and ``--mem``; LSF's ``-n``, ``-M`` (bytes), the unit memory is
        written in, ``bsub < script`` (True) or ``bsub script``; HTCondor's disk (bytes or
        ``"1GB"``) and arguments added to ``condor_submit`` and ``condor_rm``.
    n_workers
        Workers to start with (0: none until :meth:`scale` or :meth:`adapt`).
    pools
        Pools of workers beside the session's own, each a name and its jobs' options as
        above (``{"himem": {"memory": "500GB", "queue": "bigmem"}, "gpu": {"gpus": 1}}``):
        ``scale(4, pool="gpu")`` and ``adapt(..., pool="gpu")`` size them; their workers
        carry the resource ``pool-<name>`` (``resources={"pool-gpu": 1}`` routes tasks).
    interface, protocol
        The network interface the scheduler listens on (``ib0``; chosen if None); its
        protocol (``tcp://``, ``tls://``, ``ucx://``...; workers get ``--protocol``).
    security, insecure
        TLS: None (the session's own CA and certificate; dask_hpc.jobqueue's classes: none,
        as dask-jobqueue), True (the session's), False or ``insecure=True`` (plain tcp),
        or a distributed ``Security`` (``scheduler="local"``: its worker certificate is
        written, private, to the session's directory for the jobs).
    scheduler_options, scheduler_cls
        ``scheduler="local"``: more keywords for distributed's ``Scheduler``
        (``{"dashboard_address": ":8788"}``, ``host``, ``port``, ``interface``), its class.
    silence_logs
        The level below which distributed's log lines in this process are not shown
        (``"error"``, as dask-jobqueue); None or False: all.
    shared_temp_directory
        Where the session's files are kept (the scheduler file, TLS files, scripts, logs);
        the nodes must share it. Default: ``dask-hpc.state-dir``.
    config_name
        The section of jobqueue.yaml to read (``jobqueue.<config_name>``); the system's.
    scheduler_walltime, scheduler_memory, scheduler_directives
        The scheduler's own job (``scheduler="job"``): walltime, memory, extra directives.
    asynchronous, loop
        distributed's: ``async with BatchCluster(..., asynchronous=True)`` (or ``await``)
        starts it on the running event loop; then :meth:`scale`, :meth:`adapt` and
        :meth:`status_report` return awaitables.
    submit_from
        Where worker jobs are submitted from: ``"auto"``, ``"here"`` or ``"scheduler"``.
    refresh
        Seconds between the keeper's looks at the batch system.
    timeout
        Seconds to wait for the scheduler's job to answer.

    Raises
    ------
    UnknownOptionError
        For a keyword nobody knows, listing ours.
    SpecError, SessionError
        For a bad value, or a session of that name already live: before any job is submitted.
    """

    #: Whether the session's TLS is on when ``security`` is None (dask_hpc.jobqueue: off).
    _tls_by_default: ClassVar[bool] = True

    def __init__(
        self,
        system: str | None = None,
        *,
        name: str | None = None,
        scheduler: str = "job",
        cores: int | None = None,
        memory: str | int | None = None,
        processes: int | None = None,
        nodes: int | None = None,
        gpus: int | None = None,
        walltime: str | int | None = None,
        queue: str | None = None,
        account: str | None = None,
        job_name: str | None = None,
        job_extra_directives: Sequence[str] | Mapping[str, str] | None = None,
        job_script_prologue: Sequence[str] | None = None,
        job_script_epilogue: Sequence[str] | None = None,
        job_directives_skip: Sequence[str] | None = None,
        environment: Mapping[str, str] | Sequence[str] | None = None,
        log_directory: str | None = None,
        shebang: str | None = None,
        worker_extra_args: Sequence[str] | None = None,
        local_directory: str | None = None,
        death_timeout: str | float | None = None,
        nanny: bool | None = None,
        python: str | None = None,
        worker_command: str | None = None,
        worker_class: str | None = None,
        resource_spec: str | None = None,
        job_cpu: int | None = None,
        job_mem: str | None = None,
        ncpus: int | None = None,
        mem: int | str | None = None,
        lsf_units: str | None = None,
        use_stdin: bool | None = None,
        disk: int | str | None = None,
        submit_command_extra: Sequence[str] | None = None,
        cancel_command_extra: Sequence[str] | None = None,
        memory_per_core_property_name: str | None = None,
        array_throttle: int | None = None,
        n_workers: int = 0,
        pools: Mapping[str, Mapping[str, Any]] | None = None,
        interface: str | None = None,
        protocol: str | None = None,
        security: Security | bool | None = None,
        insecure: bool = False,
        scheduler_options: Mapping[str, Any] | None = None,
        scheduler_cls: type[Scheduler] | None = None,
        silence_logs: str | int | bool | None = "error",
        shared_temp_directory: str | None = None,
        config_name: str | None = None,
        scheduler_walltime: str | int | None = None,
        scheduler_memory: str | int | None = None,
        scheduler_directives: Sequence[str] = (),
        submit_from: str | None = None,
        refresh: float = 5.0,
        timeout: float = 600.0,
        asynchronous: bool = False,
        loop: Any = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise UnknownOptionError(unknown, self._known_keywords())
        if scheduler not in ("job", "local"):
            raise SessionError(f"invalid scheduler {scheduler!r}: use 'job' (its own batch job) or 'local'")
        given = {
            "cores": cores,
            "memory": memory,
            "processes": processes,
            "nodes": nodes,
            "gpus": gpus,
            "walltime": walltime,
            "queue": queue,
            "account": account,
            "job_name": job_name,
            "job_extra_directives": job_extra_directives,
            "job_script_prologue": job_script_prologue,
            "job_script_epilogue": job_script_epilogue,
            "job_directives_skip": job_directives_skip,
            "environment": environment,
            "log_directory": log_directory,
            "shebang": shebang,
            "worker_extra_args": worker_extra_args,
            "local_directory": local_directory,
            "death_timeout": death_timeout,
            "nanny": nanny,
            "python": python,
            "worker_command": worker_command,
            "worker_class": worker_class,
        }
        system_keywords = {
            "resource_spec": resource_spec,
            "job_cpu": job_cpu,
            "job_mem": job_mem,
            "ncpus": ncpus,
            "mem": mem,
            "lsf_units": lsf_units,
            "use_stdin": use_stdin,
            "disk": disk,
            "submit_command_extra": submit_command_extra,
            "cancel_command_extra": cancel_command_extra,
            "memory_per_core_property_name": memory_per_core_property_name,
            "array_throttle": array_throttle,
        }
        keywords = {k: v for k, v in given.items() if v is not None}
        settings = {SETTING_KEYWORDS[k]: v for k, v in system_keywords.items() if v is not None}
        configuration = resolve(
            {
                "system": system,
                "interface": interface,
                "submit-from": submit_from,
                **flags(keywords),
                **settings,
            },
            config_name=config_name,
        )
        self._refuse_settings_of_other_systems(configuration.system, settings)
        options = self._with_defaults({**configuration.spec_options(), **keywords}, configuration)
        interface = configuration.get("interface")
        submit_from = configuration.get("submit-from", "auto")
        self._jobqueue_cluster = configuration.jobqueue_cluster
        configured_options = configuration.jobqueue_cluster.get("scheduler-options")
        if scheduler_options is None and configured_options is not None:
            scheduler_options = configured_options.value
        if shared_temp_directory is None and "shared-temp-directory" in configuration.jobqueue_cluster:
            shared_temp_directory = configuration.jobqueue_cluster["shared-temp-directory"].value
        root = None if shared_temp_directory is None else Path(os.path.expandvars(shared_temp_directory))
        self.session = Session(name or self._default_name(configuration.system), root=root)
        self._named_for_it = name is None and self.session.name != DEFAULT_NAME
        self.system = get_system(configuration.system, self._system_settings(configuration))
        self.spec, scheduler_spec = lifecycle.session_specs(
            self.session.name,
            options,
            walltime_fields=self.system.walltime_fields,
            scheduler_walltime=scheduler_walltime,
            scheduler_memory=scheduler_memory,
            scheduler_directives=list(scheduler_directives),
            logs=self.session.logs,
        )
        self.system.render(self.spec, [])  # refuse what this system cannot take, before any job
        #: Each pool's options, sent with every scale or adapt of it (the keeper keeps the first).
        self._pools = {name: {**dict(options), "pool": name} for name, options in (pools or {}).items()}
        for options in self._pools.values():  # refused here in one line, not at the first scale
            self.system.render(
                self.spec.with_options(walltime_fields=self.system.walltime_fields, **options), []
            )
        for note in self.system.notes(self.spec):
            warnings.warn(note, UserWarning, stacklevel=_callers_level())
        self._in_job = scheduler == "job"
        _check_cluster_keywords(security, silence_logs, scheduler_options)
        tls = _choose_security(security, protocol, insecure, self._tls_by_default, self._in_job)
        self._protocol = tls.protocol
        if self._in_job and scheduler_cls is not None:
            raise SessionError(
                "scheduler_cls is for a scheduler in this process: add scheduler='local', or leave "
                "it out (the scheduler's job runs distributed's)"
            )
        if self._in_job and scheduler_options:
            from_file = configured_options is not None and scheduler_options is configured_options.value
            whose = configured_options.source if from_file and configured_options else "scheduler_options"
            raise SessionError(
                f"{whose}: scheduler_options are for a scheduler in this process: add "
                "scheduler='local', or leave them out (the scheduler's job chooses its address)"
            )
        self._scheduler_options = dict(scheduler_options or {})
        self._scheduler_cls = scheduler_cls
        # As dask-jobqueue (SpecCluster): distributed's log lines below this level are not shown
        # here while the cluster lives (a closing cluster's workers log noise at WARNING).
        self._quiet = _QUIET.hold(silence_logs) if silence_logs else contextlib.ExitStack()
        super().__init__(asynchronous=asynchronous, loop=loop, name=self.session.name)  # type: ignore[no-untyped-call]
        self._scheduler: Scheduler | None = None
        self.security: Security | None = None  # Client(cluster) takes it from here
        self._async_mode = asynchronous  # our own: distributed's property answers for the calling thread
        self._pending: _Start | None = _Start(
            scheduler_spec, tls, interface, submit_from, refresh, timeout, n_workers
        )
        self._loop_runner.start()
        if not asynchronous:  # asynchronous: `await cluster` (or `async with`) starts it, as in distributed
            self.sync(self._start_session)  # type: ignore[no-untyped-call]

    def __await__(self) -> Generator[Any, None, BatchCluster]:
        async def started() -> BatchCluster:
            if self._pending is not None:
                await self._start_session()
            return self

        return started().__await__()

    async def _start_session(self) -> None:
        """Start the scheduler (its job, or here), then distributed's Cluster around it; the
        blocking steps (submitting, waiting for the job) in a thread, so that this event loop,
        which may be the scheduler's, goes on."""
        start, self._pending = self._pending, None
        assert start is not None
        try:
            if self._in_job:
                started = await asyncio.to_thread(
                    lifecycle.up,
                    self.session,
                    self.system,
                    self.spec,
                    start.scheduler_spec,
                    interface=start.interface,
                    submit_from=start.submit_from,
                    refresh=start.refresh,
                    timeout=start.timeout,
                    insecure=start.tls.insecure,
                )
                self.security = started.link.security
                address = started.address
            else:
                address = await self._start_scheduler(self._prepare_here(start))
            args = self.security.get_connection_args("client") if self.security else {}
            self.scheduler_comm = rpc(address, connection_args=args)
            await super()._start()  # type: ignore[no-untyped-call]
        except BaseException:
            self._quiet.close()
            raise
        if start.n_workers:
            jobs = math.ceil(start.n_workers / self.spec.workers)
            await asyncio.to_thread(lifecycle.scale, self.session, jobs)

    # ---- what the subclasses of dask_hpc.jobqueue change --------------------------

    def _with_defaults(self, options: dict[str, Any], configuration: Configuration) -> dict[str, Any]:
        """The job options, with this class's defaults where neither a keyword nor the
        configuration gave one (BatchCluster: dask-hpc's, in JobSpec)."""
        return options

    def _default_name(self, system: str) -> str:
        return DEFAULT_NAME

    def _system_settings(self, configuration: Configuration) -> dict[str, Any]:
        """The batch system's settings (BatchCluster: the configuration's)."""
        return configuration.system_settings()

    def _known_keywords(self) -> list[str]:
        """The keywords to list when one is unknown."""
        return _keywords(type(self))

    def _refuse_settings_of_other_systems(self, system: str, settings: Mapping[str, Any]) -> None:
        """A keyword of one batch system given for another: one line, before any job."""
        kind = get_system(system)
        for key, value in settings.items():
            if key not in kind.setting_keys:
                keyword = next(k for k, v in SETTING_KEYWORDS.items() if v == key)
                raise SpecError(keyword, value, f"{system} does not read it (it is {OWN_KEYS[key]})")

    def _prepare_here(self, start: _Start) -> SessionConfig:
        """The session's files for a scheduler in this process: its directory, TLS, settings."""
        lifecycle.refuse_if_live(self.session)
        self.session.prepare()
        if self.spec.log_directory:
            make_log_directory(self.spec.log_directory)
        self.session.clear_scheduler_files()
        self.session.set_aside_ledger()
        if start.tls.given is not None:
            # The jobs read the workers' certificate from the session's directory (private,
            # shared with the nodes), where the keeper's scripts point them.
            write_tls_files(self.session.directory, worker_credentials(start.tls.given))
            self.security = start.tls.given
        elif not start.tls.insecure:
            self.security = create_tls_files(self.session.directory, self.session.name).security()
        config = SessionConfig(
            name=self.session.name,
            system=self.system.name,
            spec=self.spec,
            scheduler_spec=start.scheduler_spec,
            interface=start.interface,
            submit_from=start.submit_from,
            refresh=start.refresh,
            insecure=start.tls.insecure,
            system_settings=self.system.settings(),
            protocol=start.tls.protocol,
            scheduler_here=True,
        )
        self.session.write_config(config)
        return config

    async def _start_scheduler(self, config: SessionConfig) -> str:
        from dask_hpc.keeper.plugin import Keeper
        from dask_hpc.launch import DASHBOARD_PORT, add_dashboard, start_scheduler

        options = dict(self._scheduler_options)
        wanted = options.pop("interface", None) or config.interface
        choice = choose_interface(wanted, lambda: system_peers(self.system))
        host = options.pop("host", choice.address)
        options.setdefault("port", 0)
        options.setdefault("dashboard_address", f"{host}:{DASHBOARD_PORT}")
        keeper = Keeper(self.session, config, choice, self.system)
        self._scheduler = await start_scheduler(
            security=options.pop("security", self.security),
            protocol=options.pop("protocol", None) or self._protocol,
            host=host,
            scheduler_file=str(self.session.scheduler_file),
            plugins=[keeper, *options.pop("plugins", ())],
            scheduler_cls=self._scheduler_cls,
            **options,
        )
        await add_dashboard(self._scheduler)
        return str(self._scheduler.address)

    # ---- dask-jobqueue's surface ------------------------------------------------

    def scale(  # type: ignore[override]
        self,
        n: int | None = None,
        jobs: int = 0,
        memory: str | None = None,
        cores: int | None = None,
        pool: str | None = None,
    ) -> asyncio.Future[Any] | None:
        """Make the session run ``jobs`` worker jobs, or enough for ``n`` workers,
        ``memory`` or ``cores`` in total (given several: the most jobs). Turns adapt off.
        ``pool``: that pool's jobs (the spec its first ``add --pool`` gave it), not the
        session's own. In an asynchronous cluster, a future of it (awaiting it is optional,
        as with distributed's ``scale``)."""
        # As distributed's (and so dask-jobqueue's) scale: the most that any of them asks for.
        wanted = [jobs]
        if n is not None:
            wanted.append(math.ceil(n / self.spec.workers))
        if memory is not None:
            wanted.append(math.ceil(JobSpec.from_options(memory=memory).memory / self.spec.memory))
        if cores is not None:
            wanted.append(math.ceil(cores / self.spec.cores))
        jobs = max(wanted)
        options = None if pool is None else self._pool_options(pool)
        if self._async_mode:  # the keeper answers on this loop: ask from a thread; await it or not
            return asyncio.ensure_future(asyncio.to_thread(lifecycle.scale, self.session, jobs, options))
        lifecycle.scale(self.session, jobs, options)
        return None

    def _pool_options(self, pool: str) -> dict[str, Any]:
        """The options of a pool that ``pools=`` named; a name it did not (a typo would have
        made a pool of the session's options) is refused in one line."""
        if pool not in self._pools:
            known = ", ".join(sorted(self._pools)) or "none"
            raise SpecError("pool", pool, f"pools= names the pools of this cluster ({known}): add it there")
        return self._pools[pool]

    def adapt(  # type: ignore[override]
        self,
        minimum_jobs: int | None = None,
        maximum_jobs: int | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        minimum_cores: int | None = None,
        maximum_cores: int | None = None,
        minimum_memory: str | int | None = None,
        maximum_memory: str | int | None = None,
        interval: str | float | None = None,
        wait_count: int | None = None,
        pool: str | None = None,
    ) -> protocol.AdaptBounds | asyncio.Future[protocol.AdaptBounds | None] | None:
        """Let the scheduler scale between the bounds by itself; it goes on after this
        notebook closes. With no bound: 0 to no upper bound, as dask-jobqueue.

        Bounds are in jobs (``minimum_jobs``, ``maximum_jobs``, as dask-jobqueue), workers
        (``minimum``, ``maximum``; ``math.inf``: none), cores or memory (``"400GB"``), as
        distributed's ``Cluster.adapt``; several lower bounds: the highest, several upper
        bounds: the lowest. ``interval`` (seconds, or ``"10s"``; default 1 s) and
        ``wait_count`` (default 3) are distributed's Adaptive's: how often it decides, and
        how many decisions in a row end an idle job. ``pool``: adapt that pool's jobs (the
        spec its first ``add --pool`` gave it; bounds in jobs) by the tasks that ask for its
        resource ``pool-<name>``, beside the session's own adapt.

        Returns the bounds in jobs. The first submissions happen before this returns: if the
        batch system refuses them all, this raises SessionError with its words and adapt is
        off; if it refuses some, a RuntimeWarning says so and adapt goes on, backing off.
        Later failures (refusals, jobs that end before their worker joins) make automatic
        submissions wait (5 s, doubling, at most 5 min) and stop after 3 identical ones:
        ``status_report().keeper.submit_trouble`` says why."""
        # Workers, cores, memory to jobs: rounded up, as SpecCluster rounds a scale to whole jobs.
        lower = self._jobs_for(minimum_jobs, minimum, minimum_cores, minimum_memory)
        upper = self._jobs_for(maximum_jobs, maximum, maximum_cores, maximum_memory)
        seconds = None
        if interval is not None:
            from dask.utils import parse_timedelta

            seconds = parse_timedelta(interval, default="seconds")
        ask = functools.partial(
            lifecycle.adapt,
            self.session,
            max(lower, default=0),
            min(upper, default=None),
            interval=seconds,
            wait_count=wait_count,
            options=None if pool is None else self._pool_options(pool),
        )
        if self._async_mode:  # as scale: from a thread, a future of the bounds
            return asyncio.ensure_future(_bounds_of(asyncio.to_thread(ask)))
        return _bounds_of_answer(ask())

    def _jobs_for(
        self, jobs: int | None, workers: float | None, cores: int | None, memory: str | int | None
    ) -> list[int]:
        """A bound given in jobs, workers, cores or memory, as jobs (an infinite one left out)."""
        found = [] if jobs is None else [jobs]
        for amount, per_job in (
            (workers, self.spec.workers),
            (cores, self.spec.cores * self.spec.nodes),
            (
                None if memory is None else JobSpec.from_options(memory=memory).memory,
                self.spec.memory * self.spec.nodes,
            ),
        ):
            if amount is not None and math.isfinite(amount):
                found.append(math.ceil(amount / per_job))
        return found

    @property
    def job_name(self) -> str:
        """The worker jobs' name (dask-jobqueue's ``job_name``)."""
        return self.spec.job_name

    @property
    def job_header(self) -> str:
        """The directive lines of a worker job's script (dask-jobqueue's ``job_header``);
        HTCondor's: its submit description."""
        lines = self.job_script().splitlines()
        prefix = self.system.directive_prefix
        if prefix:
            return "\n".join(line for line in lines if line.startswith(prefix))
        return "\n".join(line for line in lines if line and not line.startswith("queue"))

    @property
    def workers(self) -> dict[str, JobReport]:
        """The live worker jobs by job id (dask-jobqueue: a job object per job), from the keeper."""
        return {j.job_id: j for j in self._status_now().jobs if j.ended is None and not j.removed}

    @property
    def worker_spec(self) -> dict[str, JobSpec]:
        """Each live worker job's spec, by job id (dask-jobqueue's ``worker_spec``)."""
        return {
            i: self.spec if j.spec is None else JobSpec.from_dict(j.spec) for i, j in self.workers.items()
        }

    @property
    def plan(self) -> set[str]:
        """The names of the workers the live jobs bring: ``<job id>``, or ``<job id>-<n>`` for a
        job of several processes (as distributed names them): what ``len(cluster.plan)`` counts
        right after ``scale``, as in dask-jobqueue."""
        names = set()
        for job_id, job in self.workers.items():
            names |= {job_id} if job.processes == 1 else {f"{job_id}-{n}" for n in range(job.processes)}
        return names

    @property
    def requested(self) -> set[str]:
        """The workers asked for and not ended: every live job has been submitted, so :attr:`plan`."""
        return self.plan

    def job_script(self) -> str:
        """The worker job script that ``scale`` submits."""
        config = self.session.read_config()
        return worker_script(
            self.system,
            self.spec,
            self.session.scheduler_file,
            python=config.python,
            interface=config.interface,
            tls=None if config.insecure else tls_files(self.session.directory),
            protocol=config.protocol,
        )

    def status_report(self) -> SessionStatus | Awaitable[SessionStatus]:
        """What ``dask-hpc status`` shows (``.to_dict()``: what ``dask-hpc status --json`` prints);
        in an asynchronous cluster, an awaitable of it."""
        if self._async_mode:
            return asyncio.ensure_future(asyncio.to_thread(lifecycle.status, self.session))
        return lifecycle.status(self.session)

    def _status_now(self) -> SessionStatus:
        if self._async_mode:
            raise SessionError(
                "in an asynchronous cluster, read the jobs from `await cluster.status_report()`: "
                "asking here would block the event loop the keeper answers on"
            )
        return lifecycle.status(self.session)

    async def _close(self) -> None:
        if self._in_job:
            await asyncio.to_thread(lifecycle.down, self.session)
        elif self._scheduler is not None:
            with contextlib.suppress(SessionError):  # already down
                await Link(self.scheduler_address, self.security).ask_async(protocol.Down(), timeout=120)
            await self._scheduler.close()
            self.session.write_config(self.session.read_config().but(down=True))
            if self._named_for_it and not load_ledger(self.session.ledger_file):
                # A session named for this cluster that never ran a job: nothing in it to keep
                # (dask-jobqueue's classes make one per cluster; job_script() alone made many).
                shutil.rmtree(self.session.directory, ignore_errors=True)
        await super()._close()  # type: ignore[no-untyped-call]
        self._quiet.close()

    def __repr__(self) -> str:
        kind = type(self).__name__
        return f"{kind}({self.system.name!r}, name={self.session.name!r}, {self.scheduler_address})"


class _Silence:
    """distributed's log handlers quieted while any cluster that asked lives, and restored
    when the last one closes (clusters close in any order; the first one's level holds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._stack: contextlib.ExitStack | None = None

    def hold(self, level: str | int | bool) -> contextlib.ExitStack:
        """A stack whose close() lets go of this cluster's hold."""
        from distributed.utils import silence_logging_cmgr

        with self._lock:
            if self._holders == 0:
                self._stack = contextlib.ExitStack()
                self._stack.enter_context(silence_logging_cmgr("error" if level is True else level))
            self._holders += 1
        released = contextlib.ExitStack()
        released.callback(self._release)
        return released

    def _release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._stack is not None:
                self._stack.close()
                self._stack = None


_QUIET = _Silence()


def _callers_level() -> int:
    """The stacklevel of the first frame outside dask_hpc, from the function that calls this:
    a warning points at the user's line (``OARCluster(...)``), whichever class they built."""
    frame, level = sys._getframe(1), 1  # the caller's own frame is stacklevel 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("dask_hpc"):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def _check_cluster_keywords(security: Any, silence_logs: Any, scheduler_options: Any) -> None:
    """The cluster keywords of the wrong type or value: one line each, before anything starts."""
    from distributed import Security

    if security is not None and not isinstance(security, bool | Security):
        raise SessionError(
            f"invalid security {security!r}: True (a certificate of the session's own), False, or "
            "a distributed.Security"
        )
    levels = ("debug", "info", "warning", "error", "critical")
    if not (silence_logs in (None, True, False) or isinstance(silence_logs, int)) and (
        not isinstance(silence_logs, str) or silence_logs.lower() not in levels
    ):
        raise SessionError(f"invalid silence_logs {silence_logs!r}: a level ({', '.join(levels)}), or False")
    if scheduler_options is not None and not isinstance(scheduler_options, Mapping):
        raise SessionError(
            f"invalid scheduler_options {scheduler_options!r}: a mapping of distributed Scheduler "
            "keywords, e.g. {'dashboard_address': ':8788'}"
        )
    for both in ("protocol", "security"):
        if scheduler_options and both in scheduler_options:
            raise SessionError(
                f"scheduler_options[{both!r}]: give {both}= to the cluster, which gives it to the "
                "scheduler and the workers alike"
            )


def _keywords(cls: type) -> list[str]:
    """The keywords ``cls`` takes, for the line that refuses an unknown one."""
    import inspect

    names: dict[str, None] = {}
    for kind in cls.__mro__:
        init = kind.__dict__.get("__init__")
        if init is not None and issubclass(kind, BatchCluster):
            parameters = inspect.signature(init).parameters.items()
            names.update(
                (n, None) for n, p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            )
    return [n for n in names if n != "self"]


@dataclass(frozen=True)
class TLSChoice:
    """How a cluster's scheduler and workers talk: plain, the session's TLS, or the user's."""

    insecure: bool
    protocol: str | None  # None: tls or tcp, as insecure says
    given: Security | None = None


#: The protocols that carry no encryption, and those that need a certificate.
_PLAIN = ("tcp", "ws", "ucx", "inproc")
_ENCRYPTED = ("tls", "wss")


def _choose_security(
    security: Security | bool | None, protocol: str | None, insecure: bool, tls_by_default: bool, in_job: bool
) -> TLSChoice:
    """``security`` and ``protocol`` as dask-jobqueue reads them (``security`` implies
    tls; True: a certificate made for the cluster), with the session's TLS for True and,
    unless ``tls_by_default`` is off, for None. A contradiction is one line."""
    name = None if protocol is None else str(protocol).split("://")[0].lower()
    if name is not None and name not in (*_PLAIN, *_ENCRYPTED):
        raise SessionError(f"invalid protocol {protocol!r}: use tcp://, tls://, ws://, wss:// or ucx://")
    if in_job and name not in (None, "tcp", "tls"):
        raise SessionError(
            f"protocol {protocol!r} needs scheduler='local'; the scheduler's job speaks tcp or tls"
        )
    if security is False or insecure:
        if name in _ENCRYPTED or (security not in (None, False)):
            raise SessionError(
                f"insecure=True (or security=False) but protocol {protocol!r} or a Security asks for "
                "TLS: leave one of them out"
            )
        return TLSChoice(insecure=True, protocol=name)
    if security is None:
        wanted = name in _ENCRYPTED if name is not None else tls_by_default
        return TLSChoice(insecure=not wanted, protocol=name)
    if name in _PLAIN:
        raise SessionError(
            f"protocol {protocol!r} carries no encryption but security is given: use tls:// "
            "(or leave protocol out), or leave security out"
        )
    if security is True:
        return TLSChoice(insecure=False, protocol=name)
    if in_job:
        raise SessionError(
            "a Security of your own needs scheduler='local': the scheduler's job makes its session's "
            "own certificate (security=True)"
        )
    return TLSChoice(insecure=False, protocol=name, given=security)


def _bounds_of_answer(answer: protocol.Adapting) -> protocol.AdaptBounds | None:
    if answer.warning:
        # Some of the first jobs were refused: adapt goes on, backing off (status_report says more).
        warnings.warn(answer.warning, RuntimeWarning, stacklevel=3)
    return answer.bounds


async def _bounds_of(answer: Awaitable[protocol.Adapting]) -> protocol.AdaptBounds | None:
    return _bounds_of_answer(await answer)


@dataclass(frozen=True)
class _Start:
    """What starting a cluster needs, kept from __init__ for ``await cluster``."""

    scheduler_spec: JobSpec
    tls: TLSChoice
    interface: str | None
    submit_from: str
    refresh: float
    timeout: float
    n_workers: int
