"""A peer rank that goes away, over ``mpi://``: ``python mpicomm_death.py MODE`` under mpirun -np 3.

Rank 0 listens and echoes; ranks 1 and 2 connect. Rank 2 then leaves without
closing anything: ``vanish`` (under ``--with-ft ulfm``) dies at once
(os._exit: nothing of Python runs), ``mid-message`` (under ``--with-ft ulfm``)
is killed (SIGKILL) right after it has begun a message too large for MPI to
send at once (the receiver has its start and must fetch the rest from a rank
that is gone), ``exit`` (plain mpirun) leaves with sys.exit, so that Python's
exit runs, as when a script ends or fails. Rank 0
must see its comm from rank 2 fail with CommClosedError (not wait forever),
and rank 1 must go on talking. Prints ``OK <check>`` on rank 0; ranks 0 and 1
leave with os._exit (MPI's finalize would wait for the rank that left).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from distributed.comm import connect, listen
from distributed.comm.core import CommClosedError
from distributed.comm.registry import backends
from mpi4py import MPI

from dask_hpc.comm import backend
from dask_hpc.comm import engine as mpicomm

backends["mpi"] = backend.MPIBackend()
world = MPI.COMM_WORLD
rank = world.Get_rank()
mpicomm.Engine.get()  # collective: every rank, at the same point
MODE = sys.argv[1]
DEADLINE = 20.0  # seconds for rank 0 to notice; it takes about half a second here
closed: dict[str, float] = {}


async def echo(comm: object) -> None:
    try:
        while True:
            await comm.write(await comm.read())  # type: ignore[attr-defined]
    except CommClosedError:
        closed[comm.peer_address] = time.monotonic()  # type: ignore[attr-defined]


async def server() -> None:
    listener = listen("mpi://", echo)
    await listener.start()
    world.bcast(listener.contact_address, root=0)
    t0 = time.monotonic()
    while not closed and time.monotonic() - t0 < DEADLINE:
        await asyncio.sleep(0.05)
    assert list(closed) == ["mpi://2/c0"], closed  # rank 2's comm, and only it
    print(
        f"OK the dead rank's comm failed with CommClosedError after {closed['mpi://2/c0'] - t0:.1f} s",
        flush=True,
    )
    while len(closed) < 2 and time.monotonic() - t0 < DEADLINE + 30:
        await asyncio.sleep(0.05)  # rank 1 talks on, then closes
    assert "mpi://1/c0" in closed, closed
    print("OK the other rank went on talking after the death", flush=True)


async def client() -> None:
    comm = await connect(world.bcast(None, root=0))
    await comm.write("hello")
    assert await comm.read() == "hello"
    if rank == 2:
        await asyncio.sleep(0.5)
        if MODE == "vanish":
            os._exit(0)  # gone, without closing its comm
        if MODE == "mid-message":
            # 32 KiB: past Open MPI's eager limit in shared memory (4 KiB), so only its start
            # goes with the send; the receiver fetches the rest, from a rank that is gone.
            engine = mpicomm.Engine.get()
            post_sends = engine.post_sends

            def post_then_die(*args: object) -> None:
                post_sends(*args)  # type: ignore[arg-type]
                os.kill(os.getpid(), signal.SIGKILL)

            engine.post_sends = post_then_die  # type: ignore[assignment,method-assign]
            await comm.write(bytes(32 * 2**10))
        sys.exit(0)  # Python's exit runs: the transport closes what is open, as the kernel closes sockets
    for i in range(10):  # some seconds of talk while rank 0 notices
        await asyncio.sleep(0.5)
        await comm.write(i)
        assert await comm.read() == i
    await comm.close()


asyncio.run(server() if rank == 0 else client())
mpicomm.Engine.get().stop()
os._exit(0)
