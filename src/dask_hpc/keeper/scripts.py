"""The commands that jobs run: pure functions of a spec, so tests can read them."""

from __future__ import annotations

import sys
from pathlib import Path

from dask_hpc.security import TLSFiles
from dask_hpc.spec import JobSpec
from dask_hpc.systems.base import BatchSystem

__all__ = ["scheduler_command", "worker_command", "worker_script"]


def worker_command(
    spec: JobSpec,
    scheduler_file: str | Path,
    *,
    python: str = sys.executable,
    death_timeout: int = 60,
    interface: str | None = None,
    tls: TLSFiles | None = None,
) -> list[str]:
    """``dask worker`` for one job: ``spec.processes`` workers sharing its cores and memory.

    Workers find the scheduler through the scheduler file on the shared
    filesystem, so the job can be submitted before the scheduler is up.
    ``dask_hpc.worker`` is ``dask worker`` that names its workers after the job.
    """
    command = [
        python,
        "-m",
        "dask_hpc.worker",
        "--scheduler-file",
        str(scheduler_file),
        "--nthreads",
        str(spec.threads_per_process),
        "--nworkers",
        str(spec.processes),
        "--memory-limit",
        str(spec.memory_per_process),
        "--death-timeout",
        str(death_timeout),
        # No web page per worker: compute nodes are rarely reachable from a browser, the
        # scheduler's dashboard shows every worker, and bokeh's import costs each worker ~0.8 s.
        "--no-dashboard",
    ]
    if interface:
        command += ["--interface", interface]
    if tls is not None:
        command += tls.worker_arguments()
    return command


def scheduler_command(state_dir: str | Path, *, python: str = sys.executable) -> list[str]:
    """What a session's scheduler job runs: the scheduler with the keeper inside."""
    return [python, "-m", "dask_hpc.scheduler_job", str(state_dir)]


def worker_script(
    system: BatchSystem,
    spec: JobSpec,
    scheduler_file: str | Path,
    *,
    python: str = sys.executable,
    interface: str | None = None,
    death_timeout: int = 60,
    tls: TLSFiles | None = None,
) -> str:
    """The job script of one worker job of a session."""
    command = worker_command(
        spec, scheduler_file, python=python, interface=interface, death_timeout=death_timeout, tls=tls
    )
    return system.render(spec, command)
