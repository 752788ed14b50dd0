"""``dask_hpc.open_mfdataset`` gives what ``xr.open_mfdataset`` gives, as xarray's tests would
check it: many files and options, ``xr.testing.assert_identical`` on the values, and the
encodings, the warnings and the errors compared one by one."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr

from . import model_output

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("model-output")
    lat, _ = model_output.grid()
    other_grid = model_output.dataset("standard", 2000, 12, seed=1).assign_coords(lat=lat + 1.0)
    members = []
    for m in range(3):
        ds = model_output.dataset("standard", 2000, 12, seed=m)
        members.append(model_output.write(root, f"member{m}.nc", ds))
    tiles = [
        [
            model_output.write(
                root,
                f"tile_{y}_{half}.nc",
                model_output.dataset("standard", y, 12).isel(lon=slice(4 * half, 4 * half + 4)),
            )
            for half in (0, 1)
        ]
        for y in (2000, 2001)
    ]
    years = model_output.by_year(root / "years", "standard", range(2000, 2004))
    # A variable that only some files have (a model that started writing it later).
    later = model_output.dataset("standard", 2001, 12)
    later["zg"] = later["ta"] * 10
    partial_files = [
        model_output.write(root, "partial-2000.nc", model_output.dataset("standard", 2000, 12)),
        model_output.write(root, "partial-2001.nc", later),
    ]
    broken = root / "broken"
    broken.mkdir()
    bad = broken / "ta_Amon_DASKHPC_standard_200201-200212.nc"
    bad.write_text("not a NetCDF file\n")
    return {
        "years": years,
        "decades": model_output.by_decade(root / "decades", "noleap", 1850, 1874),
        "shuffled": list(reversed(years)),
        "grids": [years[0], model_output.write(root, "other-grid.nc", other_grid)],
        "partial": partial_files,
        "scalar": model_output.by_year(
            root / "scalar", "noleap", range(2000, 2003), variable="tas", levels=False
        ),
        "members": members,
        "tiles": tiles,
        "broken": [*years[:2], str(bad), *years[3:]],
        "daily": [
            model_output.write(
                root / "years",
                f"tas_day_{d:03d}.nc",
                model_output.dataset("standard", 2001, 2, variable="tas", levels=False, daily=True).isel(
                    time=[d]
                ),
            )
            for d in range(40)
        ],
    }


def select_ta(ds: xr.Dataset) -> xr.Dataset:
    return ds[["ta"]]


def to_celsius(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign(ta=ds.ta - 273.15).sel(lat=slice(-60, 60))


def rename_ta(ds: xr.Dataset) -> xr.Dataset:
    return ds.rename({"ta": "air_temperature"})


def keep(names: list[str], ds: xr.Dataset) -> xr.Dataset:
    return ds[names]


def north_of(latitude: float, ds: xr.Dataset) -> xr.Dataset:
    return ds.sel(lat=slice(latitude, None))


CASES: list[tuple[str, dict[str, Any]]] = [
    ("years", {}),
    ("decades", {}),
    ("shuffled", {}),
    ("years", {"data_vars": "minimal", "coords": "minimal", "compat": "override"}),
    ("years", {"data_vars": "different"}),
    ("years", {"data_vars": ["ta"]}),
    ("years", {"coords": "all"}),
    ("years", {"compat": "identical"}),
    ("years", {"combine_attrs": "drop"}),
    ("years", {"combine_attrs": "drop_conflicts"}),
    ("years", {"combine_attrs": "no_conflicts"}),
    ("years", {"combine_attrs": "identical"}),
    ("years", {"combine": "nested", "concat_dim": "time"}),
    ("members", {"combine": "nested", "concat_dim": "member"}),
    ("tiles", {"combine": "nested", "concat_dim": ["time", "lon"]}),
    ("tiles", {"combine": "nested", "concat_dim": ["time", "lon"], "data_vars": "minimal"}),
    ("decades", {"chunks": {"lat": 3}}),
    ("decades", {"chunks": {"time": 7}}),
    ("decades", {"chunks": "auto"}),
    ("decades", {"chunks": -1}),
    ("years", {"decode_times": False}),
    ("years", {"decode_cf": False}),
    ("years", {"mask_and_scale": False}),
    ("years", {"drop_variables": ["time_bnds"]}),
    ("decades", {"decode_times": "cftime"}),
    ("years", {"preprocess": select_ta}),
    ("shuffled", {"preprocess": to_celsius}),
    ("years", {"attrs_file": "last"}),
    ("grids", {}),
    ("grids", {"join": "inner"}),
    ("grids", {"join": "exact"}),
    ("grids", {"join": "override"}),
    ("broken", {"errors": "warn"}),
    ("broken", {"errors": "ignore"}),
    ("broken", {}),
    ("years", {"combine": "by_coords", "concat_dim": "time"}),
    ("years", {"engine": "netcdf4", "parallel": True}),
    ("daily", {}),
    ("daily", {"data_vars": "minimal", "coords": "minimal", "compat": "override"}),
    ("partial", {}),
    ("partial", {"data_vars": "minimal", "coords": "minimal", "compat": "override"}),
    ("scalar", {}),
    ("scalar", {"coords": "minimal", "compat": "override"}),
    ("years", {"use_cftime": True}),
    ("years", {"preprocess": rename_ta}),
    ("years", {"preprocess": partial(north_of, 30.0)}),
    ("broken", {"combine": "nested", "concat_dim": "time", "errors": "ignore"}),
    ("broken", {"combine": "bogus"}),
    ("years", {"combine": "bogus"}),
]


def _options(case: dict[str, Any], paths: list[Any]) -> dict[str, Any]:
    options = dict(case)
    if options.get("attrs_file") == "last":
        options["attrs_file"] = paths[-1]
    if options.get("decode_times") == "cftime":
        options["decode_times"] = xr.coders.CFDatetimeCoder(use_cftime=True)
    return options


def _open(how: Callable[..., xr.Dataset], paths: Any, options: dict[str, Any]) -> tuple[Any, list[str]]:
    """The dataset (loaded) and its encodings, or the error; and the warnings, as text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = how(paths, **options)
        except Exception as exc:  # compared with xarray's below
            return exc, [str(w.message) for w in caught]
        encodings = {name: v.encoding for name, v in ds.variables.items()}
        chunks = {name: v.chunks for name, v in ds.variables.items()}
        loaded = ds.load()
    return (loaded, ds.encoding, encodings, chunks), [
        str(w.message) for w in caught if w.category is not ResourceWarning
    ]


