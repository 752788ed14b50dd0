"""No test leaves a process behind: the suite ends by looking for any it started.

Every process the suite starts, however deep (mpirun's ranks, their nannies'
workers, sessions' schedulers, jobs that SLURM runs with the submitter's
environment), inherits ``DASK_HPC_TEST_RUN``, unique to this run. At the end,
after every fixture's teardown (daemons the suite brought up are down by
then), a process still carrying it is a stray: it is named with its command
line, killed (by its pid: we started it), and the run fails. Processes from
an earlier run carry another value and are left alone.

A pytest plugin: tests/conftest.py takes its hooks; ``-p tests.strays`` loads it
alone (tests/test_strays.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

MARK = "DASK_HPC_TEST_RUN"
#: Seconds the processes still closing at the end get before they count as strays.
GRACE = float(os.environ.get("DASK_HPC_TEST_STRAY_GRACE", "15"))


def mark_run() -> str:
    """Give this run's processes their mark (idempotent: one value a run)."""
    return os.environ.setdefault(MARK, f"{os.getpid()}-{uuid.uuid4().hex[:12]}")


#: Helpers multiprocessing starts for the test process itself: they end when it ends.
OWN_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def strays(mark: str) -> dict[int, str]:
    """The live processes (not zombies) carrying ``mark``, but this one and its own
    multiprocessing helpers: pid -> command line."""
    needle = f"{MARK}={mark}".encode() + b"\0"
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state == "Z" or (int(parent) == os.getpid() and any(h in command for h in OWN_HELPERS)):
            continue
        found[int(entry.name)] = command
    return found


def pytest_configure(config: pytest.Config) -> None:
    mark_run()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mark = os.environ.get(MARK)
    if not mark or hasattr(session.config, "workerinput"):
        return  # an xdist worker: the other's processes still run; the controller looks last
    deadline = time.monotonic() + GRACE
    left = strays(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = strays(mark)
    if not left:
        return
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    lines = [f"stray processes: {len(left)} started by this run ran {GRACE:g} s after its end (killed):"]
    lines += [f"  {pid}  {command[:200]}" for pid, command in sorted(left.items())]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line, red=True)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
