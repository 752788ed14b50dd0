"""``dask-hpc demo``: a scheduler here, worker jobs on a batch system, one computation.

A short end-to-end run of the batch-system layer: it submits real jobs, waits
for them with a live view of their states, computes a known sum on them and
cancels every job it made, also on Ctrl-C.
"""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .commands import worker_command
from .errors import DaskHPCError
from .security import create_tls_files
from .spec import JobSpec
from .systems import BatchSystem, JobState, JobStatus

__all__ = ["run_demo"]

POLL_SECONDS = 0.5


def run_demo(
    system: BatchSystem,
    spec: JobSpec,
    *,
    workers: int,
    directory: Path | None = None,
    timeout: float = 300.0,
    console: Console | None = None,
) -> int:
    """Run the demo; return the computed sum (checked against the formula)."""
    import dask.array as da
    from distributed import Client, LocalCluster

    console = console or Console(stderr=True)
    workdir = Path(directory or tempfile.mkdtemp(prefix="dask-hpc-demo-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    scheduler_file = workdir / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    spec = spec if spec.log_directory else spec.with_options(log_directory=str(workdir / "logs"))
    Path(spec.log_directory or workdir).mkdir(parents=True, exist_ok=True)
    # On this machine's own processes, loopback; on a cluster, an address the nodes reach.
    host = "127.0.0.1" if system.name == "local" else socket.gethostbyname(socket.gethostname())

    workdir.chmod(0o700)  # it holds the demo's TLS key
    tls = create_tls_files(workdir, "demo")
    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=0,
            host=host,
            protocol="tls://",
            security=tls.security(),
            dashboard_address=":0",
            scheduler_kwargs={"scheduler_file": str(scheduler_file)},
        ) as cluster,
        Client(cluster) as client,
    ):
        console.print(
            f"scheduler at [bold]{cluster.scheduler_address}[/], dashboard {cluster.dashboard_link}"
        )
        script = system.render(spec, worker_command(spec, scheduler_file, tls=tls))
        job_ids: list[str] = []
        try:
            for _ in range(workers):
                job_ids.append(system.submit(script, workdir / "scripts"))
            console.print(
                f"submitted {workers} {system.name} job(s): {', '.join(job_ids)} ({spec.describe()})"
            )
            _wait_for_workers(system, client, job_ids, workers * spec.processes, timeout, console)
            t_workers = time.perf_counter() - t0

            n = 20_000_000
            t1 = time.perf_counter()
            total = int(da.arange(n, chunks=n // (4 * workers)).sum().compute())
            t_compute = time.perf_counter() - t1
            expected = n * (n - 1) // 2
            if total != expected:
                raise DaskHPCError(f"demo computed {total}, expected {expected}")
            who = sorted(client.scheduler_info()["workers"])
            console.print(f"sum of arange({n:,}) = {total:,} (correct) on {len(who)} worker(s)")
            console.print(f"workers connected after {t_workers:.1f} s; computation {t_compute:.2f} s")
        finally:
            if job_ids:
                system.cancel(job_ids)
                _wait_finished(system, job_ids, console)
    console.print(f"logs in {spec.log_directory}")
    return total


def _wait_for_workers(
    system: BatchSystem,
    client: object,
    job_ids: list[str],
    n: int,
    timeout: float,
    console: Console,
) -> None:
    from distributed import Client

    assert isinstance(client, Client)
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    with Live(console=console, transient=True, refresh_per_second=4) as live:
        while True:
            statuses = system.query(job_ids)
            connected = len(client.scheduler_info()["workers"])
            live.update(_table(statuses, connected, n, time.monotonic() - start))
            if connected >= n:
                return
            failed = [s for s in statuses.values() if s.state.finished]
            if failed:
                s = failed[0]
                raise DaskHPCError(
                    f"worker job {s.job_id} ended before its worker connected: {s.state.value}"
                    f"{f' ({s.reason})' if s.reason else ''}; see its log"
                )
            if time.monotonic() > deadline:
                raise DaskHPCError(
                    f"{connected} of {n} workers connected after {timeout:g} s; "
                    "raise --timeout, or see the jobs' logs"
                )
            time.sleep(POLL_SECONDS)


def _wait_finished(system: BatchSystem, job_ids: list[str], console: Console, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        statuses = system.query(job_ids)
        if all(s.state.finished or s.state is JobState.UNKNOWN for s in statuses.values()):
            console.print(_table(statuses, None, None, None))
            return
        time.sleep(POLL_SECONDS)
    console.print(f"[yellow]jobs still ending after {limit:g} s: {', '.join(job_ids)}[/]")


def _table(
    statuses: dict[str, JobStatus], connected: int | None, n: int | None, elapsed: float | None
) -> Table:
    title = "worker jobs"
    if connected is not None and elapsed is not None:
        title += f": {connected}/{n} workers connected, {elapsed:.1f} s"
    table = Table(title=title)
    for column in ("job", "state", "node", "reason / exit"):
        table.add_column(column)
    for s in statuses.values():
        detail = s.reason or ("" if s.exit_code is None else f"exit {s.exit_code}")
        table.add_row(s.job_id, s.state.value, s.node or "", detail)
    return table