def _text(encoding: dict[Any, Any]) -> str:
    """Encodings compared as text: a _FillValue of NaN is not equal to itself."""
    return repr(sorted((str(k), _text(v) if isinstance(v, dict) else repr(v)) for k, v in encoding.items()))


def _id(kind: str, case: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return value.func.__name__ if isinstance(value, partial) else getattr(value, "__name__", str(value))

    return "-".join([kind, *(f"{k}={text(v)}" for k, v in case.items())])


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[_id(k, c) for k, c in CASES])
def test_identical_to_xarray(files: dict[str, Any], client: Any, kind: str, case: dict[str, Any]) -> None:
    import dask_hpc

    paths = files[kind]
    options = _options(case, paths)
    ours, our_warnings = _open(lambda p, **o: dask_hpc.open_mfdataset(p, client=client, **o), paths, options)
    with dask.config.set(scheduler="sync"):  # xarray's own lazy arrays, read here
        theirs, their_warnings = _open(xr.open_mfdataset, paths, options)
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs) and str(ours) == str(theirs)
        return
    assert not isinstance(ours, Exception), ours
    ours_ds, ours_encoding, ours_encodings, ours_chunks = ours
    theirs_ds, theirs_encoding, theirs_encodings, theirs_chunks = theirs
    xr.testing.assert_identical(ours_ds, theirs_ds)
    assert _text(ours_encoding) == _text(theirs_encoding)
    assert _text(ours_encodings) == _text(theirs_encodings)
    assert our_warnings == their_warnings
    for name, chunks in ours_chunks.items():
        if chunks is None or theirs_chunks[name] is None:
            assert chunks == theirs_chunks[name], name
            continue
        for ours_axis, theirs_axis in zip(chunks, theirs_chunks[name], strict=True):
            # ours may join whole files into one chunk, never cut where xarray does not
            assert set(np.cumsum(ours_axis)) <= set(np.cumsum(theirs_axis)), (
                name,
                chunks,
                theirs_chunks[name],
            )


