"""dask-hpc: Dask on supercomputers.

MPI launch, interactive sessions on batch systems (SLURM, PBS, Torque, Moab, SGE,
LSF, HTCondor, OAR, or plain local processes), JupyterLab beside the scheduler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dask_hpc.errors import DaskHPCError
from dask_hpc.spec import JobSpec
from dask_hpc.systems import BatchSystem, JobContext, JobState, JobStatus, current_job, get_system

if TYPE_CHECKING:
    from dask_hpc.data import open_mfdataset
    from dask_hpc.jobqueue import (
        HTCondorCluster,
        LSFCluster,
        MoabCluster,
        OARCluster,
        PBSCluster,
        SGECluster,
        SLURMCluster,
    )
    from dask_hpc.session.cluster import BatchCluster, client_security, connect


#: dask-jobqueue's classes (dask_hpc.jobqueue): ``from dask_hpc import SLURMCluster``.
JOBQUEUE_CLASSES = (
    "HTCondorCluster",
    "LSFCluster",
    "MoabCluster",
    "OARCluster",
    "PBSCluster",
    "SGECluster",
    "SLURMCluster",
)

__all__ = [
    "BatchCluster",
    "BatchSystem",
    "DaskHPCError",
    "HTCondorCluster",
    "JobContext",
    "JobSpec",
    "JobState",
    "JobStatus",
    "LSFCluster",
    "MoabCluster",
    "OARCluster",
    "PBSCluster",
    "SGECluster",
    "SLURMCluster",
    "__version__",
    "client_security",
    "connect",
    "current_job",
    "get_system",
    "open_mfdataset",
]


def __getattr__(name: str) -> Any:
    # BatchCluster, connect and client_security need distributed (a second to import), __version__ needs
    # importlib.metadata (0.05 s): load them on first use, so that the CLI and job
    # scripts that do not need them start fast.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("dask-hpc")
        except PackageNotFoundError:  # running from a source tree
            return "0+unknown"
    if name in ("BatchCluster", "client_security", "connect"):
        from dask_hpc.session import cluster

        return getattr(cluster, name)
    if name in JOBQUEUE_CLASSES:
        from dask_hpc import jobqueue

        return getattr(jobqueue, name)
    if name == "open_mfdataset":  # needs xarray
        from dask_hpc.data import open_mfdataset

        return open_mfdataset
    raise AttributeError(f"module 'dask_hpc' has no attribute {name!r}")
