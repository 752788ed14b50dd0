"""The suite's check for processes left behind (tests/strays.py) catches one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LEAKY_TEST = """
import subprocess, sys
def test_leaves_a_process():
    # Its own session, and nobody waits for it: what a forgotten mpirun or scheduler is.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
"""


@pytest.mark.timeout(120)
def test_a_process_left_behind_fails_the_run_and_is_ended(tmp_path: Path) -> None:
    (tmp_path / "test_leak.py").write_text(LEAKY_TEST)
    env = {key: value for key, value in os.environ.items() if key != "DASK_HPC_TEST_RUN"}  # a run of its own
    env.update(PYTHONPATH=str(ROOT), DASK_HPC_TEST_STRAY_GRACE="1")
    argv = [sys.executable, "-m", "pytest", "-p", "tests.strays", "-p", "no:cacheprovider", "-q"]
    argv += ["-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_leak.py")]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    report = [line for line in done.stdout.splitlines() if line.strip().endswith("time.sleep(600)")]
    assert len(report) == 1, done.stdout
    pid = int(report[0].split()[0])
    assert "stray processes: 1 started by this run ran 1 s after its end (killed):" in done.stdout
    # It was killed: gone, or a zombie until init reaps it.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    if state not in ("gone", "Z"):
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the stray {pid} was left running ({state})")
