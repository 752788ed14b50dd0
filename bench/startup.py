"""Time from nothing to N workers connected, on the local SLURM: dask-hpc against dask-jobqueue.

Every variant runs in fresh processes (no warm imports), alternating round by
round on the same machine in the same run; we report medians and the ratio to
dask-jobqueue. Needs the local SLURM (scripts/local-slurm up) and dask-jobqueue
(`make bench-startup` installs it into .venv).

    python bench/startup.py [--rounds 5] [--workers 4]

Variants:
  dask-hpc up + add      `dask-hpc up` (scheduler in its own job), then `dask-hpc add N --wait`
  dask-hpc up --workers  `dask-hpc up --workers N --wait`: worker jobs submitted with the scheduler's
  BatchCluster           BatchCluster("slurm") + scale(N) + wait_for_workers(N), scheduler in a job
  dask-jobqueue          SLURMCluster(...) + scale(N) + wait_for_workers(N), scheduler in the process
  dask-jobqueue, workers --no-dashboard   the same, its workers without a web page, as ours
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from _results import machine, slurm_and_jobqueue, write

TIMEOUT = 180

PYTHON_VARIANT = """
import sys, time
from distributed import Client
n = int(sys.argv[1])
if sys.argv[2].startswith("jobqueue"):
    from dask_jobqueue import SLURMCluster
    extra = ["--no-dashboard"] if sys.argv[2] == "jobqueue-no-dashboard" else []
    cluster = SLURMCluster(
        cores=1, processes=1, memory="1GiB", walltime="00:10:00", interface="lo", worker_extra_args=extra
    )
else:
    from dask_hpc import BatchCluster
    cluster = BatchCluster(
        "slurm", name=sys.argv[3], cores=1, processes=1, memory="1GiB", walltime="00:10:00"
    )
cluster.scale(n)
client = Client(cluster)
client.wait_for_workers(n, timeout=120)
print("READY", flush=True)
client.close()
cluster.close()
"""


def run_python(variant: str, n: int, session: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", PYTHON_VARIANT, str(n), variant, session],
        env=env,
        cwd=env["DASK_HPC_SESSIONS"],  # dask-jobqueue writes its jobs' logs to the working directory
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    elapsed = None
    for line in proc.stdout:
        if line.strip() == "READY":
            elapsed = time.perf_counter() - t0
    proc.wait(timeout=TIMEOUT)
    if elapsed is None or proc.returncode != 0:
        raise RuntimeError(f"{variant} failed (exit {proc.returncode})")
    return elapsed


def hpc(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dask_hpc", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )


def run_up_add(n: int, session: str, env: dict[str, str]) -> float:
    common = ["--name", session, "--memory", "1GiB"]
    t0 = time.perf_counter()
    hpc(env, "up", "--system", "slurm", "--walltime", "10m", *common)
    hpc(env, "add", str(n), "--wait", "120", *common)
    elapsed = time.perf_counter() - t0
    hpc(env, "down", "--name", session)
    return elapsed


def run_up_workers(n: int, session: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    hpc(
        env, "up", "--system", "slurm", "--walltime", "10m", "--name", session,
        "--memory", "1GiB", "--workers", str(n), "--wait", "120",
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    hpc(env, "down", "--name", session)
    return elapsed


def squeue_empty() -> bool:
    out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout
    return not out.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    n = args.workers

    sessions = tempfile.mkdtemp(prefix="dask-hpc-bench-")
    env = {**os.environ, "DASK_HPC_SESSIONS": sessions}
    variants: dict[str, Callable[[int, str], float]] = {
        "dask-hpc up + add": lambda n, s: run_up_add(n, s, env),
        "dask-hpc up --workers": lambda n, s: run_up_workers(n, s, env),
        "BatchCluster": lambda n, s: run_python("dask-hpc", n, s, env),
        "dask-jobqueue": lambda n, s: run_python("jobqueue", n, s, env),
        "dask-jobqueue, workers --no-dashboard": lambda n, s: run_python("jobqueue-no-dashboard", n, s, env),
    }
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for name, run in variants.items():
            deadline = time.monotonic() + 60
            while not squeue_empty() and time.monotonic() < deadline:
                time.sleep(0.5)  # each variant starts on an empty cluster
            times[name].append(run(n, f"bench-{r}-{len(times[name])}-{abs(hash(name)) % 1000}"))
            print(f"round {r + 1}: {name:<40} {times[name][-1]:6.2f} s", flush=True)

    base = statistics.median(times["dask-jobqueue"])
    rows = []
    print(f"\ntime to {n} workers connected on the local SLURM ({args.rounds} rounds, alternating)")
    print(f"{'how':<40}{'median':>8}{'min':>8}{'max':>8}{'ratio to dask-jobqueue':>24}")
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "how": name,
                "median_s": median,
                "min_s": min(values),
                "max_s": max(values),
                "ratio": median / base,
                "runs_s": values,
            }
        )
        print(f"{name:<40}{median:8.2f}{min(values):8.2f}{max(values):8.2f}{median / base:24.2f}")

    write(
        "startup",
        {
            "workers": n,
            "rounds": args.rounds,
            "machine": machine(**slurm_and_jobqueue()),
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
