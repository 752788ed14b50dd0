"""The Pangeo workflow of the demo, one step at a time: open many NetCDF files in parallel,
persist them in the workers' memory, a monthly climatology and anomalies, publish the
result for other clients, and a figure.

Each step is a plain function of a Client and xarray objects, so that the
example script and notebook in ``examples/`` read the same way.
"""

from __future__ import annotations

import glob
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask_hpc.errors import DataError

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

__all__ = [
    "anomalies",
    "check_variable",
    "choose_variable",
    "climatology",
    "find_files",
    "global_mean",
    "open_files",
    "plot",
    "publish_and_fetch",
    "select_level",
]

#: What NetCDF files start with: classic and 64-bit offset (CDF\x01, \x02), CDF-5, and NetCDF-4 (HDF5).
SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
#: Dimensions of cell boundaries, as models name them (CF 7.1: the vertex dimension).
BOUNDS_DIMENSIONS = {"bnds", "bnd", "nbnd", "nbnds", "bounds", "nv", "vertices", "nvertex", "d2"}


def find_files(pattern: str) -> list[str]:
    """The NetCDF files of a directory or a glob, sorted; a clear error if there are none,
    or if one of them is not NetCDF."""
    path = Path(pattern).expanduser().absolute()  # as typed here: the workers run elsewhere
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"no NetCDF files ({', '.join(SUFFIXES)}) in the directory {pattern}")
    else:
        files = sorted(p for p in glob.glob(str(path)) if Path(p).is_file())
        if not files:
            raise DataError(
                f"no files match {pattern!r}; give a directory or a glob such as '/data/sst_*.nc' "
                "(quoted, so that the shell does not expand it)"
            )
    for file in files:
        with open(file, "rb") as f:
            head = f.read(8)
        if not head.startswith(SIGNATURES):
            raise DataError(
                f"{file} is not a NetCDF file (it starts with {head[:4]!r}); remove it or narrow the pattern"
            )
    return files


def check_variable(file: str, name: str | None, level: float | None = None) -> str:
    """The variable to analyse, found in one file (fast, here), before any job starts; and
    ``level``, if given, checked against it."""
    import xarray as xr

    try:
        with xr.open_dataset(file) as ds:
            chosen = choose_variable(ds, name)
            select_level(ds[chosen], level)
            _can_draw(ds[chosen])
            return chosen
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"could not open {file}: {type(exc).__name__}: {exc}") from None


def open_files(client: Client, files: list[str]) -> xr.Dataset:
    """Open the files as one dataset, on the workers, a batch of files per task
    (:func:`dask_hpc.open_mfdataset`): chunks of a batch of files. The options are the usual ones
    for many files of one product: only the variables with a time axis are
    concatenated, the others taken from the first file."""
    from dask_hpc.data import open_mfdataset

    try:
        return open_mfdataset(
            files,
            client=client,
            combine="by_coords",
            data_vars="minimal",
            coords="minimal",
            compat="override",
        )
    except Exception as exc:  # the files' own problem: say which, not a traceback from a worker
        raise DataError(
            f"could not open the {len(files)} files as one dataset: {type(exc).__name__}: {exc}"
        ) from None


def choose_variable(ds: xr.Dataset, name: str | None) -> str:
    """``name`` if the dataset has it; otherwise its largest variable with a time axis and
    space that is not a cell boundary (CF's ``bounds``: CMOR writes ``time_bnds`` first)."""
    import numpy as np

    if name is not None:
        if name not in ds.data_vars:
            raise DataError(
                f"no variable {name!r} in the files; their fields: {', '.join(_fields(ds)) or 'none'} "
                f"(every variable: {', '.join(map(str, ds.data_vars))})"
            )
        if "time" not in ds[name].dims:
            dims = ", ".join(map(str, ds[name].dims))
            raise DataError(f"variable {name!r} has no time dimension (its dimensions: {dims})")
        if not np.issubdtype(ds[name].dtype, np.number):
            raise DataError(
                f"variable {name!r} holds {ds[name].dtype} values, not numbers (cell boundaries or dates?); "
                f"choose a field: {', '.join(_fields(ds)) or 'none has a time axis'}"
            )
        return name
    fields = _fields(ds)
    if fields:
        return fields[0]
    raise DataError(
        f"no variable with a time dimension in the files; give one with --var "
        f"(their variables: {', '.join(map(str, ds.data_vars))})"
    )


