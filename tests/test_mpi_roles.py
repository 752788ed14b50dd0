"""The scheduler's rank ends when its scheduler closes: no wait at the end (no MPI needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dask_hpc.mpi import roles


class Closed:
    """A scheduler that has already closed: what a rank sees once its script shut it down."""

    address = "tcp://127.0.0.1:1"
    listeners: tuple[Any, ...] = ()

    async def finished(self) -> None:
        return None

    async def close(self) -> None:
        return None


class OneRank:
    def Get_rank(self) -> int:  # mpi4py's name
        return 0


class Watch:
    def serve(self, server: Any) -> None:
        pass


def test_the_schedulers_rank_returns_once_its_scheduler_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    """It waited CLOSE_TIMEOUT (10 s) for its watcher of dead ranks, which only ends when it is
    cancelled: every MPI job ended 10 s after its script. With the wait made an hour here, the
    role must still return at once."""
    import dask_hpc.launch

    async def start(**_: Any) -> Closed:
        return Closed()

    monkeypatch.setattr(dask_hpc.launch, "start_scheduler", start)
    monkeypatch.setattr(roles, "announce", lambda *_: None)
    monkeypatch.setattr(roles, "failed_ranks", lambda _: set())
    monkeypatch.setattr(roles, "CLOSE_TIMEOUT", 3600.0)
    role = roles.scheduler(OneRank(), 0, None, Watch(), serves={1: "your script's"}, dashboard=False)  # type: ignore[arg-type]
    asyncio.run(asyncio.wait_for(role, 20))
