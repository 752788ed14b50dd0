"""Helpers for session tests: run the real ``dask-hpc`` CLI against a private sessions dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dask_hpc.state.session import SESSIONS_VARIABLE, Session
from dask_hpc.systems.local import SPOOL_VARIABLE

from ..conftest import bring_up, systems

__all__ = ["HPC", "bring_up", "live_jobs", "poll", "processes_mentioning", "systems"]


class HPC:
    """``dask-hpc`` as a user runs it, with this test's sessions dir and local spool."""

    def __init__(self, root: Path, spool: Path, system: str) -> None:
        self.root = root
        self.system = system
        self.env = {
            **os.environ,
            SESSIONS_VARIABLE: str(root),
            SPOOL_VARIABLE: str(spool),
            "COLUMNS": "200",
        }

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "dask_hpc", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
        if check and done.returncode != 0:
            pytest.fail(f"dask-hpc {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def status(self, name: str) -> dict[str, Any]:
        done = self("status", "--name", name, "--json", check=False)
        report: dict[str, Any] = json.loads(done.stdout)
        # status exits 3 when the scheduler does not answer (pending, ended, lost), else 0.
        answering = report["scheduler"]["answering"]
        assert done.returncode == (0 if answering else 3), (done.returncode, done.stderr)
        return report

    def session(self, name: str) -> Session:
        return Session(name, self.root)

    def up(
        self, name: str, *args: str, check: bool = True, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        # Short walltimes and a fast keeper: tests must not wait on a 5-second refresh.
        return self(
            "up",
            "--name",
            name,
            "--system",
            self.system,
            "--walltime",
            "10m",
            "--memory",
            "1GiB",
            "--refresh",
            "1",
            "--timeout",
            "120",
            *args,
            check=check,
            timeout=timeout,
            cwd=cwd,
        )


@pytest.fixture
def hpc_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], HPC]]:
    """``hpc_for(system)``; every session it made is brought down at the end, whatever happened."""
    root = tmp_path / "sessions"
    spool = tmp_path / "spool"
    monkeypatch.setenv(SESSIONS_VARIABLE, str(root))
    monkeypatch.setenv(SPOOL_VARIABLE, str(spool))
    made: list[HPC] = []

    def make(system: str) -> HPC:
        hpc = HPC(root, spool, system)
        made.append(hpc)
        return hpc

    yield make
    if made:
        for path in root.glob("*/session.json"):
            made[0]("down", "--name", path.parent.name, check=False, timeout=180)


def poll(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Call ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not after {timeout:g} s (last: {last!r})")


def live_jobs(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Jobs that still bring workers: not ended, and not being removed."""
    return [j for j in report["jobs"] if j["ended"] is None and not j["removed"]]


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text`` (e.g. a state dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found
