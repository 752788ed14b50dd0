"""Many small workers joining one scheduler at once, on loopback: TLS (dask-hpc's sessions)
against plain TCP (distributed's default) in one run (issue 22).

N worker processes (`dask worker --nthreads 1 --no-nanny --no-dashboard`, distributed's
own) start at the same moment against one scheduler in this process; measured: seconds
until all N are connected, how many never joined (refused or dead), and where the time
goes: one worker's start alone (Python, `import distributed`, the handshake) in CPU
seconds, times N, over this machine's cores, is the floor no scheduler can beat here.

Each worker is a Python process of about 80 MB: 500 of them need about 40 GB, more than
this 2-core, 24 GiB machine has. The default is 100; `--workers 500` where memory allows.

    python bench/join.py [--workers 100] [--protocols tls,tcp]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import machine, write

LIMIT = 600.0  # seconds: workers not joined by then count as not joined


def worker_argv(address: str, i: int, tls: list[str]) -> list[str]:
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
        "--name",
        f"w{i}",
        *tls,
    ]


async def one_run(protocol: str, n: int, directory: Path) -> dict[str, object]:
    from distributed import Scheduler

    from dask_hpc.security import create_tls_files

    security, tls = None, []
    if protocol == "tls":
        directory.mkdir(parents=True, exist_ok=True)
        files = create_tls_files(directory, "join-bench")
        security, tls = files.security(), files.worker_arguments()
    async with Scheduler(
        host="127.0.0.1", port=0, protocol=f"{protocol}://", security=security, dashboard=False
    ) as scheduler:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                worker_argv(scheduler.address, i, tls),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            for i in range(n)
        ]
        while len(scheduler.workers) < n and time.perf_counter() - t0 < LIMIT:
            if all(p.poll() is not None for p in procs):
                break
            await asyncio.sleep(0.1)
        seconds = time.perf_counter() - t0
        joined = len(scheduler.workers)
        dead = sum(1 for p in procs if p.poll() is not None)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "protocol": protocol,
        "workers": n,
        "joined": joined,
        "exited_early": dead,
        "seconds": seconds,
        "cpu_seconds_of_workers": cpu,
    }


def one_worker_alone(protocol: str, directory: Path) -> float:
    """CPU seconds of one worker that starts, joins and is stopped, alone: its floor."""
    return float(asyncio.run(one_run(protocol, 1, directory / f"one-{protocol}"))["cpu_seconds_of_workers"])  # type: ignore[arg-type]


def main() -> None:
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)  # workers stopped at the end: noise
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--protocols", default="tls,tcp")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="dask-hpc-join-"))
    cores = os.cpu_count() or 1
    rows = []
    for protocol in args.protocols.split(","):
        alone = one_worker_alone(protocol, directory)
        print(f"{protocol}: one worker alone costs {alone:.2f} CPU s", flush=True)
        row = asyncio.run(one_run(protocol, args.workers, directory / protocol))
        row["one_worker_cpu_s"] = alone
        row["floor_s"] = alone * args.workers / cores  # N starts of one worker, over the cores
        rows.append(row)
        print(row, flush=True)

    print(f"\n{args.workers} workers joining one scheduler at once on loopback ({cores} cores)")
    print(f"{'protocol':<10}{'joined':>8}{'seconds':>10}{'floor':>9}{'CPU s/worker':>14}")
    for r in rows:
        per = float(r["cpu_seconds_of_workers"]) / args.workers  # type: ignore[arg-type]
        print(f"{r['protocol']:<10}{r['joined']:>8}{r['seconds']:9.1f}s{r['floor_s']:8.1f}s{per:14.2f}")
    write("join", {"workers": args.workers, "machine": machine(), "results": rows})


if __name__ == "__main__":
    main()
