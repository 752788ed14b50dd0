"""A synthetic sea-surface temperature dataset: one NetCDF file per day, like many real products.

The field is known exactly, so the demo (and its tests) can check what the
cluster computed: a meridional profile, a seasonal cycle of opposite sign in
the two hemispheres, a two-week warm event in the eastern Pacific in December
(something for the anomaly map to show), and noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dask
import numpy as np

from dask_hpc.files import private_directory

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

__all__ = [
    "FIRST_DAY",
    "GRID",
    "NOISE",
    "VARIABLE",
    "expected_climatology",
    "sst_day",
    "write_day",
    "write_files",
]

VARIABLE = "sst"
FIRST_DAY = np.datetime64("2001-01-01")
#: (lat, lon) points: 1-degree global grid, 0.25 MB a day in float32.
GRID = (180, 360)
NOISE = 0.5  # K, standard deviation, independent per point and day
EVENT_START, EVENT_DAYS = 335, 15  # the warm event: 2 to 17 December


def _axes(grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    nlat, nlon = grid
    lat = -90 + (np.arange(nlat) + 0.5) * 180 / nlat
    lon = (np.arange(nlon) + 0.5) * 360 / nlon
    return lat, lon


def _noise_free(day: int, grid: tuple[int, int]) -> np.ndarray:
    lat, lon = _axes(grid)
    phi = np.deg2rad(lat)[:, None]
    base = 271.35 + 30.0 * np.cos(phi) ** 2  # K: about 301 K at the equator, -1.8 °C at the poles
    season = 4.0 * np.sin(phi) * np.cos(2 * np.pi * (day - 200) / 365.25)  # warmest in August (north)
    # A warm event off Peru for two weeks of early December, peaking at +3 K.
    since = day - EVENT_START
    envelope = float(np.sin(np.pi * since / EVENT_DAYS)) if 0 <= since <= EVENT_DAYS else 0.0
    blob = 3.0 * envelope * np.exp(-(((lat[:, None] + 5) / 8) ** 2) - ((lon[None, :] - 265) / 20) ** 2)
    field: np.ndarray = (base + season + blob).astype(np.float32)
    return field


def sst_day(day: int, grid: tuple[int, int] = GRID) -> np.ndarray:
    """Day ``day``'s field (K), with its own reproducible noise."""
    noise = np.random.default_rng(day).normal(0.0, NOISE, grid).astype(np.float32)
    return _noise_free(day, grid) + noise


def day_dataset(day: int, grid: tuple[int, int] = GRID) -> xr.Dataset:
    import xarray as xr

    lat, lon = _axes(grid)
    time = np.array([FIRST_DAY + np.timedelta64(day, "D")], dtype="datetime64[ns]")
    field = xr.DataArray(
        sst_day(day, grid)[None],
        dims=("time", "lat", "lon"),
        attrs={
            "standard_name": "sea_surface_temperature",
            "long_name": "sea surface temperature (synthetic)",
            "units": "K",
        },
    )
    return xr.Dataset(
        {VARIABLE: field},
        coords={
            "time": ("time", time, {"standard_name": "time"}),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs={
            "title": "dask-hpc demo: synthetic daily SST",
            "source": "dask_hpc.demo.sst: profile + seasonal cycle + warm event + noise",
            "Conventions": "CF-1.8",
        },
    )


def write_day(directory: str, day: int, grid: tuple[int, int] = GRID) -> str:
    """Write day ``day`` to ``<directory>/sst_YYYYMMDD.nc``; return the path (runs on a worker)."""
    date = str(FIRST_DAY + np.timedelta64(day, "D")).replace("-", "")
    path = Path(directory) / f"sst_{date}.nc"
    # In a task, xarray would guard the write with a lock held by the scheduler (a round trip
    # per variable written: 60 ms a file here). Each task writes its own file: a local lock will do.
    with dask.config.set(scheduler="synchronous"):
        day_dataset(day, grid).to_netcdf(path, engine="netcdf4")
    return str(path)


def write_files(client: Client, directory: Path, n: int, grid: tuple[int, int] = GRID) -> list[str]:
    """Write ``n`` days, in parallel on the cluster's workers (the directory must be shared)."""
    private_directory(directory)
    futures = client.map(write_day, [str(directory)] * n, range(n), [grid] * n, pure=False)
    return sorted(client.gather(futures))


def expected_climatology(days: int, grid: tuple[int, int] = GRID) -> dict[int, tuple[np.ndarray, int]]:
    """For each month number: the exact mean of the noise-free field over its days among
    days 0..days-1, and how many days that is."""
    months = (FIRST_DAY + np.arange(days).astype("timedelta64[D]")).astype("datetime64[M]")
    numbers = months.astype(int) % 12 + 1
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for day, month in enumerate(numbers):
        m = int(month)
        sums[m] = sums.get(m, 0) + _noise_free(day, grid).astype(np.float64)
        counts[m] = counts.get(m, 0) + 1
    return {m: (sums[m] / counts[m], counts[m]) for m in sums}
