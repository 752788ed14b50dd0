"""``mpi://`` as distributed sees it: the comm, the listener, the connector and the backend
(``distributed.comm.backends`` entry point ``mpi``), over the process's one
:class:`~dask_hpc.comm.engine.Engine`, which does every MPI call but the comms' own sends.

Addresses are ``mpi://<rank>/<listener>``; see :mod:`dask_hpc.comm.engine` for the wire
format and why it is built this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from typing import Any

from distributed.comm.core import BaseListener, Comm, CommClosedError, Connector
from distributed.comm.registry import Backend
from distributed.comm.utils import from_frames, to_frames
from distributed.utils import ensure_memoryview

from dask_hpc.comm.engine import (
    CLOSE,
    CONTROL_TAG,
    Engine,
    channel_tags,
    message,
    resolve,
)

__all__ = ["MPIBackend", "MPIComm", "MPIConnector", "MPIListener"]


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
        self._reading: asyncio.Future[list[memoryview] | None] | None = None  # the last read's
        engine.comms.add(self)

    @property
    def local_address(self) -> str:
        return self._local_addr

    @property
    def peer_address(self) -> str:
        return self._peer_addr

    async def read(self, deserializers: Any = None) -> Any:
        if self._closed:
            raise CommClosedError(f"mpi: comm to {self._peer_addr} is closed")
        self._reading = self._engine.recv(self._peer, self._recv_tag)
        frames = await self._reading
        if frames is None:
            self._closed = True
            raise CommClosedError(f"mpi: {self._peer_addr} closed the comm")
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
        views = [ensure_memoryview(f) for f in frames]  # flat bytes, even of empty or strided frames
        # All of a message's pieces are posted at once, in order: two writes cannot interleave.
        await self._engine.send(self._peer, self._send_tag, message(views))
        return sum(len(v) for v in views)

    async def close(self) -> None:
        if self._closed:
            return
        self._stop_reading(f"mpi: comm to {self._peer_addr} was closed")
        with contextlib.suppress(CommClosedError):  # the peer is gone already: closed all the same
            await self._engine.send(self._peer, self._send_tag, [CLOSE])

    def abort(self) -> None:
        if self._closed:
            return
        self._stop_reading(f"mpi: comm to {self._peer_addr} was aborted")
        self._engine.send_and_forget(self._peer, self._send_tag, [CLOSE])

    def _stop_reading(self, reason: str) -> None:
        """Closed: a read that waits fails now, as on a closed socket (distributed cancels a
        handler that still reads once it has closed its comms), and the progress thread
        forgets it."""
        self._closed = True
        self._engine.comms.discard(self)
        reading = self._reading
        if reading is not None and not reading.done():
            try:
                here = asyncio.get_running_loop() is reading.get_loop()
            except RuntimeError:  # no event loop in this thread
                here = False
            if here:
                reading.set_exception(CommClosedError(reason))
            else:
                resolve(reading.get_loop(), reading, CommClosedError(reason), error=True)
        self._engine.cancel(self._peer, self._recv_tag, reason)

    def closed(self) -> bool:
        return self._closed


class MPIConnector(Connector):
    prefix = "mpi://"

    async def connect(self, address: str, deserialize: bool = True, **connection_args: Any) -> MPIComm:
        engine = Engine.get()
        rank, listener = _parse(address)
        channel = engine.new_channel()
        mine, theirs = channel_tags(channel)
        comm = MPIComm(
            engine,
            rank,
            mine,
            theirs,
            f"mpi://{engine.rank}/c{channel}",
            f"mpi://{rank}/{listener}",
            deserialize,
        )
        await engine.send(rank, CONTROL_TAG, [pickle.dumps((int(listener or 0), channel))])
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
        theirs, mine = channel_tags(channel)
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
