"""Each worker process of a GPU job sees its own GPUs (issue 23).

A job's workers (``--nworkers N``, forked by their nannies) inherit one
``CUDA_VISIBLE_DEVICES``: the GPUs the batch system gave the job on this node (SLURM's
``--gres``, PBS's and LSF's cgroups set it). Each would see them all and start its CUDA
work on the first. Here, in each worker process before it runs a task (distributed's
preload hook, before CUDA is initialised), the list is cut into even shares: worker ``i``
of a job whose workers each hold the resource ``GPU=k`` sees the i-th k of them. dask-cuda's
worker does the same for its own workers (one a GPU); where the batch system set no list,
nothing is cut (the worker sees the node's GPUs as the system left them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping

from dask_hpc.worker.classes import GPUS_SHARED_BY

__all__ = ["gpu_share", "share_gpus", "worker_index"]

VISIBLE = "CUDA_VISIBLE_DEVICES"


def gpu_share(visible: str, index: int, per_worker: int) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` of worker ``index`` (0, 1, ...) of a job whose GPUs are
    ``visible`` (``"0,1,2,3"``, or UUIDs), ``per_worker`` of them each; None where there is
    no such share (no list, or fewer GPUs than the workers need: left as it is)."""
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    if per_worker < 1 or not devices or (index + 1) * per_worker > len(devices):
        return None
    return ",".join(devices[index * per_worker : (index + 1) * per_worker])


def worker_index(name: str) -> int:
    """Which of its job's workers a worker is, from distributed's name for it (``<name>-<i>``
    with ``--nworkers`` above 1; a name without it is the only one, 0)."""
    found = re.search(r"-(\d+)$", name)
    return int(found[1]) if found else 0


def share_gpus(
    name: str, resources: Mapping[str, float], env: MutableMapping[str, str] | None = None
) -> str | None:
    """Set this worker process's ``CUDA_VISIBLE_DEVICES`` (in ``env``; None: the process's)
    to its share (see the module); the share set, or None (nothing changed)."""
    target: MutableMapping[str, str] = os.environ if env is None else env
    if target.get(GPUS_SHARED_BY) == "dask-cuda":  # worker/classes.py: dask-cuda set its own
        return None
    per_worker = int(resources.get("GPU", 0))
    share = gpu_share(target.get(VISIBLE, ""), worker_index(name), per_worker)
    if share is not None:
        target[VISIBLE] = share
    return share
