"""dask-jobqueue's cluster classes, on dask-hpc: a script written for dask-jobqueue 0.9.0 runs
with its import changed (``from dask_hpc.jobqueue import SLURMCluster``, or ``from dask_hpc
import SLURMCluster``).

Each class is a :class:`~dask_hpc.BatchCluster` that keeps dask-jobqueue's defaults and
reads its keywords with its meanings: the scheduler runs in this process (``scheduler="job"``
asks for dask-hpc's, in its own batch job), no TLS unless ``security`` or ``protocol="tls://"``
asks for it, worker processes near the square root of the cores, 30 minutes of walltime,
jobqueue.yaml's ``jobqueue.<config_name>`` section, and its deprecated keywords with its
warnings. ``docs/jobqueue.md`` lists what differs.
"""

from __future__ import annotations

from dask_hpc.jobqueue.clusters import (
    HTCondorCluster,
    JobQueueCluster,
    LSFCluster,
    MoabCluster,
    OARCluster,
    PBSCluster,
    SGECluster,
    SLURMCluster,
)

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
