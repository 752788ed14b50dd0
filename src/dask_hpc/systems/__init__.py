"""Batch systems by name: ``get_system("slurm")``, and the job we run inside, if any."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dask_hpc.errors import NotInJobError, UnknownSystemError
from dask_hpc.systems.base import ENV_SYSTEM, BatchSystem, Cap, JobContext, JobLimit, JobState, JobStatus
from dask_hpc.systems.htcondor import HTCondorSystem
from dask_hpc.systems.local import LocalSystem
from dask_hpc.systems.lsf import LSFSystem
from dask_hpc.systems.oar import OARSystem
from dask_hpc.systems.pbs import MoabSystem, PBSSystem, TorqueSystem
from dask_hpc.systems.sge import SGESystem
from dask_hpc.systems.slurm import SlurmSystem

__all__ = [
    "SYSTEMS",
    "BatchSystem",
    "Cap",
    "JobContext",
    "JobLimit",
    "JobState",
    "JobStatus",
    "current_job",
    "get_system",
]

SYSTEMS: dict[str, type[BatchSystem]] = {
    cls.name: cls
    for cls in (
        SlurmSystem,
        PBSSystem,
        TorqueSystem,
        MoabSystem,
        SGESystem,
        LSFSystem,
        HTCondorSystem,
        OARSystem,
        LocalSystem,
    )
}


def get_system(name: str, settings: Mapping[str, Any] | None = None) -> BatchSystem:
    """The batch system called ``name`` (case-insensitive); unknown names list the known ones.
    ``settings``: the site's for it, by configuration key (``sge-parallel-environment``);
    keys of other systems are left out."""
    try:
        kind = SYSTEMS[name.strip().lower()]
    except KeyError:
        raise UnknownSystemError(name, SYSTEMS) from None
    given = settings or {}
    return kind(
        **{
            attribute: given[key]
            for key, attribute in kind.setting_keys.items()
            if given.get(key) is not None
        }
    )


def current_job(env: Mapping[str, str] | None = None) -> JobContext:
    """Id, nodes and walltime end of the job this process runs in.

    Needs a job script rendered by dask-hpc (it exports ``DASK_HPC_SYSTEM``).
    """
    env = os.environ if env is None else env
    name = env.get(ENV_SYSTEM)
    if not name:
        raise NotInJobError(f"not inside a dask-hpc job: ${ENV_SYSTEM} is not set")
    return get_system(name).job_context(env)
