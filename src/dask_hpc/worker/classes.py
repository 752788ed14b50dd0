"""Which class a job's workers are: ``--worker-class`` of a session's jobs (issue 23).

Two kinds are run, each by its own command:

- a subclass of distributed's ``Worker``: ``dask worker --worker-class`` (distributed's
  option; each nanny starts one);
- dask-cuda's ``CUDAWorker``: not a worker but a holder of nannies, one for each GPU the node
  shows in ``CUDA_VISIBLE_DEVICES``, each worker seeing its own GPU first. dask-cuda runs it
  with ``dask cuda worker``, whose options are ``dask worker``'s but for ``--nworkers`` (one a
  GPU) and ``--no-nanny``; that command is run here, as dask-jobqueue users run it with
  ``worker_command``.

``auto`` (the job script of a job with one GPU a worker says it) is dask-cuda's worker where
the node's Python has dask-cuda, else distributed's: the choice is made on the node, where
the workers' packages are, not on the login node.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, MutableMapping

from dask_hpc.errors import DaskHPCError
from dask_hpc.spec import CUDA_WORKER, JobSpec

__all__ = ["AUTO", "GPUS_SHARED_BY", "check_worker_class", "choose", "cuda_worker_arguments", "take_option"]

AUTO = "auto"
#: Set in the environment of dask-cuda's workers: they see their own GPU already, and
#: dask_hpc.worker.gpus leaves their CUDA_VISIBLE_DEVICES as dask-cuda set it.
GPUS_SHARED_BY = "DASK_HPC_GPUS_SHARED_BY"


def has_dask_cuda() -> bool:
    return importlib.util.find_spec("dask_cuda") is not None


def take_option(argv: list[str], option: str) -> tuple[str | None, list[str]]:
    """The value of ``option`` (``--worker-class X`` or ``--worker-class=X``; the last one given)
    and ``argv`` without it."""
    value, rest = None, []
    args = iter(argv)
    for arg in args:
        if arg == option:
            value = next(args, None)
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


def choose(value: str | None, cuda_available: Callable[[], bool] = has_dask_cuda) -> str | None:
    """The workers' class from ``--worker-class``: None for distributed's own, ``auto``
    resolved (see the module). A class other than dask-cuda's must be a subclass of
    distributed's ``Worker``: DaskHPCError in one line otherwise, or where it cannot be
    imported."""
    if value is None or value in ("distributed.Worker", "dask.distributed.Worker"):
        return None
    if value == AUTO:
        return CUDA_WORKER if cuda_available() else None
    if value == CUDA_WORKER:
        if not cuda_available():
            raise DaskHPCError(
                f"--worker-class {CUDA_WORKER}: dask-cuda is not installed in this Python; install "
                "it where the workers run (pip install dask-cuda), or leave --worker-class out"
            )
        return value
    from distributed import Worker
    from distributed.utils import import_term

    try:
        found = import_term(value)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DaskHPCError(
            f"--worker-class {value} cannot be imported here ({exc}): install its package where "
            "the workers run, or give a class's full dotted path"
        ) from None
    if not (isinstance(found, type) and issubclass(found, Worker)):
        raise DaskHPCError(
            f"--worker-class {value} is not a subclass of distributed.Worker: give one, or "
            f"{CUDA_WORKER} (dask-cuda's)"
        )
    return value


def check_worker_class(spec: JobSpec) -> None:
    """Before any job is submitted (up, and the keeper's first add of a spec): the spec's
    worker class can be used, in this Python, which is the workers' unless ``spec.python``
    names another (then the node says, in the job's log). DaskHPCError in one line."""
    if spec.worker_class and spec.python is None:
        choose(spec.worker_class)


#: ``dask worker`` options that ``dask cuda worker`` has not: it starts a worker a GPU, each
#: under a nanny (and the option's value, if it has one).
_NOT_CUDA = {"--nworkers": True, "--nanny": False}


def cuda_worker_arguments(argv: list[str]) -> list[str]:
    """``dask worker`` arguments (ours: scheduler file, threads, memory, name, preload, TLS,
    resources, ...) as ``dask cuda worker`` takes them: the same options, less those of
    ``_NOT_CUDA``."""
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in _NOT_CUDA:
            if _NOT_CUDA[name] and "=" not in arg:
                next(args, None)
            continue
        rest.append(arg)
    return rest


def mark_cuda_workers(env: MutableMapping[str, str] | None = None) -> None:
    """Say in the environment (inherited by the nannies' workers) that dask-cuda set each
    worker's GPUs."""
    (os.environ if env is None else env)[GPUS_SHARED_BY] = "dask-cuda"
