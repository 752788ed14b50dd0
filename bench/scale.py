"""A thousand worker jobs on the local SLURM: dask-hpc against dask-jobqueue (issue 22).

Measured in one run, on the same SLURM, one after the other:

  submit    `dask-hpc add N` (a command: its Python start and TLS connection included) and
            `BatchCluster.scale(N)` in this process, against dask-jobqueue's
            `SLURMCluster.scale(jobs=N)`: seconds until all N jobs are in SLURM's queue
            (squeue, one line per array task), and how many submissions it took. Every job
            is submitted held (`sbatch --hold`), so that none starts: this measures
            submission, not 2 cores starting N workers.
  status    `dask-hpc status` of the session with N jobs: seconds per call (the keeper asks
            SLURM about all of them in one squeue per refresh).
  decisions the keeper's decision cycle over 10,000 jobs, in process (no batch system):
            scale_steps, choose_removals, replacement_times, lost_kept_jobs together.

    python bench/scale.py [--jobs 1000] [--variants dask-hpc,dask-jobqueue]
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

#: Every job of both variants: one core, little memory, held in the queue.
JOB = {"cores": 1, "memory": "256MiB", "walltime": "10m"}
POLL_LIMIT = 600.0  # seconds: a variant that has not queued every job by then is reported so


def queued(name: str) -> int:
    """Jobs named ``name`` in SLURM's queue, one line per array task."""
    done = subprocess.run(
        ["squeue", "--noheader", "--array", "--name", name, "--format=%i"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return len(done.stdout.split())


def cancel_named(name: str) -> None:
    subprocess.run(["scancel", "--name", name], capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while queued(name) and time.monotonic() < deadline:
        time.sleep(0.5)


def dask_hpc(args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    session, name = "scale-bench", "dask-hpc-scale"

    def hpc(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dask_hpc", *argv, "--name", session]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=True)

    hpc("up", "--system", "slurm", "--interface", "lo", "--walltime", JOB["walltime"])
    try:
        options = ["--cores", "1", "--memory", JOB["memory"], "--job-name", name]
        t0 = time.perf_counter()
        hpc("add", str(args.jobs), *options, "--job-extra-directive=--hold")
        seconds = time.perf_counter() - t0
        in_queue = queued(name)
        ledger = json.loads(hpc("status", "--json").stdout)["jobs"]
        submissions = len({j["array"] or j["job_id"] for j in ledger})
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            hpc("status")
            times.append(time.perf_counter() - t0)
        return {
            "submit_s": seconds,
            "queued": in_queue,
            "submissions": submissions,
            "status_s": min(times),
        }
    finally:
        hpc("down")
        cancel_named(name)


def dask_hpc_python(args: argparse.Namespace, env: dict[str, str]) -> dict[str, object]:
    """dask-hpc's BatchCluster in this process, as dask-jobqueue's class runs: scale(N)."""
    os.environ["DASK_HPC_SESSIONS"] = env["DASK_HPC_SESSIONS"]
    from dask_hpc import BatchCluster

    name = "dask-hpc-py-scale"
    cluster = BatchCluster(
        "slurm",
        scheduler="local",
        name="scale-bench-py",
        interface="lo",
        job_name=name,
        job_extra_directives=["--hold"],
        **JOB,
    )
    try:
        t0 = time.perf_counter()
        cluster.scale(args.jobs)
        seconds = time.perf_counter() - t0
        in_queue = queued(name)
        arrays = {r.array or r.job_id for r in cluster.status_report().keeper.jobs}  # type: ignore[union-attr]
        return {"submit_s": seconds, "queued": in_queue, "submissions": len(arrays), "status_s": None}
    finally:
        cluster.close()
        cancel_named(name)


def dask_jobqueue(args: argparse.Namespace) -> dict[str, object]:
    from dask_jobqueue import SLURMCluster

    name = "jobqueue-scale"
    cluster = SLURMCluster(
        cores=1,
        memory=JOB["memory"],
        walltime="00:10:00",
        job_name=name,
        interface="lo",
        job_extra_directives=["--hold"],
    )
    try:
        t0 = time.perf_counter()
        cluster.scale(jobs=args.jobs)
        in_queue = 0
        while time.perf_counter() - t0 < POLL_LIMIT:
            in_queue = queued(name)
            if in_queue >= args.jobs:
                break
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        return {"submit_s": seconds, "queued": in_queue, "submissions": in_queue, "status_s": None}
    finally:
        cluster.close()
        cancel_named(name)


def decisions(jobs: int) -> dict[str, object]:
    """The keeper's decisions over ``jobs`` records, in process: the best of 5, seconds."""
    from dask_hpc.keeper.decisions import choose_removals, lost_kept_jobs, replacement_times, scale_steps
    from dask_hpc.state.ledger import JobRecord
    from dask_hpc.systems import JobState

    now = time.time()
    records = [
        JobRecord(
            f"{1000 + i // 1000}_{i % 1000}",
            "dask-worker",
            1,
            600,
            submitted=now - 300,
            state=JobState.RUNNING if i % 3 else JobState.PENDING,
            started=now - 200 if i % 3 else None,
            joined=now - 190 if i % 3 else None,
            keep=True,
        )
        for i in range(jobs)
    ]
    held = {r.job_id: i * 1000 for i, r in enumerate(records)}
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        scale_steps(records, jobs // 2)
        choose_removals(records, jobs // 10, held)
        replacement_times(records, lambda r: 60.0)
        lost_kept_jobs(records)
        best = min(best, time.perf_counter() - t0)
    return {"jobs": jobs, "cycle_s": best}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--decision-jobs", type=int, default=10_000)
    parser.add_argument("--variants", default="dask-hpc,dask-hpc-python,dask-jobqueue")
    args = parser.parse_args()
    env = {**os.environ, "DASK_HPC_SESSIONS": tempfile.mkdtemp(prefix="dask-hpc-scale-")}

    rows = []
    for variant in args.variants.split(","):
        print(f"{variant}: {args.jobs} held jobs on the local SLURM", flush=True)
        if variant == "dask-hpc":
            result = dask_hpc(args, env)
        elif variant == "dask-hpc-python":
            result = dask_hpc_python(args, env)
        else:
            result = dask_jobqueue(args)
        rows.append({"how": variant, **result})
        print(json.dumps(rows[-1]), flush=True)
    cycle = decisions(args.decision_jobs)

    print(f"\n{args.jobs} worker jobs submitted held, local SLURM ({os.cpu_count()} cores)")
    print(f"{'how':<16}{'in queue':>10}{'seconds':>10}{'submissions':>13}{'status':>10}")
    for r in rows:
        status = "" if r["status_s"] is None else f"{r['status_s']:.2f}s"
        print(f"{r['how']:<16}{r['queued']:>10}{r['submit_s']:9.1f}s{r['submissions']:>13}{status:>10}")
    ours = next((r for r in rows if r["how"] == "dask-hpc-python"), None)
    theirs = next((r for r in rows if r["how"] == "dask-jobqueue"), None)
    ratio = None
    if ours and theirs:
        ratio = float(theirs["submit_s"]) / float(ours["submit_s"])  # type: ignore[arg-type]
        print(f"dask-jobqueue / dask-hpc (both in Python), seconds until all are queued: {ratio:.1f}x")
    print(f"keeper decision cycle over {cycle['jobs']} jobs: {1000 * float(cycle['cycle_s']):.1f} ms")  # type: ignore[arg-type]
    write(
        "scale",
        {
            "jobs": args.jobs,
            "machine": machine(**slurm_and_jobqueue()),
            "results": rows,
            "jobqueue_over_dask_hpc": ratio,
            "decisions": cycle,
        },
    )


if __name__ == "__main__":
    main()
