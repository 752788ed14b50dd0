"""Shared fixtures: the real local SLURM and SGE, a private local spool, and waiting helpers.

SLURM and SGE are started by the project's own scripts (scripts/local-slurm,
scripts/local-sge). Under CI (CI=true) they must start, or the run fails;
elsewhere, where they cannot (not root, not Debian), their tests skip with the
reason.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dask_hpc.systems import BatchSystem, JobState, JobStatus, get_system
from dask_hpc.systems.local import LocalSystem

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        help="rewrite the golden job scripts from the current code",
    )


def _daemon(script: str) -> Iterator[None]:
    path = ROOT / "scripts" / script
    why = None
    if os.geteuid() != 0:
        why = "needs root"
    elif not Path("/etc/debian_version").exists():
        why = "needs Debian"
    if why:
        if IN_CI:
            pytest.fail(f"{script}: {why}, and CI=true requires the real batch system")
        pytest.skip(f"{script} cannot run here: {why}")
    was_up = subprocess.run([path, "status"], capture_output=True, timeout=60).returncode == 0
    if not was_up:
        up = subprocess.run([path, "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            message = f"{script} up failed:\n{up.stdout}\n{up.stderr}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    yield
    if not was_up:
        subprocess.run([path, "down"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_up() -> Iterator[None]:
    yield from _daemon("local-slurm")


@pytest.fixture(scope="session")
def sge_up() -> Iterator[None]:
    os.environ.setdefault("SGE_ROOT", "/var/lib/gridengine")
    os.environ.setdefault("SGE_CELL", "default")
    yield from _daemon("local-sge")


@pytest.fixture(scope="session")
def laptop_up() -> Iterator[None]:
    """A laptop (network namespace) and a login node (sshd) for the tunnel tests."""
    yield from _daemon("local-laptop")


@pytest.fixture
def local_system(tmp_path: Path) -> LocalSystem:
    return LocalSystem(spool=tmp_path / "spool")


@pytest.fixture(params=["local", "slurm", "sge"])
def live_system(request: pytest.FixtureRequest, tmp_path: Path) -> BatchSystem:
    """Each real batch system in turn: local processes, SLURM, Grid Engine."""
    name = request.param
    if name == "local":
        return LocalSystem(spool=tmp_path / "spool")
    request.getfixturevalue(f"{name}_up")
    return get_system(name)


def wait_for(
    system: BatchSystem,
    job_id: str,
    until: Callable[[JobStatus], bool],
    timeout: float = 60.0,
    seen: list[JobState] | None = None,
) -> JobStatus:
    """Poll the system until ``until(status)``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    status = system.query([job_id])[job_id]
    while True:
        if seen is not None and (not seen or seen[-1] is not status.state):
            seen.append(status.state)
        if until(status):
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} on {system.name}: still {status} after {timeout:g} s")
        time.sleep(0.25)
        status = system.query([job_id])[job_id]


def wait_finished(system: BatchSystem, job_id: str, timeout: float = 90.0) -> JobStatus:
    # SGE writes its accounting a few seconds after a job ends; until then UNKNOWN.
    return wait_for(system, job_id, lambda s: s.state.finished, timeout=timeout)
