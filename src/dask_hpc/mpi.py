"""MPI launch: one MPI job is one Dask cluster.

``initialize()`` (in a job script): rank 0 runs the scheduler, rank 1 returns to
the script, the other ranks are workers. ``dask-hpc mpi``: the scheduler rank
and workers, for clients from outside. The scheduler's address and the
cluster's TLS credentials (new for every run, as for a session) reach the
ranks over MPI: no shared file needed. Every rank exits when the script
ends, and ``mpirun`` with the script's exit code; no rank waits forever.

Keyword names and defaults are dask-mpi's, so that switching is a change of import
or of the command's name.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DaskHPCError
from .interface import choose_interface
from .jupyter import JupyterLab, web_pages
from .security import Credentials, make_credentials, tls_files, write_tls_files
from .session import write_private
from .tunnel import login_host, site_login_host, submit_host, tunnel
from .worker import fork_workers

if TYPE_CHECKING:
    from distributed import Security

__all__ = ["WorldTooSmallError", "client_security", "initialize", "run", "send_close_signal"]

logger = logging.getLogger("dask_hpc.mpi")

#: How long the script's rank waits for the cluster to close at its exit.
CLOSE_TIMEOUT = 10.0
#: After its work, a rank that cannot finish MPI (another rank died) exits anyway after this long.
FINALIZE_GRACE = 30.0
#: Seconds between asking MPI whether a rank this one serves has died (fault tolerance on).
GONE_CHECK = 0.5


class WorldTooSmallError(DaskHPCError):
    """Fewer MPI ranks than the roles need."""


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

    With ``exit=True`` (the default) the scheduler and worker ranks exit when
    the cluster closes, which happens when the script's rank exits: only rank 1
    returns. With ``exit=False`` every rank returns (False but on rank 1), and
    the script calls :func:`send_close_signal` itself.
    """
    comm = _world(comm)
    size, rank = comm.Get_size(), comm.Get_rank()
    if size < 3:
        _too_small(
            rank,
            f"dask_hpc.mpi.initialize needs at least 3 MPI ranks (the scheduler, your script, a worker); "
            f"got {size}: run e.g. mpirun -np 4",
            exit,
        )
    worker_type = "distributed.Nanny" if nanny else worker_class
    protocol = _default_protocol(protocol, nanny)
    _import_while_waiting()
    fork_workers()
    _start_mpi_transport(protocol, nanny, rank, insecure)
    if rank == 0:
        credentials = None if insecure or protocol == "mpi" else make_credentials("mpi")
        _run(
            _scheduler(
                comm,
                0,
                credentials,
                serves={1: "your script's"},
                host=_host(interface),
                protocol=protocol,
                dashboard=dashboard,
                dashboard_address=dashboard_address,
            )
        )
        return _leave(exit)
    address, credentials = comm.bcast(None, root=0)
    if rank == 1:
        import dask

        dask.config.set(
            {"scheduler-address": address, **(credentials.client_config() if credentials else {})}
        )
        if exit:
            atexit.register(_close_at_exit)
        return True
    _run(
        _worker(
            address,
            credentials,
            worker_type,
            {
                "host": _host(interface),
                "protocol": protocol,
                "nthreads": nthreads,
                "memory_limit": memory_limit,
                "local_directory": local_directory,
                "name": rank,
                **(worker_options or {}),
            },
            serves=(comm, {0: "the scheduler's", 1: "your script's"}),
        )
    )
    return _leave(exit)


def send_close_signal() -> None:
    """Close the cluster (scheduler and workers) from the script's rank."""
    from distributed import Client, default_client

    try:
        # The script's own client: shut down through it, so that it does not try to
        # reconnect (and log tracebacks) once the scheduler is gone.
        client = default_client()
    except ValueError:
        client = Client(timeout=CLOSE_TIMEOUT)
    client.shutdown()


