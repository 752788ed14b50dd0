"""Shared fixtures: the real local SLURM, SGE and OAR, a private local spool, and waiting helpers.

SLURM, SGE and OAR are started by the project's own scripts (scripts/local-slurm,
scripts/local-sge, scripts/local-oar). Under CI (CI=true) they must start, or the run fails;
elsewhere, where they cannot (not root, not Debian), their tests skip with the
reason. Before any of that, each live component is checked (tests/components.py):
a missing one is one line naming it and the script that installs it.

Markers come from the fixtures a test uses (``slurm_up`` -> ``slurm``, ...)
and from the systems it is parametrized over (:func:`systems`), so that
``make test-fast`` (no daemon, no session's scheduler, no mpirun, no browser)
deselects them all.
"""

from __future__ import annotations

# First, before dask reads its configuration: one known start, whoever started us.
from . import hygiene, strays

hygiene.neutral_start()
strays.mark_run()  # before any process is started: every one carries this run's mark

import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _pytest.mark.structures import ParameterSet

from dask_hpc.systems import BatchSystem, JobState, JobStatus, get_system
from dask_hpc.systems.local import LocalSystem

from .components import in_ci, require, venv_mpirun

ROOT = Path(__file__).resolve().parent.parent
IN_CI = in_ci()
ARTIFACTS = ROOT / "test-artifacts"

#: Fixture -> the marker of the tests that use it (directly or through other fixtures).
LIVE_FIXTURES = {
    "slurm_up": "slurm",
    "sge_up": "sge",
    "oar_up": "oar",
    "laptop_up": "laptop",
    "mpirun": "mpi",
    "hpc_for": "session",  # `dask-hpc up` leaves a scheduler running in the background
}
#: Batch systems whose tests need a daemon: a parameter naming one marks the test.
LIVE_SYSTEMS = ("slurm", "sge", "oar")


def systems(*names: str) -> list[ParameterSet]:
    """Parameters for a test over batch systems, each live one carrying its marker."""
    return [pytest.param(n, marks=[getattr(pytest.mark, n)] if n in LIVE_SYSTEMS else []) for n in names]


# No test leaves a process behind: checked when the run ends (tests/strays.py).
pytest_sessionfinish = strays.pytest_sessionfinish


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("capture") != "no" and not config.getoption("usepdb"):
        hygiene.quiet_stdin()


#: Tests that share something only one may use at a time run in one xdist worker, one after
#: another (make test runs the suite on both cores, -n 2 --dist loadgroup): each batch system
#: (its nodes, and the limits the caps tests set on the user), the laptop's network namespace;
#: the tunnel tests' sshd (a fixed port) go with SLURM's, which one of them needs.
SHARED = ("slurm", "sge", "oar", "laptop")
ONE_AT_A_TIME_FILES = {"test_jupyter_tunnel.py": "slurm"}


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each test's markers, as it is collected (the live ones from its fixtures), and its
    xdist group: see :func:`pytest_collection_modifyitems`."""
    for fixture in getattr(item, "fixturenames", ()):
        marker = LIVE_FIXTURES.get(fixture)
        if marker and item.get_closest_marker(marker) is None:
            item.add_marker(marker)
    group = ONE_AT_A_TIME_FILES.get(item.path.name) or next(
        (name for name in SHARED if item.get_closest_marker(name) is not None), None
    )
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, a grouped test's id ends with @<group>: that is how xdist's loadgroup
    scheduler keeps a group on one worker. xdist 3.8 does it by setting ``item._nodeid``, which
    pytest 9 no longer reads (its ids are structured, ``item._id``), and only where the worker's
    options say --dist loadgroup, which they did not: one group's tests ran on both workers at
    once, two SLURM caps tests among them. So it is done here, in either pytest. (Under another
    --dist the suffix is only a longer id.)"""
    if not hasattr(config, "workerinput"):
        return
    for item in items:
        marks = [m.args[0] for m in item.iter_markers("xdist_group") if m.args]
        if not marks or "@" in item.nodeid.rsplit("]", 1)[-1]:
            continue
        grouped = f"{item.nodeid}@{'_'.join(sorted(set(marks)))}"
        if hasattr(item, "_id"):  # pytest 9
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(grouped)
        else:
            item._nodeid = grouped


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test's report also shows where this process's other threads were: a client
    whose event loop did not start, or a wait that never ended, shows its cause there."""
    report: pytest.TestReport = yield
    if report.failed and call.when == "call":
        report.sections.append(("threads of the test process", _other_threads()))
    return report


def _other_threads() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = "".join(traceback.format_stack(frame, limit=-6))  # the innermost frames
        parts.append(f"--- {names.get(ident, ident)} ---\n{stack}")
    return "\n".join(parts) or "(none)"


@pytest.fixture(autouse=True)
def _neutral_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in a directory of its own: none depends on where pytest was started."""
    monkeypatch.chdir(tmp_path)
    hygiene.forget_terminal_size()


