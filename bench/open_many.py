"""Opening many NetCDF files: in parallel on a dask-hpc session's workers against serial.

Three ways, the same options, the same daily SST files (dask_hpc.sst: 180 x
360 float32, one day per file): plain serial ``xr.open_mfdataset`` in this
process (as on a laptop); xarray's ``parallel=True`` on the session (a task per
file, combined here); ``dask_hpc.open_mfdataset`` (a batch of files per task,
opened and combined on the workers). Same run, alternating round by round,
medians. The workers (one per core, each its own
worker job on the ``local`` system) have opened a file once before timing, as
the serial side has imported xarray.

    python bench/open_many.py [--files 100,365,1000] [--rounds 5] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import machine, write

OPTIONS = {"combine": "by_coords", "data_vars": "minimal", "coords": "minimal", "compat": "override"}
HOWS = ("serial", "xarray-parallel", "dask-hpc")


def dask_hpc(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "dask_hpc", *args], env=env, check=True, timeout=300)


def timed_open(files: list[str], how: str) -> float:
    """Seconds to open ``files`` as one dataset: ``serial`` (xarray, here), ``xarray-parallel``
    (xarray's parallel=True: a task per file), or ``dask-hpc`` (a batch of files per task)."""
    import xarray as xr

    import dask_hpc

    t0 = time.perf_counter()
    if how == "dask-hpc":
        ds = dask_hpc.open_mfdataset(files, **OPTIONS)
    else:
        ds = xr.open_mfdataset(files, parallel=how == "xarray-parallel", **OPTIONS)
    seconds = time.perf_counter() - t0
    assert ds.sizes["time"] == len(files)
    ds.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="100,365,1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    counts = [int(n) for n in args.files.split(",")]

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
        data = root / "data"
        files = sst.write_files(client, data, max(counts))
        # Warm both sides alike: xarray imported and one file opened, here and on every worker.
        xr.open_dataset(files[0]).close()
        client.run(lambda: xr.open_dataset(files[0]).close())
        for n in counts:
            subset = files[:n]
            times: dict[str, list[float]] = {how: [] for how in HOWS}
            for _ in range(args.rounds):
                for how in HOWS:
                    times[how].append(timed_open(subset, how))
            median = {how: statistics.median(t) for how, t in times.items()}
            row = {
                "files": n,
                **median,
                "speedup": median["serial"] / median["dask-hpc"],
                "speedup_xarray_parallel": median["serial"] / median["xarray-parallel"],
                "all": times,
            }
            results.append(row)
            print(
                f"{n:5d} files: "
                + ", ".join(
                    f"{how} {statistics.median(t):.2f} s ({min(t):.2f}-{max(t):.2f})"
                    for how, t in times.items()
                )
                + f"; dask-hpc speedup {row['speedup']:.2f}x",
                flush=True,
            )
        client.close()
    finally:
        dask_hpc("down", "--name", "bench", env=env)
    print(
        "\n| files | serial | xarray `parallel=True` (task per file) | `dask_hpc.open_mfdataset` | speedup |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['files']} | {r['serial']:.2f} s | {r['xarray-parallel']:.2f} s "
            f"({r['speedup_xarray_parallel']:.2f}x) | {r['dask-hpc']:.2f} s | **{r['speedup']:.2f}x** |"
        )
    write(
        "open_many",
        {
            "machine": machine(xarray=xr.__version__, netCDF4=__import__("netCDF4").__version__),
            "workers": args.workers,
            "rounds": args.rounds,
            "grid": list(sst.GRID),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
