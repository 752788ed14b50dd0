"""Asking a session's keeper something, from a command or a notebook.

One short-lived connection per question, through distributed's own RPC, so a
command needs no Client (no worker list, no heartbeats). A keeper handler
answers ``{"error": message, "raised": the pickled error}`` for our own errors
(:func:`refusal`), raised here again as what it was: a bad value sent to a
live session is the same SpecError, with the same line, as before any session.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dask_hpc.errors import SchedulerUnreachableError, SessionError
from dask_hpc.keeper.protocol import raised

if TYPE_CHECKING:
    from distributed import Security

__all__ = ["Link"]

#: A live scheduler accepts a connection at once; distributed's own connect retries
#: a refused one until its timeout, which would make every command on a dead session slow.
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Link:
    """How to reach a session's scheduler: its address and, unless insecure, the session's TLS."""

    address: str
    security: Security | None = None

    async def ask_async(self, op: str, *, timeout: float = 10.0, **kwargs: Any) -> dict[str, Any]:
        from distributed.core import rpc

        args = self.security.get_connection_args("client") if self.security else {}
        try:
            await self._probe()
            async with rpc(self.address, timeout=timeout, connection_args=args) as scheduler:
                answer = await asyncio.wait_for(getattr(scheduler, op)(**kwargs), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise SchedulerUnreachableError(
                f"the scheduler at {self.address} does not answer: {exc}"
            ) from None
        if not isinstance(answer, dict):
            raise SessionError(
                f"the scheduler at {self.address} gave an unexpected answer to {op}: {answer!r}"
            )
        if answer.get("error"):
            raise raised(answer)
        return answer

    def ask(self, op: str, *, timeout: float = 10.0, **kwargs: Any) -> dict[str, Any]:
        """``ask_async`` from synchronous code (the CLI, a notebook cell)."""
        question = self.ask_async(op, timeout=timeout, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(question)
        # A loop runs in this thread already (Jupyter): ask from another thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, question).result()

    async def _probe(self) -> None:
        from distributed.comm.addressing import get_address_host_port

        host, port = get_address_host_port(self.address)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
        writer.close()
