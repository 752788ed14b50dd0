"""Reading files in a worker (or in the client): every open, read and close of ours in one
thread at a time, and each file's decoded structure kept for the next read.

Two facts shape this module (both measured on this project's machines, see
``bench/open_many.py``):

* netCDF-C and HDF5 are not thread-safe, and xarray locks its reads but not
  the metadata reads of ``open_dataset``, nor the close that a
  ``CachingFileManager`` does when it is garbage-collected, which in a Dask
  worker happens on the event loop's thread. With xarray's own lazy arrays on
  ``distributed`` workers we saw "double free or corruption" and
  ``NetCDF: HDF error`` crash workers (pydata/xarray#7990, #9779). Here a
  worker never holds xarray's lazy arrays outside this module: the arrays
  that travel are :class:`FilesArray` objects (paths and names), and every
  open, read and close happens under :data:`_LOCK`, in the task's thread.
* ``xr.open_dataset`` costs about 2.5 ms a file (decoding, indexes), the raw
  open under it 0.4 ms, a small read 0.2 ms. The decoded dataset of each file
  is kept (:data:`_OPENED`), so that the read that follows the open on the
  same worker costs a read, not another decode; xarray's own file cache
  (``file_cache_maxsize``) still bounds how many files are open at once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["FilePart", "FilesArray", "Opened", "Opening", "open_files"]

#: One lock for every file operation of ours in this process (reentrant: a read may open).
_LOCK = threading.RLock()
#: Decoded datasets and the warnings decoding them gave, by (path, Opening.token, modification
#: time), least recently used first.
_OPENED: OrderedDict[tuple[str, str, float | None], tuple[xr.Dataset, list[tuple[type[Warning], str]]]] = (
    OrderedDict()
)
#: The files' arrays that tasks here carried, by id: (path, array), least recently used first (_pin).
_PINNED: OrderedDict[int, tuple[str, Any]] = OrderedDict()
#: How many decoded datasets (a few tens of KB each: indexes and attributes), and read arrays,
#: a process keeps.
KEEP_OPENED = 1024


@dataclass(frozen=True)
class Opening:
    """How every file is opened: ``xr.open_dataset(path, engine=engine, chunks=chunks,
    **options)`` then ``preprocess``, as ``xr.open_mfdataset`` does.

    ``token`` names these options (the cache key of a file opened with them)."""

    engine: Any
    chunks: Any
    options: dict[str, Any]
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None
    token: str


@dataclass(frozen=True)
class FilePart:
    """One file's variable ``name``: ``length`` steps along the array's concatenation axis.

    ``lazy`` is xarray's decoded, lazily indexed array of it (the backend's, as
    ``xr.open_dataset`` made it): reading through it reopens the file (0.4 ms)
    without decoding it again (2.5 ms), on any worker."""

    path: str
    name: Hashable
    length: int
    dims: tuple[Hashable, ...]
    lazy: Any = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class FilesArray:
    """A lazily read array: the variable of one or more files, concatenated along ``axis``
    (None: one file). What dask's getter slices; it reads only the files and the part of
    each that a slice covers. ``shape``, ``dtype`` and ``ndim`` are what dask needs."""

    parts: tuple[FilePart, ...]
    axis: int | None
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    opening: Opening
    ndim: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ndim", len(self.shape))

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _full_key(key, self.ndim)
        with _LOCK:
            _pin(self.parts)  # every part this task carries, read or not
            if self.axis is None:
                return _read(self.parts[0], self.opening, key)
            return self._read_across(key)

    def _read_across(self, key: tuple[Any, ...]) -> np.ndarray:
        assert self.axis is not None
        axis = self.axis
        starts = np.cumsum([0] + [p.length for p in self.parts])
        wanted = np.arange(self.shape[axis])[key[axis]]
        if wanted.ndim == 0:  # an integer: one file, and the axis is gone
            i = int(np.searchsorted(starts, wanted, side="right")) - 1
            local = (*key[:axis], int(wanted) - int(starts[i]), *key[axis + 1 :])
            return _read(self.parts[i], self.opening, local)
        out_axis = axis - sum(isinstance(k, (int, np.integer)) for k in key[:axis])
        files = np.searchsorted(starts, wanted, side="right") - 1
        pieces = []
        # Runs of consecutive positions in one file, in the order asked for.
        breaks = np.flatnonzero((np.diff(files) != 0) | (np.diff(wanted) != 1)) + 1
        for run in np.split(np.arange(len(wanted)), breaks):
            if not len(run):
                continue
            i = int(files[run[0]])
            first = int(wanted[run[0]] - starts[i])
            local = (*key[:axis], slice(first, first + len(run)), *key[axis + 1 :])
            pieces.append(_read(self.parts[i], self.opening, local))
        if not pieces:
            shape = list(self.shape)
            shape[axis] = 0
            empty: np.ndarray = np.empty(shape, self.dtype)
            where = (*key[:axis], slice(None), *key[axis + 1 :])
            return np.asarray(empty[where])
        return np.concatenate(pieces, axis=out_axis)


@dataclass(frozen=True)
class Opened:
    """What opening one file gives the client: the dataset as ``xr.open_dataset`` and
    ``preprocess`` make it, its lazy arrays read by :class:`FilesArray` (by dask array
    name), the warnings that opening it gave (category, text), or the exception that
    opening it raised."""

    path: str
    dataset: xr.Dataset | None = None
    arrays: dict[str, FilesArray] = field(default_factory=dict)
    warned: list[tuple[type[Warning], str]] = field(default_factory=list)
    error: BaseException | None = None


def open_files(paths: Sequence[str], opening: Opening) -> list[Opened]:
    """Open ``paths`` (a task: one batch of files) and describe each for the client.

    ``preprocess`` runs after the lock is let go: it is the user's code, and may read
    (through this module) or compute."""
    with _LOCK:
        described = [_describe(path, opening) for path in paths]
    if opening.preprocess is None:
        return described
    return [_preprocessed(item, opening.preprocess) for item in described]


def forget(paths: Sequence[str] | None = None) -> None:
    """Close and forget these files (all if None) in this process, whatever the options."""
    with _LOCK:
        chosen = None if paths is None else set(paths)
        for opened in [k for k in _OPENED if chosen is None or k[0] in chosen]:
            _OPENED.pop(opened)[0].close()
        for pinned in [k for k, (path, _) in _PINNED.items() if chosen is None or path in chosen]:
            del _PINNED[pinned]


def _preprocessed(item: Opened, preprocess: Callable[[xr.Dataset], xr.Dataset]) -> Opened:
    import warnings

    if item.dataset is None:
        return item
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = preprocess(item.dataset)
    warned = item.warned + [(w.category, str(w.message)) for w in caught]
    return Opened(item.path, dataset, item.arrays, warned)


def _describe(path: str, opening: Opening) -> Opened:
    import dask.array as da
    from dask.base import tokenize
    from xarray.namedarray.parallelcompat import guess_chunkmanager
    from xarray.namedarray.utils import _get_chunk

    try:
        ds, warned = _dataset(path, opening)
    except Exception as exc:  # the client decides, as xarray's errors= says
        return Opened(path, error=exc)
    manager = guess_chunkmanager(None)
    mtime = _mtime(path)
    variables, arrays = {}, {}
    for name, var in ds.variables.items():
        if var._in_memory or not var.ndim:
            # Indexes are decoded in memory, and xarray does not chunk a scalar: as they are
            # (a scalar read now, here). A copy: preprocess must not change the cached one.
            variables[name] = var.copy(deep=False) if var._in_memory else var.copy(deep=False).load()
            continue
        # The chunks xarray's open_dataset would give this variable (its _chunk_ds).
        chunks = _get_chunk(
            var._data,  # type: ignore[arg-type]
            opening.chunks,
            manager,
            preferred_chunks=var.encoding.get("preferred_chunks", {}),
            dims=var.dims,
        )
        part = FilePart(path, name, var.shape[0], var.dims, var._data)
        reader = FilesArray((part,), None, var.shape, var.dtype, opening)
        array_name = f"dask-hpc-open-{name}-{tokenize(path, mtime, name, opening.token, chunks)}"
        data = da.from_array(  # type: ignore[no-untyped-call]
            reader,
            chunks=tuple(chunks[d] for d in var.dims),
            name=array_name,
            lock=False,  # ours is taken inside FilesArray
            asarray=False,
            fancy=False,  # the getter sees slices and integers only
            inline_array=True,
            meta=np.empty((0,) * var.ndim, var.dtype),
        )
        variables[name] = var.copy(deep=False, data=data)
        if opening.options.get("overwrite_encoded_chunks"):  # as xarray's _maybe_chunk does
            variables[name].encoding["chunks"] = tuple(c[0] for c in data.chunks)
        arrays[array_name] = reader
    described = ds._replace(variables)
    described.set_close(None)  # nothing of this worker's files travels with it
    return Opened(path, described, arrays, list(warned))


def _dataset(path: str, opening: Opening) -> tuple[xr.Dataset, list[tuple[type[Warning], str]]]:
    """The file decoded lazily (no dask), and the warnings decoding it gave, from this
    process's cache or opened now (also when the file was modified since: a model run may
    still be writing)."""
    import warnings

    import xarray as xr

    key = (path, opening.token, _mtime(path))
    if key in _OPENED:
        _OPENED.move_to_end(key)
        return _OPENED[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = xr.open_dataset(path, engine=opening.engine, chunks=None, **opening.options)
    _OPENED[key] = (ds, [(w.category, str(w.message)) for w in caught])
    while len(_OPENED) > KEEP_OPENED:
        _OPENED.popitem(last=False)[1][0].close()  # here, in this thread, under the lock
    return _OPENED[key]


def _read(part: FilePart, opening: Opening, key: tuple[Any, ...]) -> np.ndarray:
    import xarray as xr

    return np.asarray(xr.Variable(part.dims, part.lazy)[key].values)


def _pin(parts: Sequence[FilePart]) -> None:
    """Keep this task's copies of the files' arrays alive until we drop them here, under the
    lock: the last copy of a file's manager to go closes the file, and a copy freed with the
    task would go on the event loop's thread, beside a task's HDF5 calls."""
    for part in parts:
        _PINNED[id(part.lazy)] = (part.path, part.lazy)
        _PINNED.move_to_end(id(part.lazy))
    while len(_PINNED) > KEEP_OPENED:
        _PINNED.popitem(last=False)


def _full_key(key: Any, ndim: int) -> tuple[Any, ...]:
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = key.index(Ellipsis)
        key = (*key[:at], *[slice(None)] * (ndim - len(key) + 1), *key[at + 1 :])
    return (*key, *[slice(None)] * (ndim - len(key)))


def _mtime(path: str) -> float | None:
    try:
        return os.path.getmtime(path)
    except (OSError, TypeError, ValueError):  # a URL or a file object
        return None
