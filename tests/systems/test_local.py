"""The `local` system's own behaviour: spool, runner failures, killing whole process groups."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dask_hpc import JobSpec
from dask_hpc.errors import SpecError
from dask_hpc.systems import JobState
from dask_hpc.systems.local import LocalSystem

from ..conftest import wait_finished, wait_for


def test_job_ids_count_up_and_scripts_are_private(local_system: LocalSystem, tmp_path: Path) -> None:
    script = local_system.render(JobSpec(), ["true"])
    ids = [local_system.submit(script, tmp_path / "work") for _ in range(3)]
    assert [int(i) for i in ids] == [1, 2, 3]
    for job_id in ids:
        path = local_system.spool_dir / job_id / "script.sh"
        assert path.stat().st_mode & 0o077 == 0
        assert wait_finished(local_system, job_id).state is JobState.COMPLETED


def test_runner_that_cannot_start_is_a_failed_job(local_system: LocalSystem) -> None:
    job_dir = local_system.spool_dir / "7"
    job_dir.mkdir(parents=True)
    (job_dir / "runner.log").write_text("Traceback ...\nModuleNotFoundError: No module named 'dask_hpc'\n")
    status = local_system.query(["7"])["7"]
    assert status.state is JobState.FAILED
    assert "No module named 'dask_hpc'" in (status.reason or "")


def test_walltime_kills_the_whole_process_group(local_system: LocalSystem, tmp_path: Path) -> None:
    """A job's background children die with it: nothing is left running."""
    pidfile = tmp_path / "child.pid"
    spec = JobSpec.from_options(walltime="2s")
    command = ["bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]
    job_id = local_system.submit(local_system.render(spec, command), tmp_path / "work")
    wait_for(local_system, job_id, lambda s: s.state is JobState.RUNNING)
    assert wait_finished(local_system, job_id, timeout=30).state is JobState.TIMEOUT
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"child {child} of the timed-out job still runs")


def test_cancel_twice_and_cancel_finished_jobs(local_system: LocalSystem, tmp_path: Path) -> None:
    job_id = local_system.submit(local_system.render(JobSpec(), ["true"]), tmp_path / "work")
    wait_finished(local_system, job_id)
    local_system.cancel([job_id, job_id, "12345"])  # no error: ended or unknown jobs
    assert local_system.query([job_id])[job_id].state is JobState.COMPLETED


def test_cancel_a_pending_job(tmp_path: Path) -> None:
    local = LocalSystem(spool=tmp_path / "spool", slots=1)
    script = local.render(JobSpec(), ["sleep", "60"])
    running = local.submit(script, tmp_path / "work")
    wait_for(local, running, lambda s: s.state is JobState.RUNNING)
    waiting = local.submit(script, tmp_path / "work")
    status = wait_for(local, waiting, lambda s: s.reason is not None)
    assert status.state is JobState.PENDING
    assert "waiting for a free slot" in (status.reason or "")
    local.cancel([waiting])
    assert wait_finished(local, waiting, timeout=20).state is JobState.CANCELLED
    local.cancel([running])
    assert wait_finished(local, running, timeout=20).state is JobState.CANCELLED


def test_slots_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_HPC_LOCAL_SLOTS", "3")
    assert LocalSystem().slot_limit == 3
    monkeypatch.setenv("DASK_HPC_LOCAL_SLOTS", "none")
    with pytest.raises(SpecError, match="DASK_HPC_LOCAL_SLOTS"):
        LocalSystem().slot_limit  # noqa: B018
    monkeypatch.delenv("DASK_HPC_LOCAL_SLOTS")
    assert LocalSystem().slot_limit is None


