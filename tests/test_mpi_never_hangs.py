"""MPI jobs that never hang: a cluster on part of the world, a launcher that dies, a start that
fails, a scheduler file left by a killed run (issue 17). Each with a real mpirun."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .mpirun_tools import (
    MPI_ENV,
    end_session,
    run_bounded,
    session_members,
    start_dask_hpc_mpi,
    wait_for_file,
)

pytestmark = pytest.mark.timeout(300)

SPLIT_INITIALIZE = """
import sys
from mpi4py import MPI
from distributed import Client
from dask_hpc.mpi import initialize, send_close_signal
world = MPI.COMM_WORLD
comm = world.Split(1 if world.rank == 3 else 0)  # world rank 3 stays out of the cluster
if world.rank != 3:
    if initialize(comm=comm, exit=False, dashboard=False, protocol=sys.argv[1]):
        with Client() as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(lambda x: x + 1, 10).result() == 11
            print("COMPUTED", flush=True)
        send_close_signal()
world.Barrier()  # the whole world again, after the cluster
x = world.bcast(100 if world.rank == 0 else 200)
assert x == 100, x
print("WORLD OK", world.rank, flush=True)
"""


@pytest.mark.parametrize("protocol", ["mpi", "tls"])
def test_initialize_on_a_split_communicator_leaves_the_world_usable(
    protocol: str, mpirun: Path, tmp_path: Path
) -> None:
    """dask-mpi's own recipe: Dask on ``COMM_WORLD.Split(...)`` with one rank of the world left
    out, then the whole world's Barrier and bcast. The mpi:// engine duplicated COMM_WORLD (a
    collective over every rank, the one outside too): mpirun never ended."""
    script = tmp_path / "split.py"
    script.write_text(SPLIT_INITIALIZE)
    argv = [str(mpirun), "-np", "4", "--oversubscribe", sys.executable, str(script), protocol]
    done = run_bounded(argv, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("COMPUTED") == 1, done.stdout
    assert sorted(line for line in done.stdout.splitlines() if line.startswith("WORLD OK")) == [
        f"WORLD OK {rank}" for rank in range(4)
    ], done.stdout


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of ``pid`` so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_until_gone(sid: int, timeout: float) -> tuple[list[int], dict[int, float]]:
    """Sample the session's processes every 0.2 s until none is left or ``timeout``: (those
    left, each one's CPU share while it was seen: seconds of CPU per second)."""
    first: dict[int, tuple[float, float]] = {}
    last: dict[int, tuple[float, float]] = {}
    deadline = time.monotonic() + timeout
    left = session_members(sid)
    while left and time.monotonic() < deadline:
        now = time.monotonic()
        for pid in left:
            cpu = cpu_seconds(pid)
            if cpu is not None:
                first.setdefault(pid, (now, cpu))
                last[pid] = (now, cpu)
        time.sleep(0.2)
        left = session_members(sid)
    shares = {}
    for pid, (t0, c0) in first.items():
        t1, c1 = last[pid]
        if t1 - t0 >= 1.0:
            shares[pid] = (c1 - c0) / (t1 - t0)
    return left, shares


LONG_SCRIPT = """
import time
from dask_hpc.mpi import initialize
initialize(dashboard_address=":0")
from distributed import Client
client = Client()
client.wait_for_workers(2, timeout=60)
future = client.submit(time.sleep, 600)
print("RUNNING", flush=True)
future.result()  # the script waits on its client, as a notebook's would
"""


@pytest.mark.parametrize(
    ("what", "how"),
    [
        ("dask-hpc mpi --nanny", "kill"),
        ("dask-hpc mpi --nanny", "interrupt-then-kill"),
        ("dask-hpc mpi --no-nanny", "kill"),
        ("initialize()", "kill"),
    ],
)
def test_no_rank_outlives_a_killed_mpirun(what: str, how: str, mpirun: Path, tmp_path: Path) -> None:
    """mpirun SIGKILLed (or interrupted, then killed before it ends its job, as a harness or a
    walltime kill does): its ranks, adopted by init, and their nannies' workers ran on for
    minutes, some busy on a core. Each notices its launcher is gone and exits, within 15 s,
    and none is busy meanwhile."""
    if what.startswith("dask-hpc"):
        directory = tmp_path / "cluster"
        directory.mkdir(mode=0o700)
        scheduler_file = directory / "scheduler.json"
        proc = start_dask_hpc_mpi(mpirun, 3, scheduler_file, what.split()[-1])
        wait_for_file(scheduler_file, [proc])
        time.sleep(3)  # the workers started (a nanny's worker is a process of its own)
    else:
        script = tmp_path / "script.py"
        script.write_text(LONG_SCRIPT)
        argv = [str(mpirun), "-np", "4", "--oversubscribe", sys.executable, str(script)]
        proc = subprocess.Popen(
            argv, env=MPI_ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "RUNNING"  # bounded by the test's timeout
    job = [pid for pid in session_members(proc.pid) if pid != proc.pid]
    try:
        assert len(job) >= 3, job
        if how == "interrupt-then-kill":
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=10)
        left, shares = watch_until_gone(proc.pid, timeout=15)
        assert left == [], f"still running 15 s after mpirun was killed: {left}"
        busy = {pid: share for pid, share in shares.items() if share > 0.8}
        assert busy == {}, f"busy on a core (CPU seconds per second) after mpirun was killed: {busy}"
    finally:
        for pid in session_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.communicate()


