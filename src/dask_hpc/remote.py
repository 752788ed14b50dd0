"""Asking a session's keeper something, from a command or a notebook.

One short-lived connection per question, through distributed's own RPC, so a
command needs no Client (no worker list, no heartbeats). A keeper handler
answers ``{"error": message, "raised": the pickled error}`` for our own errors
(:func:`refusal`), raised here again as what it was: a bad value sent to a
live session is the same SpecError, with the same line, as before any session.
"""

from __future__ import annotations

import asyncio
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DaskHPCError, SchedulerUnreachableError, SessionError

if TYPE_CHECKING:
    from distributed import Security

__all__ = ["Link", "refusal"]

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
            raise _raised(answer)
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


def refusal(error: DaskHPCError, **more: Any) -> dict[str, Any]:
    """A keeper's answer for ``error``: its line, and the error itself (every one of ours
    survives a pickle round trip, tests/test_errors.py), for :class:`Link` to raise again."""
    return {"error": str(error), "raised": pickle.dumps(error), **more}


def _raised(answer: dict[str, Any]) -> DaskHPCError:
    """The error a keeper answered with: as it was raised there, else a SessionError."""
    raised = answer.get("raised")
    if isinstance(raised, bytes):
        try:
            error = pickle.loads(raised)  # from our own session's scheduler, over its TLS
        except Exception:  # an older keeper, or a class this side lacks: its words will do
            error = None
        if isinstance(error, DaskHPCError):
            return error
    return SessionError(str(answer["error"]))
