"""What ``python -m dask_hpc.worker`` runs: ``dask worker``, with workers named after their job
that leave gracefully before its walltime ends.

The keeper tells which job a worker belongs to by its name (``<job id>`` or
``<job id>-<n>``), so that it can retire a job's workers before ending it and
show how many workers each job brought. In a job, every worker preloads
:mod:`dask_hpc.worker.retirement`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from dask_hpc.errors import DaskHPCError
from dask_hpc.spec import CUDA_WORKER, dask_cuda_lacks
from dask_hpc.systems import current_job, get_system
from dask_hpc.systems.base import ENV_NODES

__all__ = ["fork_workers", "main"]


def worker_arguments(argv: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """``argv`` plus, inside a dask-hpc job, ``--name <job id>`` (``<job id>@<node>`` in a
    job of several nodes, one worker set on each) unless a name is given, and
    ``--preload dask_hpc.worker.retirement``."""
    env = os.environ if env is None else env
    try:
        job = current_job(env)
    except DaskHPCError:
        return argv  # not in a job: distributed names the worker by its address
    name = job.job_id
    if env.get(ENV_NODES, "1") not in ("", "1"):
        name = f"{job.job_id}@{get_system(job.system).node_name_from_env(env)}"
    named = "--name" in argv or any(a.startswith("--name=") for a in argv)
    return [*argv, *([] if named else ["--name", name]), "--preload", "dask_hpc.worker.retirement"]


#: Set this (to spawn, fork or forkserver) to choose how a nanny starts its worker.
START_METHOD_VARIABLE = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def fork_workers() -> None:
    """Nannies fork their worker, unless the user chose otherwise.

    A forked worker saves a second interpreter and its imports: 0.6 s per worker
    alone on this machine, more when a node starts many at once. distributed
    supports fork; the nanny forks before running any task.
    """
    import dask

    if sys.platform == "linux" and START_METHOD_VARIABLE not in os.environ:
        dask.config.set({"distributed.worker.multiprocessing-method": "fork"})


def main(argv: list[str] | None = None) -> None:
    """``dask worker``, or dask-cuda's ``dask cuda worker`` where ``--worker-class`` chooses
    dask-cuda's worker (:mod:`dask_hpc.worker.classes`). A class that cannot be used: one line
    on stderr, exit 1 (the job ends before its workers start; the keeper sees it fail); where
    ``auto`` chose dask-cuda's and it cannot be used here, distributed's, said in one line."""
    from dask_hpc.worker import classes

    argv = list(sys.argv[1:] if argv is None else argv)
    value, args = classes.take_option(worker_arguments(argv), "--worker-class")
    command = None
    try:
        chosen = classes.choose(value)
        if chosen == CUDA_WORKER:
            missing = dask_cuda_lacks(args)
            if missing:
                raise DaskHPCError(
                    f"dask cuda worker has no {', '.join(missing)}: leave it out of --worker-extra-args, "
                    "or give --worker-class distributed.Worker"
                )
            command = classes.dask_cuda_command()
            classes.cuda_devices(args)
    except DaskHPCError as exc:
        if value != classes.AUTO:
            print(f"dask-hpc worker: {exc}", file=sys.stderr)  # noqa: T201  # the job's log
            raise SystemExit(1) from None
        print(f"dask-hpc worker: {exc}; distributed's worker instead", file=sys.stderr)  # noqa: T201
        chosen, command = None, None
    if command is not None:
        classes.mark_cuda_workers()
        print(f"dask-hpc worker: {CUDA_WORKER}: a worker a GPU", file=sys.stderr)  # noqa: T201
        command.main(args=classes.cuda_worker_arguments(args), prog_name="dask cuda worker")
        return
    from distributed.cli.dask_worker import main as dask_worker

    fork_workers()
    dask_worker.main(args=[*args, *(["--worker-class", chosen] if chosen else [])], prog_name="dask worker")
