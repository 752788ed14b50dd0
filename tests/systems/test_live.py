"""Real jobs on real batch systems: local processes, SLURM, Grid Engine and OAR daemons.

Each test submits through the same code path users do (render, submit, query,
cancel) and checks what the system itself reports.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from dask_hpc import JobSpec, get_system
from dask_hpc.errors import SpecError, SubmitError
from dask_hpc.systems import BatchSystem, JobState
from dask_hpc.systems.local import LocalSystem

from ..conftest import bring_up, systems, wait_finished, wait_for

# Print what the job knows about itself (through dask-hpc), then maybe linger and exit.
PROBE = """
import json, os, sys, time
from dask_hpc import current_job
c = current_job()
print(json.dumps({"job_id": c.job_id, "nodes": list(c.nodes), "end_time": c.end_time,
                  "now": time.time(), "greeting": os.environ.get("GREETING")}), flush=True)
time.sleep(float(sys.argv[1]))
sys.exit(int(sys.argv[2]))
"""


def submit(
    system: BatchSystem, tmp_path: Path, *, sleep: float = 0, code: int = 0, **options: object
) -> tuple[str, JobSpec]:
    logs = tmp_path / "logs with space"
    logs.mkdir(exist_ok=True)
    options = {"job_name": "dask-hpc-test", "walltime": "5m", "memory": "256MiB", **options}
    spec = JobSpec.from_options(log_directory=str(logs), **options)
    script = system.render(spec, [sys.executable, "-c", PROBE, str(sleep), str(code)])
    return system.submit(script, tmp_path / "scripts"), spec


def job_output(tmp_path: Path, job_id: str, timeout: float = 30) -> str:
    """The job's stdout, whatever the system calls the file (name-ID.out, name.oID)."""
    logs = tmp_path / "logs with space"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in logs.iterdir():
            named = path.name.endswith((f"-{job_id}.out", f".o{job_id}", f".{job_id}.stdout"))
            if named and path.stat().st_size:
                return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"no output of job {job_id} in {logs}: {sorted(p.name for p in logs.iterdir())}")


def test_job_runs_completes_and_knows_itself(live_system: BatchSystem, tmp_path: Path) -> None:
    job_id, _ = submit(live_system, tmp_path, sleep=2, environment={"GREETING": "hello world; $(echo no)"})
    seen: list[JobState] = []
    running = wait_for(live_system, job_id, lambda s: s.state is JobState.RUNNING, seen=seen)
    assert running.node
    done = wait_finished(live_system, job_id)
    assert done.state is JobState.COMPLETED, done
    assert done.exit_code == 0
    assert JobState.RUNNING in seen

    inside = json.loads(job_output(tmp_path, job_id).strip().splitlines()[0])
    assert inside["job_id"] == job_id
    assert inside["nodes"] and inside["nodes"][0]
    assert inside["greeting"] == "hello world; $(echo no)"
    # The walltime end seen from inside is about start + 5 minutes.
    assert 240 < inside["end_time"] - inside["now"] <= 300 + 5


def test_failing_job_reports_its_exit_code(live_system: BatchSystem, tmp_path: Path) -> None:
    job_id, _ = submit(live_system, tmp_path, code=3)
    done = wait_finished(live_system, job_id)
    assert done.state is JobState.FAILED, done
    assert done.exit_code == 3


def test_cancel_a_running_job(live_system: BatchSystem, tmp_path: Path) -> None:
    job_id, _ = submit(live_system, tmp_path, sleep=120)
    wait_for(live_system, job_id, lambda s: s.state is JobState.RUNNING)
    live_system.cancel([job_id])
    done = wait_finished(live_system, job_id)
    assert done.state is JobState.CANCELLED, done


def test_query_many_jobs_at_once_and_unknown_ids(live_system: BatchSystem, tmp_path: Path) -> None:
    ids = [submit(live_system, tmp_path, sleep=60)[0] for _ in range(3)]
    try:
        for job_id in ids:
            wait_for(live_system, job_id, lambda s: s.state is JobState.RUNNING)
        states = live_system.query([*ids, "999999"])
        assert [states[j].state for j in ids] == [JobState.RUNNING] * 3
        assert states["999999"].state is JobState.UNKNOWN
        assert live_system.query(["999998"])["999998"].state is JobState.UNKNOWN
    finally:
        live_system.cancel(ids)


# ---- pending: needs a queue that can be full -------------------------------


