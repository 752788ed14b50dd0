"""``python -m dask_hpc.worker``: ``dask worker``, with workers named after their job.

The keeper tells which job a worker belongs to by its name (``<job id>`` or
``<job id>-<n>``), so that it can retire a job's workers before ending it and
show how many workers each job brought.
"""

from __future__ import annotations

import sys

from .errors import DaskHPCError
from .systems import current_job

__all__ = ["main"]


def worker_arguments(argv: list[str]) -> list[str]:
    """``argv`` plus ``--name <job id>`` when run inside a dask-hpc job and no name is given."""
    if "--name" in argv or any(a.startswith("--name=") for a in argv):
        return argv
    try:
        job = current_job()
    except DaskHPCError:
        return argv  # not in a job: distributed names the worker by its address
    return [*argv, "--name", job.job_id]


def main(argv: list[str] | None = None) -> None:
    from distributed.cli.dask_worker import main as dask_worker

    dask_worker.main(
        args=worker_arguments(list(sys.argv[1:] if argv is None else argv)), prog_name="dask worker"
    )


if __name__ == "__main__":
    main()
