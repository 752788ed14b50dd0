"""The engine of ``mpi://`` (distributed's comms over MPI, :mod:`dask_hpc.comm.backend`): one per rank.

Addresses are ``mpi://<rank>/<listener>`` (a listener of that rank) and, for
the comms a listener accepts, ``mpi://<rank>/c<channel>``. A comm posts its
sends itself (Isend, from its event loop's thread: MPI_THREAD_MULTIPLE); one
progress thread per process does the rest, so that the event loop never blocks
in MPI: it matches and receives incoming messages, sees sends and receives to
their end, and hands results to the event loop. A connection is a control
message to the listener's rank that names a channel; each channel has a pair of
tags of its own (one per direction), so that many comms between the same two
ranks never mix. A message is a head (the sizes of its frames, and the frames
themselves when they are small) followed, for a large message, by its frames,
in pieces of at most 1 GiB (MPI counts are C ints); closing sends a head that
says so.

Why it is built this way (each measured with ``dask-hpc bench network`` or a
round trip between two ranks, on a 2-core VM where every hand-over between
threads costs 0.1-1 ms): a message leaves when it is written, not when the
progress thread next looks, and a small one is usually sent at once, so that
the writer waits for no thread. The head is matched with Improbe and received
into a buffer of the probed size; a small message travels inside its head (one
MPI message). The frames of a large message are received by the progress thread
as soon as its head is in, at once, into one contiguous buffer, as distributed's
tcp comm does (no join, no copy, no event-loop hop per piece; distributed's
shards of a large frame are slices of that buffer); that buffer comes from a
pool of memory already touched (:mod:`dask_hpc.comm.buffers`). The progress thread
polls while anything is in flight or was lately (Open MPI moves large messages
only while it is called), but gives its core away between polls
(``sched_yield``): a thread that spins takes the core its own rank's event loop
needs (a round trip: 6.8 ms spinning, 1.0 ms yielding); idle, it naps, the
longer the longer it has been idle, so that idle ranks leave the cores to busy
ones.

A rank that dies: under a plain ``mpirun`` the whole job ends. Under
``mpirun --with-ft ulfm`` (Open MPI's fault tolerance) the others go on: the
progress thread asks MPI which ranks have failed (every 0.1 s; half a
microsecond) and fails every comm to a dead rank with ``CommClosedError``, as
a closed socket does over tcp, so distributed forgets that worker and
recomputes what it held. A message from a rank that dies while sending it (past MPI's
eager limit the receiver fetches the rest from the sender) fails that comm the same way;
and if the progress thread itself ever dies, every send and receive then fails at once
instead of waiting for it. A rank whose Python exits (a script that ends or
fails) closes the comms it left open on its way out, as the kernel closes a
process's sockets, so its peers know at once under any ``mpirun``.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import os
import pickle
import queue
import struct
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distributed.comm.core import CommClosedError

from dask_hpc.comm.buffers import BufferPool, default_limit
from dask_hpc.errors import DaskHPCError

if TYPE_CHECKING:
    from dask_hpc.comm.backend import MPIComm

__all__ = ["Engine"]

logger = logging.getLogger("dask_hpc.comm.engine")

CONTROL_TAG = 1
FIRST_TAG = 2
PIECE = 2**30  # bytes: MPI counts are C ints
CLOSE = b"close"
#: Messages up to this many bytes travel inside their head: one MPI message.
INLINE = 64 * 2**10
#: The length of a head's metadata, before it.
_META = struct.Struct("!I")
#: Idle seconds of the progress thread before it sleeps between polls.
SPIN = 0.002
#: Its naps: a fraction of the time it has been idle, within bounds (seconds).
NAP_FRACTION = 0.02
SHORTEST_NAP = 0.00005
LONGEST_NAP = 0.001
#: Seconds between asking MPI which ranks have failed.
FAILURE_CHECK = 0.1


@dataclass(eq=False)
class _Posted:
    """Requests posted for one message, the memory they use (kept alive until they end), the
    peer, who waits (no future: nobody, as for the close message of an abort) and what they
    get when the requests are done (a received message's frames; nothing for a send)."""

    requests: list[Any]
    memory: Any
    peer: int
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None
    result: Any = None
    tag: int = -1  # a receive's tag: closing its comm fails its reader at once


def resolve(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], value: Any, error: bool = False
) -> None:
    def set_it() -> None:
        if not future.done():
            if error:
                future.set_exception(value)
            else:
                future.set_result(value)

    with contextlib.suppress(RuntimeError):  # that event loop is closed (a client gone): nobody waits
        loop.call_soon_threadsafe(set_it)


