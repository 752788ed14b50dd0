"""``initialize()``: in a job script, rank 0 runs the scheduler, rank 1 the script, the others workers."""

from __future__ import annotations

import atexit
from typing import Any

from dask_hpc.mpi import leaving
from dask_hpc.mpi.leaving import LauncherWatch
from dask_hpc.mpi.roles import receive_cluster, run_role, scheduler, use_cluster, worker
from dask_hpc.mpi.world import (
    default_protocol,
    host,
    import_while_waiting,
    own_processes,
    start_mpi_transport,
    too_small,
    world,
)
from dask_hpc.security import make_credentials
from dask_hpc.spec import CUDA_WORKER
from dask_hpc.worker.entry import fork_workers


def initialize(
    interface: str | None = None,
    nthreads: int = 1,
    local_directory: str | None = None,
    memory_limit: str | float | int = "auto",
    nanny: bool = False,
    dashboard: bool = True,
    dashboard_address: str = ":8787",
    protocol: str | None = None,
    worker_class: str = "distributed.Worker",
    worker_options: dict[str, Any] | None = None,
    comm: Any = None,
    exit: bool = True,
    insecure: bool = False,
) -> bool:
    """Make this MPI job a Dask cluster; return True on the rank that runs the script (rank 1).

    Ranks are those of ``comm`` (COMM_WORLD by default; a communicator from
    ``COMM_WORLD.Split`` runs Dask on part of the world, and the other ranks
    never take part). With ``exit=True`` (the default) the scheduler and worker
    ranks exit when the cluster closes, which happens when the script's rank
    exits: only rank 1 returns. With ``exit=False`` every rank returns (False
    but on rank 1), and the script calls :func:`send_close_signal` itself; the
    world is then usable again on every rank.

    Keyword names and defaults are dask-mpi's. Fewer than 3 ranks: one line and
    exit 2 (WorldTooSmallError with ``exit=False``). A scheduler or worker that
    cannot start: one line naming the rank, and every rank exits 1.
    """
    comm = world(comm)
    leaving.note_failures()
    atexit.register(leaving.finalize_at_exit)
    size, rank = comm.Get_size(), comm.Get_rank()
    watch = LauncherWatch(rank, script=rank == 1)  # from the start: a launcher may die during it
    if size < 3:
        too_small(
            rank,
            f"dask_hpc.mpi.initialize needs at least 3 MPI ranks (the scheduler, your script, a worker); "
            f"got {size}: run e.g. mpirun -np 4",
            exit,
        )
    worker_type = "distributed.Nanny" if nanny else worker_class
    separate = own_processes(worker_type)  # dask_cuda.CUDAWorker: a nanny a GPU, as Nanny
    protocol = default_protocol(protocol, separate)
    import_while_waiting()
    if worker_type != CUDA_WORKER:  # dask-cuda starts its nannies its own way (spawn)
        fork_workers()
    start_mpi_transport(protocol, separate, comm, insecure)
    if rank == 0:
        credentials = None if insecure or protocol == "mpi" else make_credentials("mpi")
        run_role(
            scheduler(
                comm,
                0,
                credentials,
                watch,
                serves={1: "your script's"},
                host=host(interface),
                protocol=protocol,
                dashboard=dashboard,
                dashboard_address=dashboard_address,
                worker_type=worker_type,
            ),
            rank,
            "the scheduler",
        )
        return leaving.leave(exit)
    address, credentials = receive_cluster(comm, 0)
    if rank == 1:
        use_cluster(address, credentials)
        if exit:
            atexit.register(leaving.close_at_exit)
        return True
    run_role(
        worker(
            address,
            credentials,
            worker_type,
            {
                "host": host(interface),
                "protocol": protocol,
                "nthreads": nthreads,
                "memory_limit": memory_limit,
                "local_directory": local_directory,
                "name": rank,
                **(worker_options or {}),
            },
            rank=rank,
            watch=watch,
            serves=(comm, {0: "the scheduler's", 1: "your script's"}),
        ),
        rank,
        "a worker",
    )
    return leaving.leave(exit)
