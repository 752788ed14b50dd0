"""``dask-hpc mpi``: the scheduler on one rank, workers on the others, for clients from outside."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from dask_hpc.errors import DaskHPCError
from dask_hpc.files import private_directory
from dask_hpc.mpi.leaving import LauncherWatch
from dask_hpc.mpi.roles import fail_start, receive_cluster, run_role
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
from dask_hpc.security import Credentials, make_credentials, tls_files, write_tls_files
from dask_hpc.spec import CUDA_WORKER
from dask_hpc.worker.entry import fork_workers


def client_security(scheduler_file: str | Path, timeout: float = 30.0) -> Any:
    """TLS settings (a distributed ``Security``) for a client from outside of
    ``dask-hpc mpi --scheduler-file F``.

    The certificates are in ``tls/`` beside the scheduler file, written before it. As
    ``Client(scheduler_file=F)`` does, this waits (up to ``timeout`` seconds) for F to
    exist: a run that is starting has removed the last run's F, and its certificates are
    new only once F is there. None if the run is --insecure (no ``tls/`` there).
    """
    path = Path(scheduler_file).expanduser()
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    files = tls_files(path.absolute().parent)
    if not files.directory.exists():
        return None
    return files.security()


def run(
    *,
    scheduler_address: str | None = None,
    scheduler_file: str | None = None,
    scheduler_port: int | None = None,
    scheduler_rank: int = 0,
    scheduler: bool = True,
    exclusive_workers: bool = True,
    interface: str | None = None,
    protocol: str | None = None,
    nthreads: int | None = None,
    memory_limit: str | float | int = "auto",
    local_directory: str | None = None,
    nanny: bool | None = None,
    worker_class: str = "distributed.Nanny",
    worker_options: str | dict[str, Any] | None = None,
    dashboard: bool = True,
    dashboard_address: str | None = None,
    name: str = "dask_mpi",
    insecure: bool = False,
    jupyter: bool = False,
    login_host: str | None = None,
    comm: Any = None,
) -> None:
    """``dask-hpc mpi``: the scheduler on ``scheduler_rank``, workers on the other ranks.

    The scheduler rank prints the SSH tunnel line for the dashboard (and, with
    ``jupyter``, for the JupyterLab it starts beside the scheduler). Returns when
    the cluster is closed (e.g. by a client's ``shutdown()``).

    The scheduler file of an earlier run (one that was killed keeps its dead
    address) is removed first thing, so that a client started now waits for
    the new address (``Client(scheduler_file=...)`` waits for the file to
    exist) instead of trying the old one.
    """
    comm = world(comm)
    size, rank = comm.Get_size(), comm.Get_rank()
    needed = 1 + (max(scheduler_rank, 1) if scheduler and exclusive_workers else scheduler_rank)
    if size < needed:
        too_small(
            rank,
            f"dask-hpc mpi with the scheduler on rank {scheduler_rank}"
            f"{' and workers on other ranks' if exclusive_workers else ''} needs {needed} MPI ranks, "
            f"got {size}: run e.g. mpirun -np {needed + 1}",
            True,
        )
    if protocol == "mpi" and not scheduler:
        too_small(
            rank,
            "--protocol mpi with --no-scheduler: mpi:// reaches only ranks of the same MPI job, and the "
            "scheduler runs elsewhere; leave out --protocol (the scheduler's own protocol is used)",
            True,
        )
    watch = LauncherWatch(rank)
    unusable: OSError | None = None  # said once the ranks wait for the address (collectives in order)
    if scheduler and rank == scheduler_rank and scheduler_file:
        try:
            forget_last_run(Path(scheduler_file), insecure)
        except OSError as exc:
            unusable = exc
    if nanny is None:  # dask-mpi's default, but a nanny's worker is no MPI rank: it cannot use mpi://
        nanny = protocol != "mpi"
    # --no-nanny means distributed.Worker in place of the default Nanny (dask-mpi's meaning); a
    # class of the user's own is theirs either way (with --protocol mpi it was dropped before).
    worker_type = worker_class if nanny or worker_class != "distributed.Nanny" else "distributed.Worker"
    separate = own_processes(worker_type)  # dask_cuda.CUDAWorker: a nanny a GPU, as Nanny
    if scheduler:
        protocol = default_protocol(protocol, separate)
    options = json.loads(worker_options) if isinstance(worker_options, str) else dict(worker_options or {})
    import_while_waiting()
    if worker_type != CUDA_WORKER:  # dask-cuda starts its nannies its own way (spawn)
        fork_workers()
    start_mpi_transport(protocol, separate, comm, insecure)
    worker_opts = {
        "host": host(interface),
        "protocol": protocol,
        "nthreads": nthreads,
        "memory_limit": memory_limit,
        "local_directory": local_directory,
        "name": f"{name}-{rank}",
        **options,
    }
    if not scheduler:
        # Joining a cluster that runs elsewhere: its address and TLS files are given.
        address = scheduler_address or _address_from_file(scheduler_file)
        security = client_security(scheduler_file) if scheduler_file else None
        worker_opts["security"] = security
        role = run_worker(address, None, worker_type, worker_opts, rank=rank, watch=watch)
        run_role(role, rank, "a worker")
        return
    if rank == scheduler_rank:
        # With --protocol mpi the scheduler listens on tls:// too, for clients from outside the job.
        credentials = None if insecure else make_credentials("mpi")
        scratch = None
        try:
            if unusable is not None:
                raise unusable
            if jupyter and not scheduler_file:  # JupyterLab's kernels read the address and keys from files
                scratch = tempfile.mkdtemp(prefix="dask-hpc-mpi-")
                scheduler_file = str(Path(scratch) / "scheduler.json")
            if credentials and scheduler_file:
                publish_credentials(Path(scheduler_file), credentials)
        except OSError as exc:  # e.g. a directory we may not write: the others wait for the address
            fail_start(comm, scheduler_rank, exc)
        try:
            run_role(
                run_scheduler(
                    comm,
                    scheduler_rank,
                    credentials,
                    watch,
                    host=host(interface),
                    protocol=protocol,
                    dashboard=dashboard,
                    dashboard_address=dashboard_address,
                    scheduler_file=scheduler_file,
                    port=scheduler_port or 0,
                    with_worker=None if exclusive_workers else (worker_type, worker_opts),
                    pages=(jupyter, login_host),
                    outside=True,
                    worker_type=worker_type,
                ),
                rank,
                "the scheduler",
            )
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
            elif scheduler_file:  # its pages are gone: `dask-hpc tunnel` must not offer them
                (Path(scheduler_file).absolute().parent / "web.json").unlink(missing_ok=True)
        return
    address, credentials = receive_cluster(comm, scheduler_rank)
    role = run_worker(address, credentials, worker_type, worker_opts, rank=rank, watch=watch)
    run_role(role, rank, "a worker")


def publish_credentials(scheduler_file: Path, credentials: Credentials) -> None:
    """The cluster's certificates in ``tls/`` beside the scheduler file (dir 0700, files
    0600), for clients from outside: :func:`client_security` reads them."""
    directory = scheduler_file.absolute().parent
    private_directory(directory)
    write_tls_files(directory, credentials)


def forget_last_run(scheduler_file: Path, insecure: bool) -> None:
    """Remove what an earlier run left beside ``scheduler_file`` (one that was killed leaves its
    dead address, its web pages and, if this run has none, its certificates): a client must
    not be handed any of it. This run writes its own certificates, then the file."""
    directory = scheduler_file.absolute().parent
    scheduler_file.unlink(missing_ok=True)
    (directory / "web.json").unlink(missing_ok=True)
    if insecure:
        shutil.rmtree(tls_files(directory).directory, ignore_errors=True)


def _address_from_file(scheduler_file: str | None, timeout: float = 60.0) -> str:
    """The scheduler's address in ``scheduler_file``, waiting up to ``timeout`` seconds for it
    to be there and whole (a run that starts removes the last run's file first; distributed
    writes it in place), as dask-mpi's workers wait for it."""
    if not scheduler_file:
        raise DaskHPCError("--no-scheduler needs a scheduler address or --scheduler-file")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(json.loads(Path(scheduler_file).read_text())["address"])
        except (OSError, ValueError, KeyError) as exc:
            if time.monotonic() > deadline:
                raise DaskHPCError(
                    f"cannot read the scheduler's address from {scheduler_file} within {timeout:g} s: {exc}"
                ) from None
        time.sleep(0.1)