class Engine:
    """The process's MPI progress thread and its queues.

    Creating it is collective over the communicator it is given (COMM_WORLD by
    default): it duplicates it, so that no message of the user's can match ours,
    and ``mpi://`` rank numbers are that communicator's. Every rank of it calls
    :meth:`get` with it at the same point first, as ``dask_hpc.mpi`` does when the
    protocol is ``mpi``; ranks outside it take no part (dask-mpi runs Dask on a
    ``COMM_WORLD.Split`` and the other ranks carry on).
    """

    _instance: Engine | None = None
    _lock = threading.Lock()

    @classmethod
    def get(cls, comm: Any = None) -> Engine:
        """The process's engine; the first call creates it on ``comm`` (later ones ignore it)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(comm)
            return cls._instance

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:  # both the event loop and our thread call MPI
            raise DaskHPCError(
                "mpi:// needs an MPI initialised with MPI_THREAD_MULTIPLE, which this one does not "
                "give: use tls or tcp"
            )
        # A communicator of our own: no tag of the user's can match.
        self.comm = (MPI.COMM_WORLD if comm is None else comm).Dup()
        self.rank = self.comm.Get_rank()
        self.tag_ub: int = self.comm.Get_attr(MPI.TAG_UB) or 32767  # the standard's minimum
        on_node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks sharing this node's memory
        self.buffers = BufferPool(default_limit(on_node.Get_size()))
        on_node.Free()
        self.ops: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.wake = threading.Event()
        self.in_flight: list[_Posted] = []
        # Requests to a rank that died: never waited for again, their memory kept in case MPI still writes.
        self._abandoned: list[_Posted] = []
        self.failed: set[int] = set()  # ranks MPI says have died (only with fault tolerance on)
        self._next_check = 0.0
        self.last_send = 0.0  # when a comm of this process last sent (time.monotonic)
        # Heads waited for, by (source, tag): matched with Improbe when they arrive.
        self.waiting: dict[tuple[int, int], collections.deque[tuple[asyncio.Future[Any], Any]]] = {}
        self.listeners: dict[int, tuple[Any, asyncio.AbstractEventLoop]] = {}
        self.comms: weakref.WeakSet[MPIComm] = weakref.WeakSet()  # open ones: closed at exit
        self._next_listener = 0
        self._next_channel = 0
        self._ids = threading.Lock()
        self._stopped = False  # the progress thread has ended, or is ending
        # Why the progress thread died, if it did: every later send or receive fails with it at
        # once (nobody else would ever end them: their callers would wait forever).
        self._broken: CommClosedError | None = None
        self._thread = threading.Thread(target=self._run, name="dask-hpc-mpi-progress", daemon=True)
        self._thread.start()
        # Before mpi4py finalises MPI at exit (atexit runs the last registered first).
        atexit.register(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the comms still open, as the kernel closes a process's sockets when it exits
        (their peers' reads fail now, not when a timeout runs out; at most a second to send
        that), then end the progress thread (before MPI is finalised: only one thread may
        then call MPI)."""
        if not self._stopped:
            for comm in list(self.comms):
                comm.abort()
            deadline = time.monotonic() + 1.0
            while (self.in_flight or not self.ops.empty()) and time.monotonic() < deadline:
                time.sleep(0.001)
        self._stopped = True  # no more sends: MPI is about to end
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

    async def send(self, dest: int, tag: int, pieces: list[Any]) -> None:
        """Send ``pieces``, one MPI message each, in order; returns when all are sent.

        The sends are posted here, in the caller's thread (MPI_THREAD_MULTIPLE allows it), so
        that the message leaves now, not when the progress thread next looks; a small message
        is usually sent at once (MPI copies it out), and then no thread is waited for.
        """
        requests = self.post_sends(dest, tag, pieces)
        try:
            if self.MPI.Request.Testall(requests):
                return
        except self.MPI.Exception as exc:  # e.g. the peer died: MPI may still read the memory
            self._post(("track", _Posted(requests, pieces, dest, None, None)))
            raise CommClosedError(f"mpi: sending to rank {dest} failed: {exc}") from exc
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._post(("track", _Posted(requests, pieces, dest, future, loop)))
        await future

    def send_and_forget(self, dest: int, tag: int, pieces: list[Any]) -> None:
        """Send ``pieces`` without waiting (an abort's close message); errors are dropped."""
        with contextlib.suppress(CommClosedError):
            self._post(("track", _Posted(self.post_sends(dest, tag, pieces), pieces, dest, None, None)))

    def post_sends(self, dest: int, tag: int, pieces: list[Any]) -> list[Any]:
        """Isend each piece, in order (MPI keeps the order of messages with the same
        destination, tag and communicator); a dead destination is CommClosedError."""
        MPI = self.MPI
        if self._broken is not None:
            raise self._broken
        if self._stopped:
            raise CommClosedError("mpi: the transport has stopped (the process is exiting)")
        if dest in self.failed:
            raise CommClosedError(f"mpi: rank {dest} has died")
        self.last_send = time.monotonic()
        requests = []
        try:
            for piece in pieces:
                requests.append(self.comm.Isend([piece, MPI.BYTE], dest, tag))
        except MPI.Exception as exc:  # e.g. the peer died (with fault tolerance on)
            if requests:  # the first pieces went: keep their memory until MPI is done with it
                self._post(("track", _Posted(requests, pieces, dest, None, None)))
            raise CommClosedError(f"mpi: sending to rank {dest} failed: {exc}") from exc
        return requests

    def recv(self, source: int, tag: int) -> asyncio.Future[list[memoryview] | None]:
        """The next message from (source, tag): its frames, or None if the peer closed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[memoryview] | None] = loop.create_future()
        self._post(("recv", source, tag, future, loop))
        return future

    def cancel(self, source: int, tag: int, reason: str) -> None:
        """Fail the receives waiting on (source, tag): their comm is closed."""
        self._post(("cancel", source, tag, reason))

    def _post(self, op: tuple[Any, ...]) -> None:
        self.ops.put(op)
        self.wake.set()
        if self._broken is not None:  # no thread takes it: fail it here (it may be ours or the thread's)
            self._refuse_ops(self._broken)

    def _refuse_ops(self, error: CommClosedError) -> None:
        """Fail the sends and receives waiting in the queue (the progress thread is gone)."""
        while True:
            try:
                op = self.ops.get_nowait()
            except queue.Empty:
                return
            if op[0] == "track":
                _fail(op[1], error)
            elif op[0] == "recv":
                resolve(op[4], op[3], error, error=True)

    # ---- the progress thread: every MPI call but the comms' sends is made here ---------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the thread must not die silently: every waiter would hang
            logger.exception("mpi progress thread failed")
            self._broken = CommClosedError(f"mpi: the progress thread failed: {exc!r}")
            self._fail_all(self._broken)
            self._refuse_ops(self._broken)

    def _fail_all(self, error: Exception) -> None:
        for posted in self.in_flight:
            _fail(posted, error)
        self.in_flight.clear()
        for waiters in self.waiting.values():
            for future, loop in waiters:
                resolve(loop, future, error, error=True)
        self.waiting.clear()

    def _loop(self) -> None:
        last_busy = time.monotonic()
        while not self._stopped:
            busy = self._take_ops()
            self._take_in()
            busy = self._match_receives() or busy
            busy = self._progress() or busy
            busy = self._accept() or busy
            busy = self._check_failures() or busy
            if busy:
                last_busy = time.monotonic()
                continue
            now = time.monotonic()
            if self.in_flight or now - last_busy < SPIN:
                os.sched_yield()  # poll again soon, after whatever else wants this core (and the GIL)
            else:  # idle: poll less often the longer it lasts; a rank that has just sent awaits a reply
                self.wake.wait(_nap(now - max(last_busy, self.last_send)))
                self.wake.clear()

    def _take_in(self) -> None:
        """Let MPI take in what has arrived before we probe for it: Open MPI's probe looks,
        then progresses, so a message that came during a nap would be seen only a nap later
        (a request to an idle worker: 0.85 ms → 0.4 ms here)."""
        try:
            self.comm.Iprobe(source=self.MPI.ANY_SOURCE, tag=self.MPI.ANY_TAG)
        except self.MPI.Exception:  # a rank died: say we know, so that probes of any rank go on
            self._ack_failed()

    def _ack_failed(self) -> None:
        """Acknowledge the failures MPI knows of, so that wildcard probes work again."""
        with contextlib.suppress(self.MPI.Exception):
            self.comm.Ack_failed()

    def _take_ops(self) -> bool:
        took = False
        while True:
            try:
                op = self.ops.get_nowait()
            except queue.Empty:
                return took
            took = True
            kind = op[0]
            if kind == "track":  # sends the caller posted: see them to their end
                posted = op[1]
                if posted.peer in self.failed:
                    self._abandoned.append(posted)
                    _fail(posted, CommClosedError(f"mpi: rank {posted.peer} has died"))
                else:
                    self.in_flight.append(posted)
            elif kind == "recv":
                _, source, tag, future, loop = op
                if source in self.failed:
                    resolve(loop, future, CommClosedError(f"mpi: rank {source} has died"), error=True)
                else:
                    self.waiting.setdefault((source, tag), collections.deque()).append((future, loop))
            elif kind == "cancel":
                _, source, tag, reason = op
                for future, loop in self.waiting.pop((source, tag), ()):
                    resolve(loop, future, CommClosedError(reason), error=True)
                for posted in self.in_flight:  # a message coming in: MPI still writes, nobody reads
                    if posted.peer == source and posted.tag == tag:
                        _fail(posted, CommClosedError(reason))
            elif kind == "listen":
                _, index, accept, loop = op
                self.listeners[index] = (accept, loop)
            elif kind == "unlisten":
                self.listeners.pop(op[1], None)
            elif kind == "stop":
                self._stopped = True

    def _match_receives(self) -> bool:
        """Receive the heads that have arrived for the comms that wait for one; a small
        message is whole in its head, a large one's frames are received next, at once, into
        one buffer (so that the transfer starts now, not after a trip to the event loop)."""
        MPI = self.MPI
        matched = False
        for key in list(self.waiting):
            waiters = self.waiting[key]
            while waiters:
                status = MPI.Status()
                try:
                    message = self.comm.Improbe(source=key[0], tag=key[1], status=status)
                except MPI.Exception as exc:  # e.g. the peer died (with fault tolerance on)
                    for future, loop in waiters:
                        resolve(loop, future, CommClosedError(f"mpi: {exc}"), error=True)
                    waiters.clear()
                    break
                if message is None:
                    break
                head = bytearray(status.Get_count(MPI.BYTE))
                future, loop = waiters.popleft()
                matched = True
                try:
                    # At most INLINE bytes and a little: at once from a live peer. Past MPI's eager
                    # limit only the head's start has come, and the rest is fetched from the peer:
                    # one that died meanwhile fails it (under fault tolerance), and its comm fails.
                    message.Recv([head, MPI.BYTE])
                except MPI.Exception as exc:
                    error = CommClosedError(f"mpi: receiving from rank {key[0]} failed: {exc}")
                    waiters.appendleft((future, loop))
                    for waiter, its_loop in waiters:
                        resolve(its_loop, waiter, error, error=True)
                    waiters.clear()
                    break
                if head == CLOSE:
                    resolve(loop, future, None)
                    continue
                piece, sizes, start = _parse_head(head)
                if start is not None:  # writable slices of the head, as tcp's frames are of its bytearray
                    resolve(loop, future, _slices(memoryview(head)[start:], sizes))
                    continue
                frames = _slices(self.buffers.take(sum(sizes)), sizes)
                posted = _Posted([], frames, key[0], future, loop, result=frames, tag=key[1])
                try:
                    for frame in frames:
                        for p in pieces_of(frame, piece):
                            posted.requests.append(self.comm.Irecv([p, MPI.BYTE], key[0], key[1]))
                except MPI.Exception as exc:
                    _fail(posted, CommClosedError(f"mpi: {exc}"))
                    self._abandoned.append(posted)
                else:
                    self.in_flight.append(posted)
            if not waiters:
                del self.waiting[key]
        return matched

    def _progress(self) -> bool:
        """Test the sends and receives in flight; resolve the futures of those done."""
        if not self.in_flight:
            return False
        done: list[tuple[_Posted, CommClosedError | None]] = []
        for posted in self.in_flight:
            try:
                finished = self.MPI.Request.Testall(posted.requests)
            except self.MPI.Exception as exc:  # e.g. a message longer than its buffer, a dead peer
                done.append((posted, CommClosedError(f"mpi: {exc}")))
                continue
            if finished:
                done.append((posted, None))
        for posted, error in done:
            self.in_flight.remove(posted)
            if error is None:
                if posted.future is not None and posted.loop is not None:
                    resolve(posted.loop, posted.future, posted.result)
            else:
                _fail(posted, error)
        return bool(done)

    def _check_failures(self) -> bool:
        """Every FAILURE_CHECK seconds: fail the comms to ranks MPI says have died."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + FAILURE_CHECK
        try:
            group = self.comm.Get_failed()  # those this rank knows of; empty unless fault tolerance is on
        except (NotImplementedError, self.MPI.Exception):  # an MPI without it: a dead rank ends the job
            self._next_check = float("inf")
            return False
        if group.Get_size() == len(self.failed):
            group.Free()
            return False
        ranks = self.MPI.Group.Translate_ranks(group, list(range(group.Get_size())), self.comm.Get_group())
        group.Free()
        for rank in set(ranks) - self.failed:
            logger.warning("mpi: rank %d has died; its comms are closed", rank)
            self.failed.add(rank)
            self._peer_died(rank)
        return True

    def _peer_died(self, rank: int) -> None:
        error = CommClosedError(f"mpi: rank {rank} has died")
        for key in [key for key in self.waiting if key[0] == rank]:
            for future, loop in self.waiting.pop(key):
                resolve(loop, future, error, error=True)
        for posted in [p for p in self.in_flight if p.peer == rank]:
            self.in_flight.remove(posted)
            self._abandoned.append(posted)
            _fail(posted, error)

    def _accept(self) -> bool:
        if not self.listeners:
            return False
        MPI = self.MPI
        status = MPI.Status()
        try:
            message = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=CONTROL_TAG, status=status)
        except MPI.Exception:  # a rank died: say we know, so that receives from any rank go on
            self._ack_failed()
            return True
        if message is None:
            return False
        buffer = bytearray(status.Get_count(MPI.BYTE))
        try:
            message.Recv([buffer, MPI.BYTE])  # a few bytes: at once
        except MPI.Exception:  # the connecting rank died: nobody to accept
            return True
        index, channel = pickle.loads(buffer)
        listener = self.listeners.get(index)
        if listener is not None:
            accept, loop = listener
            with contextlib.suppress(RuntimeError):  # its event loop has closed
                loop.call_soon_threadsafe(accept, status.Get_source(), channel)
        return True


