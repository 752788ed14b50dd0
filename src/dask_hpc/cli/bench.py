"""``dask-hpc bench network``: worker-to-worker bandwidth against raw TCP, MPI and memcpy."""

from __future__ import annotations

import json
import os
import platform
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from dask_hpc.cli.console import make_console

if TYPE_CHECKING:
    from dask_hpc.bench.network import Measurement

__all__ = ["bench"]


@click.group()
def bench() -> None:
    """Benchmarks on this cluster's own nodes."""


@bench.command()
@click.option(
    "--local", "where", flag_value="local", default=True, help="two worker processes here [default]"
)
@click.option("--session", "session_name", help="the first two workers of this live session instead")
@click.option("--sizes", default="1MiB,16MiB,64MiB,256MiB", show_default=True, help="message sizes")
@click.option("--repeat", type=click.IntRange(1, 1000), default=7, show_default=True)
@click.option("--mpi/--no-mpi", default=True, show_default=True, help="also MPI Send/Recv (needs mpirun)")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="write the results here"
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="PNG: bandwidth vs size"
)
def network(
    where: str,
    session_name: str | None,
    sizes: str,
    repeat: int,
    mpi: bool,
    json_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Bandwidth between two workers over each transport, with raw TCP, MPI and memcpy beside."""
    from dask_hpc.bench import network as netbench

    nbytes = [netbench.parse_size(s) for s in sizes.split(",") if s.strip()]
    console = make_console(stderr=True)
    measurements: list[netbench.Measurement] = []
    if any(os.environ.get(v) for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")):
        # Under mpirun/srun: a cluster over mpi:// (initialize), measured from the script's rank.
        from dask_hpc.mpi import initialize

        initialize(protocol="mpi", nanny=False, dashboard=False)  # only rank 1 comes back
        import dask
        from distributed import Client

        with Client() as client:
            client.wait_for_workers(2, timeout=120)
            measurements += netbench.measure_pair(client, nbytes, repeat, label="mpi")
            if mpi:
                measurements += netbench.mpi_between_workers(client, nbytes, repeat)
        # The other transports in the same run, for their ratios: two worker processes that the
        # script's rank starts (they are no MPI ranks), while the MPI job's ranks idle. Spawned,
        # not forked: a fork of a process whose MPI progress thread runs hung here.
        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
            measurements += _local(nbytes, repeat, console, baselines=False)
        where = "two worker ranks of an MPI job, dask over mpi:// (tcp, tls: two processes beside)"
    elif session_name:
        from dask_hpc.session.cluster import connect

        with connect(session_name) as client:
            scheme = client.scheduler.address.split("://", 1)[0]
            measurements += netbench.measure_pair(client, nbytes, repeat, label=scheme)
            console.print(f"session {session_name}: measured two of its workers, over {scheme}")
        where = f"session {session_name}"
    else:
        measurements += _local(nbytes, repeat, console)
        where = "two worker processes on this node"
    if mpi and not where.startswith("two worker ranks of an MPI job"):
        console.print("MPI Send/Recv between two ranks on this node (mpirun -np 2)")
        env = (
            {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
            if os.geteuid() == 0
            else None
        )
        found = netbench.mpi_sendrecv(nbytes, repeat, env)
        if not found:
            console.print("[yellow]no mpirun: MPI not measured (pip install 'dask-hpc[mpi]')[/]")
        measurements += found
    rows = netbench.summary(measurements)
    make_console().print(_table(rows, where))
    machine = {"host": socket.gethostname(), "cpus": os.cpu_count(), "platform": platform.platform()}
    if json_path:
        from importlib.metadata import version

        import dask

        settings = {  # what the figures depend on besides the machine
            "distributed": version("distributed"),
            "distributed.comm.offload": dask.config.get("distributed.comm.offload"),
        }
        json_path.write_text(
            json.dumps(
                {"where": where, "repeat": repeat, "machine": machine, "settings": settings, "rows": rows},
                indent=1,
            )
        )
        console.print(f"written {json_path}")
    if plot_path:
        netbench.plot(rows, plot_path, f"{where} ({machine['host']})")
        console.print(f"written {plot_path}")


def _local(nbytes: list[int], repeat: int, console: Console, baselines: bool = True) -> list[Measurement]:
    from distributed import Client, LocalCluster

    from dask_hpc.bench import network as netbench
    from dask_hpc.security import make_credentials

    found: list[netbench.Measurement] = []
    for label, security in (("tcp", None), ("tls", make_credentials("bench").security())):
        console.print(f"two worker processes on 127.0.0.1 over {label}")
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                host="127.0.0.1",
                protocol=f"{label}://",
                security=security,
                dashboard_address=None,
                memory_limit=0,
            ) as cluster,
            Client(cluster, security=security) as client,
        ):
            found += netbench.measure_pair(
                client, nbytes, repeat, label=label, baselines=baselines and label == "tcp"
            )
    return found


def _table(rows: list[dict[str, Any]], where: str) -> Table:
    table = Table(title=f"bench network: {where}")
    fresh = any(r.get("ratio_to_mpi_fresh") is not None for r in rows)
    columns = ["size", "method", "GB/s (median)", "range", "vs MPI"] + (
        ["vs MPI, fresh memory"] if fresh else []
    )
    for column in columns:
        table.add_column(column, justify="right" if column != "method" else "left")
    for r in sorted(rows, key=lambda r: (r["nbytes"], r["method"])):
        ratios = [r["ratio_to_mpi"]] + ([r.get("ratio_to_mpi_fresh")] if fresh else [])
        table.add_row(
            f"{int(r['nbytes']) / 2**20:g} MiB",
            str(r["method"]),
            f"{r['median_gbps']:.2f}",
            f"{r['min_gbps']:.2f}-{r['max_gbps']:.2f}",
            *("" if ratio is None else f"{ratio:.2f}" for ratio in ratios),
        )
    return table
