"""Many small workers joining one scheduler at once, on loopback: TLS (dask-hpc's sessions)
against plain TCP (distributed's default) in one run (issue 22).

N workers (distributed's own, one thread each, no nanny, no dashboard) start at the same
moment against one scheduler in this process; measured: seconds until all N are
connected, how many never joined (refused or dead), and where the time goes: the CPU
seconds of the worker processes, and those of this process (the scheduler's event loop,
plus starting the worker processes) during the join. One worker process's start alone
(Python, `import distributed`, the handshake) in CPU seconds, times the processes, over
this machine's cores, is the floor no scheduler can beat here.

`--per-process K` packs K workers into each OS process (K `distributed.Worker` objects
in one event loop, started together), so N workers are N/K processes. A worker's start is
mostly CPU work that does not depend on how many workers share a process: starting
Python and importing distributed (about 0.5 CPU s), loading the TLS certificates; packed,
a process pays it once for K workers, and what is left per worker is its own handshake
and registration with the scheduler. K=1 (the default) is one `dask worker --nthreads 1
--no-nanny --no-dashboard` process per worker, as the earlier results measured.

Each process is about 80 MB: 500 single-worker processes need about 40 GB, more than
this 2-core, 24 GiB machine has; with K=10, 500 workers are 50 processes (3.4 GB).

A joined worker is not free while it waits: distributed's housekeeping (profiling every
10 ms, event loop tick every 20 ms, memory check every 100 ms, system monitor every
500 ms) keeps 0.02 of a core busy per worker here, so 500 of them want 10 cores. Before
the join, one process of K workers is measured alone: the CPU seconds of its start, and
the cores one of its workers keeps busy while joined and idle (IDLE seconds). On a
machine with fewer cores than that, the workers already joined starve the scheduler (a
process among 50 others) and the TLS handshakes of the last ones time out and retry.
`--light` makes that housekeeping rarer (LIGHT, by the workers' environment): on a
cluster it runs on each worker's own node, not on the scheduler's cores as here.

    python bench/join.py [--workers 100] [--per-process 1] [--protocols tls,tcp]
    python bench/join.py --workers 500 --per-process 10 [--light]

(`--hold K --address ADDR --first I [--tls DIR]` is the mode the benchmark itself starts
each K-worker process in: workers wI .. wI+K-1, held until the benchmark stops them.)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import machine, write

LIMIT = 600.0  # seconds: workers not joined by then count as not joined
IDLE = 10.0  # seconds over which one process's joined, idle workers are measured

#: `--light`: distributed's housekeeping in each worker, made rarer than its defaults (worker
#: profiling every 10 ms, event loop tick every 20 ms, memory check every 100 ms, system
#: monitor every 500 ms); given to the worker processes by their environment.
LIGHT = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__WORKER__MEMORY__MONITOR_INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
}


def worker_argv(address: str, i: int, k: int, tls_dir: Path | None) -> list[str]:
    """The command of the process that runs workers i .. i+k-1."""
    if k > 1:
        tls = ["--tls", str(tls_dir)] if tls_dir else []
        script = str(Path(__file__).resolve())
        return [sys.executable, script, "--hold", str(k), "--address", address, "--first", str(i), *tls]
    from dask_hpc.security import TLSFiles

    tls = TLSFiles(tls_dir).worker_arguments() if tls_dir else []
    return [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        address,
        "--nthreads",
        "1",
        "--no-nanny",
        "--no-dashboard",
        "--memory-limit",
        "200MB",
        "--host",
        "127.0.0.1",
        "--name",
        f"w{i}",
        *tls,
    ]


async def hold(k: int, address: str, first: int, tls_dir: Path | None) -> None:
    """Run workers first .. first+k-1 in this process until stopped (or LIMIT runs out)."""
    from distributed import Worker

    from dask_hpc.security import TLSFiles

    security = TLSFiles(tls_dir).security() if tls_dir else None
    workers = [
        Worker(
            address,
            nthreads=1,
            name=f"w{first + j}",
            security=security,
            memory_limit="200MB",
            dashboard=False,
            host="127.0.0.1",
        )
        for j in range(k)
    ]
    await asyncio.wait_for(asyncio.gather(*workers), LIMIT)  # started and registered
    await asyncio.sleep(LIMIT + 60)  # the benchmark stops this process long before


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop every process started, by its pid: terminate, then kill what is left after 30 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 30
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


async def idle_cpu(procs: list[subprocess.Popen[bytes]], seconds: float) -> float:
    """CPU seconds the processes spend in ``seconds`` of doing nothing but being workers."""
    import psutil

    def now() -> float:
        total = 0.0
        for p in procs:
            try:
                times = psutil.Process(p.pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    before = now()
    await asyncio.sleep(seconds)  # heartbeats answered: workers as they are, joined and idle
    return now() - before


async def one_run(
    protocol: str, n: int, k: int, directory: Path, light: bool = False, idle: float = 0.0
) -> dict[str, object]:
    from distributed import Scheduler

    from dask_hpc.security import create_tls_files

    security, tls_dir = None, None
    if protocol == "tls":
        directory.mkdir(parents=True, exist_ok=True)
        files = create_tls_files(directory, "join-bench")
        security, tls_dir = files.security(), files.directory
    processes = math.ceil(n / k)
    env = {**os.environ, **LIGHT} if light else None
    async with Scheduler(
        host="127.0.0.1", port=0, protocol=f"{protocol}://", security=security, dashboard=False
    ) as scheduler:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(0, n, k):
                procs.append(
                    subprocess.Popen(
                        worker_argv(scheduler.address, i, min(k, n - i), tls_dir),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL,
                        env=env,
                    )
                )
            while len(scheduler.workers) < n and time.perf_counter() - t0 < LIMIT:
                if all(p.poll() is not None for p in procs):
                    break
                await asyncio.sleep(0.1)
            seconds = time.perf_counter() - t0
            self_after = resource.getrusage(resource.RUSAGE_SELF)
            joined = len(scheduler.workers)
            dead = sum(1 for p in procs if p.poll() is not None)
            idle_cpu_s = await idle_cpu(procs, idle) if idle and joined == n else None
        finally:
            stop(procs)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "protocol": protocol,
        "workers": n,
        "per_process": k,
        "light": light,
        "processes": processes,
        "joined": joined,
        "exited_early": dead,
        "seconds": seconds,
        "cpu_seconds_of_workers": cpu(after) - cpu(before),
        "cpu_seconds_of_scheduler": cpu(self_after) - cpu(self_before),
        "idle_cpu_seconds": idle_cpu_s,
    }


def one_process_alone(protocol: str, k: int, directory: Path, light: bool) -> tuple[float, float]:
    """One process of k workers that start, join, idle IDLE seconds and are stopped, alone:
    the CPU seconds of its start (its floor), and the cores one joined, idle worker keeps busy."""
    row = asyncio.run(one_run(protocol, k, k, directory / f"one-{protocol}", light, IDLE))
    idle = float(row["idle_cpu_seconds"] or 0.0)  # type: ignore[arg-type]
    return float(row["cpu_seconds_of_workers"]) - idle, idle / IDLE / k  # type: ignore[arg-type]


def main() -> None:
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)  # workers stopped at the end: noise
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--per-process", type=int, default=1, metavar="K", help="workers per OS process")
    parser.add_argument("--protocols", default="tls,tcp")
    parser.add_argument("--light", action="store_true", help="rarer worker housekeeping (LIGHT)")
    parser.add_argument("--hold", type=int, metavar="K", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tls", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold:
        asyncio.run(hold(args.hold, args.address, args.first, args.tls))
        return
    n, k = args.workers, max(1, args.per_process)
    directory = Path(tempfile.mkdtemp(prefix="dask-hpc-join-"))
    cores = os.cpu_count() or 1
    rows = []
    for protocol in args.protocols.split(","):
        alone, idle = one_process_alone(protocol, min(k, n), directory, args.light)
        print(
            f"{protocol}: one process of {min(k, n)} worker(s) alone costs {alone:.2f} CPU s to start;"
            f" a joined, idle worker keeps {idle:.4f} of a core busy ({idle * n:.2f} cores for {n})",
            flush=True,
        )
        row = asyncio.run(one_run(protocol, n, k, directory / protocol, args.light))
        row["one_process_cpu_s"] = alone
        row["floor_s"] = alone * int(row["processes"]) / cores  # type: ignore[call-overload]
        row["idle_cores_per_worker"] = idle
        row["idle_cores_for_all"] = idle * n
        rows.append(row)
        print(row, flush=True)

    print(f"\n{n} workers, {k} per process, joining one scheduler at once on loopback ({cores} cores)")
    print(f"{'protocol':<10}{'joined':>8}{'seconds':>10}{'floor':>9}{'CPU s: workers':>16}{'scheduler':>11}")
    for r in rows:
        print(
            f"{r['protocol']:<10}{r['joined']:>8}{r['seconds']:9.1f}s{r['floor_s']:8.1f}s"
            f"{r['cpu_seconds_of_workers']:16.1f}{r['cpu_seconds_of_scheduler']:11.1f}"
        )
    result = {"workers": n, "per_process": k, "light": args.light, "machine": machine(), "results": rows}
    write("join", result)


if __name__ == "__main__":
    main()
