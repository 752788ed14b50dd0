"""Time from `mpirun -np 4` until a client sees every worker: dask-hpc against dask-mpi.

Same machine, same run, alternating round by round, medians. Needs the `mpi`
and `bench` extras (Open MPI and mpi4py from PyPI, dask-mpi):
`make bench-mpi`.

    python bench/mpi_startup.py [--rounds 5]

Variants (each with its defaults):
  batch    a script calling initialize(): rank 0 scheduler, rank 1 the script, 2 workers
  cli      `<tool> --scheduler-file F` under mpirun: rank 0 scheduler, 3 workers; a client from outside
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import machine, write

MPIRUN = str(Path(sys.executable).parent / "mpirun")
TIMEOUT = 120
ENV = {
    **os.environ,
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_oob_tcp_if_include": "lo",
    "OMPI_MCA_btl_tcp_if_include": "lo",
}

BATCH = """
import sys
if sys.argv[1] == "dask-hpc":
    from dask_hpc.mpi import initialize
else:
    from dask_mpi import initialize
initialize(dashboard_address=":0")
from distributed import Client
Client().wait_for_workers(2, timeout=60)
print("READY", flush=True)
"""

CLIENT = """
import os, sys, time
from distributed import Client
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.05)  # the scheduler file, and tls/ written before it
security = None
if sys.argv[2] == "dask-hpc":
    from dask_hpc.mpi import client_security
    security = client_security(sys.argv[1])
with Client(scheduler_file=sys.argv[1], security=security, timeout=60) as client:
    client.wait_for_workers(3, timeout=60)
    print("READY", flush=True)
    client.shutdown()
"""


def batch(tool: str, directory: Path) -> float:
    script = directory / "batch.py"
    script.write_text(BATCH)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [MPIRUN, "-np", "4", "--oversubscribe", sys.executable, str(script), tool],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    return _until_ready(proc, t0, [proc])


def cli(tool: str, directory: Path) -> float:
    scheduler_file = directory / f"scheduler-{time.monotonic_ns()}.json"
    if tool == "dask-hpc":
        command = [sys.executable, "-m", "dask_hpc", "mpi"]
    else:
        command = [str(Path(sys.executable).parent / "dask-mpi")]
    t0 = time.perf_counter()
    cluster = subprocess.Popen(
        [MPIRUN, "-np", "4", "--oversubscribe", *command, "--scheduler-file", str(scheduler_file),
         "--dashboard-address", ":0"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(scheduler_file), tool],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return _until_ready(client, t0, [client, cluster])


def _until_ready(reader: subprocess.Popen[str], t0: float, procs: list[subprocess.Popen[str]]) -> float:
    assert reader.stdout is not None
    elapsed = None
    for line in reader.stdout:
        if line.strip() == "READY":
            elapsed = time.perf_counter() - t0
    for proc in procs:
        try:
            proc.wait(timeout=TIMEOUT if elapsed is not None else 5)
        except subprocess.TimeoutExpired:
            end_session(proc)
    if elapsed is None:
        raise RuntimeError("no READY line")
    return elapsed


def end_session(proc: subprocess.Popen[str]) -> None:
    """End mpirun and its ranks: they are in mpirun's session but in process groups of their own."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == proc.pid:
                    os.kill(int(entry.name), signal.SIGKILL)
    proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="dask-hpc-mpi-bench-"))
    variants = {
        ("batch", "dask-hpc"): lambda: batch("dask-hpc", directory),
        ("batch", "dask-mpi"): lambda: batch("dask-mpi", directory),
        ("cli", "dask-hpc"): lambda: cli("dask-hpc", directory),
        ("cli", "dask-mpi"): lambda: cli("dask-mpi", directory),
    }
    times: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for key, measure in variants.items():
            times[key].append(measure())
            print(f"round {r + 1}: {key[0]:<6}{key[1]:<10}{times[key][-1]:6.2f} s", flush=True)

    rows = []
    print("\nmpirun -np 4 until a client sees every worker (medians; ratio = dask-hpc / dask-mpi)")
    print(f"{'mode':<8}{'dask-hpc':>10}{'dask-mpi':>10}{'ratio':>8}")
    for mode in ("batch", "cli"):
        ours, theirs = (
            statistics.median(times[(mode, "dask-hpc")]),
            statistics.median(times[(mode, "dask-mpi")]),
        )
        print(f"{mode:<8}{ours:10.2f}{theirs:10.2f}{ours / theirs:8.2f}")
        rows.append(
            {
                "mode": mode,
                "dask_hpc_median_s": ours,
                "dask_mpi_median_s": theirs,
                "ratio": ours / theirs,
                "dask_hpc_runs_s": times[(mode, "dask-hpc")],
                "dask_mpi_runs_s": times[(mode, "dask-mpi")],
            }
        )

    import dask_mpi
    import mpi4py

    mpi = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    write(
        "mpi_startup",
        {
            "ranks": 4,
            "rounds": args.rounds,
            "machine": machine(dask_mpi=dask_mpi.__version__, mpi4py=mpi4py.__version__, mpi=mpi),
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()
