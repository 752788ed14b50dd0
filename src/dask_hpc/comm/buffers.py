"""Receive memory for ``mpi://``: large buffers are kept when their data dies, for the next message.

Why: a worker must receive each result into memory of its own, since the
result lives on; memory the process has never touched costs a page fault per
page on first touch (on this VM, where freed memory goes back to the
hypervisor, ~0.6 GB/s: MPI into fresh memory a few seconds apart moves 256 MiB
in 415 ms, back to back in 62 ms). So a buffer whose data is no longer
used is kept, up to a limit, and the next message of about its size is
received into it. What lives on is a numpy array whose end (its data freed)
gives the buffer back; messages under :data:`SMALLEST` use plain memory (malloc
reuses its own).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["SMALLEST", "BufferPool", "default_limit"]

MiB = 2**20
#: Below this, a buffer is plain memory: not worth keeping.
SMALLEST = 1 * MiB
#: A kept buffer serves a message up to this fraction smaller than itself.
SLACK = 4


def default_limit(ranks_on_node: int = 1) -> int:
    """Bytes of free buffers kept: dask config ``dask-hpc.mpi-buffer-pool`` (``0`` turns it
    off), else this rank's share of a twentieth of the node's memory, at most 1 GiB (memory
    kept free counts as the worker's unmanaged memory)."""
    import dask
    from dask.utils import parse_bytes

    configured = dask.config.get("dask-hpc.mpi-buffer-pool", None)
    if configured is not None:
        return int(parse_bytes(configured))
    import psutil

    return min(2**30, psutil.virtual_memory().total // 20 // max(1, ranks_on_node))


class BufferPool:
    """Buffers to receive into; one whose data has died comes back here, up to ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free: list[Any] = []  # numpy uint8 arrays, oldest first
        self._kept = 0
        self._lock = threading.Lock()  # finalizers may run in any thread
        self.reused = 0  # buffers served from the pool (for tests and the benchmark)

    @property
    def kept(self) -> int:
        """Bytes of free buffers held now."""
        return self._kept

    def take(self, nbytes: int) -> memoryview:
        """A writable buffer of ``nbytes`` (contents undefined)."""
        import numpy as np

        if nbytes < SMALLEST or self.limit <= 0:
            return np.empty(nbytes, dtype=np.uint8).data
        slab = self._find(nbytes)
        if slab is None:
            slab = np.empty(nbytes, dtype=np.uint8)
        view = slab[:nbytes]  # what the message's frames hang on: when it dies, slab comes back
        weakref.finalize(view, self._give_back, slab)
        data: memoryview = view.data  # holds view: the buffer stays out of the pool while it lives
        return data

    def _find(self, nbytes: int) -> Any:
        with self._lock:
            for i in range(len(self._free) - 1, -1, -1):  # newest first: most likely still in cache
                slab = self._free[i]
                if nbytes <= slab.nbytes <= nbytes + nbytes // SLACK:
                    del self._free[i]
                    self._kept -= slab.nbytes
                    self.reused += 1
                    return slab
        return None

    def _give_back(self, slab: Any) -> None:
        if slab.nbytes > self.limit:
            return
        with self._lock:
            self._free.append(slab)
            self._kept += slab.nbytes
            while self._kept > self.limit:  # the oldest go back to the system
                self._kept -= self._free.pop(0).nbytes
