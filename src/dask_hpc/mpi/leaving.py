"""How ranks leave: with the script's exit code, within bounded time, and never after their launcher.

- The script's rank closes the cluster at its exit (:func:`close_at_exit`), so
  the scheduler and worker ranks leave too.
- A rank whose MPI cannot finalize (another rank died) exits anyway after
  FINALIZE_GRACE (:func:`exit_bounded`, :func:`watchdog`).
- A scheduler or worker rank whose launcher (``mpirun``'s daemon, ``srun``'s
  step daemon: its parent process) is gone closes and exits within seconds
  (:class:`LauncherWatch`): killed ``mpirun`` leaves its ranks running, with
  parent 1, for as long as they like (and their nannies' workers with them).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import logging
import os
import re
import signal
import sys
import threading
import time
from typing import Any, NoReturn

logger = logging.getLogger("dask_hpc.mpi")

#: How long the script's rank waits for the cluster to close at its exit.
CLOSE_TIMEOUT = 10.0
#: After its work, a rank that cannot finish MPI (another rank died) exits anyway after this long.
FINALIZE_GRACE = 30.0
#: How much later than FINALIZE_GRACE a wait inside MPI itself is ended (see watchdog()).
FINALIZE_BACKSTOP = 2.0
#: Seconds between looks at whether this rank's launcher is still there.
LAUNCHER_CHECK = 1.0
#: Set in the environment of the processes a launcher starts (Open MPI/PRRTE, PMIx, MPICH's
#: Hydra, Slurm's srun).
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "SLURM_STEP_ID")
#: How long a rank whose launcher is gone takes to close its scheduler or worker before it exits.
LAUNCHER_GONE_GRACE = 5.0

#: The script raised (its rank then exits 1 however the cluster closes).
failed = False
#: This rank closed because a rank it serves (the script's, the scheduler's) died.
orphaned = False
#: This rank is in MPI's finalize, no rank known dead: it waits for ranks still at work,
#: however long, and the watchdog's timer lets it.
finalize_waits_for_work = False


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


def close_at_exit() -> None:
    """On the script's rank, at exit: close the cluster so the other ranks exit too.

    The watchdog is armed first: asking the scheduler to close has no timeout of its own
    (distributed's Client.shutdown), and a scheduler that does not answer must not keep
    this rank, and so mpirun, waiting.
    """
    watchdog(1 if failed else 0)
    try:
        send_close_signal()
    except Exception as exc:  # the scheduler is gone already: the other ranks leave by themselves
        logger.warning("could not close the cluster: %s", exc)


def finalize_at_exit() -> None:
    """At any rank's exit: finalize MPI now, under the watchdog (see :func:`finalize_mpi`)."""
    watchdog(1 if failed else 0)
    finalize_mpi()


def finalize_mpi() -> None:
    """Finalize MPI here, while Python's threads still run, so that the watchdog can end a
    finalize that never finishes (another rank died, or has not finished its work).

    Left to itself, mpi4py finalizes MPI among Python's last low-level exit functions,
    after its threads have stopped for good: a watchdog timer can no longer run there, and
    a finalize that waits for a rank waits forever (seen: a worker rank that failed to
    start, its scheduler rank still running). The mpi:// engine stops first: only one
    thread may call MPI while it finalizes.
    """
    from mpi4py import MPI

    if not MPI.Is_initialized() or MPI.Is_finalized():
        return
    engine = sys.modules.get("dask_hpc.comm.engine")  # not imported now: at exit, nothing may import
    if engine is not None and engine.Engine._instance is not None:
        engine.Engine._instance.stop()
    global finalize_waits_for_work
    finalize_waits_for_work = not failure_known()  # not asked during finalize: MPI is busy then
    library = _loaded_libmpi()
    if library is None:
        MPI.Finalize()
    else:
        # MPI_Finalize itself, through ctypes, which lets go of the GIL while it waits
        # (mpi4py's MPI.Finalize holds it): the watchdog's Python timer can then end a
        # finalize that never finishes with this rank's own exit code, not faulthandler's 1
        # (seen in CI: a rank killed under ULFM, the others waiting in finalize). mpi4py
        # asks MPI whether it is finalized, so it does not finalize again at exit.
        library.MPI_Finalize()


def _loaded_libmpi() -> ctypes.CDLL | None:
    """The MPI library mpi4py loaded into this process (Open MPI's libmpi.so.40, MPICH's
    libmpi.so.12), from the process's memory map; None where it cannot be found there."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if re.search(r"/libmpi\.so(\.\d+)*$", line.strip())}
    except OSError:
        return None
    if len(paths) != 1:
        return None
    try:
        return ctypes.CDLL(paths.pop())
    except OSError:
        return None


def abandon(code: int) -> NoReturn:
    """Exit now, without MPI: this rank failed and the job cannot go on (finalizing would
    wait for ranks that never come). A rank that leaves so makes mpirun end the job."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def note_failures() -> None:
    """Remember that the script raised (an uncaught exception), for the exit code."""
    hook = sys.excepthook
    if getattr(hook, "dask_hpc_notes_failures", False):
        return

    def excepthook(*args: Any) -> None:
        global failed
        failed = True
        hook(*args)

    excepthook.dask_hpc_notes_failures = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


def leave(exit: bool) -> bool:
    """A scheduler or worker rank after the cluster closed: exit (bounded), or return False."""
    if exit:
        exit_bounded(1 if orphaned else 0)
    return False


def exit_bounded(code: int) -> None:
    """Exit with ``code``; if MPI's finalize cannot finish (a rank died), exit anyway."""
    watchdog(code)
    finalize_mpi()
    sys.exit(code)


def watchdog(code: int) -> None:
    """In FINALIZE_GRACE seconds, exit with ``code`` whatever this rank is doing then.

    Two guards: a Python timer, which exits with ``code`` and says why, ends a wait in
    Python (a cluster that does not answer its close) and one in MPI's finalize, which
    :func:`finalize_mpi` calls without the GIL; and, when a rank is known to have died
    (:func:`failure_known`), faulthandler's watchdog, a C thread that needs no GIL, ends a
    wait inside MPI a little later, with exit code 1 and the stack of where it waited,
    where MPI is finalized holding the GIL (mpi4py's MPI.Finalize does: seen under gdb;
    its library not found).
    """

    def expire() -> None:
        if finalize_waits_for_work:  # MPI's finalize waits for live ranks still at work: let it
            return
        say(f"dask-hpc: MPI did not finish within {FINALIZE_GRACE:g} s (another rank died?); exiting")
        os._exit(code)

    timer = threading.Timer(FINALIZE_GRACE, expire)
    timer.daemon = True  # a rank that exits sooner does not wait for it
    timer.start()
    if not failure_known():  # a finalize that waits for live ranks still at work must wait
        return
    with contextlib.suppress(Exception):  # no usable stderr (its launcher gone): the timer alone
        faulthandler.dump_traceback_later(FINALIZE_GRACE + FINALIZE_BACKSTOP, exit=True, file=sys.stderr)


def failure_known() -> bool:
    """Whether a rank of this job is known to have died (fault tolerance on): then MPI's
    finalize may wait for it forever. Otherwise a finalize that waits waits for ranks still
    at work (a split communicator's other ranks, execute()'s script going on), which end."""
    if orphaned:
        return True
    from mpi4py import MPI

    if not MPI.Is_initialized() or MPI.Is_finalized():
        return False
    world = MPI.COMM_WORLD
    with contextlib.suppress(MPI.Exception):
        world.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG)  # MPI learns of failures as it progresses
    try:
        group = world.Get_failed()
    except (NotImplementedError, AttributeError, MPI.Exception):
        return False
    try:
        return bool(group.Get_size())
    finally:
        group.Free()


