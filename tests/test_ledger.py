"""The job ledger: what the batch system said, merged with what we did."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dask_hpc.state.ledger import UNKNOWN_GRACE, JobRecord, load_ledger, save_ledger
from dask_hpc.systems import JobState, JobStatus


def fresh(**kw: object) -> JobRecord:
    return JobRecord("42", "dask-worker", 1, 600, submitted=1000.0, **kw)  # type: ignore[arg-type]


def test_running_then_finished() -> None:
    r = fresh().update(JobStatus("42", JobState.RUNNING, node="node3"), now=1001)
    assert r.started == 1001 and r.node == "node3" and r.live
    assert r.walltime_left(now=1101) == 500
    r = r.update(JobStatus("42", JobState.TIMEOUT, exit_code=None), now=1601)
    assert r.state is JobState.TIMEOUT and r.ended == 1601 and not r.live
    assert r.node == "node3" and r.walltime_left(now=1700) is None


def test_pending_keeps_its_reason() -> None:
    r = fresh().update(JobStatus("42", JobState.PENDING, reason="Resources"), now=1001)
    assert r.state is JobState.PENDING and r.reason == "Resources" and r.live


def test_unknown_soon_after_submission_is_not_an_end() -> None:
    r = fresh().update(JobStatus("42", JobState.UNKNOWN), now=1000 + UNKNOWN_GRACE / 2)
    assert r.live and r.state is JobState.PENDING
    r = fresh().update(JobStatus("42", JobState.UNKNOWN), now=1000 + UNKNOWN_GRACE + 1)
    assert not r.live and r.state is JobState.UNKNOWN


def test_our_own_cancel_is_remembered() -> None:
    # Grid Engine forgets a deleted job before its accounting knows it: we know we ended it.
    r = fresh(removed=True, started=1001.0).update(JobStatus("42", JobState.UNKNOWN), now=1002)
    assert r.state is JobState.CANCELLED and not r.live
    # Killed by our cancel: the signal exit is not a failure.
    r = fresh(removed=True).update(JobStatus("42", JobState.FAILED, exit_code=143), now=1002)
    assert r.state is JobState.CANCELLED


def test_round_trip_through_a_private_file(tmp_path: Path) -> None:
    other = replace(fresh(), job_id="43").update(JobStatus("43", JobState.RUNNING), now=1001)
    records = {"42": fresh(), "43": other}
    path = tmp_path / "jobs.json"
    save_ledger(path, records)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_ledger(path) == records
    assert load_ledger(tmp_path / "absent.json") == {}
