"""Which class a job's workers are: ``--worker-class`` of a session's jobs (issue 23).

Two kinds are run, each by its own command:

- a subclass of distributed's ``Worker``: ``dask worker --worker-class`` (distributed's
  option; each nanny starts one);
- dask-cuda's ``CUDAWorker``: not a worker but a holder of nannies, one for each GPU the node
  shows in ``CUDA_VISIBLE_DEVICES``, each worker seeing its own GPU first. dask-cuda runs it
  with ``dask cuda worker``, whose options are ``dask worker``'s but for those of
  :data:`dask_hpc.spec.NOT_IN_DASK_CUDA` (dask-cuda 26.10 against distributed 2026.8: it starts a worker a
  GPU, each under a nanny, and has no lifetime); that command is run here, as dask-jobqueue
  users run it with ``worker_command``. The job's GPUs are its ``--nworkers`` first ones:
  where the batch system set no ``CUDA_VISIBLE_DEVICES`` (local, many Grid Engine sites)
  dask-cuda would take every GPU of the node, other users' too.

``auto`` (the job script of a job with one GPU a worker says it) is dask-cuda's worker where
the node's Python has dask-cuda, else distributed's: the choice is made on the node, where
the workers' packages are, not on the login node.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from dask_hpc.errors import DaskHPCError
from dask_hpc.spec import CUDA_WORKER, JobSpec

__all__ = [
    "AUTO",
    "GPUS_SHARED_BY",
    "check_worker_class",
    "choose",
    "cuda_worker_arguments",
    "take_option",
]

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


def choose(value: str | None, cuda_available: Callable[[], bool] | None = None) -> str | None:
    """The workers' class from ``--worker-class``: None for distributed's own, ``auto``
    resolved (see the module). A class other than dask-cuda's must be a subclass of
    distributed's ``Worker``: DaskHPCError in one line otherwise, or where it cannot be
    imported."""
    if value is None or value in ("distributed.Worker", "dask.distributed.Worker"):
        return None
    cuda_available = cuda_available or has_dask_cuda
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
    except Exception as exc:  # not only ImportError: a module of the user's may fail as it likes
        raise DaskHPCError(
            f"--worker-class {value} cannot be imported by {sys.executable} on {socket.gethostname()} "
            f"({type(exc).__name__}: {exc}), the Python of the session's scheduler and its workers: "
            "install its package there, or give the workers its directory with --env PYTHONPATH=DIR "
            "(or export PYTHONPATH before dask-hpc up)"
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
    names another, or a prologue or environment of the job's may change what they import
    (``module load``, ``PYTHONPATH``): then the node says, in the job's log. DaskHPCError in
    one line. For dask-cuda's worker: that dask-cuda is installed (not imported here: it
    loads CUDA's libraries)."""
    if spec.worker_class and spec.python is None and not spec.job_script_prologue and not spec.environment:
        choose(spec.worker_class)


#: ``dask worker`` options dropped for ``dask cuda worker``: it starts a worker a GPU, each
#: under a nanny (and whether the option has a value).
_NOT_CUDA = {"--nworkers": True, "--nanny": False}


def cuda_devices(argv: list[str], env: MutableMapping[str, str] | None = None) -> str:
    """Set ``CUDA_VISIBLE_DEVICES`` to the job's GPUs on this node, the first ``--nworkers``
    of those the batch system gave it (all of the node's where it set none: ``0,1,...``);
    DaskHPCError where it gave fewer. The list set."""
    target = os.environ if env is None else env
    value, _ = take_option(argv, "--nworkers")
    workers = int(value) if value and value.isdigit() else 1
    given = [d.strip() for d in target.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not given:
        given = [str(i) for i in range(workers)]
    if len(given) < workers:
        raise DaskHPCError(
            f"dask-cuda's worker: {workers} workers, one a GPU, but this node's job has "
            f"{len(given)} GPUs (CUDA_VISIBLE_DEVICES={','.join(given)}): ask --gpus {workers}"
        )
    target["CUDA_VISIBLE_DEVICES"] = ",".join(given[:workers])
    return target["CUDA_VISIBLE_DEVICES"]


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


def dask_cuda_command() -> Any:
    """dask-cuda's ``dask cuda worker`` (a click command); DaskHPCError in one line where it
    cannot be loaded (an old dask-cuda, or CUDA's libraries missing)."""
    try:
        from dask_cuda.cli import worker  # type: ignore[import-not-found]
    except Exception as exc:
        raise DaskHPCError(
            f"dask-cuda's worker command could not be loaded ({type(exc).__name__}: {exc}): it needs a "
            "dask-cuda that has `dask cuda worker` and CUDA's libraries on the node"
        ) from None
    return worker


def mark_cuda_workers(env: MutableMapping[str, str] | None = None) -> None:
    """Say in the environment (inherited by the nannies' workers) that dask-cuda set each
    worker's GPUs."""
    (os.environ if env is None else env)[GPUS_SHARED_BY] = "dask-cuda"