def say(line: str) -> None:
    """One line on stderr; nothing if nobody reads it any more (a launcher gone takes our stderr)."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)  # noqa: T201


class LauncherWatch:
    """Ends this rank once its launcher (the parent process) is gone.

    The rank's parent is what launched it: ``mpirun`` (on its own node), Open MPI's or
    PRRTE's daemon (on the others), ``srun``'s step daemon. If it dies (SIGKILL, a node's
    daemon lost), nobody ends the rank: it is adopted by init and runs on, and a nanny's
    worker with it. Every LAUNCHER_CHECK seconds a thread looks; when the parent has
    changed:

    - on a scheduler's or worker's rank, that server (:meth:`serve`) is closed (its clients
      and peers are told, a nanny ends its worker) within LAUNCHER_GONE_GRACE;
    - on the script's rank, the script gets SIGINT, as from Ctrl-C: its ``finally`` blocks
      and context managers run (files it writes are closed whole), then its exit closes
      the cluster; a script that does not end within LAUNCHER_GONE_GRACE is ended;

    then the rank exits 1 without MPI (whose runtime is gone: finalizing would wait for it).
    """

    def __init__(self, rank: int, *, script: bool = False) -> None:
        self.rank = rank
        self.script = script
        self.parent = os.getppid()
        self._server: tuple[Any, asyncio.AbstractEventLoop] | None = None
        self._lock = threading.Lock()
        # Only a rank some launcher started (a process run without one, e.g. a one-rank
        # execute() under nohup, may outlive its shell on purpose); a parent of 1 already:
        # nothing to tell apart.
        launched = any(name in os.environ for name in LAUNCHER_VARIABLES)
        if not launched or self.parent == 1:
            return
        threading.Thread(target=self._watch, name="dask-hpc-launcher-watch", daemon=True).start()

    def serve(self, server: Any) -> None:
        """Close ``server`` (a Scheduler, Worker or Nanny running on this thread's event loop)
        when the launcher is gone."""
        with self._lock:
            self._server = (server, asyncio.get_running_loop())

    def _watch(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(LAUNCHER_CHECK)
        say(f"dask-hpc: rank {self.rank}: its launcher (pid {self.parent}) is gone: closing and exiting")
        with self._lock:
            served = self._server
        if served is not None:
            server, loop = served
            with contextlib.suppress(Exception):
                closing = asyncio.run_coroutine_threadsafe(server.close(), loop)
                closing.result(LAUNCHER_GONE_GRACE)
        elif self.script:
            os.kill(os.getpid(), signal.SIGINT)  # wakes a main thread that waits, as Ctrl-C does
            time.sleep(LAUNCHER_GONE_GRACE)
        os._exit(1)
