"""The keeper's decisions, as pure functions of what it knows: easy to test, fast at 10,000 jobs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from .ledger import JobRecord
from .systems import JobState

__all__ = ["adapt_target_jobs", "choose_removals", "job_of_worker"]


def job_of_worker(name: str, jobs: Mapping[str, object]) -> str | None:
    """The job a worker belongs to, from its name: ``<job id>`` or ``<job id>-<n>``.

    Workers started by ``python -m dask_hpc.worker`` are named after their job;
    distributed appends ``-<n>`` when a job runs several worker processes.
    """
    if name in jobs:
        return name
    head, sep, tail = name.rpartition("-")
    if sep and tail.isdigit() and head in jobs:
        return head
    return None


def choose_removals(
    jobs: Iterable[JobRecord],
    n: int,
    held_bytes: Mapping[str, int],
) -> list[str]:
    """Which ``n`` live jobs to end: those still pending first (newest first: they would
    start last), then running ones holding the least data (least to move), youngest first."""
    live = [j for j in jobs if j.live and not j.removed]
    pending = sorted(
        (j for j in live if j.state is not JobState.RUNNING and j.started is None),
        key=lambda j: -j.submitted,
    )
    running = sorted(
        (j for j in live if j.state is JobState.RUNNING or j.started is not None),
        key=lambda j: (held_bytes.get(j.job_id, 0), -(j.started or 0.0)),
    )
    return [j.job_id for j in [*pending, *running][: max(0, n)]]


def adapt_target_jobs(
    target_workers: int,
    processes: int,
    minimum_jobs: int,
    maximum_jobs: int,
) -> int:
    """How many jobs the scheduler's wish for ``target_workers`` workers means, within bounds."""
    wanted = math.ceil(max(0, target_workers) / max(1, processes))
    return max(minimum_jobs, min(maximum_jobs, wanted))


def scale_steps(live: Sequence[JobRecord], target: int) -> tuple[int, int]:
    """(jobs to submit, jobs to end) to go from the ``live`` jobs to ``target``."""
    count = sum(1 for j in live if j.live and not j.removed)
    return max(0, target - count), max(0, count - target)