def test_down_without_a_scheduler_returns_once_its_jobs_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel is asynchronous (SIGTERM, then SIGKILL after the grace); down waits for it, bounded.

    A CI run saw a worker job still RUNNING right after ``down`` of a session whose
    scheduler had died: the job's runner had not yet seen its process end.
    """
    from dask_hpc.session import lifecycle
    from dask_hpc.state.ledger import JobRecord, save_ledger
    from dask_hpc.state.session import Session, SessionConfig

    monkeypatch.setenv("DASK_HPC_LOCAL_SPOOL", str(tmp_path / "spool"))
    system = LocalSystem()
    # A worker that ignores SIGTERM: it ends only at the runner's SIGKILL, KILL_WAIT seconds on.
    spec = JobSpec.from_options(job_script_prologue=["trap '' TERM"])
    script = system.render(spec, ["sleep", "300"])
    job_id = system.submit(script, tmp_path / "work")
    wait_for(system, job_id, lambda s: s.state is JobState.RUNNING)
    session = Session("gone", tmp_path / "sessions")
    session.prepare()
    session.write_config(SessionConfig("gone", "local", JobSpec(), JobSpec()))
    save_ledger(session.ledger_file, {job_id: JobRecord(job_id, "w", 1, 3600, time.time())})

    result = lifecycle.down(session)
    assert result["job_ids"] == [job_id] and result["answered"] is False
    assert system.query([job_id])[job_id].state is JobState.CANCELLED
    assert result["warning"] is None


def test_a_zombie_or_a_reused_pid_is_not_a_live_runner() -> None:
    """``kill -0`` succeeds on a zombie and on whoever got the pid next: neither is our runner."""
    import subprocess
    import sys

    from dask_hpc.systems.local import pid_alive, runner_started

    assert pid_alive(os.getpid(), runner_started())
    assert not pid_alive(os.getpid(), runner_started() - 3600)  # the same pid, another process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while not Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1].startswith("Z"):
            assert time.monotonic() < deadline, "the child did not end"
            time.sleep(0.05)
        assert not pid_alive(child.pid)  # ended, not reaped yet
    finally:
        child.wait()


def test_a_runner_killed_while_its_submitter_lives_is_a_failed_job(tmp_path: Path) -> None:
    """The runner is the submitter's child until the submitter exits (``dask-hpc up`` waits
    for its scheduler's job): unreaped, it was a zombie counted as running, and ``up``
    waited its whole --timeout."""
    import json
    import signal

    local = LocalSystem(spool=tmp_path / "spool", slots=1)
    script = local.render(JobSpec(), ["sleep", "60"])
    running = local.submit(script, tmp_path / "work")
    wait_for(local, running, lambda s: s.state is JobState.RUNNING)
    waiting = local.submit(script, tmp_path / "work")
    wait_for(local, waiting, lambda s: s.reason is not None)  # pending, its runner waits for a slot
    runner = json.loads((local.spool_dir / waiting / "state.json").read_text())["runner_pid"]
    os.kill(runner, signal.SIGKILL)
    status = wait_for(local, waiting, lambda s: s.state.finished, timeout=20)
    assert (status.state, status.reason) == (JobState.FAILED, "the job's runner died")
    local.cancel([running])
    assert wait_finished(local, running, timeout=20).state is JobState.CANCELLED


def test_a_runner_that_cannot_open_the_jobs_log_fails_the_job_with_why(local_system: LocalSystem) -> None:
    script = local_system.render(JobSpec(), ["true"])
    head, rest = script.split("\n", 1)
    script = f"{head}\n#LOCAL --output=/proc/no-such-dir/out.log\n{rest}"  # cannot be created
    job_id = local_system.submit(script, local_system.spool_dir.parent / "work")
    status = wait_finished(local_system, job_id, timeout=20)
    assert status.state is JobState.FAILED
    assert (status.reason or "").startswith("the job's runner failed: ")
    assert "/proc/no-such-dir/out.log" in (status.reason or "")


def test_cancel_never_signals_a_process_that_took_a_dead_runners_pid(local_system: LocalSystem) -> None:
    import subprocess
    import sys

    from dask_hpc.systems.local import Record, process_start

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        job_dir = local_system.spool_dir / "5"
        job_dir.mkdir(parents=True)
        # A runner that died long ago; its pid now belongs to another process.
        started = process_start(other.pid)
        assert started is not None
        Record(JobState.RUNNING, runner_pid=other.pid, runner_started=started - 1000).write(job_dir)
        assert local_system.query(["5"])["5"].state is JobState.FAILED
        local_system.cancel(["5"])
        time.sleep(0.2)
        assert other.poll() is None  # not killed
        assert local_system.query(["5"])["5"].state is JobState.CANCELLED
    finally:
        other.kill()
        other.wait()


def test_a_job_cancelled_or_killed_before_its_runner_wrote_a_word(
    local_system: LocalSystem, tmp_path: Path
) -> None:
    """``up`` cancels the jobs it submitted when it fails, often within milliseconds: the
    runner had not written its pid yet, cancel skipped the job, and it ran on; a runner
    killed that early left its job pending forever."""
    import json
    import signal

    script = local_system.render(JobSpec(), ["sleep", "60"])
    job_id = local_system.submit(script, tmp_path / "work")
    local_system.cancel([job_id])  # at once
    assert wait_finished(local_system, job_id, timeout=20).state is JobState.CANCELLED
    # Short: should the runner have started it before the kill, nothing lasts.
    job_id = local_system.submit(local_system.render(JobSpec(), ["sleep", "2"]), tmp_path / "work")
    runner = json.loads((local_system.spool_dir / job_id / "runner.json").read_text())["runner_pid"]
    os.kill(runner, signal.SIGKILL)
    status = wait_finished(local_system, job_id, timeout=20)
    assert (status.state, status.reason) == (JobState.FAILED, "the job's runner died")
