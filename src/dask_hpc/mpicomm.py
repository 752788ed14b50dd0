"""``mpi://``: a distributed comm backend over MPI, for processes that are ranks of one MPI job.

Addresses are ``mpi://<rank>/<listener>`` (a listener of that rank) and, for
the comms a listener accepts, ``mpi://<rank>/c<channel>``. One progress thread
per process makes every MPI call (the event loop never blocks in MPI): it posts
sends (Isend) and matches receives (Improbe, then a matched Irecv into a buffer of the
probed size), tests them, and hands results to the event loop. A connection
is a control message to the listener's rank that names a channel; each
channel has a pair of tags of its own (one per direction), so that many comms
between the same two ranks never mix. A message is a header (the sizes of its
frames, in pieces of at most 1 GiB: MPI counts are C ints) followed by one MPI
message per piece; closing sends a header that says so.

Not yet: detecting a dead peer rank (under mpirun, a dead rank ends the job).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import pickle
import queue
import threading
from typing import Any

from distributed.comm.core import BaseListener, Comm, CommClosedError, Connector
from distributed.comm.registry import Backend
from distributed.comm.utils import from_frames, to_frames

__all__ = ["MPIBackend", "MPIComm", "MPIConnector", "MPIListener"]

CONTROL_TAG = 1
FIRST_TAG = 2
PIECE = 2**30  # bytes: MPI counts are C ints
CLOSE = b"close"
#: Idle loops of the progress thread before it sleeps between polls, and for how long.
SPIN = 20
NAP = 0.0005


def _resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, error: bool = False
) -> None:
    def set_it() -> None:
        if not future.done():
            if error:
                future.set_exception(value)
            else:
                future.set_result(value)

    loop.call_soon_threadsafe(set_it)


class Engine:
    """The process's MPI progress thread and its queues.

    Creating it is collective (it duplicates COMM_WORLD, so that no message of
    the user's can match ours): every rank calls :meth:`get` at the same point
    first, as ``dask_hpc.mpi`` does when the protocol is ``mpi``.
    """

    _instance: Engine | None = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> Engine:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()  # a communicator of our own: no tag of the user's can match
        self.rank = self.comm.Get_rank()
        self.tag_ub: int = self.comm.Get_attr(MPI.TAG_UB) or 32767  # the standard's minimum
        self.ops: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.sends: list[tuple[Any, Any, Any, Any]] = []  # request, data, future or None, loop
        self.waiting: dict[tuple[int, int], collections.deque[tuple[asyncio.Future[Any], Any]]] = {}
        self.receiving: list[tuple[Any, bytearray, asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
        self.listeners: dict[int, tuple[Any, asyncio.AbstractEventLoop]] = {}
        self._next_listener = 0
        self._next_channel = 0
        self._ids = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dask-hpc-mpi-progress", daemon=True)
        self._thread.start()
        # Before mpi4py finalises MPI at exit (atexit runs the last registered first).
        atexit.register(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """End the progress thread (before MPI is finalised: only one thread may then call MPI)."""
        if self._thread.is_alive():
            self._post(("stop",))
            self._thread.join(timeout)

    # ---- called from event loops -------------------------------------------------------

    def new_channel(self) -> int:
        with self._ids:
            channel = self._next_channel
            self._next_channel += 1
        if FIRST_TAG + 2 * channel + 1 > self.tag_ub:
            raise CommClosedError(f"mpi: out of MPI tags ({self.tag_ub})")
        return channel

    def add_listener(self, accept: Any) -> int:
        with self._ids:
            index = self._next_listener
            self._next_listener += 1
        self._post(("listen", index, accept, asyncio.get_running_loop()))
        return index

    def remove_listener(self, index: int) -> None:
        self._post(("unlisten", index))

    def send(self, dest: int, tag: int, data: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._post(("send", dest, tag, data, future, loop))
        return future

    def recv(self, source: int, tag: int) -> asyncio.Future[bytearray]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytearray] = loop.create_future()
        self._post(("recv", source, tag, future, loop))
        return future

    def cancel(self, source: int, tag: int, reason: str) -> None:
        """Fail the receives waiting on (source, tag): their comm is closed."""
        self._post(("cancel", source, tag, reason))

    def _post(self, op: tuple[Any, ...]) -> None:
        self.ops.put(op)
        self.wake.set()

    # ---- the progress thread: every MPI call is made here -----------------------------

    def _run(self) -> None:
        idle = 0
        while not self._stopped:
            busy = self._take_ops()
            busy = self._progress_sends() or busy
            busy = self._match_receives() or busy
            busy = self._progress_receives() or busy
            busy = self._accept() or busy
            if busy:
                idle = 0
                continue
            idle += 1
            if idle > SPIN:  # nothing to do for a while: poll less often
                self.wake.wait(NAP)
                self.wake.clear()

    def _take_ops(self) -> bool:
        MPI = self.MPI
        took = False
        while True:
            try:
                op = self.ops.get_nowait()
            except queue.Empty:
                return took
            took = True
            kind = op[0]
            if kind == "send":
                _, dest, tag, data, future, loop = op
                request = self.comm.Isend([data, MPI.BYTE], dest=dest, tag=tag)
                self.sends.append((request, data, future, loop))
            elif kind == "recv":
                _, source, tag, future, loop = op
                self.waiting.setdefault((source, tag), collections.deque()).append((future, loop))
            elif kind == "cancel":
                _, source, tag, reason = op
                for future, loop in self.waiting.pop((source, tag), ()):
                    _resolve(loop, future, CommClosedError(reason), error=True)
            elif kind == "listen":
                _, index, accept, loop = op
                self.listeners[index] = (accept, loop)
            elif kind == "unlisten":
                self.listeners.pop(op[1], None)
            elif kind == "stop":
                self._stopped = True

    def _progress_sends(self) -> bool:
        if not self.sends:
            return False
        done = [s for s in self.sends if s[0].Test()]
        for item in done:
            self.sends.remove(item)
            _, _, future, loop = item
            if future is not None:  # None: nobody waits (abort)
                _resolve(loop, future, None)
        return bool(done)

    def _match_receives(self) -> bool:
        MPI = self.MPI
        matched = False
        for key in list(self.waiting):
            waiters = self.waiting[key]
            while waiters:
                status = MPI.Status()
                message = self.comm.Improbe(source=key[0], tag=key[1], status=status)
                if message is None:
                    break
                buffer = _buffer(status.Get_count(MPI.BYTE))
                request = message.Irecv([buffer, MPI.BYTE])
                future, loop = waiters.popleft()
                self.receiving.append((request, buffer, future, loop))
                matched = True
            if not waiters:
                del self.waiting[key]
        return matched

    def _progress_receives(self) -> bool:
        if not self.receiving:
            return False
        done = [r for r in self.receiving if r[0].Test()]
        for item in done:
            self.receiving.remove(item)
            _, buffer, future, loop = item
            _resolve(loop, future, buffer)
        return bool(done)

    def _accept(self) -> bool:
        if not self.listeners:
            return False
        MPI = self.MPI
        status = MPI.Status()
        message = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=CONTROL_TAG, status=status)
        if message is None:
            return False
        buffer = bytearray(status.Get_count(MPI.BYTE))
        message.Recv([buffer, MPI.BYTE])  # a few bytes: at once
        index, channel = pickle.loads(buffer)
        listener = self.listeners.get(index)
        if listener is not None:
            accept, loop = listener
            loop.call_soon_threadsafe(accept, status.Get_source(), channel)
        return True


def _buffer(nbytes: int) -> Any:
    """Memory to receive into, not zero-filled (a bytearray is: 10 ms for 64 MiB here)."""
    import numpy as np

    return np.empty(nbytes, dtype=np.uint8).data


def _tags(channel: int) -> tuple[int, int]:
    """(the connecting side's tag, the accepting side's tag) of a channel."""
    return FIRST_TAG + 2 * channel, FIRST_TAG + 2 * channel + 1


def _parse(address: str) -> tuple[int, str]:
    loc = address.split("://", 1)[-1]
    rank, _, rest = loc.partition("/")
    return int(rank), rest


class MPIComm(Comm):
    def __init__(
        self,
        engine: Engine,
        peer: int,
        send_tag: int,
        recv_tag: int,
        local_address: str,
        peer_address: str,
        deserialize: bool = True,
    ) -> None:
        super().__init__(deserialize=deserialize)
        self._engine = engine
        self._peer = peer
        self._send_tag = send_tag
        self._recv_tag = recv_tag
        self._local_addr = local_address
        self._peer_addr = peer_address
        self._closed = False
        self._writing = asyncio.Lock()  # the pieces of two messages must not interleave

    @property
    def local_address(self) -> str:
        return self._local_addr

    @property
    def peer_address(self) -> str:
        return self._peer_addr

    async def read(self, deserializers: Any = None) -> Any:
        if self._closed:
            raise CommClosedError(f"mpi: comm to {self._peer_addr} is closed")
        header = await self._engine.recv(self._peer, self._recv_tag)
        if header == CLOSE:
            self._closed = True
            raise CommClosedError(f"mpi: {self._peer_addr} closed the comm")
        frames = []
        for pieces in pickle.loads(header):
            parts = [await self._engine.recv(self._peer, self._recv_tag) for _ in pieces]
            frames.append(parts[0] if len(parts) == 1 else b"".join(parts))
        return await from_frames(
            frames,
            deserialize=self.deserialize,
            deserializers=deserializers,
            allow_offload=self.allow_offload,
        )

    async def write(self, msg: Any, serializers: Any = None, on_error: str = "message") -> int:
        if self._closed:
            raise CommClosedError(f"mpi: comm to {self._peer_addr} is closed")
        frames = await to_frames(
            msg,
            allow_offload=self.allow_offload,
            serializers=serializers,
            on_error=on_error,
            context={
                "sender": self.local_info,
                "recipient": self.remote_info,
                **self.handshake_options,
            },
        )
        views = [memoryview(f).cast("B") for f in frames]
        header = [[min(PIECE, len(v) - i) for i in range(0, max(len(v), 1), PIECE)] for v in views]
        async with self._writing:
            sends = [self._engine.send(self._peer, self._send_tag, pickle.dumps(header))]
            for view in views:
                for i in range(0, max(len(view), 1), PIECE):
                    sends.append(self._engine.send(self._peer, self._send_tag, view[i : i + PIECE]))
            await asyncio.gather(*sends)
        return sum(len(v) for v in views)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.cancel(self._peer, self._recv_tag, f"mpi: comm to {self._peer_addr} was closed")
        await self._engine.send(self._peer, self._send_tag, CLOSE)

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.cancel(self._peer, self._recv_tag, f"mpi: comm to {self._peer_addr} was aborted")
        self._engine._post(("send", self._peer, self._send_tag, CLOSE, None, None))

    def closed(self) -> bool:
        return self._closed


class MPIConnector(Connector):
    prefix = "mpi://"

    async def connect(self, address: str, deserialize: bool = True, **connection_args: Any) -> MPIComm:
        engine = Engine.get()
        rank, listener = _parse(address)
        channel = engine.new_channel()
        mine, theirs = _tags(channel)
        comm = MPIComm(
            engine,
            rank,
            mine,
            theirs,
            f"mpi://{engine.rank}/c{channel}",
            f"mpi://{rank}/{listener}",
            deserialize,
        )
        await engine.send(rank, CONTROL_TAG, pickle.dumps((int(listener or 0), channel)))
        return comm


class MPIListener(BaseListener):
    prefix = "mpi://"  # distributed's worker prints it

    def __init__(self, loc: str, handle_comm: Any, deserialize: bool = True, **connection_args: Any) -> None:
        super().__init__()
        self.handle_comm = handle_comm
        self.deserialize = deserialize
        self._engine: Engine | None = None
        self._index: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._engine = Engine.get()
        self._index = self._engine.add_listener(self._accept)

    def _accept(self, source: int, channel: int) -> None:
        assert self._engine is not None
        theirs, mine = _tags(channel)
        comm = MPIComm(
            self._engine,
            source,
            mine,
            theirs,
            self.contact_address,
            f"mpi://{source}/c{channel}",
            self.deserialize,
        )
        task = asyncio.ensure_future(self._handle(comm))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, comm: MPIComm) -> None:
        try:
            await self.on_connection(comm)
        except CommClosedError:
            return
        await self.handle_comm(comm)

    def stop(self) -> None:
        if self._engine is not None and self._index is not None:
            self._engine.remove_listener(self._index)
        self.abort_handshaking_comms()

    @property
    def listen_address(self) -> str:
        return self.contact_address

    @property
    def contact_address(self) -> str:
        assert self._engine is not None and self._index is not None, "listener not started"
        return f"mpi://{self._engine.rank}/{self._index}"


class MPIBackend(Backend):
    def get_connector(self) -> MPIConnector:
        return MPIConnector()

    def get_listener(
        self, loc: str, handle_comm: Any, deserialize: bool, **connection_args: Any
    ) -> MPIListener:
        return MPIListener(loc, handle_comm, deserialize, **connection_args)

    def get_address_host(self, loc: str) -> str:
        return f"rank{_parse(loc)[0]}"

    def resolve_address(self, loc: str) -> str:
        return loc

    def get_local_address_for(self, loc: str) -> str:
        return f"mpi://{Engine.get().rank}/0"
