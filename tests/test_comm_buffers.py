"""The receive-memory pool of mpi:// (dask_hpc.comm.buffers): reuse, and never while data lives."""

from __future__ import annotations

import gc

import dask
import numpy as np
import pytest

from dask_hpc.comm.buffers import SMALLEST, BufferPool, default_limit

MiB = 2**20


def address(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def test_a_buffer_whose_data_died_serves_the_next_message() -> None:
    pool = BufferPool(limit=64 * MiB)
    first = pool.take(8 * MiB)
    where = address(first)
    del first
    gc.collect()
    assert pool.kept == 8 * MiB
    again = pool.take(8 * MiB - 100)  # a little smaller fits too
    assert address(again) == where and len(again) == 8 * MiB - 100
    assert pool.reused == 1 and pool.kept == 0


def test_memory_is_not_reused_while_anything_made_from_it_lives() -> None:
    pool = BufferPool(limit=64 * MiB)
    buffer = pool.take(4 * MiB)
    array = np.frombuffer(buffer[MiB : 2 * MiB], dtype=np.uint8)  # what deserialisation makes: a slice
    array[:] = 7
    del buffer
    gc.collect()
    other = pool.take(4 * MiB)
    assert pool.reused == 0
    np.frombuffer(other, dtype=np.uint8)[:] = 1
    assert (array == 7).all()  # untouched by the second message
    del array
    gc.collect()
    assert pool.kept == 4 * MiB  # now it came back


def test_small_and_too_different_sizes_get_new_memory() -> None:
    pool = BufferPool(limit=64 * MiB)
    small = pool.take(SMALLEST - 1)
    assert len(small) == SMALLEST - 1
    del small
    gc.collect()
    assert pool.kept == 0  # not kept: malloc reuses small blocks itself
    big = pool.take(16 * MiB)
    del big
    gc.collect()
    quarter = pool.take(4 * MiB)  # would waste 12 MiB of it: new memory
    assert pool.reused == 0 and pool.kept == 16 * MiB and len(quarter) == 4 * MiB


def test_the_pool_keeps_at_most_its_limit_dropping_the_oldest() -> None:
    pool = BufferPool(limit=10 * MiB)
    first, second, third = (pool.take(4 * MiB) for _ in range(3))
    addresses = [address(view) for view in (first, second, third)]
    del first, second, third  # given back in this order
    gc.collect()
    assert pool.kept == 8 * MiB  # the third 4 MiB would pass 10 MiB: the oldest went
    taken = [pool.take(4 * MiB) for _ in range(2)]
    assert sorted(address(view) for view in taken) == sorted(addresses[1:])
    assert pool.reused == 2


def test_limit_zero_keeps_nothing() -> None:
    pool = BufferPool(limit=0)
    view = pool.take(4 * MiB)
    del view
    gc.collect()
    assert pool.kept == 0


@pytest.mark.parametrize(("configured", "expected"), [("0", 0), ("256MiB", 256 * MiB), (None, None)])
def test_the_limit_comes_from_dask_config(configured: str | None, expected: int | None) -> None:
    with dask.config.set({"dask-hpc.mpi-buffer-pool": configured}):
        limit = default_limit()
    if expected is None:
        assert 0 < limit <= 2**30
    else:
        assert limit == expected


def test_ranks_on_one_node_share_the_default_limit() -> None:
    import psutil

    with dask.config.set({"dask-hpc.mpi-buffer-pool": None}):
        alone, shared = default_limit(1), default_limit(64)
    assert shared == min(2**30, psutil.virtual_memory().total // 20 // 64)
    assert shared <= alone
