"""dask_hpc.open_mfdataset: batches of files opened on workers give what xarray gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import xarray as xr

from dask_hpc import sst
from dask_hpc.netcdf import MIN_BATCH, batches

OPTIONS = {"data_vars": "minimal", "coords": "minimal", "compat": "override"}
GRID = (18, 36)


def test_batches_are_consecutive_and_cover_every_file() -> None:
    paths = [f"f{i:04d}" for i in range(1000)]
    parts = batches(paths, threads=2)
    assert len(parts) == 4  # two per thread
    assert [p for part in parts for p in part] == paths
    assert batches(paths[:10], threads=8) == [paths[:10]]  # too few files for more than one task
    assert all(len(part) >= MIN_BATCH for part in batches(paths[:40], threads=8)[:-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    directory = tmp_path_factory.mktemp("sst")
    return [sst.write_day(str(directory), day, GRID) for day in range(30)]


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.mark.timeout(120)
@pytest.mark.parametrize("combine", ["by_coords", "nested"])
def test_same_dataset_as_xarray(files: list[str], client: object, combine: str) -> None:
    import dask_hpc

    extra = {"concat_dim": "time"} if combine == "nested" else {}
    ours = dask_hpc.open_mfdataset(files, client=client, combine=combine, **OPTIONS, **extra)
    theirs = xr.open_mfdataset(files, combine=combine, **OPTIONS, **extra)
    assert ours.sst.chunks == theirs.sst.chunks  # one chunk per file, as xarray makes them
    xr.testing.assert_identical(ours.compute(), theirs.compute())


def test_a_glob_is_sorted_and_errors_are_clear(files: list[str], client: object) -> None:
    import dask_hpc

    pattern = str(Path(files[0]).parent / "sst_*.nc")
    assert dask_hpc.open_mfdataset(pattern, client=client, **OPTIONS).sizes["time"] == 30
    with pytest.raises(OSError, match="no files to open"):
        dask_hpc.open_mfdataset(str(Path(files[0]).parent / "none_*.nc"), client=client)
    with pytest.raises(ValueError, match="concat_dim"):
        dask_hpc.open_mfdataset(files, client=client, combine="nested")
