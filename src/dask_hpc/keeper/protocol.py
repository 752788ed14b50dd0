"""What a session's keeper and those who ask it (commands, ``BatchCluster``) exchange.

A keeper handler answers ``{"error": line, "raised": the pickled error}`` for our
own errors (:func:`refusal`); :func:`raised` gives the asker the same error
again, so a bad value sent to a live session is the same error, with the same
line, as before any session.
"""

from __future__ import annotations

import pickle
from typing import Any

from dask_hpc.errors import DaskHPCError, SessionError

__all__ = ["raised", "refusal"]


def refusal(error: DaskHPCError, **more: Any) -> dict[str, Any]:
    """A keeper's answer for ``error``: its line, and the error itself (every one of ours
    survives a pickle round trip, tests/test_errors.py), for the asker to raise again."""
    return {"error": str(error), "raised": pickle.dumps(error), **more}


def raised(answer: dict[str, Any]) -> DaskHPCError:
    """The error a keeper answered with: as it was raised there, else a SessionError."""
    pickled = answer.get("raised")
    if isinstance(pickled, bytes):
        try:
            error = pickle.loads(pickled)  # from our own session's scheduler, over its TLS
        except Exception:  # an older keeper, or a class this side lacks: its words will do
            error = None
        if isinstance(error, DaskHPCError):
            return error
    return SessionError(str(answer["error"]))
