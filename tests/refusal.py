"""Whether a scheduler lets in a client: asked from a process of its own, as an intruder
would ask, and bounded. (A refused ``Client`` made in the test's own process is left half
made: its ``__del__``, run by a later garbage collection, waits on a loop that is gone.)"""

from __future__ import annotations

import subprocess
import sys

__all__ = ["refused"]

REFUSAL_PROBE = """
import os, sys
from distributed import Client, Security
address, kind = sys.argv[1], sys.argv[2]
if kind == "none":
    security = None
elif kind == "temporary":
    security = Security.temporary()
else:  # another session's state dir
    from dask_hpc.security import tls_files
    security = tls_files(__import__("pathlib").Path(kind)).security()
try:
    with Client(address, security=security, timeout=5) as client:
        client.submit(os.getpid).result(timeout=5)
except Exception as exc:
    print("REFUSED", type(exc).__name__, flush=True)
else:
    print("CONNECTED", flush=True)
"""


def refused(address: str, security: str) -> bool:
    """True if a client with ``security`` ("none", "temporary", or another session's state
    dir) cannot connect to (and so cannot run anything on) ``address``. In a process of
    its own, as an intruder would be, and bounded: no answer in 60 s is no entry either."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", REFUSAL_PROBE, address, security],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return True
    assert "CONNECTED" in done.stdout or "REFUSED" in done.stdout, done.stderr[-2000:]
    return "REFUSED" in done.stdout
