"""Chunks of a batch of files: where xarray's combine only concatenated the files' arrays,
the per-file chunks become one chunk per batch of consecutive files.

A daily file of a 1-degree field is 260 KB: one chunk per file makes each task
of a computation too small for its scheduling cost, and ``open_mfdataset`` +
a mean on 2 workers was slower than serial xarray. The values do not change:
a variable is re-chunked only when it is provably the files' arrays laid end to
end (see :func:`concatenated_files`); anything else that the combine did
(reindexing for ``join``, broadcasting, merging, a ``preprocess`` that computed
the variable) keeps xarray's chunks.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dask_hpc.data.reader import FilePart, FilesArray

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["CHUNKS_PER_THREAD", "batch_chunks", "concatenated_files", "files_per_chunk"]

#: Chunks per worker thread, at least, along the files' axis: some slack when one is slow.
CHUNKS_PER_THREAD = 4


def batch_chunks(
    combined: xr.Dataset, datasets: Sequence[xr.Dataset], arrays: dict[str, FilesArray], threads: int
) -> xr.Dataset:
    """``combined`` with each concatenation of files' arrays in chunks of several files."""
    import dask.array as da
    from dask.base import tokenize

    out: xr.Dataset = combined.copy(deep=False)
    for name, variable in out.variables.items():
        found = concatenated_files(name, combined, datasets, arrays)
        if found is None:
            continue
        reader, axis, other_chunks, names = found
        lengths = [part.length for part in reader.parts]
        per_chunk = files_per_chunk(
            bytes_per_file=variable.dtype.itemsize
            * max(lengths)
            * math.prod(max(c) for c in other_chunks if c),
            files=len(lengths),
            other_chunks=math.prod(len(c) for c in other_chunks if c),
            threads=threads,
        )
        # One array per chunk, each with its own files only: the reader travels with every
        # task of its chunk (inline), so it must not carry the other chunks' files.
        pieces = []
        for first in range(0, len(lengths), per_chunk):
            parts = reader.parts[first : first + per_chunk]
            shape = tuple(
                sum(p.length for p in parts) if i == axis else n for i, n in enumerate(variable.shape)
            )
            chunks = tuple(shape[i] if i == axis else other_chunks[i] for i in range(variable.ndim))
            piece = FilesArray(parts, axis, shape, variable.dtype, reader.opening)
            pieces.append(
                da.from_array(  # type: ignore[no-untyped-call]
                    piece,
                    chunks=chunks,
                    name=f"dask-hpc-files-{name}-{tokenize(names[first : first + per_chunk], chunks)}",
                    lock=False,
                    asarray=False,
                    fancy=False,
                    inline_array=True,
                    meta=np.empty((0,) * variable.ndim, variable.dtype),
                )
            )
        variable.data = da.concatenate(pieces, axis=axis)  # type: ignore[no-untyped-call]
    return out


def files_per_chunk(*, bytes_per_file: int, files: int, other_chunks: int, threads: int) -> int:
    """Files in one chunk: as many as dask's ``array.chunk-size`` holds, but no more than
    leaves every worker thread ``CHUNKS_PER_THREAD`` chunks."""
    import dask
    from dask.utils import parse_bytes

    limit = parse_bytes(dask.config.get("array.chunk-size"))
    by_size = max(1, limit // max(1, bytes_per_file))
    by_threads = max(1, math.ceil(files * other_chunks / (max(1, threads) * CHUNKS_PER_THREAD)))
    return int(min(by_size, by_threads))


def concatenated_files(
    name: Hashable, combined: xr.Dataset, datasets: Sequence[xr.Dataset], arrays: dict[str, FilesArray]
) -> tuple[FilesArray, int, tuple[tuple[int, ...], ...], list[str]] | None:
    """If ``combined[name]`` is the files' own arrays of ``name`` laid end to end along one
    axis, unchanged: one :class:`FilesArray` over them in that order, the axis, the
    chunks of the other axes and the names of the files' dask arrays. Otherwise None.

    Unchanged means: every file has the variable with the same dimensions and dtype as
    the result, read as it is in the file (not computed by ``preprocess``), in one chunk
    along the axis; the files' sizes along it add up to the result's; every other
    dimension has the result's size and, where indexed, the result's index (no
    reindexing); and each file's index along the axis is one block of the result's.
    """
    import dask.array as da

    variable = combined.variables[name]
    if name in combined.indexes or len(datasets) < 2 or not isinstance(variable.data, da.Array):
        return None
    readers, shapes, chunks = [], [], []
    for ds in datasets:
        own = ds.variables.get(name)
        if own is None or own.dims != variable.dims or own.dtype != variable.dtype:
            return None
        reader = arrays.get(own.data.name) if isinstance(own.data, da.Array) else None
        if reader is None or reader.axis is not None or reader.shape != own.shape:
            return None
        readers.append(reader)
        shapes.append(own.shape)
        chunks.append(own.data.chunks)
    axes = [
        i
        for i in range(variable.ndim)
        if sum(s[i] for s in shapes) == variable.shape[i] and any(s[i] != variable.shape[i] for s in shapes)
    ]
    if len(axes) != 1:
        return None
    axis = axes[0]
    for i, dim in enumerate(variable.dims):
        if i == axis:
            continue
        if any(s[i] != variable.shape[i] for s in shapes) or any(c[i] != chunks[0][i] for c in chunks):
            return None
        if dim in combined.indexes and not all(
            ds.indexes[dim].equals(combined.indexes[dim]) for ds in datasets
        ):
            return None
    if any(len(c[axis]) != 1 for c in chunks):
        return None  # the files are cut along the axis (chunks= asked for it): keep that
    order = _order_along(variable.dims[axis], combined, datasets, [s[axis] for s in shapes])
    if order is None:
        return None
    # The proof: the result's array is dask's concatenation of the files' arrays in that order
    # (the same graph, by name). A merge that kept one file's array and filled the rest (a
    # variable in only some files, compat="override") lays out the same, but is not this.
    laid = da.concatenate([datasets[i].variables[name].data for i in order], axis=axis)  # type: ignore[no-untyped-call]
    if laid.name != variable.data.name:
        return None
    first = readers[0]
    parts = tuple(
        FilePart(p.path, p.name, shapes[i][axis], p.dims, p.lazy) for i in order for p in readers[i].parts
    )
    if any(r.opening.token != first.opening.token for r in readers):
        return None
    reader = FilesArray(parts, axis, variable.shape, variable.dtype, first.opening)
    other = tuple(() if i == axis else chunks[0][i] for i in range(variable.ndim))
    return reader, axis, other, [datasets[i].variables[name].data.name for i in order]


def _order_along(
    dim: Hashable, combined: xr.Dataset, datasets: Sequence[xr.Dataset], lengths: list[int]
) -> list[int] | None:
    """The order of the files along ``dim`` in ``combined``, if each is one block of it."""
    if dim not in combined.indexes:
        return list(range(len(datasets)))  # nested, along a dimension without coordinates
    index = combined.indexes[dim]
    if not index.is_unique:
        return None
    starts: list[Any] = []
    for ds, length in zip(datasets, lengths, strict=True):
        if dim not in ds.indexes:
            return None
        where = index.get_indexer(ds.indexes[dim])
        if (
            len(where) != length
            or (where < 0).any()
            or not np.array_equal(where, np.arange(where[0], where[0] + length))
        ):
            return None
        starts.append(int(where[0]))
    order = sorted(range(len(datasets)), key=starts.__getitem__)
    position = 0
    for i in order:
        if starts[i] != position:
            return None
        position += lengths[i]
    return order