def client_security(scheduler_file: str | Path) -> Security | None:
    """TLS settings for a client from outside of ``dask-hpc mpi --scheduler-file F``.

    The certificates are in ``tls/`` beside the scheduler file. None if it was
    started with --insecure (no ``tls/`` there).
    """
    files = tls_files(Path(scheduler_file).absolute().parent)
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
    """
    comm = _world(comm)
    size, rank = comm.Get_size(), comm.Get_rank()
    needed = 1 + (max(scheduler_rank, 1) if scheduler and exclusive_workers else scheduler_rank)
    if size < needed:
        _too_small(
            rank,
            f"dask-hpc mpi with the scheduler on rank {scheduler_rank}"
            f"{' and workers on other ranks' if exclusive_workers else ''} needs {needed} MPI ranks, "
            f"got {size}: run e.g. mpirun -np {needed + 1}",
            True,
        )
    if protocol == "mpi" and not scheduler:
        _too_small(
            rank,
            "--protocol mpi with --no-scheduler: mpi:// reaches only ranks of the same MPI job, and the "
            "scheduler runs elsewhere; leave out --protocol (the scheduler's own protocol is used)",
            True,
        )
    if nanny is None:  # dask-mpi's default, but a nanny's worker is no MPI rank: it cannot use mpi://
        nanny = protocol != "mpi"
    if scheduler:
        protocol = _default_protocol(protocol, nanny)
    options = json.loads(worker_options) if isinstance(worker_options, str) else dict(worker_options or {})
    _import_while_waiting()
    fork_workers()
    _start_mpi_transport(protocol, nanny, rank, insecure)
    worker_type = worker_class if nanny else "distributed.Worker"
    worker_opts = {
        "host": _host(interface),
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
        _run(_worker(address, None, worker_type, {**worker_opts, "security": security}))
        return
    if rank == scheduler_rank:
        # With --protocol mpi the scheduler listens on tls:// too, for clients from outside the job.
        credentials = None if insecure else make_credentials("mpi")
        scratch = None
        if jupyter and not scheduler_file:  # JupyterLab's kernels read the address and keys from files
            scratch = tempfile.mkdtemp(prefix="dask-hpc-mpi-")
            scheduler_file = str(Path(scratch) / "scheduler.json")
        if credentials and scheduler_file:  # for clients from outside: client_security(scheduler_file)
            directory = Path(scheduler_file).absolute().parent
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_tls_files(directory, credentials)
        _run(
            _scheduler(
                comm,
                scheduler_rank,
                credentials,
                host=_host(interface),
                protocol=protocol,
                dashboard=dashboard,
                dashboard_address=dashboard_address,
                scheduler_file=scheduler_file,
                port=scheduler_port or 0,
                worker=None if exclusive_workers else (worker_type, worker_opts),
                pages=(jupyter, login_host),
                outside=True,
            )
        )
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        elif scheduler_file:  # its pages are gone: `dask-hpc tunnel` must not offer them
            (Path(scheduler_file).absolute().parent / "web.json").unlink(missing_ok=True)
        return
    address, credentials = comm.bcast(None, root=scheduler_rank)
    _run(_worker(address, credentials, worker_type, worker_opts))


# ---- roles ----------------------------------------------------------------------


async def _scheduler(
    comm: Any,
    root: int,
    credentials: Credentials | None,
    *,
    worker: tuple[str, dict[str, Any]] | None = None,
    pages: tuple[bool, str | None] | None = None,
    outside: bool = False,
    serves: dict[int, str] | None = None,
    **options: Any,
) -> None:
    """The scheduler rank; with ``pages`` (jupyter, login host), as ``dask-hpc mpi``: the tunnel
    line printed, and JupyterLab beside the scheduler if asked. With ``outside`` and protocol
    ``mpi``, it listens on tls:// (tcp:// if insecure) too, for clients from outside the MPI
    job: that is its address (the scheduler file's); the ranks get its mpi:// one."""
    from distributed import Scheduler

    from .scheduler_job import add_dashboard

    security = credentials.security() if credentials else None
    protocol = options.pop("protocol", None) or ("tls" if security else None)
    both = protocol == "mpi" and outside
    if both:
        protocol = ["tls" if security else "tcp", "mpi"]
        options["host"] = [options.get("host"), None]
        options["port"] = [options.get("port", 0), None]
    dashboard = options.pop("dashboard", True)
    # The dashboard is attached once the others know the address (bokeh's import is slow).
    async with Scheduler(security=security, protocol=protocol, dashboard=False, **options) as scheduler:
        inside = scheduler.listeners[-1].contact_address if both else scheduler.address
        # Every other rank waits in this broadcast: send them the address even if a
        # later step fails, so that none of them waits forever.
        await asyncio.to_thread(comm.bcast, (inside, credentials), root)
        if dashboard:
            await add_dashboard(scheduler)
        lab = None
        if pages is not None:
            lab = await _web_pages(
                scheduler, options["host"], options.get("scheduler_file"), credentials, *pages
            )
        tasks = []
        if worker is not None:  # --inclusive-workers: a worker beside the scheduler
            tasks.append(asyncio.ensure_future(_worker(inside, credentials, *worker)))
        if serves:
            tasks.append(asyncio.ensure_future(_close_when_gone(comm, serves, scheduler)))
        try:
            await scheduler.finished()
        finally:
            if lab is not None:
                await asyncio.to_thread(lab.stop)
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, CLOSE_TIMEOUT)  # a watcher is cancelled here


