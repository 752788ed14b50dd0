"""Small files shaped like real model output (CMIP6 conventions), written here for the tests.

What real files have and the tests need: global attributes that differ file by
file (``tracking_id``, ``creation_date``, ``history``), every CF calendar, a 4-D
variable ``ta(time, plev, lat, lon)``, ``time_bnds``/``lat_bnds``/``lon_bnds``,
time units that differ file by file ("days since" the file's first day, as some
models write), and files split by year or by decade (different lengths).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import xarray as xr

#: Every calendar of the CF conventions (1.11, section 4.4.1), by the names models write.
CALENDARS = (
    "standard",
    "gregorian",
    "proleptic_gregorian",
    "noleap",
    "365_day",
    "all_leap",
    "366_day",
    "360_day",
    "julian",
)
PLEV = np.array([100000.0, 85000.0, 50000.0, 25000.0])  # Pa


def grid(nlat: int = 6, nlon: int = 8) -> tuple[np.ndarray, np.ndarray]:
    lat = -90 + (np.arange(nlat) + 0.5) * 180 / nlat
    lon = (np.arange(nlon) + 0.5) * 360 / nlon
    return lat, lon


def times(calendar: str, start: int, months: int, *, daily: bool = False) -> list[object]:
    """Mid-month (or each day's noon) dates of ``months`` months from January of ``start``."""
    import cftime

    kind = cftime.datetime
    out: list[object] = []
    for m in range(months):
        year, month = start + m // 12, m % 12 + 1
        if daily:
            first = kind(year, month, 1, 12, calendar=calendar)
            following = kind(year + month // 12, month % 12 + 1, 1, 12, calendar=calendar)
            day = first
            while day < following:
                out.append(day)
                day = day + __import__("datetime").timedelta(days=1)
        else:
            out.append(kind(year, month, 15, calendar=calendar))
    return out


def dataset(
    calendar: str,
    start: int,
    months: int,
    *,
    variable: str = "ta",
    levels: bool = True,
    daily: bool = False,
    nlat: int = 6,
    nlon: int = 8,
    seed: int = 0,
) -> xr.Dataset:
    """One file's worth: ``variable`` with a seasonal cycle + noise, and its bounds."""
    import cftime

    lat, lon = grid(nlat, nlon)
    when = times(calendar, start, months, daily=daily)
    units = f"days since {start}-01-01 00:00:00"  # the file's own reference date
    numbers = cftime.date2num(when, units, calendar=calendar)
    rng = np.random.default_rng(seed + start * 1000 + months)
    season = np.cos(2 * np.pi * (np.array([t.dayofyr for t in when]) - 200) / 365.0)  # type: ignore[attr-defined]
    shape: tuple[int, ...] = (len(when), len(PLEV), nlat, nlon) if levels else (len(when), nlat, nlon)
    base = 250.0 + 10.0 * season.reshape((-1,) + (1,) * (len(shape) - 1))
    values = (base + rng.normal(0, 1, shape)).astype(np.float32)
    dims = ("time", "plev", "lat", "lon") if levels else ("time", "lat", "lon")
    half = np.full(len(when), 0.5 if daily else 15.0)
    ds = xr.Dataset(
        {  # in CMOR's order: the bounds before the variable
            "time_bnds": (("time", "bnds"), np.stack([numbers - half, numbers + half], axis=1)),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - 90 / nlat, lat + 90 / nlat], axis=1)),
            "lon_bnds": (("lon", "bnds"), np.stack([lon - 180 / nlon, lon + 180 / nlon], axis=1)),
            variable: (
                dims,
                values,
                {"standard_name": "air_temperature", "units": "K", "cell_methods": "time: mean"},
            ),
        },
        coords={
            "time": (
                "time",
                numbers,
                {"units": units, "calendar": calendar, "bounds": "time_bnds", "axis": "T"},
            ),
            "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds", "axis": "Y"}),
            "lon": ("lon", lon, {"units": "degrees_east", "bounds": "lon_bnds", "axis": "X"}),
        },
        attrs={
            "Conventions": "CF-1.7 CMIP-6.2",
            "source_id": "DASKHPC-TEST",
            "frequency": "day" if daily else "mon",
            "tracking_id": f"hdl:21.14100/{uuid.UUID(int=int(rng.integers(2**62)))}",
            "creation_date": f"2019-0{1 + start % 9}-1{start % 10}T00:00:00Z",
            "history": f"{start}: written by tests/data/model_output.py",
        },
    )
    if levels:
        ds = ds.assign_coords(plev=("plev", PLEV, {"units": "Pa", "positive": "down", "axis": "Z"}))
    else:  # near-surface fields carry their height as a scalar coordinate
        ds = ds.assign_coords(height=((), 2.0, {"units": "m", "axis": "Z", "positive": "up"}))
    ds["time_bnds"].attrs = {}
    return ds


def write(directory: Path, name: str, ds: xr.Dataset) -> str:
    """Write ``ds`` undecoded (its times are numbers already), the way models write NetCDF-4."""
    path = directory / name
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4")
    return str(path)


def by_year(directory: Path, calendar: str, years: range, **options: object) -> list[str]:
    """One file per year, named as CMIP names them."""
    directory.mkdir(parents=True, exist_ok=True)
    variable = str(options.get("variable", "ta"))
    return [
        write(
            directory,
            f"{variable}_Amon_DASKHPC_{calendar}_{y}01-{y}12.nc",
            dataset(calendar, y, 12, **options),  # type: ignore[arg-type]
        )
        for y in years
    ]


def by_decade(directory: Path, calendar: str, first: int, last: int, **options: object) -> list[str]:
    """Files of ten years each (the last one shorter), as many models split long runs."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(first, last + 1, 10):
        end = min(start + 9, last)
        paths.append(
            write(
                directory,
                f"ta_Amon_DASKHPC_{calendar}_{start}01-{end}12.nc",
                dataset(calendar, start, 12 * (end - start + 1), **options),  # type: ignore[arg-type]
            )
        )
    return paths
