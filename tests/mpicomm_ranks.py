"""Run under ``mpirun -np 2``: distributed's comm contract over ``mpi://`` between two ranks.

Rank 0 listens and echoes; rank 1 connects and checks. Prints ``OK <check>`` per
check passed on rank 1; any failure raises (non-zero exit).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from distributed.comm import connect, listen
from distributed.comm.core import CommClosedError
from distributed.comm.registry import backends
from mpi4py import MPI

from dask_hpc.comm import backend
from dask_hpc.comm import engine as mpicomm

mpicomm.PIECE = 2**20  # small pieces, so that a 10 MiB frame is split and joined again
backends["mpi"] = backend.MPIBackend()  # the entry point does this for an installed package
world = MPI.COMM_WORLD
rank = world.Get_rank()
mpicomm.Engine.get()  # collective (it duplicates the communicator): every rank, at the same point


async def echo(comm: object) -> None:
    try:
        while True:
            msg = await comm.read()  # type: ignore[attr-defined]
            if isinstance(msg, str) and msg == "close-from-server":
                await comm.close()  # type: ignore[attr-defined]
                return
            await comm.write(msg)  # type: ignore[attr-defined]
    except CommClosedError:
        return


async def server() -> None:
    listener = listen("mpi://", echo)
    await listener.start()
    world.bcast(listener.contact_address, root=0)
    await asyncio.to_thread(world.barrier)  # rank 1 is done
    listener.stop()


async def client() -> None:
    address = world.bcast(None, root=0)
    assert address == "mpi://0/0", address

    comm = await connect(address)
    await comm.write({"op": "ping", "x": [1, 2, 3]})
    got = await comm.read()
    assert got == {"op": "ping", "x": (1, 2, 3)}, got  # msgpack gives tuples, as over tcp
    print("OK handshake and small message", flush=True)

    rng = np.random.default_rng(0)
    for size in (0, 1, 1000, 10 * 2**20 + 7):
        data = rng.integers(0, 255, size, dtype=np.uint8)
        await comm.write({"data": data})
        back = await comm.read()
        assert np.array_equal(back["data"], data), size
        assert back["data"].flags.writeable, size  # as over tcp: a received array may be changed in place
    empty = np.zeros((0, 5))  # a frame with zeros in its shape (a dataframe shuffle sends these)
    await comm.write({"data": empty})
    assert (await comm.read())["data"].shape == (0, 5)
    print("OK random frames up to 10 MiB, split into pieces, writable; empty 2-d frames", flush=True)

    async def one(i: int) -> None:
        c = await connect(address)
        for j in range(5):
            await c.write(("msg", i, j, bytes(1000 * i)))
            assert await c.read() == ("msg", i, j, bytes(1000 * i))
        await c.close()

    await asyncio.gather(*(one(i) for i in range(20)))
    print("OK 20 concurrent comms between the same two ranks", flush=True)

    # A comm of another event loop (a Client's own loop, say) that closes while it waits to
    # read; then the comm is aborted: the progress thread must not die of it.
    def orphan() -> object:
        loop = asyncio.new_event_loop()
        c = loop.run_until_complete(connect(address))
        reading = loop.create_task(c.read())
        loop.run_until_complete(asyncio.sleep(0.1))
        assert not reading.done()
        loop.close()
        return c

    stranded = await asyncio.to_thread(orphan)
    stranded.abort()  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    await comm.write("still there?")
    assert await comm.read() == "still there?"
    print("OK a comm whose event loop closed does not stop the others", flush=True)

    await comm.close()
    try:
        await comm.read()
    except CommClosedError:
        print("OK closed here: read raises CommClosedError", flush=True)
    else:
        raise AssertionError("read after close did not raise")

    other = await connect(address)
    await other.write("close-from-server")
    try:
        await other.read()
    except CommClosedError:
        print("OK closed by the peer: read raises CommClosedError", flush=True)
    else:
        raise AssertionError("read after the peer closed did not raise")

    aborted = await connect(address)
    aborted.abort()
    assert aborted.closed()
    try:
        await aborted.write("x")
    except CommClosedError:
        print("OK abort: write raises CommClosedError", flush=True)
    else:
        raise AssertionError("write after abort did not raise")

    big = await connect(address)
    payload = np.ones(64 * 2**20, dtype=np.uint8)
    mpicomm.PIECE = 2**30
    buffers = mpicomm.Engine.get().buffers
    reused = buffers.reused
    seconds = 0.0
    for i in range(5):
        payload.fill(i)  # new contents each time: a reused receive buffer must not show the last message
        t0 = time.perf_counter()
        await big.write(payload)
        back = await big.read()
        seconds += (time.perf_counter() - t0) / 10
        assert back.min() == back.max() == i, (i, back.min(), back.max())
        del back  # its buffer goes back to the pool, for the next message
    assert buffers.reused - reused >= 3, (buffers.reused, reused)  # the first may be new memory
    print(
        f"OK 64 MiB one way in {seconds * 1000:.1f} ms: {payload.nbytes / seconds / 1e9:.2f} GB/s, "
        f"receive memory reused {buffers.reused - reused} times",
        flush=True,
    )
    await big.close()
    await asyncio.to_thread(world.barrier)


if __name__ == "__main__":
    asyncio.run(server() if rank == 0 else client())
    mpicomm.Engine.get().stop()  # then mpi4py finalises MPI at exit, from this thread only
