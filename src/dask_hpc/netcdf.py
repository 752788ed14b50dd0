"""Opening many NetCDF files on the cluster's workers, in batches.

``xr.open_mfdataset(..., parallel=True)`` makes one task per file and then
combines every file's dataset in the client, one by one. With files that open
in ~10 ms (most daily or monthly products), the per-task overhead and that
serial combine eat the gain: on our 2-core machine it was slower than opening
serially (bench/open_many.py). Here each task opens and combines a batch of
consecutive files with ``xr.open_mfdataset`` on a worker, and the client
combines a few batches: the per-file work is spread over all workers, and
the serial part shrinks with the number of batches, not of files.

The result is the same lazy dataset (one chunk per file, backed by the files)
as ``xr.open_mfdataset`` gives.
"""

from __future__ import annotations

import glob
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

__all__ = ["batches", "open_mfdataset"]

#: Batches per worker thread: more than one, so that a slow worker does not hold everyone up.
BATCHES_PER_THREAD = 2
#: Fewer files than this in a batch do not pay for its task.
MIN_BATCH = 8
#: What is passed on to the combine of the batches, when given.
COMBINE_OPTIONS = ("data_vars", "coords", "compat", "join", "combine_attrs")


def batches(paths: Sequence[str], threads: int) -> list[list[str]]:
    """Consecutive slices of ``paths``: about ``BATCHES_PER_THREAD`` per thread, at least
    ``MIN_BATCH`` files each."""
    n = max(1, min(threads * BATCHES_PER_THREAD, len(paths) // MIN_BATCH))
    size = math.ceil(len(paths) / n)
    return [list(paths[i : i + size]) for i in range(0, len(paths), size)]


#: HDF5 (under netCDF4) is not thread-safe, and xarray locks its reads but not its opens:
#: two threads of one worker opening files at once can crash the process. One batch at a time.
_OPEN_LOCK = threading.Lock()


def _open_batch(paths: list[str], options: dict[str, Any]) -> xr.Dataset:
    import xarray as xr

    with _OPEN_LOCK:
        return xr.open_mfdataset(paths, parallel=False, **options)


def open_mfdataset(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    client: Client | None = None,
    **options: Any,
) -> xr.Dataset:
    """``xr.open_mfdataset(paths, **options)``, the files opened by the workers of ``client``
    (the default client if None), a batch of consecutive files per task.

    ``paths`` is a glob (sorted, as xarray does) or a list, in the order to
    combine them. ``combine`` is ``"by_coords"`` (xarray's default) or
    ``"nested"`` with ``concat_dim`` (one dimension: batches are concatenated
    along it).
    """
    import xarray as xr
    from distributed import default_client

    client = client or default_client()
    if isinstance(paths, (str, os.PathLike)):
        files = sorted(glob.glob(os.path.expanduser(str(paths))))
    else:
        files = [str(Path(p)) for p in paths]
    if not files:
        raise OSError(f"no files to open: {paths!r}")
    if options.get("parallel"):
        raise TypeError("parallel= is implied: the files are opened on the workers")
    combine = options.get("combine", "by_coords")
    if combine not in ("by_coords", "nested"):
        raise ValueError(f"combine={combine!r}: use 'by_coords' or 'nested'")
    dim = options.get("concat_dim")
    if combine == "nested" and not isinstance(dim, str):
        raise ValueError("combine='nested' needs concat_dim= one dimension name")
    threads = sum(client.nthreads().values()) or 1
    futures = client.map(_open_batch, batches(files, threads), options=options, pure=False)
    parts = client.gather(futures)
    if len(parts) == 1:
        single: xr.Dataset = parts[0]
        return single
    given = {k: options[k] for k in COMBINE_OPTIONS if k in options}
    if combine == "nested":
        assert isinstance(dim, str)
        nested = xr.concat(parts, dim=dim, **given)
        assert isinstance(nested, xr.Dataset)
        return nested
    combined = xr.combine_by_coords(parts, **given)
    assert isinstance(combined, xr.Dataset)
    return combined
