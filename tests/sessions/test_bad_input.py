"""Bad input and broken sessions: one clear line, a non-zero exit, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from dask_hpc.systems import JobState, get_system
from dask_hpc.systems.local import SLOTS_VARIABLE

from .conftest import HPC, bring_up, poll, processes_mentioning, systems

pytestmark = pytest.mark.timeout(180)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unknown_session_lists_the_sessions(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    line = one_error_line(hpc("status", "--name", "nope", check=False))
    assert "no session 'nope'" in line and "there are none; start one with dask-hpc up" in line
    hpc.up("alpha")
    for command in (["status"], ["add", "1"], ["logs"], ["down"], ["remove", "1"], ["tunnel"]):
        line = one_error_line(hpc(*command, "--name", "nope", check=False))
        assert "no session 'nope'" in line and "sessions: alpha" in line


def test_tunnel_of_a_session_that_is_down_or_of_no_cluster(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    hpc.up("gone")
    assert hpc("tunnel", "gone").stdout.startswith("ssh -N -L ")  # the dashboard only
    hpc("down", "--name", "gone")
    line = one_error_line(hpc("tunnel", "gone", check=False))
    assert "session 'gone' is down; start it again with dask-hpc up" in line
    line = one_error_line(hpc("tunnel", "--scheduler-file", "/nonexistent/scheduler.json", check=False))
    assert "no /nonexistent/web.json: is dask-hpc mpi running" in line


def test_invalid_session_name(hpc_for: Callable[[str], HPC]) -> None:
    line = one_error_line(hpc_for("local")("status", "--name", "../etc", check=False))
    assert "invalid session name '../etc'" in line


def test_up_refuses_a_live_session(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    hpc.up("busy")
    line = one_error_line(hpc.up("busy", check=False))
    assert "session 'busy' is live" in line and "dask-hpc down --name busy" in line
    assert hpc.status("busy")["scheduler"]["answering"] is True  # the live one is untouched


@pytest.mark.parametrize("system", systems("local", "slurm"))
def test_scheduler_job_died(
    system: str, hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    bring_up(system, request)
    hpc = hpc_for(system)
    hpc.up("dead")
    hpc("add", "2", "--name", "dead", "--wait", "90")
    report = hpc.status("dead")
    scheduler_job = report["scheduler"]["job_id"]
    workers = [j["job_id"] for j in report["jobs"]]
    get_system(system).cancel([scheduler_job])  # the scheduler's job dies behind our back

    def not_answering() -> bool:
        return hpc.status("dead")["scheduler"]["answering"] is False

    poll("status to notice the scheduler is gone", not_answering, timeout=60)
    line = one_error_line(hpc("add", "1", "--name", "dead", check=False))
    assert "session 'dead' has no scheduler answering" in line
    assert f"scheduler job {scheduler_job} is" in line and "dask-hpc down --name dead" in line
    shown = hpc("status", "--name", "dead", check=False)
    assert "NOT ANSWERING" in shown.stdout and shown.returncode == 3  # a script can tell

    out = hpc("down", "--name", "dead")
    assert "ended" in out.stdout
    # The orphaned worker jobs are gone too (their workers would have waited 60 s for a scheduler).
    statuses = get_system(system).query(workers)
    assert len(statuses) == 2 and all(
        s.state not in (JobState.PENDING, JobState.RUNNING) for s in statuses.values()
    )
    directory = str(hpc.session("dead").directory)
    poll("no process of the session left", lambda: not processes_mentioning(directory) or None, timeout=60)
    assert hpc.status("dead")["down"] is True


@pytest.mark.parametrize(
    ("system", "words"),
    [
        # SLURM's partitions are read before anything is submitted: one line with the real ones.
        pytest.param(
            "slurm",
            ["slurm has no partition nosuchqueue; its partitions: debug, short"],
            marks=pytest.mark.slurm,
        ),
        # Grid Engine's refusal, in its own words.
        pytest.param("sge", ["refused the job", "unknown queue"], marks=pytest.mark.sge),
    ],
)
def test_queue_that_does_not_exist(
    system: str, words: list[str], hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    bring_up(system, request)
    hpc = hpc_for(system)
    done = hpc("up", "--name", "q", "--system", system, "--queue", "nosuchqueue", check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert all(w in done.stderr.lower() for w in words), done.stderr
    if system == "slurm":
        assert len(done.stderr.strip().splitlines()) == 1 and not get_system(system).user_jobs()
        # add's own queue too, on a live session, before anything is submitted.
        hpc.up("q2")
        refused = hpc("add", "1", "--name", "q2", "--queue", "nosuchqueue", check=False)
        assert refused.returncode != 0 and words[0] in refused.stderr, refused.stderr
        hpc("down", "--name", "q2")


@pytest.mark.slurm
def test_slurm_refuses_before_sbatch_an_account_and_a_node_it_does_not_have(
    hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    """The newcomer's --account nosuchacct, --cores 100 and --nodes 9 got sbatch's two lines
    naming the script; now one line each with what the site has (sacctmgr's associations,
    sinfo's nodes), for up and for add, and nothing submitted."""
    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    cases = (
        (
            ("--account", "nosuchacct"),
            "root has no association with account nosuchacct on this slurm; root's accounts: dask-hpc, root",
        ),
        (("--cores", "100"), "100 cores a node would pass the site's limit CPUs=8 on its largest node"),
        (("--nodes", "9"), "9 nodes would pass the site's limit its 4 nodes (partition debug)"),
    )
    for options, words in cases:
        done = hpc("up", "--name", "site", "--system", "slurm", *options, check=False)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert words in line, line
    assert not get_system("slurm").user_jobs()
    hpc.up("site")
    for options, words in cases:
        refused = hpc("add", "1", "--name", "site", *options, check=False)
        assert refused.returncode != 0 and words in refused.stderr, refused.stderr
    hpc("down", "--name", "site")


def test_wrong_interface_lists_the_real_ones(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    line = one_error_line(hpc.up("nic", "--interface", "ib0", check=False))
    assert "no network interface 'ib0'" in line and "its interfaces:" in line and "lo" in line
    # The scheduler's job was cancelled: nothing of the session runs.
    directory = str(hpc.session("nic").directory)
    poll("no process of the session left", lambda: not processes_mentioning(directory) or None, timeout=30)


def _sigint_as_in_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_while_waiting_cancels_the_scheduler_job(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    env = {**hpc.env, SLOTS_VARIABLE: "1"}
    # Fill the only local slot, so that the scheduler's job pends.
    block = subprocess.run(
        [sys.executable, "-c", _SUBMIT_BLOCKER],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    blocker_job = block.stdout.strip()
    up = subprocess.Popen(
        [sys.executable, "-m", "dask_hpc", "up", "--name", "waiting", "--walltime", "5m"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A terminal's Ctrl-C reaches a process whose SIGINT is at its default; a process
        # started in the background by a shell inherits it ignored: say which this test means.
        preexec_fn=_sigint_as_in_a_terminal,
    )
    session = hpc.session("waiting")
    config = poll(
        "up to submit the scheduler's job",
        lambda: session.exists() and session.read_config().scheduler_job_id and session.read_config(),
        timeout=30,
        interval=0.1,
    )
    time.sleep(1.0)
    up.send_signal(signal.SIGINT)
    _, err = up.communicate(timeout=30)
    assert up.returncode == 130 and "Traceback" not in err
    system = get_system("local")
    job = config.scheduler_job_id
    poll(
        "the scheduler's job to be cancelled",
        lambda: system.query([job])[job].state is JobState.CANCELLED,
        timeout=15,
        interval=0.2,
    )
    assert session.read_config().down is True
    system.cancel([blocker_job])
    assert os.path.isdir(session.directory)


_SUBMIT_BLOCKER = """
from pathlib import Path
import tempfile
from dask_hpc.spec import JobSpec
from dask_hpc.systems import get_system
system = get_system("local")
spec = JobSpec.from_options(walltime="5m")
print(system.submit(system.render(spec, ["sleep", "120"]), Path(tempfile.mkdtemp())))
"""


def test_a_bad_value_to_a_live_session_is_the_same_line_as_before_any_session(
    hpc_for: Callable[[str], HPC],
) -> None:
    """The keeper raises our error; the command receives it as itself, with its own line."""
    hpc = hpc_for("local")
    before = one_error_line(hpc("script", "--memory", "lots", check=False))
    assert before.startswith("error: invalid memory 'lots': ")
    hpc.up("live", "--workers", "0")
    after = one_error_line(hpc("add", "1", "--memory", "lots", "--name", "live", check=False))
    assert after == before