def _fields(ds: xr.Dataset) -> list[str]:
    """The variables worth a map: a time axis and space, numbers, not a cell boundary (CF's
    ``bounds``: CMOR writes ``time_bnds`` first); the largest first."""
    import numpy as np

    bounds = {str(v.attrs.get("bounds", v.encoding.get("bounds", ""))) for v in ds.variables.values()}
    fields = [
        (array.size, str(var))
        for var, array in ds.data_vars.items()
        if "time" in array.dims
        and array.ndim >= 2
        and str(var) not in bounds
        and not set(map(str, array.dims)) & BOUNDS_DIMENSIONS
        and np.issubdtype(array.dtype, np.number)
    ]
    return [name for _, name in sorted(fields, key=lambda f: -f[0])]


def select_level(field: xr.DataArray, level: float | None) -> tuple[xr.DataArray, dict[str, Any] | None]:
    """The field at one level, if it has dimensions besides time and the two horizontal ones
    (the last two, as CF files lay them out): ``level`` picks the nearest coordinate value
    of the first such dimension, else its first value is shown; any other such dimension
    shows its first. Returns the field and what was chosen (for the report and the figure),
    or None when there is nothing to choose."""
    import numpy as np

    extra = [d for d in field.dims[:-2] if d != "time"]
    if not extra:
        if level is not None:
            raise DataError(
                f"--level {level:g}: {field.name} has no level dimension (its dimensions: "
                f"{', '.join(map(str, field.dims))}); leave --level out"
            )
        return field, None
    dim = extra[0]
    values = field[dim].values if dim in field.coords else None
    if level is None:
        position = 0
    elif values is not None and np.issubdtype(values.dtype, np.number):
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if not low <= level <= high:  # 500 for 500 hPa where the file says Pa: a guess is not nearest
            units = field[dim].attrs.get("units", "")
            hint = f"; in {units}, 500 hPa is 50000" if units == "Pa" else ""
            raise DataError(
                f"--level {level:g} is outside {dim}'s values, {low:g} to {high:g} {units}".rstrip()
                + f"; give a level in the file's units{hint}"
            )
        position = int(np.nanargmin(np.abs(values - level)))  # nearest, in any order
    else:
        raise DataError(
            f"--level {level:g}: {dim} of {field.name} has no numbers to choose by "
            f"({'no coordinate' if values is None else values.dtype}); leave --level out"
        )
    chosen = field.isel({d: (position if d == dim else 0) for d in extra})
    value = chosen[dim].values.item() if dim in chosen.coords else position
    if not isinstance(value, (int, float)):
        value = str(value)  # a date or a label: as text, in the figure and in demo.json
    units = chosen[dim].attrs.get("units", "") if dim in chosen.coords else ""
    shown = {"dimension": str(dim), "value": value, "units": units, "asked": level}
    shown["text"] = (
        f"{dim} = {value:g} {units}".rstrip() if isinstance(value, (int, float)) else f"{dim} = {value}"
    )
    return chosen, shown


def climatology(field: xr.DataArray) -> xr.DataArray:
    """Mean of each calendar month over all years."""
    return field.groupby("time.month").mean("time")


