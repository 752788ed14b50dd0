"""The communicator the cluster lives on, and the steps every rank of it takes together.

Everything collective or rank-numbered is done on the communicator the user gave
(``comm=``; COMM_WORLD by default), never on COMM_WORLD behind their back:
dask-mpi documents running Dask on part of the world (``COMM_WORLD.Split``) and
carrying on with the whole world afterwards. A rank outside the given
communicator takes no part in anything here.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from dask_hpc.errors import WorldTooSmallError
from dask_hpc.network import choose_interface, job_peers
from dask_hpc.spec import CUDA_WORKER

#: Seconds between looks of a rank that waits for the scheduler's address: it sleeps in
#: between instead of spinning inside MPI (Open MPI's blocking calls poll a core at 100%,
#: the core the scheduler's rank needs to start).
ANNOUNCE_POLL = 0.005


@dataclass(frozen=True)
class StartFailed:
    """What the scheduler's rank announces instead of its address when it cannot start: the
    other ranks exit (non-zero, quietly: the failing rank says why, once)."""

    rank: int
    reason: str


def world(comm: Any) -> Any:
    """The communicator to use: the given one, else COMM_WORLD."""
    if comm is not None:
        return comm
    from mpi4py import MPI

    return MPI.COMM_WORLD


def too_small(rank: int, message: str, exit: bool, code: int = 2) -> None:
    """Too few ranks (or options that cannot work): one line from the first rank, then every
    rank exits with ``code``; or, with ``exit=False``, WorldTooSmallError on every rank."""
    if not exit:
        raise WorldTooSmallError(message)
    if rank == 0:
        print(f"error: {message}", file=sys.stderr, flush=True)  # noqa: T201
    sys.exit(code)


def announce(comm: Any, root: int, value: Any) -> None:
    """On ``root``: send ``value`` (the scheduler's address and credentials, or StartFailed)
    to every other rank of ``comm``, which waits in :func:`receive_announcement`."""
    _wait_idle(comm.Ibarrier())
    comm.bcast(value, root=root)


def receive_announcement(comm: Any, root: int) -> Any:
    """What ``root`` announces. Until it does, this rank sleeps between looks rather than
    spin in MPI (the broadcast itself follows a barrier that says ``root`` is ready)."""
    _wait_idle(comm.Ibarrier())
    return comm.bcast(None, root=root)


def _wait_idle(request: Any) -> None:
    while not request.Test():
        time.sleep(ANNOUNCE_POLL)


def default_protocol(protocol: str | None, nanny: bool) -> str | None:
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
        return None
    return "mpi"


def own_processes(worker_type: str) -> bool:
    """Whether workers of ``worker_type`` (a dotted path) run in processes of their own, not in
    the rank: a nanny's (``distributed.Nanny``), dask-cuda's ``CUDAWorker`` (a nanny a GPU), or
    any class that is not a ``distributed.Worker``. Such workers cannot use mpi://, and they
    are what ``nanny`` means to :func:`default_protocol` and :func:`start_mpi_transport`. A
    class that cannot be imported counts as the rank's own (the start says it cannot be)."""
    if worker_type == CUDA_WORKER:  # without importing dask-cuda (and CUDA) here
        return True
    from distributed import Nanny, Worker
    from distributed.utils import import_term

    try:
        found = import_term(worker_type)
    except Exception:  # a module of the user's may fail as it likes: its start says so, once
        return False
    return not isinstance(found, type) or issubclass(found, Nanny) or not issubclass(found, Worker)


def start_mpi_transport(protocol: str | None, nanny: bool, comm: Any, insecure: bool) -> None:
    """With ``protocol="mpi"``, start the mpi:// engine on every rank of ``comm`` (a collective
    step: it duplicates ``comm``).

    Workers must then run in the rank's own process: a nanny's worker is not an
    MPI rank. Inside one MPI job no one else can send to our ranks, so there is no TLS.
    A protocol without encryption (tcp, ...) needs ``insecure``: one line, on every rank.
    """
    rank = comm.Get_rank()
    if protocol not in (None, "tls", "mpi") and not insecure:
        too_small(
            rank,
            f"protocol {protocol!r} has no encryption and TLS is on: use tls (the default) or mpi, "
            "or turn TLS off with --insecure (insecure=True)",
            True,
        )
    if protocol != "mpi":
        return
    if nanny:
        too_small(
            rank,
            "--protocol mpi needs workers in the MPI ranks themselves: add --no-nanny, with a worker "
            "class that is a distributed.Worker (a nanny's or dask-cuda's workers are processes of "
            "their own)",
            True,
        )
    from mpi4py import MPI

    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        too_small(
            rank,
            "--protocol mpi needs an MPI with MPI_THREAD_MULTIPLE, which this one does not give: "
            "leave out --protocol (tls is used)",
            True,
        )
    from dask_hpc.comm.engine import Engine

    Engine.get(comm)


def import_while_waiting() -> None:
    """Import distributed now, on every rank: the ranks that wait for the scheduler's
    address do it in parallel with its start instead of after it (a second each here)."""
    import distributed  # noqa: F401


def host(interface: str | None) -> str:
    """The address this rank listens on: the interface's, or the one its host name resolves to
    (distributed's default, the route to 8.8.8.8, is wrong on compute nodes without Internet);
    loopback only when every rank is on this host, as the launcher or batch system says."""
    return choose_interface(interface, job_peers).address
