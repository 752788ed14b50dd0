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
#: Decoded datasets by (path, Opening.token, modification time), least recently used first.
_OPENED: OrderedDict[tuple[str, str, float | None], xr.Dataset] = OrderedDict()
#: The file arrays read here, by id, least recently used first (see _pin).
_PINNED: OrderedDict[int, Any] = OrderedDict()
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
    name), or the exception that opening it raised."""

    path: str
    dataset: xr.Dataset | None = None
    arrays: dict[str, FilesArray] = field(default_factory=dict)
    error: BaseException | None = None


def open_files(paths: Sequence[str], opening: Opening) -> list[Opened]:
    """Open ``paths`` (a task: one batch of files) and describe each for the client."""
    with _LOCK:
        return [_describe(path, opening) for path in paths]


def forget(paths: Sequence[str] | None = None) -> None:
    """Close and forget these files (all if None) in this process, whatever the options."""
    with _LOCK:
        for key in [k for k in _OPENED if paths is None or k[0] in set(paths)]:
            _OPENED.pop(key).close()
        if paths is None:
            _PINNED.clear()


def _describe(path: str, opening: Opening) -> Opened:
    import dask.array as da
    from dask.base import tokenize
    from xarray.namedarray.parallelcompat import guess_chunkmanager
    from xarray.namedarray.utils import _get_chunk

    try:
        ds = _dataset(path, opening)
    except Exception as exc:  # the client decides, as xarray's errors= says
        return Opened(path, error=exc)
    manager = guess_chunkmanager(None)
    mtime = _mtime(path)
    variables, arrays = {}, {}
    for name, var in ds.variables.items():
        if var._in_memory:  # indexes: decoded in memory, as xarray keeps them
            variables[name] = var
            continue
        # The chunks xarray's open_dataset would give this variable (its _chunk_ds).
        chunks = _get_chunk(
            var._data,  # type: ignore[arg-type]
            opening.chunks,
            manager,
            preferred_chunks=var.encoding.get("preferred_chunks", {}),
            dims=var.dims,
        )
        part = FilePart(path, name, var.shape[0] if var.ndim else 1, var.dims, var._data)
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
        arrays[array_name] = reader
    described = ds._replace(variables)
    described.set_close(None)  # nothing of this worker's files travels with it
    if opening.preprocess is not None:
        described = opening.preprocess(described)
    return Opened(path, described, arrays)


def _dataset(path: str, opening: Opening) -> xr.Dataset:
    """The file decoded lazily (no dask), from this process's cache or opened now (also
    when the file was modified since: a model run may still be writing)."""
    import xarray as xr

    key = (path, opening.token, _mtime(path))
    ds = _OPENED.get(key)
    if ds is not None:
        _OPENED.move_to_end(key)
        return ds
    ds = xr.open_dataset(path, engine=opening.engine, chunks=None, **opening.options)
    _OPENED[key] = ds
    while len(_OPENED) > KEEP_OPENED:
        _OPENED.popitem(last=False)[1].close()  # here, in this thread, under the lock
    return ds


def _read(part: FilePart, opening: Opening, key: tuple[Any, ...]) -> np.ndarray:
    import xarray as xr

    _pin(part.lazy)
    return np.asarray(xr.Variable(part.dims, part.lazy)[key].values)


def _pin(lazy: Any) -> None:
    """Keep ``lazy`` (this task's copy of a file's array) alive until we drop it here, under
    the lock: the last copy of a file's manager to go closes the file, and a copy freed with
    the task would go on the event loop's thread, beside a task's HDF5 calls."""
    _PINNED[id(lazy)] = lazy
    _PINNED.move_to_end(id(lazy))
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