def system_named(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> BatchSystem:
    """The named live system; local gets a private spool with one slot."""
    if name == "local":
        return LocalSystem(spool=tmp_path / "spool", slots=1)
    bring_up(name, request)
    return get_system(name, {"sge-parallel-environment": "smp"})  # scripts/local-sge has smp and mpi


BLOCKERS = {
    # local with one slot: any running job fills it.
    "local": ({}, {}),
    # One virtual node filled by an 8-CPU job; the probe must go to that node.
    "slurm": (
        {"cores": 8, "job_extra_directives": ["--nodelist=node1"]},
        {"job_extra_directives": ["--nodelist=node1"]},
    ),
    # all.q has 8 slots: an 8-slot job fills it.
    "sge": ({"cores": 8}, {}),
    # scripts/local-oar's host has 8 core resources.
    "oar": ({"cores": 8}, {}),
}


@pytest.mark.parametrize("name", systems(*sorted(BLOCKERS)))
def test_pending_with_reason_then_running(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    system = system_named(name, request, tmp_path)
    block, probe = BLOCKERS[name]
    blocker, _ = submit(system, tmp_path, sleep=120, **block)
    try:
        wait_for(system, blocker, lambda s: s.state is JobState.RUNNING)
        job_id, _ = submit(system, tmp_path, sleep=1, **probe)
        time.sleep(2)  # a few scheduling cycles: it must still wait
        pending = system.query([job_id])[job_id]
        assert pending.state is JobState.PENDING, pending
        assert pending.reason, pending
        system.cancel([blocker])
        wait_for(system, job_id, lambda s: s.state in (JobState.RUNNING, JobState.COMPLETED))
        assert wait_finished(system, job_id).state is JobState.COMPLETED
    finally:
        system.cancel([blocker])


# ---- refused at submission ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("slurm", "invalid partition", marks=pytest.mark.slurm),
        pytest.param("sge", "unknown queue", marks=pytest.mark.sge),
        pytest.param("oar", "does not exist", marks=pytest.mark.oar),
    ],
)
def test_unknown_queue_fails_at_submission_with_the_systems_message(
    name: str, message: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    system = system_named(name, request, tmp_path)
    with pytest.raises(SubmitError) as info:
        submit(system, tmp_path, queue="no-such-queue")
    error = info.value
    assert message in error.stderr.lower()
    assert error.returncode not in (0, None)
    assert error.argv[0] in ("sbatch", "qsub", "oarsub")
    assert message in str(error).lower()  # the one or two lines a user sees carry it


def test_local_has_no_queues(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="local has no queues"):
        submit(LocalSystem(spool=tmp_path / "spool"), tmp_path, queue="debug")


# ---- walltime ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "walltime", "limit"),
    [
        ("local", "3s", 60),
        pytest.param("sge", "3s", 90, marks=pytest.mark.sge),
        pytest.param("oar", "3s", 90, marks=pytest.mark.oar),
        # SLURM's minimum is a minute, checked every 30 s: 66-85 s here.
        pytest.param("slurm", "1m", 200, marks=[pytest.mark.slurm, pytest.mark.slow]),
    ],
)
def test_walltime_kill_is_reported_as_timeout(
    name: str, walltime: str, limit: float, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    system = system_named(name, request, tmp_path)
    job_id, _ = submit(system, tmp_path, sleep=600, walltime=walltime)
    wait_for(system, job_id, lambda s: s.state is JobState.RUNNING)
    done = wait_finished(system, job_id, timeout=limit)
    assert done.state is JobState.TIMEOUT, done


# ---- job arrays (issue 22) ---------------------------------------------------------


@pytest.mark.parametrize("name", systems("slurm", "sge", "oar"))
def test_an_array_is_one_submission_and_each_task_a_job(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Three tasks from one submission: each knows its own id (the one the system's commands
    take), is queried by it, and one is cancelled alone while the others complete."""
    system = system_named(name, request, tmp_path)
    logs = tmp_path / "logs with space"
    logs.mkdir(exist_ok=True)
    spec = JobSpec.from_options(
        job_name="dask-hpc-array", walltime="5m", memory="256MiB", log_directory=str(logs)
    )
    script = system.render(spec, [sys.executable, "-c", PROBE, "8", "0"], tasks=3)  # running 8 s
    ids = system.submit_array(script, tmp_path / "scripts", 3)
    try:
        assert len(set(ids)) == 3
        for job_id in ids:
            wait_for(system, job_id, lambda s: s.state is JobState.RUNNING)
        states = system.query(ids)
        assert {states[j].state for j in ids} == {JobState.RUNNING}
        system.cancel([ids[0]])
        assert wait_finished(system, ids[0]).state is JobState.CANCELLED
        for job_id in ids[1:]:
            assert wait_finished(system, job_id).state is JobState.COMPLETED
            inside = json.loads(job_output(tmp_path, job_id).strip().splitlines()[0])
            assert inside["job_id"] == job_id
    finally:
        system.cancel(ids)
