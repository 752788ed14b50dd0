"""Asking a session's keeper something, from a command or a notebook.

One short-lived connection per question, through distributed's own RPC, so a
command needs no Client (no worker list, no heartbeats). The questions and
answers are :mod:`dask_hpc.keeper.protocol`'s dataclasses; a refusal is raised
here again as the error the keeper raised (a bad value sent to a live session is
the same SpecError, with the same line, as before any session).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dask_hpc.errors import SchedulerUnreachableError
from dask_hpc.keeper.protocol import Answer, Request, answer_from

if TYPE_CHECKING:
    from distributed import Security

__all__ = ["Link"]

#: A live scheduler accepts a connection at once; distributed's own connect retries
#: a refused one until its timeout, which would make every command on a dead session slow.
PROBE_TIMEOUT = 3.0

_T = TypeVar("_T")
_A = TypeVar("_A", bound=Answer)


@dataclass(frozen=True)
class Link:
    """How to reach a session's scheduler: its address and, unless insecure, the session's TLS."""

    address: str
    security: Security | None = None

    async def ask_async(self, request: Request[_A], *, timeout: float = 10.0) -> _A:
        """The keeper's answer to ``request`` (one of ``request.answers``).

        Raises:
            SchedulerUnreachableError: no scheduler answers at the address in ``timeout`` seconds.
            DaskHPCError: the keeper refused: the error it raised, as it raised it.
        """
        message = await self._call(request.op, timeout, request.to_message())
        return answer_from(message, request)

    def ask(self, request: Request[_A], *, timeout: float = 10.0) -> _A:
        """``ask_async`` from synchronous code (the CLI, a notebook cell)."""
        return _run(self.ask_async(request, timeout=timeout))

    def identity(self, *, timeout: float = 5.0) -> Any:
        """distributed's own ``identity`` of the scheduler: proof that it answers."""
        return _run(self._call("identity", timeout, {}))

    async def _call(self, op: str, timeout: float, arguments: dict[str, Any]) -> Any:
        from distributed.core import rpc

        args = self.security.get_connection_args("client") if self.security else {}
        try:
            await self._probe(args.get("ssl_context"))
            async with rpc(self.address, timeout=timeout, connection_args=args) as scheduler:
                return await asyncio.wait_for(getattr(scheduler, op)(**arguments), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise SchedulerUnreachableError(
                f"the scheduler at {self.address} does not answer: {exc}"
            ) from None

    async def _probe(self, ssl_context: ssl.SSLContext | None) -> None:
        """Connect and close at once: a refused connection fails here, fast. Over TLS with a
        whole handshake: a bare TCP connection to a TLS listener makes distributed log
        "TLS handshake failed" in the scheduler's log for every command."""
        from distributed.comm.addressing import get_address_host_port

        host, port = get_address_host_port(self.address)
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl_context), PROBE_TIMEOUT
        )
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):  # closed either way
            await asyncio.wait_for(writer.wait_closed(), PROBE_TIMEOUT)


def _run(question: Coroutine[Any, Any, _T]) -> _T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False  # asked outside the except: an error of the question is not "during" this one
    else:
        running = True
    if not running:
        return asyncio.run(question)
    # A loop runs in this thread already (Jupyter): ask from another thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, question).result()
