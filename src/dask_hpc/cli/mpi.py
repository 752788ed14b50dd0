"""``dask-hpc mpi``: run under mpirun/srun; one rank the scheduler, the others workers.

Its options are dask-mpi's, with the same meanings and defaults, so that
``mpirun -np 8 dask-mpi ...`` becomes ``mpirun -np 8 dask-hpc mpi ...``.
"""

from __future__ import annotations

from typing import Any

import click

from dask_hpc.cli.options import login_host_option


@click.command(name="mpi")
@click.argument("scheduler_address", required=False)
@click.option("--scheduler-file", help="where to write the scheduler's address (and tls/ beside it)")
@click.option("--scheduler-port", type=int, help="the scheduler's port [random]")
@click.option("--scheduler-rank", type=click.IntRange(0), default=0, show_default=True)
@click.option("--interface", help="network interface, e.g. ib0")
@click.option(
    "--protocol",
    help="tls, tcp, or mpi (between the ranks over MPI; clients from outside over tls) "
    "[tls, or tcp with --insecure]",
)
@click.option("--nthreads", type=click.IntRange(1), help="threads per worker")
@click.option("--memory-limit", default="auto", show_default=True, help="bytes, fraction, or auto")
@click.option("--local-directory", help="where workers put their files")
@click.option(
    "--scheduler/--no-scheduler",
    default=True,
    show_default=True,
    help="--no-scheduler: workers only, joining the scheduler given by address or --scheduler-file",
)
@click.option(
    "--nanny/--no-nanny",
    default=None,
    help="start workers under a nanny [yes, but not with --protocol mpi: a nanny's worker is no MPI rank]",
)
@click.option(
    "--exclusive-workers/--inclusive-workers",
    default=True,
    show_default=True,
    help="--inclusive-workers: a worker on the scheduler's rank too",
)
@click.option("--worker-class", default="distributed.Nanny", show_default=True)
@click.option("--worker-options", help="JSON dict of options for the workers")
@click.option("--dashboard/--no-dashboard", default=True, show_default=True)
@click.option("--dashboard-address", help="the dashboard's address [:8787]")
@click.option("--name", default="dask_mpi", show_default=True, help="workers are named NAME-<rank>")
@click.option(
    "--insecure",
    is_flag=True,
    help="no TLS: anyone who can reach the scheduler can run code as you (not recommended)",
)
@click.option("--jupyter", is_flag=True, help="start JupyterLab beside the scheduler, on its rank")
@login_host_option
def mpi(**options: Any) -> None:
    """Make this MPI job a Dask cluster (run it with mpirun or srun)."""
    from dask_hpc.mpi import leaving, run

    if options["insecure"]:
        click.echo(
            "warning: --insecure: no TLS; anyone who reaches the scheduler can run code as you", err=True
        )
    run(**options)
    # MPI finalized here, bounded (a rank that died can make it wait forever); exit 1 if this
    # rank closed because one it serves died.
    leaving.exit_bounded(1 if leaving.orphaned else 0)
