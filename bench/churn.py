"""Worker jobs shorter than the computation, on the local SLURM: dask-hpc against dask-jobqueue.

One fixed workload (tasks of --task seconds, each returning a 10,000-element
array; every result held until a final sum), on --workers one-core workers
whose jobs last --walltime each, so that several generations of workers come
and go. Both variants run on the same SLURM in the same run, one after the
other, each in a fresh process:

  dask-hpc       `dask-hpc up`, then `dask-hpc add N --keep --walltime W`: workers retire
                 before their walltime; the keeper submits replacements ahead
  dask-jobqueue  SLURMCluster(walltime=W, worker_extra_args=["--lifetime", W - 20 s,
                 "--lifetime-stagger", "5s"]) + adapt(N, N): its documented recipe

Measured, the same way for both (a scheduler plugin counts the tasks that reach
memory a second time; a thread samples the connected workers every 0.5 s):
delivered worker-seconds as a fraction of target x makespan (workers above the
target do not count), recomputed tasks, makespan. A variant that has not
finished by --cap x the ideal makespan is stopped and reported as such; one
whose result erred (e.g. KilledWorker) reports the error.

    python bench/churn.py [--workers 4] [--walltime 2m] [--work 360] [--task 0.5] [--cap 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _results import machine, slurm_and_jobqueue, write

VARIANT = r"""
import json, sys, threading, time
import numpy as np
from distributed import Client, wait
from distributed.diagnostics.plugin import SchedulerPlugin

variant, session, workers, walltime, n, task, cap = sys.argv[1:8]
workers, walltime, n, task, cap = int(workers), int(walltime), int(n), float(task), float(cap)
ELEMENTS = 10_000  # 80 kB per result: every result is held, and the final sum gathers them on one worker


class Recomputed(SchedulerPlugin):
    name = "bench-recomputed"

    def __init__(self):
        self.seen, self.count = set(), 0

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish == "memory":
            if key in self.seen:
                self.count += 1
            self.seen.add(key)


def recomputed(dask_scheduler):
    return dask_scheduler.plugins["bench-recomputed"].count


def count(dask_scheduler):
    return len(dask_scheduler.workers)


def work(i):
    time.sleep(task)
    return np.full(ELEMENTS, i, dtype=np.int64)


def total(*arrays):
    return int(sum(int(a.sum()) for a in arrays))


if variant == "dask-hpc":
    import subprocess
    def hpc(*args):
        argv = [sys.executable, "-m", "dask_hpc", *args, "--name", session]
        subprocess.run(argv, check=True, capture_output=True, timeout=300)
    hpc("up", "--system", "slurm", "--walltime", "30m", "--memory", "1GiB")
    spec = ["--walltime", f"{walltime}s", "--cores", "1", "--memory", "1GiB"]
    hpc("add", str(workers), "--keep", *spec, "--wait", "120")
    import dask_hpc
    client = dask_hpc.connect(session)
else:
    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(
        cores=1, processes=1, memory="1GiB", walltime=time.strftime("%H:%M:%S", time.gmtime(walltime)),
        interface="lo", worker_extra_args=["--lifetime", f"{walltime - 20}s", "--lifetime-stagger", "5s"],
    )
    cluster.adapt(minimum=workers, maximum=workers)
    client = Client(cluster)
    client.wait_for_workers(workers, timeout=120)

try:
    client.register_plugin(Recomputed())
    samples = []
    stop = threading.Event()
    def sample():
        while not stop.wait(0.5):
            try:
                samples.append((time.monotonic(), client.run_on_scheduler(count)))
            except Exception:
                return
    threading.Thread(target=sample, daemon=True).start()

    t0 = time.monotonic()
    futures = client.map(work, range(n), pure=False)
    result = client.submit(total, *futures)
    ideal = n * task / workers
    try:
        wait([result], timeout=cap * ideal)
    except TimeoutError:
        pass  # not finished by the cap: reported as such
    done = result.done()
    makespan = time.monotonic() - t0
    stop.set()
    finished = bool(done) and result.status == "finished"  # not erred, not still running
    right = finished and result.result() == ELEMENTS * n * (n - 1) // 2
    why = None if finished or not done else repr(result.exception())[:300]  # e.g. KilledWorker
    again = client.run_on_scheduler(recomputed)
    # Delivered worker-seconds: connected workers (at most the target) over time.
    delivered = 0.0
    for (t_a, w_a), (t_b, _) in zip(samples, samples[1:]):
        delivered += min(w_a, workers) * (t_b - t_a)
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 1.0
    print("RESULT " + json.dumps({
        "finished": finished, "right": right, "error": why, "makespan_s": makespan, "ideal_s": ideal,
        "recomputed": again, "worker_seconds_fraction": delivered / (workers * span),
        "min_workers": min(w for _, w in samples) if samples else 0,
    }), flush=True)
finally:
    client.close()
    if variant == "dask-hpc":
        hpc("down")
    else:
        cluster.close()
"""


def run(variant: str, args: argparse.Namespace, n: int, env: dict[str, str]) -> dict[str, object]:
    session = f"churn-{int(time.time())}"
    argv = [sys.executable, "-c", VARIANT, variant, session, str(args.workers), str(args.walltime)]
    argv += [str(n), str(args.task), str(args.cap)]
    ideal = n * args.task / args.workers
    done = subprocess.run(
        argv, env=env, cwd=env["DASK_HPC_SESSIONS"], capture_output=True, text=True,
        timeout=args.cap * ideal + 600,
    )  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"{variant} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--walltime", type=lambda s: __import__("dask_hpc.spec").spec.parse_walltime(s), default="2m"
    )
    parser.add_argument("--work", type=float, default=360.0, help="ideal makespan in seconds")
    parser.add_argument("--task", type=float, default=0.5, help="seconds per task")
    parser.add_argument("--cap", type=float, default=2.0, help="stop a variant after this x the ideal")
    parser.add_argument("--variants", default="dask-hpc,dask-jobqueue")
    args = parser.parse_args()
    n = int(args.work * args.workers / args.task)

    sessions = tempfile.mkdtemp(prefix="dask-hpc-churn-")
    env = {**os.environ, "DASK_HPC_SESSIONS": sessions}
    rows = []
    for variant in args.variants.split(","):
        print(
            f"{variant}: {n} tasks of {args.task:g} s, {args.workers} workers, jobs of {args.walltime} s",
            flush=True,
        )
        row = {"how": variant, **run(variant, args, n, env)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{n} tasks of {args.task:g} s, {args.workers} workers, jobs of {args.walltime} s (local SLURM)")
    print(
        f"{'how':<16}{'finished':>10}{'right':>7}{'makespan':>10}{'ideal':>8}{'worker-s':>10}"
        f"{'recomputed':>12}{'min workers':>13}"
    )
    for r in rows:
        print(
            f"{r['how']:<16}{r['finished']!s:>10}{r['right']!s:>7}{r['makespan_s']:9.0f}s{r['ideal_s']:7.0f}s"
            f"{r['worker_seconds_fraction']:10.0%}{r['recomputed']:12d}{r['min_workers']:13d}"
        )
    write(
        "churn",
        {
            "workers": args.workers,
            "walltime_s": args.walltime,
            "tasks": n,
            "task_s": args.task,
            "machine": machine(**slurm_and_jobqueue()),
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