def test_a_scheduler_that_cannot_start_ends_the_job_with_one_line(mpirun: Path, tmp_path: Path) -> None:
    """``--scheduler-port P`` with P taken: the scheduler's rank printed two tracebacks and the
    job never ended, the other ranks spinning in the address broadcast. Now: one line naming
    the rank and the port, and every rank exits non-zero."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        directory = tmp_path / "cluster"
        directory.mkdir(mode=0o700)
        flags = ["--scheduler-port", str(port), "--interface", "lo"]
        proc = start_dask_hpc_mpi(mpirun, 3, directory / "scheduler.json", *flags)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            _, err = end_session(proc)
            pytest.fail(f"the job did not end after its scheduler failed to start:\n{err[-3000:]}")
    assert proc.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("error: ")]
    assert ours == [
        f"error: rank 0 (the scheduler) could not start: port {port} is already in use: choose another "
        "--scheduler-port, or leave it out (any free one)"
    ], err[-3000:]
    assert "Traceback" not in err


BAD_WORKER_SCRIPT = """
from dask_hpc.mpi import initialize
initialize(dashboard_address=":0", worker_options={"no_such_option": 1})
from distributed import Client
Client().wait_for_workers(1, timeout=600)  # as a script would: for workers that never come
print("NEVER", flush=True)
"""


@pytest.mark.parametrize("where", ["initialize()", "dask-hpc mpi --no-nanny"])
def test_a_worker_that_cannot_start_ends_the_job_with_one_line(
    where: str, mpirun: Path, tmp_path: Path
) -> None:
    """A worker rank whose worker cannot start (an option distributed does not know): one line
    naming its rank, and the whole job ends non-zero within seconds (not a traceback on a
    rank, and a script waiting for workers that never come)."""
    if where == "initialize()":
        script = tmp_path / "script.py"
        script.write_text(BAD_WORKER_SCRIPT)
        argv = [str(mpirun), "-np", "3", "--oversubscribe", sys.executable, str(script)]
        done = run_bounded(argv, timeout=90, cwd=tmp_path)
        rank = 2
    else:
        directory = tmp_path / "cluster"
        directory.mkdir(mode=0o700)
        argv = [str(mpirun), "-np", "2", "--oversubscribe", sys.executable, "-m", "dask_hpc", "mpi"]
        argv += ["--scheduler-file", str(directory / "scheduler.json"), "--dashboard-address", ":0"]
        argv += ["--no-nanny", "--worker-options", '{"no_such_option": 1}']
        done = run_bounded(argv, timeout=90, cwd=tmp_path)
        rank = 1
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(ours) == 1, done.stderr[-3000:]
    assert ours[0].startswith(f"error: rank {rank} (a worker) could not start: TypeError: "), ours
    assert "no_such_option" in ours[0]
    assert "Traceback" not in done.stderr
    assert "NEVER" not in done.stdout


def test_a_worker_class_that_cannot_be_imported_is_one_line_for_the_whole_job(
    mpirun: Path, tmp_path: Path
) -> None:
    """A mistyped --worker-class: the scheduler's rank says so once (every worker rank did,
    a line each: 255 on 256 ranks), and the job ends non-zero."""
    directory = tmp_path / "cluster"
    directory.mkdir(mode=0o700)
    argv = [str(mpirun), "-np", "3", "--oversubscribe", sys.executable, "-m", "dask_hpc", "mpi"]
    argv += ["--scheduler-file", str(directory / "scheduler.json"), "--dashboard-address", ":0"]
    done = run_bounded([*argv, "--worker-class", "distributed.Nany"], timeout=90, cwd=tmp_path)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert ours == [
        "error: rank 0 (the scheduler) could not start: the worker class 'distributed.Nany' cannot be "
        "imported (module 'distributed' has no attribute 'Nany'): give its dotted path, e.g. "
        "distributed.Nanny or distributed.Worker"
    ], done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_a_killed_runs_scheduler_file_is_never_handed_to_a_client(mpirun: Path, tmp_path: Path) -> None:
    """A run killed outright (every process SIGKILLed) leaves its scheduler file with a dead
    address; the next run overwrote it only once its scheduler was up (3 s), and a client
    started in between timed out on the dead address after 20 s. The next run now removes
    it first thing, so a client started after it began waits for the new address."""
    from distributed import Client

    from dask_hpc.mpi import client_security

    directory = tmp_path / "cluster"
    directory.mkdir(mode=0o700)
    scheduler_file = directory / "scheduler.json"
    killed = start_dask_hpc_mpi(mpirun, 2, scheduler_file)
    try:
        wait_for_file(scheduler_file, [killed])
    finally:
        for pid in session_members(killed.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # all at once: nobody cleans up
        killed.communicate()
    stale = json.loads(scheduler_file.read_text())["address"]

    seen: list[str] = []  # what a reader of the file sees, every 10 ms
    stop = threading.Event()

    def look() -> None:
        while not stop.is_set():
            try:
                seen.append(json.loads(scheduler_file.read_text())["address"])
            except FileNotFoundError:
                seen.append("absent")
            except (OSError, ValueError, KeyError):
                seen.append("partial")
            time.sleep(0.01)

    looker = threading.Thread(target=look, daemon=True)
    looker.start()
    proc = start_dask_hpc_mpi(mpirun, 2, scheduler_file)
    try:
        deadline = time.monotonic() + 60
        while (not seen or seen[-1] == stale) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert seen and seen[-1] != stale, "the new run left the killed run's address in place"
        # Started now, the client waits for the file and finds the new scheduler.
        with Client(
            scheduler_file=str(scheduler_file), security=client_security(scheduler_file), timeout=30
        ) as client:
            assert client.scheduler.address != stale
            client.wait_for_workers(1, timeout=60)
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
            client.shutdown()
        proc.communicate(timeout=60)
    finally:
        stop.set()
        looker.join(5)
        if proc.poll() is None:
            end_session(proc)
    # Between the dead address and the new one, the file was absent: never stale once the new run began.
    after = seen[seen.index(stale) :] if stale in seen else seen
    changes = [a for i, a in enumerate(after) if i == 0 or a != after[i - 1]]
    assert changes[:2] == [stale, "absent"] or changes[0] == "absent", changes


def test_a_stale_session_of_a_killed_mpirun_is_cleared_before_the_next(mpirun: Path) -> None:
    """A CI run: "The PMIx server's listener thread failed to start" on an mpirun whose pid
    had the session of a killed one in /tmp (ompi.<pid>; pids come round). With such sessions
    at the next pids an mpirun fails; cleared (as the mpirun fixture does before and after
    each test), it runs.

    All of it happens in a TMPDIR of this test's own: stale copies in /tmp would be in the way
    of the mpiruns of tests running beside it (xdist), and a process of theirs taking one of
    the pids between the copy and the clearing keeps that session (a later CI run)."""
    from .conftest import clear_stale_mpi_sessions

    # Short: the PMIx server's socket lives under it (108 bytes at most for a unix socket).
    base = Path(tempfile.mkdtemp(prefix="ompi-t", dir="/tmp"))
    env = {**MPI_ENV, "TMPDIR": str(base)}
    try:
        # A real stale session: an mpirun killed with SIGKILL (a test's end_session may).
        killed = subprocess.Popen(
            [str(mpirun), "-np", "1", "--oversubscribe", "sleep", "60"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        stale = base / f"ompi.{killed.pid}"
        deadline = time.monotonic() + 30
        while not (stale / "0").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        # No time to clean up (SIGTERM would let it): mpirun and its ranks (in groups of their
        # own, in mpirun's session) at once.
        for pid in session_members(killed.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed.wait(timeout=30)
        assert stale.is_dir(), "the killed mpirun left no session to test with"
        here = int(subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout)
        made = {base / f"ompi.{here + i}" for i in range(1, 80)} - {stale}
        for session in made:
            shutil.copytree(stale, session, symlinks=True)
        kept = clear_stale_mpi_sessions(base)
        left = {session for session in made | {stale} if session.exists()}
        assert left == kept, "a session of a pid no process holds was kept"
        assert len(left) < len(made) // 2, "nothing cleared"
        done = run_bounded(
            [str(mpirun), "-np", "1", "--oversubscribe", sys.executable, "-c", "pass"],
            timeout=60,
            env={"TMPDIR": str(base)},
        )
        assert done.returncode == 0 and "listener thread failed" not in done.stderr, done.stderr[-2000:]
    finally:
        shutil.rmtree(base, ignore_errors=True)
