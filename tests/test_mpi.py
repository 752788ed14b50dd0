"""MPI launch with a real mpirun (Open MPI from PyPI): exit codes, no hangs, clients from outside.

Every run is bounded by a timeout: a hang is a failure, and the whole process
group is killed so that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import IN_CI

pytestmark = pytest.mark.timeout(300)

MPIRUN = Path(sys.executable).parent / "mpirun"
# Open MPI refuses root unless told; keep its own traffic on loopback.
MPI_ENV = {
    **os.environ,
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "OMPI_MCA_btl_tcp_if_include": "lo",
}

SCRIPT = """
import os, signal, sys, time
from dask_hpc.mpi import initialize
initialize(dashboard_address=":0")
from distributed import Client
import dask.array as da
mode = sys.argv[1]
client = Client()
client.wait_for_workers(2, timeout=60)
if mode == "kill-worker":
    pids = client.run(os.getpid)
    futures = client.map(time.sleep, [0.2] * 50, pure=False)
    time.sleep(0.5)
    os.kill(next(iter(pids.values())), signal.SIGKILL)  # a worker rank dies mid-run
    client.gather(futures)
n = 1_000_000
total = int(da.arange(n, chunks=n // 8).sum().compute())
print("SUM", total, total == n * (n - 1) // 2, flush=True)
if mode == "exit3":
    sys.exit(3)
if mode == "raise":
    raise RuntimeError("boom")
"""


@pytest.fixture(scope="module")
def mpirun() -> Path:
    if not MPIRUN.exists():
        message = f"no {MPIRUN}: install dask-hpc[mpi]"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return MPIRUN


def run_bounded(
    argv: list[str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        argv,
        env=MPI_ENV,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(argv)} hung: no exit after {timeout:g} s")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


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
    assert done.stderr.count("Traceback (most recent call last)") == 1
    assert "RuntimeError: boom" in done.stderr


def test_a_worker_rank_that_dies_does_not_hang_the_job(mpirun: Path, tmp_path: Path) -> None:
    done = mpi_script(mpirun, tmp_path, 4, "kill-worker")
    assert done.returncode != 0  # mpirun ends the job when a rank dies: bounded, not hung


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


def test_dask_hpc_mpi_with_a_client_from_outside(mpirun: Path, tmp_path: Path) -> None:
    from distributed import Client

    from dask_hpc.mpi import client_security

    directory = tmp_path / "cluster"
    directory.mkdir(mode=0o700)
    scheduler_file = directory / "scheduler.json"
    argv = [
        str(mpirun),
        "-np",
        "3",
        "--oversubscribe",
        sys.executable,
        "-m",
        "dask_hpc",
        "mpi",
        "--scheduler-file",
        str(scheduler_file),
        "--dashboard-address",
        ":0",
    ]
    proc = subprocess.Popen(
        argv, env=MPI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert scheduler_file.exists(), "dask-hpc mpi wrote no scheduler file"
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        with pytest.raises(Exception):  # noqa: B017 (any refusal: no certificate, no entry)
            Client(address, timeout=3)
        security = client_security(scheduler_file)
        with Client(scheduler_file=str(scheduler_file), security=security, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            names = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())
            assert names == ["dask_mpi-1", "dask_mpi-2"]
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
            client.shutdown()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err


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
