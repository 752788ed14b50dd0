"""``execute()``: run a function as the client on one rank, with the cluster on the ranks around it."""

from __future__ import annotations

import atexit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dask_hpc.mpi import leaving
from dask_hpc.mpi.command import _address_from_file, forget_last_run, publish_credentials
from dask_hpc.mpi.leaving import LauncherWatch, send_close_signal
from dask_hpc.mpi.roles import fail_start, receive_cluster, run_role, use_cluster
from dask_hpc.mpi.roles import scheduler as run_scheduler
from dask_hpc.mpi.roles import worker as run_worker
from dask_hpc.mpi.world import (
    default_protocol,
    host,
    import_while_waiting,
    own_processes,
    start_mpi_transport,
    too_small,
    world,
)
from dask_hpc.security import make_credentials, tls_files
from dask_hpc.spec import CUDA_WORKER
from dask_hpc.worker.entry import fork_workers


def execute(
    client_function: Callable[..., Any] | None = None,
    client_args: tuple[Any, ...] | list[Any] = (),
    client_kwargs: dict[str, Any] | None = None,
    client_rank: int = 1,
    scheduler: bool = True,
    scheduler_rank: int = 0,
    scheduler_address: str | None = None,
    scheduler_port: int | None = None,
    scheduler_file: str | None = None,
    interface: str | None = None,
    nthreads: int = 1,
    local_directory: str = "",
    memory_limit: str | float | int = "auto",
    nanny: bool = False,
    dashboard: bool = True,
    dashboard_address: str = ":8787",
    protocol: str | None = None,
    exclusive_workers: bool = True,
    worker_class: str = "distributed.Worker",
    worker_options: dict[str, Any] | None = None,
    worker_name: str | None = None,
    comm: Any = None,
    insecure: bool = False,
) -> Any:
    """Run ``client_function(*client_args, **client_kwargs)`` on ``client_rank`` as the client of
    a cluster made of this MPI job; every rank returns once it is done and the cluster closed.

    dask-mpi's ``execute()`` (2025.10), with its signature, placements and meaning: the
    scheduler on ``scheduler_rank`` (or, with ``scheduler=False``, none: the workers join
    ``scheduler_address`` or the one in ``scheduler_file``); workers on every other rank, or
    with ``exclusive_workers=False`` on every rank, those of the scheduler and the client too
    (so that it runs on one or two ranks). Ranks are those of ``comm`` (COMM_WORLD by
    default). Workers are named by their rank, or ``{worker_name}-{rank}``.

    Unlike ``initialize()``, no rank exits and the script goes on after the call on every
    rank (the world usable again): the client function runs on its rank (in a thread beside
    a scheduler or worker there, else in the calling thread), the cluster is closed when it
    returns (``send_close_signal()``, as dask-mpi does, which with ``scheduler=False``
    shuts the scheduler it joined down too), and then ``execute``
    returns what the function returned on its rank (None elsewhere), or raises what it
    raised there. Between the ranks the cluster talks ``mpi://`` where it can, as
    ``initialize()`` does; TLS otherwise (``insecure=True``: none).

    Too few ranks for the placement, or ``scheduler=False`` without an address: one line
    and exit 1 (dask-mpi raises WorldTooSmallException or ValueError). With exclusive workers
    at least one rank must be a worker, so the defaults need 3 ranks (dask-mpi lets 2 start a
    cluster without workers). A scheduler or worker
    that cannot start: one line naming the rank, and every rank exits 1.
    """
    comm = world(comm)
    leaving.note_failures()
    atexit.register(leaving.finalize_at_exit)
    size, rank = comm.Get_size(), comm.Get_rank()
    placed = {client_rank} | ({scheduler_rank} if scheduler else set())
    needed = max(placed) + 1
    if exclusive_workers:
        needed = max(needed, len(placed) + 1)  # and a rank for a worker
    if size < needed:
        too_small(
            rank,
            f"dask_hpc.mpi.execute with the client on rank {client_rank}"
            + (f", the scheduler on rank {scheduler_rank}" if scheduler else "")
            + (" and workers on other ranks" if exclusive_workers else "")
            + f" needs {needed} MPI ranks, got {size}: run e.g. mpirun -np {needed}",
            True,
            code=1,
        )
    if not scheduler and not (scheduler_address or scheduler_file):
        too_small(
            rank,
            "dask_hpc.mpi.execute with scheduler=False joins a scheduler that runs elsewhere: give "
            "scheduler_address= or scheduler_file=",
            True,
            code=1,
        )
    if not scheduler and protocol == "mpi":
        too_small(
            rank,
            "dask_hpc.mpi.execute with scheduler=False and protocol='mpi': mpi:// reaches only ranks of "
            "the same MPI job, and the scheduler runs elsewhere; leave out protocol",
            True,
            code=1,
        )
    watch = LauncherWatch(rank)  # from the start: a launcher may die while the cluster starts
    worker_type = "distributed.Nanny" if nanny else worker_class
    is_nanny = own_processes(worker_type)  # a Nanny, dask_cuda.CUDAWorker (a nanny a GPU)
    if scheduler:
        protocol = default_protocol(protocol, is_nanny)
    import_while_waiting()
    if worker_type != CUDA_WORKER:  # dask-cuda starts its nannies its own way (spawn)
        fork_workers()
    if scheduler:
        start_mpi_transport(protocol, is_nanny, comm, insecure)
    is_scheduler = scheduler and rank == scheduler_rank
    is_client = callable(client_function) and rank == client_rank
    is_worker = not exclusive_workers or not (is_scheduler or is_client)
    client = _Client(client_function, client_args, client_kwargs) if is_client else None
    worker_options = {
        "host": host(interface),
        "protocol": protocol,
        "nthreads": nthreads,
        "memory_limit": memory_limit,
        "local_directory": local_directory or None,
        "name": rank if not worker_name else f"{worker_name}-{rank}",
        **(worker_options or {}),
    }
    users = {scheduler_rank: "the scheduler's"} if scheduler else {}
    if callable(client_function):
        users[client_rank] = "the client's"
    serves = {r: what for r, what in users.items() if r != rank}
    watch.script = is_client and not is_worker and not is_scheduler
    if is_scheduler:
        # With a scheduler file, clients from outside the job read it: over mpi:// the
        # scheduler listens on tls:// too, and the file has that address.
        outside = bool(scheduler_file)
        credentials = None if insecure or (protocol == "mpi" and not outside) else make_credentials("mpi")
        if scheduler_file:
            try:
                forget_last_run(Path(scheduler_file), credentials is None)
                if credentials:
                    publish_credentials(Path(scheduler_file), credentials)
            except OSError as exc:  # the others wait for the address: tell them
                fail_start(comm, scheduler_rank, exc)
        run_role(
            run_scheduler(
                comm,
                scheduler_rank,
                credentials,
                watch,
                with_worker=(worker_type, worker_options) if is_worker else None,
                client=client,
                serves=serves,
                host=host(interface),
                protocol=protocol,
                dashboard=dashboard,
                dashboard_address=dashboard_address,
                scheduler_file=scheduler_file,
                port=scheduler_port or 0,
                outside=outside,
                worker_type=worker_type,
            ),
            rank,
            "the scheduler",
        )
    else:
        if scheduler:
            address, credentials = receive_cluster(comm, scheduler_rank)
        else:
            address = scheduler_address or _address_from_file(scheduler_file)
            files = tls_files(Path(scheduler_file).absolute().parent) if scheduler_file else None
            credentials = files.credentials() if files is not None and files.directory.exists() else None
        use_cluster(address, credentials)
        if is_worker:
            run_role(
                run_worker(
                    address,
                    credentials,
                    worker_type,
                    worker_options,
                    rank=rank,
                    watch=watch,
                    serves=(comm, serves) if serves else None,
                    client=client,
                ),
                rank,
                "a worker",
            )
        elif client is not None:
            client()
    return client.outcome() if client is not None else None


class _Client:
    """The client function, run once (in a thread of its rank): then the cluster is closed,
    whatever it did; its value or exception is kept for ``execute`` to return or raise."""

    def __init__(self, function: Any, args: Any, kwargs: dict[str, Any] | None) -> None:
        self.function, self.args, self.kwargs = function, tuple(args), dict(kwargs or {})
        self.value: Any = None
        self.error: BaseException | None = None

    def __call__(self) -> None:
        try:
            self.value = self.function(*self.args, **self.kwargs)
        except BaseException as exc:  # raised on this rank's main thread once the cluster closed
            self.error = exc
        finally:
            try:
                send_close_signal()
            except Exception as exc:
                leaving.logger.warning("could not close the cluster: %s", exc)

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value
