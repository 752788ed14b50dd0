"""Worker classes of a user's own, for ``--worker-class`` (issue 23): importable by the
workers of a test's session where the repository is on their PYTHONPATH."""

from __future__ import annotations

from typing import Any

from distributed import Worker


class TaggedWorker(Worker):
    """distributed's worker that says it is this class: ``client.run(kind)`` tells."""

    tag = "tagged"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tagged = True


class NotAWorker:
    """A class that is no worker: refused."""


def kind(dask_worker: Worker) -> str:
    """What ``client.run`` asks each worker: its class's name."""
    return type(dask_worker).__name__
