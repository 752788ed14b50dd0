"""MPI launch with a real mpirun (Open MPI from PyPI): exit codes, no hangs, clients from outside.

Every run is bounded by a timeout: a hang is a failure, and the whole process
group is killed so that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .components import require
from .components import site_libmpi as site_libmpi_path
from .mpirun_tools import MPI_ENV, end_all, end_session, run_bounded, start_dask_hpc_mpi, wait_for_file
from .refusal import refused

pytestmark = pytest.mark.timeout(300)

SCRIPT = """
import os, signal, sys, time
from dask_hpc.mpi import initialize
initialize(dashboard_address=":0")
from distributed import Client
import dask.array as da
mode = sys.argv[1]
t0 = time.monotonic()
def phase(what):  # where the script got to, with the time: a hang's report shows where
    print(f"phase {time.monotonic() - t0:.1f} s: {what}", file=sys.stderr, flush=True)
client = Client()
client.wait_for_workers(2, timeout=60)
phase("workers joined")
if mode == "kill-worker":
    pids = client.run(os.getpid)
    futures = client.map(time.sleep, [0.2] * 50, pure=False)
    time.sleep(0.5)
    os.kill(next(iter(pids.values())), signal.SIGKILL)  # a worker rank dies mid-run
    phase("worker killed")
    client.gather(futures)
    phase("gathered")
