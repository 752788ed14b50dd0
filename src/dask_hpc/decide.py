"""The keeper's decisions, as pure functions of what it knows: easy to test, fast at 10,000 jobs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from .ledger import JobRecord
from .systems import JobState

__all__ = [
    "adapt_target_jobs",
    "choose_removals",
    "job_of_worker",
    "lost_kept_jobs",
    "queue_wait",
    "replacement_lead",
    "replacement_times",
    "scale_steps",
]

#: Seconds from submission to a connected worker assumed before any job of the session joined.
DEFAULT_QUEUE_WAIT = 30.0
#: How many recent jobs' waits the estimate uses, and the safety factor on it.
WAIT_SAMPLES = 5
WAIT_FACTOR = 1.5
#: Seconds added to every lead, for the keeper's own polling and the replacement's start-up.
LEAD_SLACK = 5.0


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
    start last), then running ones holding the least data (least to move), youngest first.
    A job being replaced is leaving anyway: its replacement is the one to end."""
    live = [j for j in jobs if j.counted]
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
    """(jobs to submit, jobs to end) to go from the ``live`` jobs to ``target``.

    A job being replaced is not counted (its replacement is): it is leaving.
    """
    count = sum(1 for j in live if j.counted)
    return max(0, target - count), max(0, count - target)


def queue_wait(jobs: Iterable[JobRecord], default: float = DEFAULT_QUEUE_WAIT) -> float:
    """Seconds from submission to a connected worker, as observed: the median of the
    last few jobs that joined (the queue changes), else ``default``."""
    joined = sorted((j for j in jobs if j.joined is not None), key=lambda j: j.submitted)[-WAIT_SAMPLES:]
    if not joined:
        return default
    waits = sorted(max(0.0, (j.joined or 0.0) - j.submitted) for j in joined)
    return waits[len(waits) // 2]


def replacement_lead(wait: float, margin: float) -> float:
    """How long before a kept job's end its replacement is submitted: the observed queue
    ``wait`` with a safety factor, plus the ``margin`` at which the old job's workers leave
    by themselves, plus slack. Then the replacement has joined before the old job leaves."""
    return WAIT_FACTOR * wait + margin + LEAD_SLACK


def replacement_times(jobs: Iterable[JobRecord], margin: Callable[[JobRecord], float]) -> dict[str, float]:
    """When each kept job that has no replacement yet gets one (seconds since the epoch):
    its end less :func:`replacement_lead`, where ``margin(job)`` is when its workers leave."""
    jobs = list(jobs)
    wait = queue_wait(jobs)  # once: the same for every job
    times = {}
    for j in jobs:
        end = j.ends_at()
        if j.keep and j.counted and end is not None:
            times[j.job_id] = end - replacement_lead(wait, margin(j))
    return times


def lost_kept_jobs(jobs: Iterable[JobRecord]) -> list[str]:
    """Kept jobs that ended without our asking (killed, node failure, walltime) and were
    never replaced. Only jobs whose workers had joined: a job that fails before it starts
    is not resubmitted over and over."""
    return [
        j.job_id
        for j in jobs
        if j.keep and not j.live and not j.removed and j.replaced_by is None and j.joined is not None
    ]