async def _web_pages(
    scheduler: Any,
    host: str,
    scheduler_file: str | None,
    credentials: Credentials | None,
    jupyter: bool,
    login: str | None,
) -> JupyterLab | None:
    """JupyterLab if asked, ``web.json`` beside the scheduler file, and the tunnel line on stdout."""
    from .keeper import dashboard_port

    directory = Path(scheduler_file).absolute().parent if scheduler_file else None
    pages, lab = await web_pages(
        host,
        scheduler.address,
        dashboard_port(scheduler),
        tls_files(directory) if credentials and directory else None,
        jupyter=jupyter,
        root_dir=os.getcwd(),
        scheduler_file=Path(scheduler_file).absolute() if scheduler_file else None,
    )
    if directory:
        write_private(directory / "web.json", pages.to_dict())
    if pages.jupyter_error:
        print(f"dask-hpc: no JupyterLab: {pages.jupyter_error}", file=sys.stderr, flush=True)
    if pages.dashboard_port or pages.jupyter_port:
        line = tunnel(pages, login_host(login, submit_host(), site_login_host()))
        print("dask-hpc: on your laptop, paste the tunnel line, then open the pages:", flush=True)
        print("\n".join(line.lines()), flush=True)
    return lab


async def _worker(
    address: str,
    credentials: Credentials | None,
    worker_type: str,
    options: dict[str, Any],
    serves: tuple[Any, dict[int, str]] | None = None,
) -> None:
    from distributed.utils import import_term

    # When the cluster closes, a worker's last messages meet a closed stream: distributed
    # logs that at INFO with a traceback on every rank. It is the normal end here.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    cls = import_term(worker_type)
    if credentials is not None:
        options = {**options, "security": credentials.security()}
    if options.get("protocol") is None:
        options.pop("protocol", None)
    if options.get("nthreads") is None:
        options.pop("nthreads", None)
    async with cls(address, **options) as worker:
        watcher = None if serves is None else asyncio.ensure_future(_close_when_gone(*serves, worker))
        try:
            await worker.finished()
        finally:
            if watcher is not None:
                watcher.cancel()


async def _close_when_gone(comm: Any, serves: dict[int, str], server: Any) -> None:
    """Close ``server`` (this rank's scheduler or worker) once a rank it serves has died.

    Under fault tolerance (``mpirun --with-ft ulfm``) a rank's death does not end the MPI
    job: without this, the scheduler and the workers would wait forever for a script that
    was killed, or left without closing the cluster, and so would mpirun. Without fault
    tolerance MPI reports no failures (mpirun ends the whole job when a rank dies).
    """
    global _orphaned
    while True:
        await asyncio.sleep(GONE_CHECK)
        gone = sorted(set(serves) & _failed_ranks(comm))
        if gone:
            break
    _orphaned = True
    rank = gone[0]
    print(
        f"dask-hpc: rank {rank} ({serves[rank]}) has died: rank {comm.Get_rank()} closes and exits",
        file=sys.stderr,
        flush=True,
    )
    await server.close()


def _failed_ranks(comm: Any) -> set[int]:
    """The ranks of ``comm`` that MPI knows have died; none where MPI cannot tell. Called in
    the rank's main thread (the one that initialized MPI), a local call."""
    from mpi4py import MPI

    # MPI learns of failures as it progresses: without mpi:// no other call drives it here.
    # (A wildcard probe fails while a failure is not yet acknowledged: that is no news.)
    with contextlib.suppress(MPI.Exception):
        comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)
    try:
        group = comm.Get_failed()
    except (NotImplementedError, AttributeError, MPI.Exception):
        return set()
    if group.Get_size() == 0:
        group.Free()
        return set()
    mine = comm.Get_group()
    try:
        ranks = MPI.Group.Translate_ranks(group, list(range(group.Get_size())), mine)
        return {r for r in ranks if r != MPI.UNDEFINED}
    finally:
        group.Free()
        mine.Free()


# ---- leaving, without hanging --------------------------------------------------------


