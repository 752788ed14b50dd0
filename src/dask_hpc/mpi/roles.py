"""The roles a rank plays: the scheduler, a worker (and, for execute(), the client beside them).

A role that cannot start ends the whole job within seconds, with one line saying
which rank failed and why: the scheduler's rank announces the failure instead of
its address (the other ranks wait for it and would otherwise wait forever), then
every rank exits non-zero (a rank that exits non-zero makes ``mpirun`` end the
job).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from dask_hpc.errors import DaskHPCError, RoleFailedError
from dask_hpc.files import write_private
from dask_hpc.mpi import leaving
from dask_hpc.mpi.leaving import CLOSE_TIMEOUT, LauncherWatch, abandon, say
from dask_hpc.mpi.world import StartFailed, announce
from dask_hpc.security import tls_files
from dask_hpc.web.jupyter import JupyterLab, web_pages
from dask_hpc.web.tunnel import login_host, submit_host, tunnel

if TYPE_CHECKING:
    from dask_hpc.security import Credentials

#: Seconds between asking MPI whether a rank this one serves has died (fault tolerance on).
GONE_CHECK = 0.5


def run_role(role: Any, rank: int, what: str) -> None:
    """Run a role's coroutine to its end; a role that failed (whatever it raised) is one line
    naming ``rank`` and ``what`` it is, and exit 1 without MPI: mpirun then ends the job."""
    try:
        asyncio.run(role)
    except KeyboardInterrupt:
        pass
    except RoleFailedError as exc:
        say(f"error: {exc}")
        abandon(1)
    except Exception as exc:
        say(f"error: rank {rank} ({what}) failed: {why(exc)}")
        abandon(1)


def fail_start(comm: Any, root: int, exc: BaseException, port: Any = None) -> NoReturn:
    """The scheduler's rank could not start: say why (first: once told, the other ranks exit
    and mpirun may end this one), tell the ranks that wait for its address, exit 1."""
    rank = comm.Get_rank()
    reason = why(exc, port)
    say(f"error: rank {rank} (the scheduler) could not start: {reason}")
    announce(comm, root, StartFailed(rank, reason))
    abandon(1)


def why(exc: BaseException, port: Any = None) -> str:
    """The root of ``exc`` in a line (distributed wraps it: "Scheduler failed to start")."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if isinstance(root, DaskHPCError):
        return str(root)
    if isinstance(root, OSError) and root.errno == errno.EADDRINUSE:
        where = f"port {port}" if port else "its port"
        return f"{where} is already in use: choose another --scheduler-port, or leave it out (any free one)"
    return f"{type(root).__name__}: {root}"


async def scheduler(
    comm: Any,
    root: int,
    credentials: Credentials | None,
    watch: LauncherWatch,
    *,
    with_worker: tuple[str, dict[str, Any]] | None = None,
    client: Callable[[], Any] | None = None,
    pages: tuple[bool, str | None] | None = None,
    outside: bool = False,
    serves: dict[int, str] | None = None,
    worker_type: str | None = None,
    **options: Any,
) -> None:
    """The scheduler's rank; with ``pages`` (jupyter, login host), as ``dask-hpc mpi``: the
    tunnel line printed, and JupyterLab beside the scheduler if asked. With ``outside`` and
    protocol ``mpi``, it listens on tls:// (tcp:// if insecure) too, for clients from outside
    the MPI job: that is its address (the scheduler file's); the ranks get its mpi:// one.
    ``with_worker``: a worker beside it on this rank (its type and options); ``client``: a
    function run in a thread of this rank once the cluster is announced (execute()'s)."""
    from dask_hpc.launch import add_dashboard, start_scheduler

    security = credentials.security() if credentials else None
    protocol = options.pop("protocol", None) or ("tls" if security else None)
    both = protocol == "mpi" and outside
    port = options.get("port")
    if both:
        protocol = ["tls" if security else "tcp", "mpi"]
        options["host"] = [options.get("host"), None]
        options["port"] = [options.get("port", 0), None]
    dashboard = options.pop("dashboard", True)
    rank = comm.Get_rank()
    try:
        if worker_type is not None:  # said once, here, rather than by every worker rank
            check_worker_type(worker_type)
        # The dashboard is attached once the others know the address (bokeh's import is slow).
        # distributed's web routes, as an MPI job has always had (a session's are read-only).
        server = await start_scheduler(security=security, protocol=protocol, routes=None, **options)
    except Exception as exc:  # every other rank waits for the address: tell them instead
        await asyncio.to_thread(fail_start, comm, root, exc, port)
    watch.serve(server)
    try:
        inside = server.listeners[-1].contact_address if both else server.address
        await asyncio.to_thread(announce, comm, root, (inside, credentials))
        if dashboard:
            await add_dashboard(server)
        lab: JupyterLab | None = None
        if pages is not None:
            file = options.get("scheduler_file")
            where = options["host"][0] if both else options["host"]  # the tls:// listener's, with mpi://
            lab = await _web_pages(server, where, file, credentials, *pages)
        tasks = []
        if with_worker is not None:  # a worker beside the scheduler (--inclusive-workers)
            tasks.append(asyncio.ensure_future(worker(inside, credentials, *with_worker, rank=rank)))
        if client is not None:  # Client() on this rank finds the cluster, as on the others
            use_cluster(inside, credentials)
            tasks.append(asyncio.ensure_future(asyncio.to_thread(client)))
        watcher = None if not serves else asyncio.ensure_future(close_when_gone(comm, serves, server))
        try:
            await server.finished()
        finally:
            if lab is not None:
                await asyncio.to_thread(lab.stop)
            if watcher is not None:
                # It watches until cancelled: waiting for it (as for the tasks below) cost every
                # MPI job CLOSE_TIMEOUT, 10 s, at its end.
                watcher.cancel()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, CLOSE_TIMEOUT)
    finally:
        await server.close()