n = 1_000_000
total = int(da.arange(n, chunks=n // 8).sum().compute())
print("SUM", total, total == n * (n - 1) // 2, flush=True)
phase("computed; exiting")
if mode == "exit3":
    sys.exit(3)
if mode == "raise":
    raise RuntimeError("boom")
"""


def mpi_script(mpirun: Path, tmp_path: Path, ranks: int, mode: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    argv = [str(mpirun), "-np", str(ranks), "--oversubscribe", sys.executable, str(script), mode]
    return run_bounded(argv, cwd=tmp_path)


def test_known_sum_and_clean_exit(mpirun: Path, tmp_path: Path) -> None:
    done = mpi_script(mpirun, tmp_path, 4, "ok")
    assert done.returncode == 0, done.stderr
    assert "SUM 499999500000 True" in done.stdout
    assert "Traceback" not in done.stderr


def test_exit_code_of_the_script(mpirun: Path, tmp_path: Path) -> None:
    done = mpi_script(mpirun, tmp_path, 4, "exit3")
    assert done.returncode == 3
    assert "SUM 499999500000 True" in done.stdout


def test_uncaught_exception_exits_1_with_one_traceback(mpirun: Path, tmp_path: Path) -> None:
    done = mpi_script(mpirun, tmp_path, 4, "raise")
    assert done.returncode == 1
    # The script's own traceback, once. (Under load, ranks that mpirun ends while they
    # close may log tracebacks of their own: distributed's shutdown noise, not the script's.)
    assert done.stderr.count("RuntimeError: boom") == 1
    assert done.stderr.count('script.py", line') == 1


def test_a_worker_rank_that_dies_does_not_hang_the_job(mpirun: Path, tmp_path: Path) -> None:
    done = mpi_script(mpirun, tmp_path, 4, "kill-worker")
    assert done.returncode != 0  # mpirun ends the job when a rank dies: bounded, not hung


def test_a_worker_rank_killed_under_fault_tolerance_loses_nothing(mpirun: Path, tmp_path: Path) -> None:
    """Under ``mpirun --with-ft ulfm`` a worker rank killed mid-computation (SIGKILL) is seen
    dead over mpi://: the scheduler recomputes its tasks on the other worker, the script gets
    the right answer and the job ends with 0."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    argv = [str(mpirun), "-np", "4", "--oversubscribe", "--with-ft", "ulfm", sys.executable, str(script)]
    done = run_bounded([*argv, "kill-worker"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SUM 499999500000 True" in done.stdout, done.stdout
    assert "mpi: rank 2 has died" in done.stderr or "mpi: rank 3 has died" in done.stderr


SCRIPT_THAT_LEAVES = """
import os, signal, sys
from dask_hpc.mpi import initialize
initialize(dashboard_address=":0", protocol=sys.argv[2])
from distributed import Client
Client().wait_for_workers(2, timeout=60)
print("JOINED", flush=True)
if sys.argv[1] == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(0)  # gone without closing the cluster (or finishing MPI)
"""


@pytest.mark.parametrize(("how", "protocol"), [("killed", "mpi"), ("leaves", "mpi"), ("killed", "tls")])
def test_under_fault_tolerance_the_cluster_ends_when_the_script_rank_is_gone(
    how: str, protocol: str, mpirun: Path, tmp_path: Path
) -> None:
    """Under ``mpirun --with-ft ulfm`` a rank's death does not end the job: the scheduler and
    the workers, which serve the script's rank, close and exit once MPI says it has died,
    instead of waiting forever for its close signal (they did, and so did mpirun)."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT_THAT_LEAVES)
    argv = [str(mpirun), "-np", "4", "--oversubscribe", "--with-ft", "ulfm", sys.executable, str(script)]
    done = run_bounded([*argv, how, protocol], timeout=90, cwd=tmp_path)
    assert "JOINED" in done.stdout, done.stderr[-3000:]
    assert done.returncode != 0  # the script did not finish
    # The scheduler's rank sees it (its workers too, or they are closed by the scheduler first).
    assert "dask-hpc: rank 1 (your script's) has died: rank 0 closes and exits" in done.stderr


@pytest.mark.parametrize("ranks", [1, 2])
def test_too_few_ranks(ranks: int, mpirun: Path, tmp_path: Path) -> None:
    done = mpi_script(mpirun, tmp_path, ranks, "ok")
    assert done.returncode == 2
    ours = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert ours == [
        "error: dask_hpc.mpi.initialize needs at least 3 MPI ranks (the scheduler, your script, "
        f"a worker); got {ranks}: run e.g. mpirun -np 4"
    ]
    assert "Traceback" not in done.stderr


def worker_names(scheduler_file: Path, n: int) -> list[str]:
    from distributed import Client

    from dask_hpc.mpi import client_security

    security = client_security(scheduler_file)
    with Client(scheduler_file=str(scheduler_file), security=security, timeout=30) as client:
        client.wait_for_workers(n, timeout=60)
        names = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        client.shutdown()
    return names


@contextlib.contextmanager
def cluster_for_outside(mpirun: Path, tmp_path: Path, ranks: int, *flags: str) -> Iterator[tuple[Path, str]]:
    """``dask-hpc mpi --scheduler-file F``: yields F and the scheduler's address once it is
    tls:// and refuses a client without the certificate; then every rank must end with 0."""

    directory = tmp_path / "cluster"
    directory.mkdir(mode=0o700)
    scheduler_file = directory / "scheduler.json"
    proc = start_dask_hpc_mpi(mpirun, ranks, scheduler_file, *flags)
    try:
        wait_for_file(scheduler_file, [proc])
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        assert refused(address, "none")  # no certificate, no entry
        yield scheduler_file, address
    except BaseException:
        # The client's part failed, so nobody shut the cluster down: end it now, and let the
        # client's own error be the report (not a 60-s "hang after the shutdown").
        end_session(proc)
        raise
    codes = end_all([proc])
    assert codes == [0], proc.stderr


def test_dask_hpc_mpi_with_a_client_from_outside(mpirun: Path, tmp_path: Path) -> None:
    with cluster_for_outside(mpirun, tmp_path, 3) as (scheduler_file, _):
        assert worker_names(scheduler_file, 2) == ["dask_mpi-1", "dask_mpi-2"]


def test_dask_hpc_mpi_protocol_mpi_with_a_client_from_outside(mpirun: Path, tmp_path: Path) -> None:
    """``dask-hpc mpi --protocol mpi --worker-class C``: ranks talk mpi://, workers are C's, a
    client from outside the MPI job reaches the scheduler over tls (and only with the
    session's certificate), data it scatters and results that move between workers go over
    MPI; shutdown ends every rank."""
    import numpy as np
    from distributed import Client

    from dask_hpc.mpi import client_security

    from .workers_of_our_own import kind

    # A worker class of the user's own is used with --protocol mpi too (it was dropped for
    # distributed.Worker: --protocol mpi turns the nanny off, and that chose the class).
    flags = ("--protocol", "mpi", "--worker-class", "tests.workers_of_our_own.TaggedWorker")
    with (
        cluster_for_outside(mpirun, tmp_path, 4, *flags) as (scheduler_file, address),
        Client(address, security=client_security(scheduler_file), timeout=30) as client,
    ):
        client.wait_for_workers(3, timeout=60)
        assert set(client.run(kind).values()) == {"TaggedWorker"}
        workers = sorted(client.scheduler_info()["workers"])
        assert all(w.startswith("mpi://") for w in workers), workers
        x = np.arange(600 * 600, dtype=float).reshape(600, 600)
        [shared] = client.scatter([x])  # from outside: through the scheduler, to a worker over MPI
        parts = [
            client.submit(lambda a, i: a[i::3].sum(), shared, i, workers=[w]) for i, w in enumerate(workers)
        ]
        assert client.submit(sum, parts).result(timeout=60) == x.sum()
        moved = client.run(lambda dask_worker: len(dask_worker.transfer_incoming_log))
        assert sum(moved.values()) >= 2, moved  # the array went to the two other workers
        client.shutdown()


def test_dask_hpc_mpi_jupyter(mpirun: Path, tmp_path: Path) -> None:
    """``dask-hpc mpi --jupyter``: JupyterLab on the scheduler's rank, whose kernels reach the
    cluster with ``dask_hpc.connect()``; the tunnel line is printed; shutdown ends every rank."""
    from dask_hpc.web.tunnel import WebPages

    from .sessions.laptop import run_in_kernel

    directory = tmp_path / "cluster"
    directory.mkdir(mode=0o700)
    proc = start_dask_hpc_mpi(mpirun, 3, directory / "scheduler.json", "--jupyter", "--login-host", "u@login")
    try:
        wait_for_file(directory / "web.json", [proc], timeout=120)
        pages = WebPages.read(directory / "web.json")
        assert pages is not None and pages.jupyter_port and pages.token, pages
        code = "import dask_hpc\nc = dask_hpc.connect()\nprint('sum', c.submit(sum, [1, 2]).result())\n"
        code += "c.shutdown()"
        output = run_in_kernel(f"http://{pages.host}:{pages.jupyter_port}", pages.token, code)
        assert "sum 3" in output, output
    finally:
        printed: list[str] = []
        codes = end_all([proc], stdout=printed)
    assert codes == [0]
    line = f"-L {pages.jupyter_port}:127.0.0.1:{pages.jupyter_port} u@login"
    assert line in printed[0], printed
    assert not (directory / "web.json").exists()


@pytest.mark.parametrize(
    ("flags", "ranks", "names"),
    [
        (["--scheduler-rank", "1"], 3, ["dask_mpi-0", "dask_mpi-2"]),
        (["--inclusive-workers", "--name", "w"], 2, ["w-0", "w-1"]),
        (["--no-nanny"], 3, ["dask_mpi-1", "dask_mpi-2"]),
    ],
)
def test_dask_mpi_flags(flags: list[str], ranks: int, names: list[str], mpirun: Path, tmp_path: Path) -> None:
    scheduler_file = tmp_path / "scheduler.json"
    proc = start_dask_hpc_mpi(mpirun, ranks, scheduler_file, *flags)
    try:
        wait_for_file(scheduler_file, [proc])
        assert worker_names(scheduler_file, len(names)) == names
    finally:
        codes = end_all([proc])
    assert codes == [0]


def test_no_scheduler_adds_workers_to_a_running_cluster(mpirun: Path, tmp_path: Path) -> None:
    scheduler_file = tmp_path / "scheduler.json"
    first = start_dask_hpc_mpi(mpirun, 2, scheduler_file)
    procs = [first]
    try:
        wait_for_file(scheduler_file, procs)
        procs.append(start_dask_hpc_mpi(mpirun, 2, scheduler_file, "--no-scheduler", "--name", "more"))
        assert worker_names(scheduler_file, 3) == ["dask_mpi-1", "more-0", "more-1"]
    finally:
        codes = end_all(procs)
    assert codes == [0, 0]


def test_mpirun_inside_an_sbatch_job(slurm_up: None, mpirun: Path, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.txt"
    job = tmp_path / "job.sh"
    exports = " ".join(f"{k}={v}" for k, v in MPI_ENV.items() if k.startswith("OMPI_"))
    job.write_text(
        "#!/bin/bash\n"
        "#SBATCH -n 4\n"
        f"#SBATCH -o {out}\n"
        f"export {exports}\n"
        # Four virtual SLURM nodes share two cores here: do not bind ranks to cores.
        f"{mpirun} --bind-to none {sys.executable} {script} exit3\n"
    )
    done = run_bounded(["sbatch", "--wait", str(job)], timeout=180)
    assert done.returncode == 3, out.read_text(errors="replace")[-2000:]
    assert "SUM 499999500000 True" in out.read_text(errors="replace")


@pytest.fixture(scope="module")
def site_libmpi(slurm_up: None) -> Path:
    """Debian's Open MPI 4.1, built against the same PMIx as Debian's Slurm: the "site MPI"
    (scripts/local-slurm installs it, and libpmix-dev that srun --mpi=pmix needs).
    The PyPI mpi4py uses it through MPI4PY_LIBMPI."""
    require("site-mpi", "pmix")
    found = site_libmpi_path()
    assert found is not None
    return found


@pytest.mark.parametrize(("mode", "code"), [("ok", 0), ("exit3", 3)])
def test_srun_with_the_site_mpi(site_libmpi: Path, tmp_path: Path, mode: str, code: int) -> None:
    """``srun -n 4 python script.py``: SLURM starts the ranks itself (PMIx), no mpirun."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    argv = ["srun", "-n", "4", "--mpi=pmix", "--time", "5"]
    argv += ["env", f"MPI4PY_LIBMPI={site_libmpi}", sys.executable, str(script), mode]
    done = run_bounded(argv, timeout=180, cwd=tmp_path)
    assert done.returncode == code, done.stderr[-2000:]
    assert "SUM 499999500000 True" in done.stdout


FINALIZE_SCRIPT = """
import os, signal, sys, time
from mpi4py import MPI
from dask_hpc.mpi import leaving
leaving.FINALIZE_GRACE = 2.0
world = MPI.COMM_WORLD
rank = world.Get_rank()
pids = world.allgather(os.getpid())
def gone(pid):  # exited (a zombie until mpirun reaps it) or reaped
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
if sys.argv[1] == "a-rank-died":
    if rank == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    if rank == 1:
        t0 = time.monotonic()
        while not leaving.failure_known() and time.monotonic() - t0 < 20:
            time.sleep(0.1)
        leaving.exit_bounded(5)  # MPI's finalize waits for rank 2, dead, and rank 0
    t0 = time.monotonic()
    while not gone(pids[1]) and time.monotonic() - t0 < 100:
        time.sleep(0.1)
    print("RANK 1 GONE" if gone(pids[1]) else "RANK 1 STILL THERE", flush=True)
    os._exit(0)
if rank == 1:
    leaving.exit_bounded(0)  # MPI's finalize waits for rank 0, still at work: let it
time.sleep(6)
print("RANK 0 DONE", flush=True)
"""


def test_the_finalize_guard_exits_a_rank_that_cannot_finish(mpirun: Path, tmp_path: Path) -> None:
    """A rank done with its work whose MPI cannot finalize because another rank died (under
    ``--with-ft ulfm``) exits anyway soon after FINALIZE_GRACE, by the guard's timer, which
    exits with the rank's own code (mpirun's own code also counts the rank it killed).
    mpi4py finalized among Python's last exit functions, and holds the GIL while it waits:
    the guard's Python timer never fired, and the rank waited forever; then the C watchdog
    ended it with exit code 1 (a job whose ranks all finished failed in CI). MPI_Finalize,
    called without the GIL, lets the timer end it."""
    script = tmp_path / "finalize.py"
    script.write_text(FINALIZE_SCRIPT)
    argv = [str(mpirun), "-np", "3", "--oversubscribe", "--with-ft", "ulfm", sys.executable, str(script)]
    # Rank 0 waits up to 100 s for rank 1 to leave: a job over within 60 s, it left (and
    # mpirun, seeing a rank leave without finishing MPI, may end rank 0 before it says so).
    done = run_bounded([*argv, "a-rank-died"], timeout=60)
    assert "RANK 1 STILL THERE" not in done.stdout
    assert "dask-hpc: MPI did not finish within 2 s (another rank died?); exiting" in done.stderr, (
        done.stderr[-3000:]
    )
    assert "Timeout (0:00:04)!" not in done.stderr  # not the C watchdog's exit 1


def test_the_finalize_guard_lets_a_rank_wait_for_ranks_at_work(mpirun: Path, tmp_path: Path) -> None:
    """No rank has died: a rank that finishes first waits in MPI's finalize for the others
    however long they work (execute()'s ranks go on with the script; a split communicator's
    other ranks too), and is not ended by the guard."""
    script = tmp_path / "finalize.py"
    script.write_text(FINALIZE_SCRIPT)
    argv = [str(mpirun), "-np", "2", "--oversubscribe", sys.executable, str(script), "all-alive"]
    done = run_bounded(argv, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RANK 0 DONE" in done.stdout
    assert "Timeout" not in done.stderr


def test_mpi_comm_backend_keeps_distributeds_comm_contract(mpirun: Path) -> None:
    """``mpi://`` between two ranks: handshake, random and split frames, 20 concurrent comms,
    close from either side and abort surfacing as CommClosedError (tests/mpicomm_ranks.py)."""
    ranks = Path(__file__).with_name("mpicomm_ranks.py")
    done = run_bounded([str(mpirun), "-np", "2", "--oversubscribe", sys.executable, str(ranks)], timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    passed = [line for line in done.stdout.splitlines() if line.startswith("OK ")]
    assert len(passed) == 8, done.stdout


@pytest.mark.parametrize(
    ("mode", "flags"),
    [("vanish", ["--with-ft", "ulfm"]), ("mid-message", ["--with-ft", "ulfm"]), ("exit", [])],
    ids=["dies-under-fault-tolerance", "dies-mid-message-under-fault-tolerance", "exits-without-closing"],
)
def test_mpi_comm_to_a_rank_that_goes_fails_with_comm_closed_error(
    mode: str, flags: list[str], mpirun: Path
) -> None:
    """A rank that goes without closing its comms: its peer's read fails with CommClosedError,
    the other ranks talk on (mpicomm_death.py). One that dies at once is seen by Open MPI's
    fault tolerance (--with-ft ulfm); one whose Python exits closes its comms on the way out.

    ``mid-message``: killed after it began a message that MPI sends in two steps (the receiver
    has its start and fetches the rest). MPI fails that receive: the progress thread died of
    it, and every comm of the rank then waited forever (the ULFM test's hang under load, where
    a rank is more often killed between the two steps)."""
    script = Path(__file__).with_name("mpicomm_death.py")
    argv = [str(mpirun), "-np", "3", "--oversubscribe", *flags, sys.executable, str(script), mode]
    done = run_bounded(argv, timeout=120)
    passed = [line for line in done.stdout.splitlines() if line.startswith("OK ")]
    assert len(passed) == 2, done.stdout + done.stderr[-3000:]


BROKEN_ENGINE_SCRIPT = """
import asyncio
from distributed.comm.core import CommClosedError
from dask_hpc.comm import engine as mpicomm
engine = mpicomm.Engine.get()
def fail():
    raise RuntimeError("a bug")
engine._check_failures = fail  # the progress thread dies at its next turn
engine._thread.join(10)
assert not engine._thread.is_alive()
async def main():
    try:
        await asyncio.wait_for(engine.recv(0, 99), 10)
    except CommClosedError as exc:
        print("RECV FAILED", exc, flush=True)
    try:
        await asyncio.wait_for(engine.send(0, 99, [b"x" * 100]), 10)
    except CommClosedError as exc:
        print("SEND FAILED", exc, flush=True)
asyncio.run(main())
engine.stop()
"""


def test_a_progress_thread_that_dies_fails_every_later_send_and_receive(mpirun: Path, tmp_path: Path) -> None:
    """Whatever kills the mpi:// progress thread, a comm's read or write fails with
    CommClosedError at once (distributed then drops that peer) instead of waiting for a thread
    that is gone: it did, forever, for every send and receive posted after its death."""
    script = tmp_path / "broken.py"
    script.write_text(BROKEN_ENGINE_SCRIPT)
    done = run_bounded([str(mpirun), "-np", "1", sys.executable, str(script)], timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines == [
        "RECV FAILED mpi: the progress thread failed: RuntimeError('a bug')",
        "SEND FAILED mpi: the progress thread failed: RuntimeError('a bug')",
    ], done.stdout + done.stderr[-3000:]
    assert done.stderr.count("mpi progress thread failed") == 1  # logged once, with its traceback


def test_mpi_backend_is_registered_for_distributed() -> None:
    from distributed.comm.registry import get_backend

    from dask_hpc.comm.backend import MPIBackend

    assert isinstance(get_backend("mpi"), MPIBackend)


PROTOCOL_SCRIPT = """
import sys
from dask_hpc.mpi import initialize
protocol = sys.argv[1]
initialize(protocol=protocol, nanny=False, dashboard=False, insecure=protocol == "tcp")
from distributed import Client
import dask.array as da
client = Client()
client.wait_for_workers(2, timeout=60)
print("ADDRESSES", client.scheduler.address, *client.scheduler_info()["workers"], flush=True)
x = da.random.RandomState(0).random((2000, 2000), chunks=(250, 250))
total = (x + x.T).sum().compute()  # each chunk meets its transpose's: data moves between workers
spread = x.rechunk((2000, 50)).std().compute()
import numpy as np
import pandas as pd
import dask.dataframe as dd
frame = pd.DataFrame({"k": np.arange(20_000) % 97, "v": np.arange(20_000.0)})
df = dd.from_pandas(frame, npartitions=8).shuffle("k")  # distributed's p2p shuffle: all to all
by_key = df.groupby("k").v.sum().compute().sort_index()
assert by_key.equals(frame.groupby("k").v.sum().sort_index()), by_key
moved = sum(client.run(lambda dask_worker: len(dask_worker.transfer_incoming_log)).values())
print("RESULT", repr(float(total)), repr(float(spread)), repr(float(by_key.sum())), flush=True)
print("MOVED", moved, flush=True)
"""


def test_a_computation_over_the_mpi_transport_matches_tcp(mpirun: Path, tmp_path: Path) -> None:
    """initialize(protocol="mpi"): scheduler, workers and the script's client talk mpi://;
    an array computation whose chunks move and a dataframe shuffle give what tcp gives."""
    script = tmp_path / "script.py"
    script.write_text(PROTOCOL_SCRIPT)
    results = {}
    for protocol in ("mpi", "tcp"):
        argv = [str(mpirun), "-np", "4", "--oversubscribe", sys.executable, str(script), protocol]
        done = run_bounded(argv, timeout=180, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        lines = {
            line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line
        }
        addresses = lines["ADDRESSES"].split()
        assert len(addresses) == 3 and all(a.startswith(f"{protocol}://") for a in addresses), addresses
        assert int(lines["MOVED"]) > 0  # worker-to-worker transfers happened, over this protocol
        results[protocol] = lines["RESULT"]
    assert results["mpi"] == results["tcp"]


def test_protocol_without_encryption_needs_insecure(mpirun: Path, tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("from dask_hpc.mpi import initialize\ninitialize(protocol='tcp')\n")
    done = run_bounded(
        [str(mpirun), "-np", "3", "--oversubscribe", sys.executable, str(script)], cwd=tmp_path
    )
    assert done.returncode == 2
    assert "error: protocol 'tcp' has no encryption and TLS is on" in done.stderr
    assert done.stderr.count("error: protocol") == 1 and "Traceback" not in done.stderr


def test_mpi_transport_needs_thread_multiple(mpirun: Path, tmp_path: Path) -> None:
    """An MPI without MPI_THREAD_MULTIPLE (mpi4py asked for less): protocol mpi is one error
    line on every rank's behalf; by default the ranks fall back to tls and compute."""
    serialized = {"MPI4PY_RC_THREAD_LEVEL": "serialized"}
    script = tmp_path / "asked.py"
    script.write_text("from dask_hpc.mpi import initialize\ninitialize(protocol='mpi', nanny=False)\n")
    argv = [str(mpirun), "-np", "3", "--oversubscribe", sys.executable]
    done = run_bounded([*argv, str(script)], cwd=tmp_path, env=serialized)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("error: --protocol mpi needs an MPI with MPI_THREAD_MULTIPLE") == 1
    assert "Traceback" not in done.stderr

    default = tmp_path / "default.py"
    default.write_text(
        "from dask_hpc.mpi import initialize\n"
        "initialize(nanny=False, dashboard=False)\n"
        "from distributed import Client\n"
        "with Client() as client:\n"
        "    client.wait_for_workers(1, timeout=60)\n"
        "    print('SCHEME', client.scheduler.address.split(':')[0], flush=True)\n"
        "    print('SUM', client.submit(sum, range(10)).result(), flush=True)\n"
    )
    done = run_bounded([*argv, str(default)], cwd=tmp_path, env=serialized)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SCHEME tls" in done.stdout and "SUM 45" in done.stdout, done.stdout


def test_an_idle_progress_thread_naps_longer_the_longer_it_is_idle() -> None:
    """A message after a short quiet waits little; a long-idle rank polls 1000 times a second."""
    from dask_hpc.comm import engine as mpicomm

    naps = [mpicomm._nap(idle) for idle in (0.0, 0.002, 0.01, 0.05, 1.0, 3600.0)]
    assert naps == sorted(naps)
    assert naps[0] == mpicomm.SHORTEST_NAP and naps[-1] == mpicomm.LONGEST_NAP == 0.001
    assert mpicomm._nap(0.01) == pytest.approx(0.0002)  # 2% of the quiet
