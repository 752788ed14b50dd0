"""Sessions fail safely (issue 18): no submission storms, no job counted alive that is
not, nothing of ours readable by others, no submission left running unseen.

Each test is a case that was tried on the live system it names and went wrong.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dask_hpc.spec import JobSpec
from dask_hpc.state.session import SESSIONS_VARIABLE
from dask_hpc.systems import JobState
from dask_hpc.systems.local import SLOTS_VARIABLE, SPOOL_VARIABLE, LocalSystem

from .conftest import HPC, bring_up, poll, systems
from .test_bad_input import one_error_line

pytestmark = pytest.mark.timeout(240)


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of a failed command: no traceback, nothing else."""
    return one_error_line(done)


@pytest.mark.parametrize("system", systems("slurm"))
def test_adapt_refused_by_the_partition_says_why_and_does_not_storm(
    system: str, hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    """A job sbatch refuses (a feature no node has): adapt answered "adapting between 1 and
    2" and then called sbatch once a second, each refused. One the partition's limit
    refuses (short: 10 min, asked 30) is refused before sbatch, in one line (issue 22)."""
    bring_up(system, request)
    hpc = hpc_for(system)
    name = "storm"
    hpc.up(name)
    scripts = hpc.session(name).scripts
    before = len(list(scripts.iterdir()))
    past = ["adapt", "--min", "1", "--max", "2", "--walltime", "30m", "--queue", "short", "--name", name]
    done = hpc(*past, check=False)
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode != 0 and line.startswith(
        "error: a worker job with a walltime of 00:30:00 would pass the site's limit MaxTime=00:10:00"
    ), done.stderr
    adapt = ["adapt", "--min", "1", "--max", "2", "--job-extra-directive=--constraint=nosuch", "--name", name]
    done = hpc(*adapt, check=False)
    # A refusal is the command's line and the batch system's own words below it, as for add.
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: slurm refused the job: sbatch --parsable ")
    assert "sbatch: error: Batch job submission failed: Invalid feature specification" in done.stderr
    assert done.stderr.rstrip().endswith(
        "adapt is off: change what the batch system refused, then adapt again"
    )
    time.sleep(5)  # a storm would be five more refusals by now
    report = hpc.status(name)
    assert report["adapt"] is None and report["jobs"] == []
    assert len(list(scripts.iterdir())) == before  # refused scripts are not left behind


def test_adapt_whose_jobs_fail_before_joining_backs_off_then_stops(hpc_for: Callable[[str], HPC]) -> None:
    """A job that cannot start (here its prologue exits 3) was resubmitted as fast as it failed."""
    hpc = hpc_for("local")
    name = "failing"
    hpc.up(name)
    hpc("adapt", "--min", "1", "--max", "1", "--prologue", "exit 3", "--name", name)

    def stopped() -> dict[str, object] | None:
        trouble = hpc.status(name).get("submit_trouble")
        return trouble if trouble and trouble["stopped"] else None

    trouble = poll("automatic submissions to stop", stopped, timeout=90)
    assert trouble["failures"] == 3
    assert "ended before its worker joined: failed (exit code 3)" in str(trouble["words"])
    time.sleep(6)  # past the first backoff: nothing more is submitted
    report = hpc.status(name)
    assert len(report["jobs"]) == 3  # the scheduler's job is job 1 of the spool
    last = report["jobs"][-1]["job_id"]
    assert f"job {last} ended" in str(trouble["words"])
    assert f"dask-hpc logs {last} --name {name}" in str(trouble["words"])
    assert [j["state"] for j in report["jobs"]] == ["failed"] * 3
    gaps = [b["submitted"] - a["submitted"] for a, b in zip(report["jobs"], report["jobs"][1:], strict=False)]
    assert gaps[0] >= 5 and gaps[1] >= 10  # 5 s after the first failure, 10 s after the second
    shown = hpc("status", "--name", name).stdout
    assert "submissions: 3 failed in a row" in shown and "STOPPED" in shown
    # The user acts: adapt again starts afresh.
    hpc("adapt", "--min", "0", "--max", "1", "--name", name)
    assert hpc.status(name).get("submit_trouble") is None


def test_up_whose_scheduler_jobs_runner_dies_fails_at_once(
    tmp_path: Path, hpc_for: Callable[[str], HPC]
) -> None:
    """The runner is ``up``'s child while ``up`` waits; unreaped, it was a zombie counted as
    running, and ``up`` waited its whole --timeout, then blamed a busy queue."""
    hpc = hpc_for("local")
    spool = tmp_path / "spool"
    blocker_system = LocalSystem(spool=spool, slots=1)
    blocker = blocker_system.submit(blocker_system.render(JobSpec(), ["sleep", "120"]), tmp_path / "work")
    poll("the slot taken", lambda: blocker_system.query([blocker])[blocker].state is JobState.RUNNING)
    env = {**hpc.env, SLOTS_VARIABLE: "1"}
    up = subprocess.Popen(
        [sys.executable, "-m", "dask_hpc", "up", "--name", "orphan", "--memory", "1GiB", "--timeout", "120"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state = spool / "2" / "state.json"
        poll(
            "the scheduler's job to wait for the slot",
            lambda: state.exists() and "pending" in state.read_text(),
        )
        runner = json.loads(state.read_text())["runner_pid"]
        os.kill(runner, signal.SIGKILL)
        t0 = time.monotonic()
        _, err = up.communicate(timeout=30)
        assert time.monotonic() - t0 < 20
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        blocker_system.cancel([blocker])
    line = error_line(subprocess.CompletedProcess(up.args, up.returncode, "", err))
    assert "the scheduler job 2 ended before its scheduler answered: failed (the job's runner died)" in line


def test_everything_dask_hpc_makes_is_private(tmp_path: Path) -> None:
    """``~/.dask-hpc`` came out 0755 and the local runner's logs 0644, under the usual umask."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (SESSIONS_VARIABLE, SPOOL_VARIABLE)}
    env.update(HOME=str(home), COLUMNS="200")

    def hpc(*args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "dask_hpc", *args],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=120,
            umask=0o022,  # whatever umask this test was started with
        )

    try:
        hpc("up", "--name", "mine", "--memory", "1GiB", "--walltime", "10m", "--refresh", "1")
        hpc("add", "1", "--name", "mine", "--wait", "90")
    finally:
        subprocess.run(
            [sys.executable, "-m", "dask_hpc", "down", "--name", "mine"],
            env=env,
            capture_output=True,
            timeout=180,
        )
    made = home / ".dask-hpc"
    paths = [made, *made.rglob("*")]
    assert len(paths) > 10
    others = [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p}" for p in paths if p.lstat().st_mode & 0o077]
    assert others == []


@pytest.mark.sge
@pytest.mark.parametrize("chosen", ["pbs", "torque"])
def test_another_systems_qsub_is_named_before_anything_is_submitted(
    chosen: str, hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    """On Grid Engine, ``up --system pbs`` submitted job 38, could not read Grid Engine's
    answer, exited, and job 38 ran on with nobody to cancel it."""
    bring_up("sge", request)
    before = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True, timeout=30).stdout
    hpc = hpc_for(chosen)
    line = error_line(hpc.up("wrong", check=False))
    assert f"--system {chosen}, but qsub here is Grid Engine's (qstat --version: 'SGE 8.1.9')" in line
    assert line.endswith("use --system sge")
    after = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True, timeout=30).stdout
    assert after == before  # nothing was submitted
    # Nothing left that looks alive: the session is down, not "starting or dead".
    assert json.loads(hpc("list", "--json").stdout) == [
        {"name": "wrong", "system": chosen, "state": "down", "address": None}
    ]
    shown = hpc("status", "--name", "wrong", check=False)
    assert "scheduler: down (its job was never submitted: up failed)" in shown.stdout
    assert shown.returncode == 3