def test_small_files_are_read_a_batch_per_chunk(files: dict[str, Any], client: Any) -> None:
    import dask_hpc

    ds = dask_hpc.open_mfdataset(files["daily"], client=client)
    theirs = xr.open_mfdataset(files["daily"])
    assert theirs.tas.chunks[0] == (1,) * 40  # xarray: a chunk a file
    assert ds.tas.chunks[0] == (5,) * 8  # 2 worker threads, 4 chunks each
    assert ds.tas.chunks[1:] == theirs.tas.chunks[1:]
    with dask.config.set(scheduler="sync"):
        expected = theirs.tas.values
    # Slices across files, one step, steps, backwards, lists: what dask's getter passes on.
    for key in [slice(3, 17), 5, slice(None, None, 3), slice(None, None, -1), [1, 30, 2], slice(38, 40)]:
        np.testing.assert_array_equal(ds.tas.isel(time=key).values, expected[key])
    np.testing.assert_array_equal(ds.tas.isel(time=slice(9, 12), lat=2).values, expected[9:12, 2])
    # Options whose copies are not equal to each other (a partial, an xarray coder) batch too.
    for options in [
        {"decode_times": xr.coders.CFDatetimeCoder(use_cftime=True)},
        {"preprocess": partial(keep, ["tas", "time_bnds"])},
    ]:
        assert dask_hpc.open_mfdataset(files["daily"], client=client, **options).tas.chunks[0] == (5,) * 8


def test_a_glob_sorted_and_a_path(files: dict[str, Any], client: Any, tmp_path: Path) -> None:
    import dask_hpc

    folder = Path(files["years"][0]).parent
    pattern = str(folder / "ta_Amon_*.nc")
    with dask.config.set(scheduler="sync"):
        theirs = xr.open_mfdataset(pattern).load()
    xr.testing.assert_identical(dask_hpc.open_mfdataset(pattern, client=client).load(), theirs)
    # A Path is taken as it is, not as a pattern (as xarray does).
    with pytest.raises(FileNotFoundError):
        dask_hpc.open_mfdataset(Path(pattern), client=client)
    paths = [Path(p) for p in files["years"]]
    xr.testing.assert_identical(dask_hpc.open_mfdataset(paths, client=client).load(), theirs)
    with pytest.raises(OSError, match="no files to open"):
        dask_hpc.open_mfdataset(str(tmp_path / "none_*.nc"), client=client)


@pytest.mark.parametrize("calendar", model_output.CALENDARS)
def test_every_cf_calendar(tmp_path: Path, client: Any, calendar: str) -> None:
    import dask_hpc

    paths = model_output.by_year(tmp_path, calendar, range(1999, 2002))
    ours = dask_hpc.open_mfdataset(paths, client=client)
    with dask.config.set(scheduler="sync"):
        theirs = xr.open_mfdataset(paths).load()
    xr.testing.assert_identical(ours.load(), theirs)
    assert ours.time.size == 36 and ours.time.to_index().is_monotonic_increasing


def test_workers_survive_opening_and_reading_again_and_again(tmp_path: Path) -> None:
    """HDF5 is not thread-safe: with xarray's lazy arrays on the workers, rounds of open,
    compute and release crashed workers here ("double free or corruption", "NetCDF: HDF
    error"), a file closed on the event loop's thread while a task read another. Every
    worker process must be the one it was, and every value right."""
    import os

    from distributed import Client, LocalCluster

    import dask_hpc

    paths = [
        model_output.write(
            tmp_path,
            f"tas_{d:03d}.nc",
            model_output.dataset(
                "noleap", 2001, 4, variable="tas", levels=False, daily=True, nlat=30, nlon=60
            ).isel(time=[d]),
        )
        for d in range(120)
    ]
    with dask.config.set(scheduler="sync"), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        expected = float(xr.open_mfdataset(paths).tas.mean())
    with (
        LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        for _ in range(4):  # the crashes came in the first rounds; 4, not 6, for the suite's time
            ds = dask_hpc.open_mfdataset(paths, client=client)
            assert float(ds.tas.mean().compute()) == pytest.approx(expected, rel=1e-6)
            del ds
        assert client.run(os.getpid) == pids