def _nap(idle: float) -> float:
    """How long an idle progress thread sleeps before it polls again: a message that comes
    after ``idle`` seconds of quiet waits at most 2% of that (a request to a worker that was
    busy a moment ago is answered soon), and a rank idle for long polls 1000 times a second."""
    return min(LONGEST_NAP, max(SHORTEST_NAP, idle * NAP_FRACTION))


def pieces_of(frame: memoryview, piece: int) -> list[memoryview]:
    """A frame cut in MPI messages of at most ``piece`` bytes (none for an empty frame)."""
    return [frame[i : i + piece] for i in range(0, len(frame), piece)]


def _fail(posted: _Posted, error: Exception) -> None:
    if posted.future is not None and posted.loop is not None:
        resolve(posted.loop, posted.future, error, error=True)


def _slices(buffer: memoryview, sizes: list[int]) -> list[memoryview]:
    """``buffer`` cut into consecutive frames of ``sizes``."""
    frames, start = [], 0
    for size in sizes:
        frames.append(buffer[start : start + size])
        start += size
    return frames


def message(views: list[memoryview]) -> list[bytes | memoryview]:
    """The MPI messages that carry one message of frames ``views``: its head alone, with the
    frames inside when they are small, else followed by the frames in pieces."""
    sizes = [len(v) for v in views]
    if sum(sizes) <= INLINE:
        return [message_head(sizes, views)]
    return [message_head(sizes, None), *(p for view in views for p in pieces_of(view, PIECE))]


def message_head(sizes: list[int], inline: list[memoryview] | None) -> bytes:
    """A message's head: its frame sizes and our piece size (the receiver's may differ), and
    the frames themselves if ``inline``."""
    meta = pickle.dumps((PIECE, sizes, inline is not None))
    parts: list[bytes | memoryview] = [_META.pack(len(meta)), meta, *(inline or ())]
    return b"".join(parts)


def _parse_head(head: bytearray) -> tuple[int, list[int], int | None]:
    """(the sender's piece size, the frame sizes, where the frames start in ``head`` when
    they are inside it, else None)."""
    (length,) = _META.unpack_from(head)
    start = _META.size + length
    piece, sizes, inline = pickle.loads(memoryview(head)[_META.size : start])
    return piece, sizes, start if inline else None


def channel_tags(channel: int) -> tuple[int, int]:
    """(the connecting side's tag, the accepting side's tag) of a channel."""
    return FIRST_TAG + 2 * channel, FIRST_TAG + 2 * channel + 1
