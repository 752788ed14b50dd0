"""The job ledger: every worker job of a session, what we asked for and what became of it.

The keeper is its only writer; commands read it when the scheduler does not
answer. Batch systems forget jobs soon after they end (SLURM after MinJobAge,
Grid Engine until its accounting catches up), so the ledger also remembers
what we did ourselves, such as cancelling a job.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dask_hpc.files import write_private
from dask_hpc.systems import JobState, JobStatus

__all__ = ["JobRecord", "load_ledger", "save_ledger"]

#: A job the system does not know yet may simply not have reached its queue.
UNKNOWN_GRACE = 60.0


@dataclass(frozen=True)
class JobRecord:
    """One worker job of a session."""

    job_id: str
    job_name: str
    processes: int
    walltime: int
    submitted: float
    state: JobState = JobState.PENDING
    reason: str | None = None
    node: str | None = None
    exit_code: int | None = None
    started: float | None = None  # first seen running, or its first worker joined
    ended: float | None = None
    removed: bool = False  # we ended it (remove, scale down, down)
    joined: float | None = None  # its first worker connected
    end: float | None = None  # when its walltime ends, as its worker reported it
    keep: bool = False  # replace it before its walltime ends, and when it dies (add --keep, adapt)
    replaced_by: str | None = None  # the job submitted to take over from it
    # Its spec (JobSpec.to_dict) where it differs from the session's (add with options):
    # a replacement gets the same, after a restart of the scheduler too.
    spec: dict[str, Any] | None = None
    array: str | None = None  # a task of an array: the id of the array's first task (status groups)

    @property
    def live(self) -> bool:
        """Pending or running, as far as we know: it may still bring workers."""
        return self.ended is None

    @property
    def pool(self) -> str | None:
        """The pool this job belongs to, from its spec (None: the session's own jobs)."""
        return (self.spec or {}).get("pool")

    @property
    def counted(self) -> bool:
        """Live, not being removed, and not being replaced: one of the jobs the session keeps."""
        return self.live and not self.removed and self.replaced_by is None

    def ends_at(self) -> float | None:
        """When its walltime ends: as its worker reported, else estimated from its start."""
        if self.end is not None:
            return self.end
        return None if self.started is None else self.started + self.walltime

    def walltime_left(self, now: float | None = None) -> float | None:
        end = self.ends_at()
        if end is None or self.ended is not None:
            return None
        return end - (time.time() if now is None else now)

    def update(self, status: JobStatus, now: float) -> JobRecord:
        """This record after the batch system said ``status`` about it."""
        state = status.state
        if state is JobState.UNKNOWN:
            if self.removed:
                state = JobState.CANCELLED  # we ended it; the system has just forgotten it
            elif self.ended is None and now - self.submitted < UNKNOWN_GRACE and self.started is None:
                return self  # not in the queue yet, or accounting lag: keep what we knew
        started = self.started
        if state is JobState.RUNNING and started is None:
            started = now
        if self.removed and state is JobState.FAILED:
            state = JobState.CANCELLED  # killed by our cancel: a signal exit is not a failure
        ended = self.ended
        if ended is None and (state.finished or state is JobState.UNKNOWN):
            ended = now
        return replace(
            self,
            state=state,
            reason=status.reason if not state.finished else (status.reason or self.reason),
            node=status.node or self.node,
            exit_code=status.exit_code if status.exit_code is not None else self.exit_code,
            started=started,
            ended=ended,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        return cls(**{**data, "state": JobState(data["state"])})


def load_ledger(path: Path) -> dict[str, JobRecord]:
    """The ledger's records by job id; an absent file is an empty ledger."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {r["job_id"]: JobRecord.from_dict(r) for r in data.get("jobs", [])}


def save_ledger(path: Path, records: dict[str, JobRecord]) -> None:
    write_private(path, {"jobs": [r.to_dict() for r in records.values()]})