def check_worker_type(worker_type: str) -> None:
    """Check that the workers' class can be imported (a mistyped --worker-class or
    worker_class=): DaskHPCError saying what to give instead."""
    from distributed.utils import import_term

    try:
        import_term(worker_type)
    except Exception as exc:  # a module of the user's may fail as it likes
        raise DaskHPCError(
            f"the worker class {worker_type!r} cannot be imported ({exc}): give its dotted path, "
            "e.g. distributed.Nanny or distributed.Worker"
        ) from None


async def worker(
    address: str,
    credentials: Credentials | None,
    worker_type: str,
    options: dict[str, Any],
    *,
    rank: int,
    watch: LauncherWatch | None = None,
    serves: tuple[Any, dict[int, str]] | None = None,
    client: Callable[[], Any] | None = None,
) -> None:
    """A worker on this rank until the cluster closes; ``client``: a function run in a thread
    of this rank once the worker is up (execute()'s client function beside a worker)."""
    from distributed.utils import import_term

    # When the cluster closes, a worker's last messages meet a closed stream: distributed
    # logs that at INFO with a traceback on every rank. It is the normal end here.
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    options = dict(options)
    if credentials is not None:
        options["security"] = credentials.security()
    for key in ("protocol", "nthreads"):  # None: distributed's default
        if options.get(key) is None:
            options.pop(key, None)
    try:
        server = await import_term(worker_type)(address, **options)
    except Exception as exc:
        raise RoleFailedError(f"rank {rank} (a worker) could not start: {why(exc)}") from None
    if watch is not None:
        watch.serve(server)
    watcher = None if serves is None else asyncio.ensure_future(close_when_gone(*serves, server))
    beside = None if client is None else asyncio.ensure_future(asyncio.to_thread(client))
    try:
        await server.finished()
        if beside is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(beside, CLOSE_TIMEOUT)
    finally:
        if watcher is not None:
            watcher.cancel()
        await server.close()


async def close_when_gone(comm: Any, serves: dict[int, str], server: Any) -> None:
    """Close ``server`` (this rank's scheduler or worker) once a rank it serves has died.

    Under fault tolerance (``mpirun --with-ft ulfm``) a rank's death does not end the MPI
    job: without this, the scheduler and the workers would wait forever for a script that
    was killed, or left without closing the cluster, and so would mpirun. Without fault
    tolerance MPI reports no failures (mpirun ends the whole job when a rank dies).
    """
    while True:
        await asyncio.sleep(GONE_CHECK)
        gone = sorted(set(serves) & failed_ranks(comm))
        if gone:
            break
    leaving.orphaned = True
    rank = gone[0]
    say(f"dask-hpc: rank {rank} ({serves[rank]}) has died: rank {comm.Get_rank()} closes and exits")
    await server.close()


def failed_ranks(comm: Any) -> set[int]:
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


async def _web_pages(
    scheduler: Any,
    host: str,
    scheduler_file: str | None,
    credentials: Credentials | None,
    jupyter: bool,
    login: str | None,
) -> JupyterLab | None:
    """JupyterLab if asked, ``web.json`` beside the scheduler file, and the tunnel line on stdout."""
    from dask_hpc.launch import dashboard_port
    from dask_hpc.web.tunnel import site_login_host

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
        print(f"dask-hpc: no JupyterLab: {pages.jupyter_error}", file=sys.stderr, flush=True)  # noqa: T201
    if pages.dashboard_port or pages.jupyter_port:
        line = tunnel(pages, login_host(login, submit_host(), site_login_host()))
        print("dask-hpc: on your laptop, paste the tunnel line, then open the pages:", flush=True)  # noqa: T201
        print("\n".join(line.lines()), flush=True)  # noqa: T201
    return lab


def receive_cluster(comm: Any, root: int) -> tuple[str, Credentials | None]:
    """The scheduler's address and the cluster's credentials, as ``root`` announces them; if
    its scheduler could not start, this rank exits 1 (quietly: ``root`` says why)."""
    from dask_hpc.mpi.world import receive_announcement

    value = receive_announcement(comm, root)
    if isinstance(value, StartFailed):
        abandon(1)
    address, credentials = value
    return address, credentials


def use_cluster(address: str, credentials: Credentials | None) -> None:
    """Let ``Client()`` on this rank find the cluster (dask's config, as dask-mpi sets it)."""
    import dask

    dask.config.set({"scheduler-address": address, **(credentials.client_config() if credentials else {})})
