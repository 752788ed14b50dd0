"""dask-hpc: Dask on supercomputers.

MPI launch, interactive sessions on batch systems (SLURM, PBS, SGE, LSF,
HTCondor, or plain local processes), JupyterLab beside the scheduler.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import DaskHPCError
from .spec import JobSpec
from .systems import BatchSystem, JobContext, JobState, JobStatus, current_job, get_system

try:
    __version__ = version("dask-hpc")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "BatchSystem",
    "DaskHPCError",
    "JobContext",
    "JobSpec",
    "JobState",
    "JobStatus",
    "__version__",
    "current_job",
    "get_system",
]