def needs_marker(request: pytest.FixtureRequest, marker: str) -> None:
    """A test that starts a live component at run time must carry its marker, or the
    fast tier would start it: fail at once, naming the fix."""
    if request.node.get_closest_marker(marker) is None:
        pytest.fail(
            f"{request.node.nodeid} starts {marker} but is not marked {marker}: "
            f"parametrize it with conftest.systems(...) or use the {marker} fixture",
            pytrace=False,
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        help="rewrite the golden job scripts from the current code",
    )


def _daemon(script: str, component: str) -> Iterator[None]:
    path = ROOT / "scripts" / script
    why = None
    if os.geteuid() != 0:
        why = "needs root"
    elif not Path("/etc/debian_version").exists():
        why = "needs Debian"
    if why:
        if IN_CI:
            pytest.fail(f"{script}: {why}, and CI=true requires the real batch system", pytrace=False)
        pytest.skip(f"{script} cannot run here: {why}")
    was_up = subprocess.run([path, "status"], capture_output=True, timeout=60).returncode == 0
    if not was_up:
        up = subprocess.run([path, "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            ARTIFACTS.mkdir(exist_ok=True)
            log = ARTIFACTS / f"{script}-up.log"
            log.write_text(f"{up.stdout}\n{up.stderr}")
            last = (up.stderr.strip() or up.stdout.strip() or f"exit {up.returncode}").splitlines()[-1]
            message = f"scripts/{script} up failed ({last}); its whole output: {log}"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    require(component)
    yield
    if not was_up:
        subprocess.run([path, "down"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def slurm_up() -> Iterator[None]:
    yield from _daemon("local-slurm", "slurm")


@pytest.fixture(scope="session")
def sge_up() -> Iterator[None]:
    os.environ.setdefault("SGE_ROOT", "/var/lib/gridengine")
    os.environ.setdefault("SGE_CELL", "default")
    yield from _daemon("local-sge", "sge")


@pytest.fixture(scope="session")
def oar_up() -> Iterator[None]:
    yield from _daemon("local-oar", "oar")


@pytest.fixture(scope="session")
def laptop_up() -> Iterator[None]:
    """A laptop (network namespace) and a login node (sshd) for the tunnel tests."""
    yield from _daemon("local-laptop", "laptop")


@pytest.fixture(scope="session")
def _checked_mpirun() -> Path:
    require("mpirun")
    return venv_mpirun()


@pytest.fixture
def mpirun(_checked_mpirun: Path) -> Iterator[Path]:
    """Open MPI's mpirun from PyPI (dask-hpc[mpi]), checked to run, with no stale session
    of an earlier mpirun in its way, before the test and after it."""
    clear_stale_mpi_sessions()
    yield _checked_mpirun
    clear_stale_mpi_sessions()


def clear_stale_mpi_sessions(base: Path | None = None) -> set[Path]:
    """Open MPI 5 (PRRTE) keeps a job's session in ``$TMPDIR/ompi.<pid of mpirun>``; an
    mpirun that is killed (tests kill some) leaves it behind. Pids come round again (pid_max
    is 32768 here), and an mpirun given the pid of such a session fails at once: "The PMIx
    server's listener thread failed to start" (tried: a stale copy at the next pids made
    three mpiruns in a row fail). The sessions of mpiruns that no longer run are removed;
    those whose pid some process holds are kept, and returned."""
    base = base or Path(os.environ.get("TMPDIR") or "/tmp")
    kept = set()
    for session in base.glob("ompi.*"):
        pid = session.name.removeprefix("ompi.")
        if not pid.isdigit():
            continue
        if Path(f"/proc/{pid}").exists():
            kept.add(session)
        else:
            shutil.rmtree(session, ignore_errors=True)
    return kept


#: Seconds a test of a batch system waits at most for the jobs that tests before it left in
#: the queue, still ending, to be gone.
DRAIN = 60.0


def bring_up(system: str, request: pytest.FixtureRequest) -> None:
    """Start the real batch system ``system`` (slurm, sge, oar) for this test, with no job of
    an earlier test left in the user's queue; local needs nothing."""
    if system != "local":
        needs_marker(request, system)
        request.getfixturevalue(f"{system}_up")
        drain(get_system(system))


def drain(system: BatchSystem) -> None:
    """Wait (at most DRAIN seconds) until the user's queue is empty. A batch system's tests run
    one after another in one xdist worker: a job an earlier test cancelled may still be ending,
    holding a slot, or counted against a cap, as the next test starts (seen on Grid Engine:
    a probe waited for a free slot; on SLURM: the queue a caps test counts)."""
    deadline = time.monotonic() + DRAIN
    while system.user_jobs() and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.fixture
def local_system(tmp_path: Path) -> LocalSystem:
    return LocalSystem(spool=tmp_path / "spool")


@pytest.fixture(params=systems("local", "slurm", "sge", "oar"))
def live_system(request: pytest.FixtureRequest, tmp_path: Path) -> BatchSystem:
    """Each real batch system in turn: local processes, SLURM, Grid Engine, OAR."""
    name = request.param
    if name == "local":
        return LocalSystem(spool=tmp_path / "spool")
    bring_up(name, request)
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
