"""``dask_hpc.open_mfdataset``: ``xr.open_mfdataset`` with the files opened by the cluster's
workers, a batch of files per task, and chunks of a batch of files.

The steps are xarray's own (``xarray/backends/api.py``), with xarray's helpers
for the paths and the nesting, and the same combine over the same per-file
datasets, so that the result is xarray's: the same values, coordinates,
attributes and encodings, for every option xarray takes. Three things differ,
on purpose:

* each file is opened on a worker, a batch of consecutive files per task
  (one task per file, xarray's ``parallel=True``, costs more than the open
  of a small file);
* the files' arrays are read by :class:`~dask_hpc.data.reader.FilesArray`
  (paths and names) rather than xarray's lazy arrays, which crash workers
  when two threads touch HDF5 (see ``reader.py``);
* where the combine only laid the files' arrays end to end, a chunk holds a
  batch of files rather than one (``batches.py``). ``chunks=`` is still
  honoured within a file; only the chunks that were whole files are joined.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from dask_hpc.data.batches import batch_chunks
from dask_hpc.data.reader import FilesArray, Opened, Opening, forget, open_files

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

__all__ = ["BATCHES_PER_THREAD", "MIN_BATCH", "batches", "open_mfdataset"]

#: Open-tasks per worker thread: more than one, so that a slow worker does not hold everyone up.
BATCHES_PER_THREAD = 2
#: Fewer files than this in an open-task do not pay for the task.
MIN_BATCH = 8


class _XarrayDefault:
    """The default of ``compat``, ``data_vars``, ``coords`` and ``join``: xarray's own
    (which xarray is changing, with warnings: see ``xr.set_options(use_new_combine_kwarg_defaults=...)``)."""

    def __repr__(self) -> str:
        return "<xarray's default>"


XARRAY_DEFAULT: Any = _XarrayDefault()


def batches(paths: list[Any], threads: int) -> list[list[Any]]:
    """Consecutive slices of ``paths``: about ``BATCHES_PER_THREAD`` per thread, at least
    ``MIN_BATCH`` files each."""
    n = max(1, min(threads * BATCHES_PER_THREAD, len(paths) // MIN_BATCH))
    size = math.ceil(len(paths) / n)
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def open_mfdataset(
    paths: Any,
    chunks: Any = None,
    concat_dim: Any = None,
    compat: Any = XARRAY_DEFAULT,
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None = None,
    engine: Any = None,
    data_vars: Any = XARRAY_DEFAULT,
    coords: Any = XARRAY_DEFAULT,
    combine: str = "by_coords",
    parallel: bool = True,
    join: Any = XARRAY_DEFAULT,
    attrs_file: str | os.PathLike[str] | None = None,
    combine_attrs: Any = "override",
    errors: str = "raise",
    *,
    client: Client | None = None,
    **kwargs: Any,
) -> xr.Dataset:
    """``xr.open_mfdataset(paths, ...)``, each file opened on a worker of ``client`` (the
    default client if None), a batch of files per task.

    Takes every argument of :func:`xarray.open_mfdataset`, with its defaults, and any
    argument of :func:`xarray.open_dataset` (``decode_times``, ``decode_cf``,
    ``drop_variables``, ``mask_and_scale``, ...), and gives the same dataset:
    values, coordinates, attributes, encodings and warnings (those of each file's
    open are given again here, in the files' order), checked with
    ``xr.testing.assert_identical`` over a matrix of files and options
    (``tests/data/test_open_mfdataset.py``). ``compat``, ``data_vars``, ``coords`` and
    ``join`` left out take xarray's defaults (this xarray's, with its warnings).

    Differences: ``parallel`` is ignored (the files are always opened on the
    workers); a variable that the combine built by laying the files' arrays end
    to end is in chunks of several files (dask's ``array.chunk-size`` at most,
    and at least four chunks per worker thread), not one chunk per file; and the
    dataset's arrays read the files through dask-hpc's reader, one file
    operation at a time per process (HDF5 is not thread-safe). The files must be
    readable from the workers and from here (as for xarray: the combine may
    compare values). Each worker keeps the decoded structure of the files it opened
    (``reader.KEEP_OPENED`` at most), so opening them again skips the decode;
    ``ds.close()`` forgets them, here and on the workers.

    Raises what xarray raises: ``OSError("no files to open")``, an opening
    error of the first file that fails (``errors="raise"``), the combine's
    ``ValueError``.
    """
    import dask
    import xarray as xr
    from dask.base import tokenize
    from distributed import default_client
    from xarray.backends.common import _find_absolute_paths
    from xarray.structure.combine import _infer_concat_order_from_positions, _nested_combine

    client = client or default_client()
    paths = _find_absolute_paths(paths, engine=engine, **kwargs)
    if not paths:
        raise OSError("no files to open")
    if combine == "nested":
        if isinstance(concat_dim, (str, xr.DataArray)) or concat_dim is None:
            concat_dim = [concat_dim]
        ids_paths = _infer_concat_order_from_positions(paths)
        ids, paths1d = list(ids_paths.keys()), list(ids_paths.values())
    elif concat_dim is not None:
        raise ValueError(
            "When combine='by_coords', passing a value for `concat_dim` has no effect. To manually "
            "combine along a specific dimension you should instead specify combine='nested' along "
            "with a value for `concat_dim`."
        )
    else:
        paths1d = list(paths)
    if errors not in ("raise", "warn", "ignore"):
        raise ValueError(f"'errors' must be 'raise', 'warn' or 'ignore', got '{errors}'")

    opening = Opening(
        engine=engine,
        chunks=chunks or {},
        options=kwargs,
        preprocess=preprocess,
        token=tokenize(engine, chunks or {}, kwargs, preprocess),
    )
    threads = sum(client.nthreads().values()) or 1
    alive = client.nthreads()
    futures = [_submit(client, batch, opening, alive) for batch in batches(paths1d, threads)]
    parts: list[list[Opened]] = client.gather(futures)
    opened = [o for part in parts for o in part]
    _remember_where(client, futures, [[o.path for o in part] for part in parts])

    datasets: list[xr.Dataset] = []
    invalid = []
    for item in opened:
        for category, text in item.warned:  # what each open said, in the files' order, as in xarray
            warnings.warn(text, category, stacklevel=2)
        if item.dataset is not None:
            datasets.append(item.dataset)
            continue
        assert item.error is not None
        if errors == "raise":
            raise item.error
        if errors == "warn":
            warnings.warn(
                f"Could not open {item.path} due to {item.error}. Ignoring.", UserWarning, stacklevel=2
            )
        invalid.append(item.path)
    good = [item for item in opened if item.dataset is not None]
    if invalid and combine == "nested":
        from xarray.backends.api import _remove_path

        ids = list(_infer_concat_order_from_positions(_remove_path(paths, set(invalid))).keys())

    # The combine may compare or load small variables: read here, from the files, as xarray
    # would, rather than one round trip to the cluster per comparison.
    with dask.config.set(scheduler="sync"):
        if combine == "nested":
            combined = _nested_combine(
                datasets,
                concat_dims=concat_dim,
                compat=_given(compat, "compat"),
                data_vars=_given(data_vars, "data_vars"),
                coords=_given(coords, "coords"),
                ids=ids,
                join=_given(join, "join"),
                combine_attrs=combine_attrs,
                fill_value=xr.core.dtypes.NA,
            )
        elif combine == "by_coords":
            combined = xr.combine_by_coords(
                datasets,
                compat=_given(compat, "compat"),
                data_vars=_given(data_vars, "data_vars"),
                coords=_given(coords, "coords"),
                join=_given(join, "join"),
                combine_attrs=combine_attrs,
            )
        else:  # where xarray says so: after the files are opened
            raise ValueError(f"{combine} is an invalid option for the keyword argument ``combine``")
    arrays: dict[str, FilesArray] = {k: v for item in good for k, v in item.arrays.items()}
    combined = batch_chunks(combined, datasets, arrays, threads)
    combined.set_close(partial(_forget_everywhere, client, [item.path for item in good]))
    if attrs_file is not None:
        if isinstance(attrs_file, os.PathLike):
            attrs_file = os.fspath(attrs_file)
        combined.attrs = datasets[[item.path for item in good].index(attrs_file)].attrs
    return combined


#: Which worker last opened each file (by path): that worker keeps the file's decoded structure,
#: so opening the file again there skips xarray's decode. A hint: any worker may take the task.
_WHERE: dict[str, str] = {}
#: How many paths _WHERE remembers (the oldest are forgotten first).
REMEMBER_PATHS = 100_000


def _submit(client: Client, batch: list[Any], opening: Opening, alive: dict[str, int]) -> Any:
    """The task that opens ``batch``, on the worker that opened most of it last, if any."""
    from collections import Counter

    seen = Counter(_WHERE[p] for p in batch if isinstance(p, str) and _WHERE.get(p) in alive)
    where = {"workers": [seen.most_common(1)[0][0]], "allow_other_workers": True} if seen else {}
    return client.submit(open_files, batch, opening, pure=False, **where)


def _remember_where(client: Client, futures: list[Any], paths: list[list[str]]) -> None:
    who = client.who_has(futures)
    for future, batch in zip(futures, paths, strict=True):
        holders = list(who.get(future.key, ()))
        for path in batch:
            _WHERE.pop(path, None)
            if holders:
                _WHERE[path] = holders[0]
    while len(_WHERE) > REMEMBER_PATHS:
        del _WHERE[next(iter(_WHERE))]


def _given(value: Any, name: str) -> Any:
    """``value``, or xarray's default for the combine's argument ``name`` (which xarray
    marks, so that it can warn when its defaults change)."""
    if value is not XARRAY_DEFAULT:
        return value
    from xarray.util import deprecation_helpers as helpers

    return {
        "compat": helpers._COMPAT_DEFAULT,
        "data_vars": helpers._DATA_VARS_DEFAULT,
        "coords": helpers._COORDS_DEFAULT,
        "join": helpers._JOIN_DEFAULT,
    }[name]


def _forget_everywhere(client: Client, paths: list[str]) -> None:
    """``ds.close()``: close these files here and on the workers."""
    forget(paths)
    if client.status == "running":
        client.run(forget, paths)
