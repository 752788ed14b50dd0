"""``dask-hpc bench network``: every method measured on real worker processes, MPI included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dask_hpc.bench.network import Measurement, parse_size, summary
from dask_hpc.errors import SpecError

pytestmark = pytest.mark.timeout(300)

MPI_ENV = {
    **os.environ,
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "OMPI_MCA_btl_tcp_if_include": "lo",
}


def test_sizes() -> None:
    assert parse_size("1MiB") == 2**20
    assert parse_size("64 MiB") == 64 * 2**20
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("4096") == 4096
    with pytest.raises(SpecError, match="invalid size '12 parsecs'"):
        parse_size("12 parsecs")


def test_summary_ratios_to_mpi_at_the_same_size() -> None:
    rows = summary(
        [
            Measurement("mpi", 100, [1.0, 2.0, 4.0]),  # 100, 50, 25 B/s: median 50
            Measurement("dask-tcp", 100, [4.0, 4.0, 8.0]),  # median 25
            Measurement("dask-tcp", 200, [1.0]),  # no MPI at this size
        ]
    )
    by = {(r["method"], r["nbytes"]): r for r in rows}
    assert by["dask-tcp", 100]["ratio_to_mpi"] == pytest.approx(0.5)
    assert by["mpi", 100]["min_gbps"] == pytest.approx(25e-9)
    assert by["dask-tcp", 200]["ratio_to_mpi"] is None


def test_bench_network_local(mpirun: Path, tmp_path: Path) -> None:  # its MPI rows: mpirun -np 2
    out = tmp_path / "net.json"
    png = tmp_path / "net.png"
    argv = [sys.executable, "-m", "dask_hpc", "bench", "network", "--sizes", "1MiB,4MiB", "--repeat", "2"]
    done = subprocess.run(
        [*argv, "--json", str(out), "--plot", str(png)],
        env=MPI_ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(out.read_text())
    # What the figures depend on besides the machine: distributed and its (de)serialisation threads.
    assert found["settings"]["distributed.comm.offload"] == "10MiB", found["settings"]
    rows = found["rows"]
    methods = {(r["method"], r["nbytes"]) for r in rows}
    for method in ("dask-tcp", "dask-tls", "raw-tcp", "memcpy", "mpi"):
        for size in (2**20, 4 * 2**20):
            assert (method, size) in methods
    assert all(r["median_gbps"] > 0 and len(r["seconds"]) == 2 for r in rows)
    assert all(r["ratio_to_mpi"] is not None for r in rows)
    assert png.stat().st_size > 10_000
    assert "bench network: two worker processes on this node" in done.stdout


def test_bench_network_bad_sizes_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dask_hpc", "bench", "network", "--sizes", "1MiB,lots"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "error: invalid size 'lots': use e.g. 1MiB, 64MiB, 1GiB, 500MB"


@pytest.mark.timeout(240)
def test_bench_network_under_mpirun(mpirun: Path, tmp_path: Path) -> None:
    """Under mpirun: worker ranks talking mpi://, MPI Send/Recv between those same ranks, and in
    the same run dask over tcp and tls between two worker processes beside them."""
    out = tmp_path / "net.json"
    argv = [str(mpirun), "-np", "4", "--oversubscribe", sys.executable, "-m", "dask_hpc", "bench", "network"]
    done = subprocess.run(
        [*argv, "--sizes", "1MiB,4MiB", "--repeat", "2", "--json", str(out)],
        env=MPI_ENV,
        capture_output=True,
        text=True,
        timeout=200,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    methods = {"dask-mpi", "dask-tcp", "dask-tls", "mpi", "mpi-fresh", "raw-tcp", "memcpy"}
    assert {r["method"] for r in rows} == methods
    assert all(r["median_gbps"] > 0 and r["ratio_to_mpi"] is not None for r in rows)
    assert all(r["ratio_to_mpi_fresh"] is not None for r in rows)
    assert "fresh" in done.stdout  # the table's column of ratios to MPI into fresh memory
