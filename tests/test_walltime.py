"""Workers that know their walltime: the margin they leave by, and what preloads them."""

from __future__ import annotations

import dask
import pytest

from dask_hpc import walltime
from dask_hpc.worker import worker_arguments


def test_margin_floor_is_a_tenth_of_the_walltime_within_bounds() -> None:
    assert walltime.margin_floor(3600) == 60  # an hour: a minute
    assert walltime.margin_floor(600) == 60
    assert walltime.margin_floor(300) == 30
    assert walltime.margin_floor(40) == 5


def test_margin_grows_with_the_data_to_move() -> None:
    assert walltime.retire_margin(300, 0) == 30
    assert walltime.retire_margin(300, 10**9, bandwidth=100e6) == pytest.approx(40)
    assert walltime.retire_margin(300, 10**9, bandwidth=0) == pytest.approx(
        30 + 1e9 / walltime.DEFAULT_BANDWIDTH
    )


def test_margin_floor_from_dask_config() -> None:
    with dask.config.set({"dask-hpc.retire-margin": "2 minutes"}):
        assert walltime.margin_floor(40) == 120
    with dask.config.set({"dask-hpc.retire-margin": 7}):
        assert walltime.margin_floor(3600) == 7


def test_workers_in_a_job_preload_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_HPC_SYSTEM", "local")
    monkeypatch.setenv("DASK_HPC_LOCAL_JOB_ID", "17")
    args = worker_arguments(["--nthreads", "1"])
    assert args[-4:] == ["--name", "17", "--preload", "dask_hpc.walltime"]
    named = worker_arguments(["--name", "x"])
    assert named == ["--name", "x", "--preload", "dask_hpc.walltime"]


def test_outside_a_job_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASK_HPC_SYSTEM", raising=False)
    assert worker_arguments(["--nthreads", "1"]) == ["--nthreads", "1"]
    assert walltime.job_end() is None
