"""MPI launch: one MPI job is one Dask cluster.

``initialize()`` (in a job script): rank 0 runs the scheduler, rank 1 returns to
the script, the other ranks are workers. ``execute()``: a function runs as the
client on one rank, the cluster on the others (or on all of them). ``dask-hpc
mpi`` (:func:`run`): the scheduler rank and workers, for clients from outside.
The scheduler's address and the cluster's TLS credentials (new for every run,
as for a session) reach the ranks over MPI: no shared file needed. Every rank
exits when the script ends, and ``mpirun`` with the script's exit code; no rank
waits forever, and none outlives its launcher.

Keyword names and defaults are dask-mpi's, so that switching is a change of import
or of the command's name.

- :mod:`.world`: the communicator given (or COMM_WORLD) and the steps its ranks take together
- :mod:`.roles`: the scheduler and workers a rank runs, and what happens when one cannot start
- :mod:`.leaving`: exit codes, bounded exits, the launcher watch
"""

from __future__ import annotations

from dask_hpc.errors import WorldTooSmallError
from dask_hpc.mpi.command import client_security, run
from dask_hpc.mpi.execute import execute
from dask_hpc.mpi.initialize import initialize
from dask_hpc.mpi.leaving import send_close_signal

__all__ = ["WorldTooSmallError", "client_security", "execute", "initialize", "run", "send_close_signal"]