def anomalies(field: xr.DataArray, clim: xr.DataArray) -> xr.DataArray:
    """Each time step minus the climatology of its month, chunk by chunk: the anomalies keep
    the field's chunks. (``field.groupby("time.month") - clim`` made a chunk per time step:
    7,900 tasks for 165 years of monthly data in 6 chunks, 10 s on two workers.)"""

    def minus_its_month(block: xr.DataArray, clim: xr.DataArray) -> xr.DataArray:
        month = clim.sel(month=block["time"].dt.month).drop_vars("month")
        difference: xr.DataArray = block - month
        return difference

    # Each block gets the blocks of its arguments: all twelve months, and the block's own space.
    chunks: dict[Any, Any] = {"month": -1, **{d: c for d, c in field.chunksizes.items() if d in clim.dims}}
    anomaly: xr.DataArray = field.map_blocks(minus_its_month, args=[clim.chunk(chunks)], template=field)
    anomaly.attrs = {**field.attrs, "long_name": f"{field.attrs.get('long_name', field.name)} anomaly"}
    named: xr.DataArray = anomaly.rename(f"{field.name}_anomaly")
    return named


def global_mean(field: xr.DataArray) -> xr.DataArray:
    """Area-weighted mean over latitude and longitude (cos(latitude) weights), when those exist."""
    import numpy as np

    space = [d for d in field.dims if d != "time"]
    lat = next((d for d in space if str(d).lower().startswith("lat")), None)
    if lat is None:
        mean: xr.DataArray = field.mean(space)
        return mean
    weights = np.cos(np.deg2rad(field[lat]))
    weighted: xr.DataArray = field.weighted(weights).mean(space)
    return weighted


def plot(anomaly: xr.DataArray, series: xr.DataArray, path: Path, where: str = "") -> dict[str, Any]:
    """A PNG: the anomaly map of the day with the largest global-mean anomaly, and the
    global-mean anomaly against time. ``series`` is computed already (small); ``where``
    says which level the field is at. Times of any CF calendar: numpy's, or cftime's
    (drawn by nc-time-axis, part of the ``xarray`` extra)."""
    import matplotlib

    _can_draw(series)

    matplotlib.use("Agg")  # no display on a compute or login node
    import matplotlib.pyplot as plt

    peak = series["time"][int(series.values.argmax())]
    day = anomaly.sel(time=peak).compute()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), height_ratios=[3, 2], layout="constrained")
    limit = float(abs(day).max()) or 1.0
    if day.ndim == 2:
        day.plot(ax=top, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        day.plot(ax=top)
    when = str(peak.values)[:10]
    at = f" at {where}" if where else ""
    top.set_title(f"{anomaly.name}{at} on {when}, the step of the largest global-mean anomaly")
    series.plot.line(ax=bottom)
    bottom.axvline(peak.values[()], color="grey", linewidth=0.5)  # a scalar: cftime dates too
    bottom.axhline(0, color="grey", linewidth=0.5)
    bottom.set_title(f"global mean (area-weighted){at}")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return {"path": str(path), "peak_day": when, "map_max": float(day.max()), "map_min": float(day.min())}


def _can_draw(array: xr.DataArray) -> None:
    """Times of a calendar that numpy's datetime64 cannot hold (360_day, noleap, ...) are
    cftime's, which matplotlib draws with nc-time-axis: say so before any job starts."""
    cftime = "time" in array.coords and array["time"].dtype == object
    if cftime and importlib.util.find_spec("nc_time_axis") is None:
        calendar = array["time"].dt.calendar
        raise DataError(
            f"the figure of times in the {calendar} calendar needs nc-time-axis: "
            "pip install 'dask-hpc[xarray]'"
        )


def publish_and_fetch(client: Client, anomaly: xr.DataArray, other: Client) -> tuple[int, ...]:
    """Publish ``anomaly`` on the scheduler under its name (``sst_anomaly``, ``ta_anomaly``),
    and fetch it from ``other``, another client (another notebook would do the same).
    Returns the shape the other client sees."""
    name = str(anomaly.name)
    if name in client.list_datasets():
        client.unpublish_dataset(name)
    client.publish_dataset(anomaly, name=name)
    fetched = other.get_dataset(name)
    return tuple(int(n) for n in fetched.shape)
