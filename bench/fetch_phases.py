"""Where the time of one worker-to-worker fetch over mpi:// goes: a profile by phase.

Run under mpirun with 4 ranks (rank 0 scheduler, rank 1 this script, 2 workers):
`make bench-phases`, or

    mpirun -np 4 python bench/fetch_phases.py [--sizes 1MiB,16MiB,64MiB] [--repeat 12]

Worker A holds random bytes, worker B computes on them, so B fetches them from
A as ``dask-hpc bench network`` measures. Every rank wraps a few functions of
dask_hpc.comm.engine and distributed's worker to note when they run (time.time:
one clock for all processes of a node), and the phases of each fetch are:

  request      B starts the fetch -> A's progress thread has B's request
  to-handler   -> A's event loop runs distributed's get_data
  serialise    -> A has posted the reply (distributed's to_frames: in a thread above 10 MiB)
  transfer     -> B's progress thread has the whole reply
  to-done      -> B's fetch returns (from_frames: in a thread above 10 MiB; B's "OK")

Medians over the repeats but the first go to a table and bench/results/fetch-phases-*.json.
``DASK_DISTRIBUTED__COMM__OFFLOAD=false`` in the environment shows the fetch without
distributed's (de)serialisation threads.
The wrapping adds a few microseconds per event; it is a diagnosis, not a benchmark to quote.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
import time
from typing import Any

import distributed.worker as dw

import dask_hpc.comm.engine as mc

PHASES = ("request", "to-handler", "serialise", "transfer", "to-done")
EVENTS: list[tuple[float, str]] = []  # (time, what) of this rank; read by the script's rank
_lock = threading.Lock()


def note(what: str) -> None:
    with _lock:
        EVENTS.append((time.time(), what))


def _wrap() -> None:
    """Note the events of the phases, on every rank (before initialize: the workers are ranks)."""
    resolve, post_sends = mc.resolve, mc.Engine.post_sends
    get_data, fetch = dw.Worker.get_data, dw.get_data_from_worker

    def _resolve(loop: Any, future: Any, value: Any, error: bool = False) -> None:
        note("in")
        resolve(loop, future, value, error)

    def _post_sends(self: Any, dest: int, tag: int, pieces: list[Any]) -> list[Any]:
        requests = post_sends(self, dest, tag, pieces)
        note("sent")
        return requests

    async def _get_data(self: Any, comm: Any, *args: Any, **kwargs: Any) -> Any:
        note("get_data")
        return await get_data(self, comm, *args, **kwargs)

    async def _fetch(*args: Any, **kwargs: Any) -> Any:
        note("fetch")
        try:
            return await fetch(*args, **kwargs)
        finally:
            note("fetched")

    mc.resolve = _resolve
    mc.Engine.post_sends = _post_sends  # type: ignore[method-assign]
    dw.Worker.get_data = _get_data  # type: ignore[method-assign]
    dw.get_data_from_worker = _fetch


def taken() -> list[tuple[float, str]]:
    """This rank's events since the last call (run on the workers by the client)."""
    main = sys.modules["__main__"]  # this script's module on that rank, not a copy sent along
    with main._lock:  # type: ignore[attr-defined]
        out = list(main.EVENTS)  # type: ignore[attr-defined]
        main.EVENTS.clear()  # type: ignore[attr-defined]
    return out


def phases(a: list[tuple[float, str]], b: list[tuple[float, str]]) -> list[float]:
    """The phases of one fetch by B from A, from the events of both."""

    def first(events: list[tuple[float, str]], what: str, after: float) -> float:
        return next(t for t, w in sorted(events) if w == what and t >= after)

    start = first(b, "fetch", 0.0)
    request_in = first(a, "in", start)
    handler = first(a, "get_data", request_in)
    reply_sent = first(a, "sent", handler)
    reply_in = first(b, "in", reply_sent)
    done = first(b, "fetched", reply_in)
    marks = [start, request_in, handler, reply_sent, reply_in, done]
    return [later - earlier for earlier, later in itertools.pairwise(marks)]


def _random_bytes(nbytes: int) -> Any:
    import numpy as np

    return np.random.default_rng().integers(0, 255, nbytes, dtype=np.uint8)


def _touch(data: Any) -> int:
    return int(data.nbytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1MiB,16MiB,64MiB")
    parser.add_argument("--repeat", type=int, default=12)
    args = parser.parse_args()

    _wrap()
    from dask_hpc.mpi import initialize

    initialize(protocol="mpi", nanny=False, dashboard=False)  # only rank 1 comes back
    import dask
    from _results import machine, write  # bench/ is on the path: this script's folder
    from distributed import Client, wait

    from dask_hpc.bench.network import parse_size

    offload = dask.config.get("distributed.comm.offload")  # (de)serialising in a thread above this
    print(f"distributed.comm.offload: {offload}", flush=True)
    rows = []
    with Client() as client:
        client.wait_for_workers(2, timeout=120)
        a, b = sorted(client.scheduler_info()["workers"])[:2]
        for text in args.sizes.split(","):
            nbytes = parse_size(text)
            found = []
            for _ in range(args.repeat):
                data = client.submit(_random_bytes, nbytes, workers=[a], pure=False)
                wait(data)
                client.run(taken)
                wait(client.submit(_touch, data, workers=[b], pure=False))
                events = client.run(taken, workers=[a, b])
                found.append(phases(events[a], events[b]))
                del data
            medians = [statistics.median(f[i] for f in found[1:]) for i in range(len(PHASES))]
            by_phase = dict(zip(PHASES, medians, strict=True))
            rows.append({"nbytes": nbytes, "phases_s": by_phase, "each_s": found})
            cells = "  ".join(f"{name} {1000 * s:6.2f}" for name, s in by_phase.items())
            print(f"{text:>7}: {cells}  total {1000 * sum(medians):6.2f} ms", flush=True)
    result = {"machine": machine(), "offload": offload, "repeat": args.repeat, "rows": rows}
    write("fetch-phases", result)


if __name__ == "__main__":
    main()
