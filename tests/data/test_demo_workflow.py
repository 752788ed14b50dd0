"""The demo's steps on model output of every CF calendar and on 4-D variables: open, persist,
monthly climatology, anomalies, figure; the numbers checked against plain xarray."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr

from dask_hpc.demo import workflow
from dask_hpc.errors import DataError

from . import model_output

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("calendar", model_output.CALENDARS)
def test_every_step_in_every_calendar(tmp_path: Path, client: Any, calendar: str) -> None:
    paths = model_output.by_year(tmp_path, calendar, range(2000, 2003))
    name = workflow.check_variable(paths[0], None, 50000.0)
    assert name == "ta"
    ds = workflow.open_files(client, paths)
    field, shown = workflow.select_level(ds[name], 50000.0)
    assert shown is not None and shown["text"] == "plev = 50000 Pa"
    clim = workflow.climatology(field.persist()).compute()
    anomaly = workflow.anomalies(field, clim).persist()
    series = workflow.global_mean(anomaly).compute()
    figure = workflow.plot(anomaly, series, tmp_path / "figure.png", shown["text"])
    assert (tmp_path / "figure.png").stat().st_size > 20_000
    assert figure["peak_day"][:4] in {"2000", "2001", "2002"}
    with warnings.catch_warnings(), dask.config.set(scheduler="sync"):
        warnings.simplefilter("ignore", FutureWarning)
        plain = xr.open_mfdataset(paths).ta.sel(plev=50000.0).load()
    expected = plain.groupby("time.month").mean("time")
    np.testing.assert_allclose(clim.values, expected.values, rtol=1e-6)
    assert clim.sizes["month"] == 12


def test_level_is_chosen_by_value_and_said(tmp_path: Path) -> None:
    paths = model_output.by_year(tmp_path, "360_day", range(2000, 2001))
    with xr.open_dataset(paths[0]) as ds:
        first, shown = workflow.select_level(ds.ta, None)
        assert shown is not None and shown["text"] == "plev = 100000 Pa"  # the first, when not asked
        _, shown = workflow.select_level(ds.ta, 26000.0)
        assert shown is not None and shown["value"] == 25000.0  # the nearest
        assert first.dims == ("time", "lat", "lon")
    flat = model_output.write(tmp_path, "flat.nc", model_output.dataset("noleap", 2000, 2, levels=False))
    with pytest.raises(DataError, match=r"--level 500: ta has no level dimension .*leave --level out"):
        workflow.check_variable(flat, None, 500.0)


def test_a_calendar_without_nc_time_axis_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "nc_time_axis" else real(n, *a)
    )
    paths = model_output.by_year(tmp_path, "360_day", range(2000, 2001))
    with pytest.raises(
        DataError, match=r"360_day calendar needs nc-time-axis: pip install 'dask-hpc\[xarray\]'"
    ):
        workflow.check_variable(paths[0], None)


def test_the_variable_is_the_field_not_its_bounds(tmp_path: Path) -> None:
    """CMOR writes time_bnds before the variable: the demo must pick the variable."""
    paths = model_output.by_year(tmp_path, "noleap", range(2000, 2001), variable="tas", levels=False)
    with xr.open_dataset(paths[0]) as ds:
        assert next(iter(ds.data_vars)) == "time_bnds"
    assert workflow.check_variable(paths[0], None) == "tas"


def test_a_level_needs_numbers_and_files(tmp_path: Path) -> None:
    from dask_hpc.demo.run import run_demo

    labelled = model_output.dataset("julian", 2000, 2).assign_coords(plev=["a", "b", "c", "d"])
    path = model_output.write(tmp_path, "labelled.nc", labelled)
    with xr.open_dataset(path) as ds:
        _, shown = workflow.select_level(ds.ta, None)
        assert shown is not None and shown["text"] == "plev = a"
    with pytest.raises(DataError, match=r"--level 3: plev of ta has no numbers to choose by"):
        workflow.check_variable(path, None, 3.0)
    with pytest.raises(DataError, match=r"--level 500 needs --data"):
        run_demo(level=500.0, output=tmp_path / "out")


def test_anomalies_keep_the_fields_chunks(tmp_path: Path, client: Any) -> None:
    """groupby arithmetic made a chunk per time step (7,900 tasks for 165 monthly years in
    6 chunks); the anomalies must keep the field's chunks, and the values of plain xarray."""
    paths = model_output.by_decade(tmp_path, "noleap", 1850, 1899, levels=False, variable="tas")
    ds = workflow.open_files(client, paths)
    field = ds.tas
    clim = workflow.climatology(field).persist()
    anomaly = workflow.anomalies(field, clim)
    assert anomaly.chunks == field.chunks
    assert anomaly.name == "tas_anomaly" and "month" not in anomaly.coords
    with dask.config.set(scheduler="sync"):
        plain = field.load()
        expected = plain.groupby("time.month") - plain.groupby("time.month").mean("time")
    np.testing.assert_allclose(anomaly.values, expected.values, rtol=1e-5, atol=1e-4)


def test_a_level_outside_the_coordinate_and_a_variable_of_dates_are_one_line(tmp_path: Path) -> None:
    paths = model_output.by_year(tmp_path, "360_day", range(2000, 2001))
    with pytest.raises(
        DataError, match=r"--level 500 is outside plev's values, 25000 to 100000 Pa; .* 50000"
    ):
        workflow.check_variable(paths[0], None, 500.0)
    with pytest.raises(
        DataError, match=r"variable 'time_bnds' holds object values, not numbers .* choose a field: ta"
    ):
        workflow.check_variable(paths[0], "time_bnds")
    with pytest.raises(
        DataError, match=r"no variable 'nosuch' in the files; their fields: ta \(every variable"
    ):
        workflow.check_variable(paths[0], "nosuch")
