"""``execute()``: dask-mpi's function-as-client launch, on 1 to 5 ranks, with a real mpirun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .mpirun_tools import run_bounded

pytestmark = pytest.mark.timeout(300)

EXECUTE_SCRIPT = """
import sys, time
from distributed import Client
from dask_hpc.mpi import execute

def client_function(size, client_rank, scheduler_rank, exclusive):
    placed = {client_rank, scheduler_rank} if exclusive else set()
    expected = {rank for rank in range(size) if rank not in placed}
    with Client() as client:
        client.wait_for_workers(len(expected), timeout=60)
        names = {info["name"] for info in client.scheduler_info()["workers"].values()}
        assert names == expected, (names, expected)
        for name in sorted(names):  # each worker computes, by its rank
            assert client.submit(lambda x: x + 1, 10, workers=[name], pure=False).result() == 11
    if sys.argv[5] == "raise":
        raise RuntimeError("the client failed")
    return "VALUE"

size, client_rank, scheduler_rank = (int(a) for a in sys.argv[1:4])
exclusive = sys.argv[4] == "True"
value = execute(
    client_function=client_function,
    client_args=(size, client_rank, scheduler_rank, exclusive),
    client_rank=client_rank,
    scheduler_rank=scheduler_rank,
    exclusive_workers=exclusive,
    dashboard_address=":0",
)
from mpi4py import MPI
print("RETURNED", MPI.COMM_WORLD.Get_rank(), value, flush=True)  # every rank goes on after execute()
"""


@pytest.mark.parametrize(
    ("size", "client_rank", "scheduler_rank", "exclusive", "code"),
    [  # dask-mpi 2026.3.0's own cases (its tests/test_execute.py), every placement
        (4, 1, 0, True, 0),
        (1, 1, 0, True, 1),
        (4, 2, 3, True, 0),
        (5, 1, 3, True, 0),
        (3, 2, 2, True, 0),
        (2, 0, 0, False, 0),
        (1, 0, 0, False, 0),
        (1, 0, 0, True, 1),
    ],
)
def test_execute_places_the_client_scheduler_and_workers_as_dask_mpi(
    size: int, client_rank: int, scheduler_rank: int, exclusive: bool, code: int, mpirun: Path, tmp_path: Path
) -> None:
    script = tmp_path / "execute.py"
    script.write_text(EXECUTE_SCRIPT)
    args = [str(a) for a in (size, client_rank, scheduler_rank, exclusive)]
    argv = [str(mpirun), "-np", str(size), "--oversubscribe", sys.executable, str(script), *args, "ok"]
    done = run_bounded(argv, timeout=150, cwd=tmp_path)
    assert done.returncode == code, done.stderr[-3000:]
    if code:  # too few ranks: one line, no traceback
        ours = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(ours) == 1 and "MPI ranks, got 1: run e.g. mpirun -np" in ours[0], done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        return
    returned = sorted(line for line in done.stdout.splitlines() if line.startswith("RETURNED"))
    assert returned == sorted(
        f"RETURNED {rank} {'VALUE' if rank == client_rank else None}" for rank in range(size)
    ), done.stdout + done.stderr[-2000:]


def test_a_client_function_that_raises_closes_the_cluster_and_fails_the_job(
    mpirun: Path, tmp_path: Path
) -> None:
    """dask-mpi's client thread dies with the exception and never closes the cluster: the job
    hangs. Here the cluster closes, execute() raises it on the client's rank (its traceback
    once), and the job exits 1."""
    script = tmp_path / "execute.py"
    script.write_text(EXECUTE_SCRIPT)
    argv = [str(mpirun), "-np", "3", "--oversubscribe", sys.executable, str(script), "3", "1", "0", "True"]
    done = run_bounded([*argv, "raise"], timeout=150, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.count("RuntimeError: the client failed") == 1, done.stderr[-3000:]
    assert "RETURNED 1" not in done.stdout


SPLIT_EXECUTE = """
from mpi4py import MPI
from distributed import Client
from dask_hpc.mpi import execute
world = MPI.COMM_WORLD
comm = world.Split(1 if world.rank == 3 else 0)  # world rank 3 stays out of the cluster
if world.rank != 3:
    def client_code():
        with Client() as client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(lambda x: x + 1, 10).result() == 11
            print("COMPUTED", flush=True)
    execute(client_code, comm=comm, dashboard=False)
