"""Opening many NetCDF files and computing on them: a dask-hpc session against serial xarray.

What a user waits for is the open *and* the computation: here a global mean of
the daily SST files (dask_hpc.demo.sst: 180 x 360 float32, one day per file, 260 KB).
Three ways, the same files, the same xarray options (xarray's defaults):

* ``serial``: ``xr.open_mfdataset`` in this process and dask's threaded
  scheduler, as on a laptop (the workers sit idle);
* ``dask-hpc``: ``dask_hpc.open_mfdataset`` on the session's workers (a batch
  of files per open-task, chunks of a batch of files), the mean on the
  workers; every file forgotten by every process before each round (cold);
* ``dask-hpc again``: the same call once more (not timed: a first one, left
  open), as when a notebook cell is run again: each open-task goes to the
  worker that opened its files, which still holds their decoded structure.

The open alone is reported beside open + compute. Same run, alternating round
by round, medians; the workers (one per core, each its own worker job on the
``local`` system) have opened a file once before timing, as the serial side has
imported xarray. The values are checked equal.

    python bench/open_many.py [--files 100,365] [--rounds 5] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _results import machine, write

HOWS = ("serial", "dask-hpc", "dask-hpc again")


def dask_hpc(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "dask_hpc", *args], env=env, check=True, timeout=300)


def timed(files: list[str], how: str, client: Any) -> tuple[float, float, float]:
    """(seconds to open, seconds to open and compute, the mean)."""
    import dask
    import xarray as xr

    import dask_hpc
    from dask_hpc.data.reader import forget

    forget()
    client.run(forget)
    if how == "dask-hpc again":  # a first open, left open (a notebook cell run before)
        dask_hpc.open_mfdataset(files, client=client)
    t0 = time.perf_counter()
    if how == "serial":
        ds = xr.open_mfdataset(files)
        opened = time.perf_counter()
        with dask.config.set(scheduler="threads"):
            mean = float(ds.sst.mean())
    else:
        ds = dask_hpc.open_mfdataset(files, client=client)
        opened = time.perf_counter()
        mean = float(ds.sst.mean().compute())
    done = time.perf_counter()
    assert ds.sizes["time"] == len(files)
    ds.close()
    return opened - t0, done - t0, mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="100,365")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    counts = [int(n) for n in args.files.split(",")]
    warnings.simplefilter("ignore", FutureWarning)  # xarray's notes on its coming defaults, both sides

    import xarray as xr

    from dask_hpc import connect, sst

    root = Path(tempfile.mkdtemp(prefix="dask-hpc-bench-open-"))
    env = {
        **os.environ,
        "DASK_HPC_SESSIONS": str(root / "sessions"),
        "DASK_HPC_LOCAL_SPOOL": str(root / "spool"),
    }
    os.environ.update(env)
    dask_hpc(
        "up", "--name", "bench", "--workers", str(args.workers), "--wait", "120", "--memory", "2GiB", env=env
    )
    results: list[dict[str, Any]] = []
    try:
        client = connect("bench")
        files = sst.write_files(client, root / "data", max(counts))
        # Warm both sides alike: xarray imported and one file opened, here and on every worker.
        xr.open_dataset(files[0]).close()
        client.run(lambda: xr.open_dataset(files[0]).close())
        for n in counts:
            subset = files[:n]
            times: dict[str, list[tuple[float, float, float]]] = {how: [] for how in HOWS}
            for _ in range(args.rounds):
                for how in HOWS:
                    times[how].append(timed(subset, how, client))
            means = {round(t[2], 4) for ts in times.values() for t in ts}
            assert len(means) == 1, f"the means differ: {means}"
            row: dict[str, Any] = {"files": n}
            for how, ts in times.items():
                row[how] = {
                    "open": statistics.median(t[0] for t in ts),
                    "open_and_compute": statistics.median(t[1] for t in ts),
                    "all": [[t[0], t[1]] for t in ts],
                }
            serial = row["serial"]
            for how in HOWS[1:]:
                row[how]["speedup"] = serial["open_and_compute"] / row[how]["open_and_compute"]
                row[how]["speedup_open"] = serial["open"] / row[how]["open"]
            results.append(row)
            print(
                f"{n:5d} files: "
                + ", ".join(
                    f"{how} {row[how]['open']:.2f} s + compute = {row[how]['open_and_compute']:.2f} s"
                    for how in HOWS
                ),
                flush=True,
            )
        client.close()
    finally:
        dask_hpc("down", "--name", "bench", env=env)
    print(
        "\n| files | serial xarray: open / open + mean | dask-hpc (cold) | speedup | "
        "dask-hpc, the same files again | speedup |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        cells = [f"{r['serial']['open']:.2f} s / {r['serial']['open_and_compute']:.2f} s"]
        for how in HOWS[1:]:
            cells.append(f"{r[how]['open']:.2f} s / {r[how]['open_and_compute']:.2f} s")
            cells.append(f"**{r[how]['speedup']:.2f}x** (open {r[how]['speedup_open']:.2f}x)")
        print(f"| {r['files']} | " + " | ".join(cells) + " |")
    write(
        "open_many",
        {
            "machine": machine(xarray=xr.__version__, netCDF4=__import__("netCDF4").__version__),
            "workers": args.workers,
            "rounds": args.rounds,
            "grid": list(sst.GRID),
            "computation": "ds.sst.mean()",
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