def _default_protocol(protocol: str | None, nanny: bool) -> str | None:
    """The protocol asked for; else mpi:// where it works: workers in the ranks themselves (no
    nanny) and an MPI that lets our progress thread call it while the script's thread may too
    (MPI_THREAD_MULTIPLE); else None (tls, or tcp with insecure).

    Why mpi:// by default: it moves data between workers 4-9 times faster than tls and 2-6
    times faster than tcp from 16 MiB up (``dask-hpc bench network``, README), and inside one
    MPI job no one else can send to our ranks, so it needs no TLS.
    """
    if protocol is not None or nanny:
        return protocol
    from mpi4py import MPI

    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        logger.info("mpi:// needs MPI_THREAD_MULTIPLE, which this MPI does not give: using tls")
        return None
    return "mpi"


def _start_mpi_transport(protocol: str | None, nanny: bool, rank: int, insecure: bool) -> None:
    """With ``protocol="mpi"``, start the mpi:// engine on every rank (a collective step).

    Workers must then run in the rank's own process: a nanny's worker is not an
    MPI rank. Inside one MPI job no one else can send to our ranks, so there is no TLS.
    A protocol without encryption (tcp, ...) needs ``insecure``: one line, on every rank.
    """
    if protocol not in (None, "tls", "mpi") and not insecure:
        _too_small(
            rank,
            f"protocol {protocol!r} has no encryption and TLS is on: use tls (the default) or mpi, "
            "or turn TLS off with --insecure (insecure=True)",
            True,
        )
    if protocol != "mpi":
        return
    if nanny:
        _too_small(rank, "--protocol mpi needs workers in the MPI ranks themselves: add --no-nanny", True)
    from mpi4py import MPI

    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        _too_small(
            rank,
            "--protocol mpi needs an MPI with MPI_THREAD_MULTIPLE, which this one does not give: "
            "leave out --protocol (tls is used)",
            True,
        )
    from .mpicomm import Engine

    Engine.get()


def _import_while_waiting() -> None:
    """Import distributed now, on every rank: the ranks that wait for the scheduler's
    address do it in parallel with its start instead of after it (a second each here)."""
    import distributed  # noqa: F401


def _host(interface: str | None) -> str:
    """The address this rank listens on: the interface's, or the one its host name resolves to
    (distributed's default, the route to 8.8.8.8, is wrong on compute nodes without Internet)."""
    return choose_interface(interface).address


def _run(role: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(role)


def _leave(exit: bool) -> bool:
    if exit:
        _exit_bounded(1 if _orphaned else 0)
    return False


def _exit_bounded(code: int) -> None:
    """Exit with ``code``; if MPI's finalize cannot finish (a rank died), exit anyway."""
    _watchdog(code)
    sys.exit(code)


def _watchdog(code: int) -> None:
    def expire() -> None:
        print(
            f"dask-hpc: MPI did not finish within {FINALIZE_GRACE:g} s (another rank died?); exiting",
            file=sys.stderr,
            flush=True,
        )
        os._exit(code)

    timer = threading.Timer(FINALIZE_GRACE, expire)
    timer.daemon = True  # runs during interpreter shutdown, where mpi4py finalizes MPI
    timer.start()


_failed = False
#: This rank closed because a rank it serves (the script's, the scheduler's) died.
_orphaned = False


def _close_at_exit() -> None:
    """On the script's rank, at exit: close the cluster so the other ranks exit too.

    The watchdog is armed first: asking the scheduler to close has no timeout of its own
    (distributed's Client.shutdown), and a scheduler that does not answer must not keep
    this rank, and so mpirun, waiting.
    """
    _watchdog(1 if _failed else 0)
    try:
        send_close_signal()
    except Exception as exc:  # the scheduler is gone already: the other ranks leave by themselves
        logger.warning("could not close the cluster: %s", exc)


def _note_failure(hook: Any) -> Any:
    def excepthook(*args: Any) -> None:
        global _failed
        _failed = True
        hook(*args)

    return excepthook


def _world(comm: Any) -> Any:
    if comm is not None:
        return comm
    from mpi4py import MPI

    sys.excepthook = _note_failure(sys.excepthook)
    return MPI.COMM_WORLD


def _too_small(rank: int, message: str, exit: bool) -> None:
    if not exit:
        raise WorldTooSmallError(message)
    if rank == 0:
        print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _address_from_file(scheduler_file: str | None) -> str:
    if not scheduler_file:
        raise DaskHPCError("--no-scheduler needs a scheduler address or --scheduler-file")
    try:
        address = json.loads(Path(scheduler_file).read_text())["address"]
    except (OSError, ValueError, KeyError) as exc:
        raise DaskHPCError(f"cannot read the scheduler's address from {scheduler_file}: {exc}") from None
    return str(address)