world.Barrier()
x = world.bcast(100 if world.rank == 0 else 200)
assert x == 100, x
print("WORLD OK", world.rank, flush=True)
"""


def test_execute_on_a_split_communicator_leaves_the_world_usable(mpirun: Path, tmp_path: Path) -> None:
    """dask-mpi's execute_no_exit.py: the cluster on a split of the world, then the world."""
    script = tmp_path / "split.py"
    script.write_text(SPLIT_EXECUTE)
    done = run_bounded([str(mpirun), "-np", "4", "--oversubscribe", sys.executable, str(script)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("COMPUTED") == 1, done.stdout
    assert sorted(line for line in done.stdout.splitlines() if line.startswith("WORLD OK")) == [
        f"WORLD OK {rank}" for rank in range(4)
    ], done.stdout


OUTSIDE_CLIENT_EXECUTE = """
import subprocess
import sys
from mpi4py import MPI
from dask_hpc.mpi import execute
value = execute(scheduler_file=sys.argv[1], worker_name="w", dashboard_address=":0")
print("RETURNED", MPI.COMM_WORLD.Get_rank(), value, flush=True)
"""


def test_execute_without_a_client_function_serves_a_client_from_outside(mpirun: Path, tmp_path: Path) -> None:
    """No client function: every rank but the scheduler's is a worker (named ``w-<rank>``),
    the scheduler file has an address a client outside the job reaches (tls://, with its
    certificates beside it, although the ranks talk mpi://), and its shutdown() ends them."""
    from distributed import Client

    from dask_hpc.mpi import client_security

    from .mpirun_tools import MPI_ENV, end_session

    directory = tmp_path / "cluster"
    directory.mkdir(mode=0o700)
    scheduler_file = directory / "scheduler.json"
    script = tmp_path / "serve.py"
    script.write_text(OUTSIDE_CLIENT_EXECUTE)
    argv = [str(mpirun), "-np", "3", "--oversubscribe", sys.executable, str(script), str(scheduler_file)]
    proc = subprocess.Popen(
        argv, env=MPI_ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        security = client_security(scheduler_file, timeout=60)
        with Client(scheduler_file=str(scheduler_file), security=security, timeout=60) as c:
            assert c.scheduler.address.startswith("tls://")
            c.wait_for_workers(2, timeout=60)
            names = sorted(str(w["name"]) for w in c.scheduler_info()["workers"].values())
            assert names == ["w-1", "w-2"]
            assert c.submit(sum, [1, 2]).result(timeout=30) == 3
            c.shutdown()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            end_session(proc)
    assert proc.returncode == 0, err[-3000:]
    assert sorted(line for line in out.splitlines() if line.startswith("RETURNED")) == [
        f"RETURNED {rank} None" for rank in range(3)
    ]


JOINING_EXECUTE = """
import subprocess
import sys
from distributed import Client
from dask_hpc.mpi import execute
def client_function():
    with Client() as client:
        client.wait_for_workers(2, timeout=60)  # the running cluster's and ours
        names = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())
        assert client.submit(sum, [1, 2], workers=["joined-1"]).result() == 3
        return names
print("NAMES", execute(client_function, scheduler=False, scheduler_file=sys.argv[1], client_rank=0,
                       worker_name="joined"), flush=True)
"""


def test_execute_without_a_scheduler_joins_a_running_one(mpirun: Path, tmp_path: Path) -> None:
    """``scheduler=False``: the workers join the scheduler in ``scheduler_file`` (its TLS
    certificates beside it), the client function runs against it, and, as in dask-mpi,
    its end shuts that scheduler down: both MPI jobs end with 0."""
    from .mpirun_tools import end_session, start_dask_hpc_mpi, wait_for_file

    directory = tmp_path / "cluster"
    directory.mkdir(mode=0o700)
    scheduler_file = directory / "scheduler.json"
    running = start_dask_hpc_mpi(mpirun, 2, scheduler_file)
    try:
        wait_for_file(scheduler_file, [running])
        script = tmp_path / "join.py"
        script.write_text(JOINING_EXECUTE)
        argv = [str(mpirun), "-np", "2", "--oversubscribe", sys.executable, str(script), str(scheduler_file)]
        done = run_bounded(argv, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "NAMES ['dask_mpi-1', 'joined-1']" in done.stdout, done.stdout + done.stderr[-2000:]
        _, err = running.communicate(timeout=60)
        assert running.returncode == 0, err[-3000:]
    finally:
        if running.poll() is None:
            end_session(running)
