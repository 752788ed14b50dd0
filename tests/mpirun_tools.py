"""Running mpirun from tests: bounded, and ended with everything it started.

Every run is bounded by a timeout: a hang is a failure, and the whole session
(mpirun's, which the ranks and their nannies' workers share) is killed, so that
nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Open MPI refuses root unless told; keep its own traffic on loopback.
ROOT = Path(__file__).resolve().parents[1]
MPI_ENV = {
    **os.environ,
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "OMPI_MCA_btl_tcp_if_include": "lo",
}


def end_session(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """End a hung mpirun and every rank it started.

    The ranks run in process groups of their own (Open MPI's doing) but in
    mpirun's session, which we started: SIGTERM to mpirun lets it end them, and
    whatever is left of the session after 10 s gets SIGKILL.
    """
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for pid in session_members(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate()
    return out or "", err or ""


def session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
    return members


def run_bounded(
    argv: list[str], timeout: float = 120, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        argv,
        env={**MPI_ENV, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = end_session(proc)
        pytest.fail(
            f"{' '.join(argv)} hung: no exit after {timeout:g} s\n"
            f"--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-6000:]}"
        )
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def start_dask_hpc_mpi(mpirun: Path, ranks: int, scheduler_file: Path, *flags: str) -> subprocess.Popen[str]:
    argv = [str(mpirun), "-np", str(ranks), "--oversubscribe", sys.executable, "-m", "dask_hpc", "mpi"]
    argv += ["--scheduler-file", str(scheduler_file), "--dashboard-address", ":0", *flags]
    # The repository on the ranks' path, wherever pytest started: tests.workers_of_our_own.
    env = {**MPI_ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), MPI_ENV.get("PYTHONPATH")]))}
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_file(path: Path, procs: list[subprocess.Popen[str]], timeout: float = 60) -> None:
    """Until the scheduler file is there and whole (distributed writes it in place: it can be
    seen empty or half written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        with contextlib.suppress(OSError, ValueError):
            if json.loads(path.read_text()):  # whole JSON, not empty
                return
        time.sleep(0.1)
    raise AssertionError(f"dask-hpc mpi wrote no whole {path.name}")


def end_all(
    procs: list[subprocess.Popen[str]], timeout: float = 60, stdout: list[str] | None = None
) -> list[int]:
    """Return codes (and, into ``stdout``, what each printed); a process still running after
    ``timeout`` is a hang: killed, and the test fails."""
    codes = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            end_session(proc)
            pytest.fail(f"{proc.args} hung after the cluster was shut down")
        codes.append(proc.returncode)
        if stdout is not None:
            stdout.append(out or "")
    return codes
