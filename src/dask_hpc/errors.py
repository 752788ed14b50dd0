"""The one error tree of dask-hpc.

Every error the package raises on purpose is a :class:`DaskHPCError`; the CLI
prints its message in one or two lines and exits non-zero, without a traceback.
The tree::

    DaskHPCError
    ├── SpecError                  a bad value for a job's resources (field, value, accepted forms)
    │   └── UnknownOptionError     an option nobody knows (lists the known ones)
    ├── UnknownSystemError         a batch system name we do not know (lists the known ones)
    ├── CommandError               a subprocess failed: argv, exit code, stdout, stderr
    │   ├── CommandNotFoundError   the program is not installed or not on PATH
    │   ├── CommandTimeoutError    the program did not answer in time
    │   └── SubmitError            the batch system refused a job (its own message)
    ├── SubmitUnclearError         a submission whose outcome we could not read (says where to look)
    ├── WrongSystemError           the batch commands here are another system's (names it)
    ├── ParseError                 a batch system's output we could not read
    ├── NotInJobError              asked for the job context outside a job
    ├── InterfaceError             a network interface that this node does not have (lists the real ones)
    │   └── UnreachableInterfaceError  only loopback here, and other nodes must reach us
    ├── DataError                  the user's data cannot be used (no files, not NetCDF, no such variable)
    ├── ConfigError                a bad configuration file, key or value (where, what, the fix); exit 2
    ├── WorldTooSmallError         fewer MPI ranks than the roles need (dask-mpi's WorldTooSmallException)
    ├── RoleFailedError            an MPI rank's role (scheduler, worker) could not start or failed
    └── SessionError               a session cannot do what was asked (says its state and the fix)
        ├── UnknownSessionError    no session of that name (lists the sessions)
        ├── PartlySubmittedError   some worker jobs submitted, the others refused (their ids, the words)
        ├── CapError               more jobs than the site's cap on the user's jobs (the cap, the way out)
        ├── ProtocolError          the session's keeper runs another version (start the session again)
        └── SchedulerUnreachableError  the session's scheduler does not answer
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CapError",
    "CommandError",
    "CommandNotFoundError",
    "CommandTimeoutError",
    "ConfigError",
    "DaskHPCError",
    "DataError",
    "InterfaceError",
    "NotInJobError",
    "ParseError",
    "PartlySubmittedError",
    "ProtocolError",
    "RoleFailedError",
    "SchedulerUnreachableError",
    "SessionError",
    "SpecError",
    "SubmitError",
    "SubmitUnclearError",
    "UnknownOptionError",
    "UnknownSessionError",
    "UnknownSystemError",
    "UnreachableInterfaceError",
    "WorldTooSmallError",
    "WrongSystemError",
]


class DaskHPCError(Exception):
    """Base of every error dask-hpc raises on purpose; its message is for a person.

    Every one survives a pickle round trip with its type, message and fields, so that
    one raised in a scheduler, a worker or a keeper reaches the caller as itself
    (distributed re-raises what it can unpickle; Python rebuilds an exception by calling
    its class with ``args``, which our classes' own ``__init__`` do not take)."""

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


class SpecError(DaskHPCError, ValueError):
    """A job resource (walltime, memory, cores, ...) has a value we cannot accept."""

    def __init__(self, field: str, value: object, accepted: str) -> None:
        self.field = field
        self.value = value
        self.accepted = accepted
        super().__init__(f"invalid {field} {value!r}: {accepted}")


#: The batch systems' words for what our options are called otherwise (sbatch's --partition).
_OTHER_WORDS = {
    "partition": "queue",
    "time": "walltime",
    "time_limit": "walltime",
    "wallclock": "walltime",
    "mem": "memory",
    "cpus": "cores",
    "ncores": "cores",
    "cpus_per_task": "cores",
    "project": "account",
    "workers": "n_workers",
    "nworkers": "processes",
    "prologue": "job_script_prologue",
    "epilogue": "job_script_epilogue",
    "env": "environment",
}


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known option a user most likely meant by ``name``: another system's or tool's word
    for it (``wallclock``: ``walltime``), else the closest spelling; None if none is close."""
    import difflib

    known = list(known)
    other = _OTHER_WORDS.get(name)
    if other in known:
        return other
    return next(iter(difflib.get_close_matches(name, known, 1)), None)


class UnknownOptionError(SpecError):
    """An option name that nothing in dask-hpc knows."""

    def __init__(self, names: Iterable[str], known: Iterable[str]) -> None:
        names = sorted(names)
        known = sorted(known)
        known_list = ", ".join(known)
        plural = "s" if len(names) > 1 else ""
        close = [c for c in (closest(n, known) for n in names) if c]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        DaskHPCError.__init__(
            self, f"unknown option{plural} {', '.join(names)}{hint}; known options: {known_list}"
        )
        self.field = names[0]
        self.value = names
        self.accepted = known_list


class UnknownSystemError(DaskHPCError, ValueError):
    """A batch system name that is not one of ours."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        super().__init__(f"unknown system {name!r}; known systems: {', '.join(sorted(known))}")


@dataclass(eq=False)
class CommandError(DaskHPCError):
    """A subprocess exited non-zero. Carries everything needed to see why."""

    argv: Sequence[str]
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    what: str = "command failed"

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        detail = _first_lines(self.stderr) or _first_lines(self.stdout)
        code = "" if self.returncode is None else f" (exit {self.returncode})"
        line = f"{self.what}: {' '.join(self.argv)}{code}"
        return f"{line}\n  {detail}" if detail else line


class CommandNotFoundError(CommandError):
    """The program is not installed here, or not on PATH."""


class CommandTimeoutError(CommandError):
    """The program did not finish within its timeout."""


class SubmitError(CommandError):
    """The batch system refused the job; ``stderr`` holds its own reason."""


class SubmitUnclearError(DaskHPCError):
    """A submission whose outcome we could not read (an answer we do not understand, no
    answer in time): a job may exist that nobody keeps track of; says where to find it."""


class WrongSystemError(DaskHPCError):
    """The batch commands here belong to another system than the one chosen; names it."""


class ParseError(DaskHPCError):
    """Output of a batch system command that we could not understand."""


class NotInJobError(DaskHPCError):
    """The job context was asked for outside of a batch job."""


class DataError(DaskHPCError, ValueError):
    """Files or variables given by the user that the workflow cannot use; says which and why."""


class InterfaceError(DaskHPCError, ValueError):
    """A network interface name that this node does not have."""

    def __init__(self, name: str, known: Iterable[str], where: str) -> None:
        self.name = name
        super().__init__(
            f"no network interface {name!r} on {where}; its interfaces: {', '.join(sorted(known))}"
        )


class UnreachableInterfaceError(InterfaceError):
    """No interface but loopback to listen on, while processes on other hosts must connect."""

    def __init__(self, where: str, peers: str) -> None:
        self.name = "lo"
        DaskHPCError.__init__(
            self,
            f"{where} has no network interface but loopback, which other nodes cannot reach ({peers}); "
            "name one with --interface NAME (--interface lo if every node is this host)",
        )


class ConfigError(DaskHPCError, ValueError):
    """A configuration file, key or value we cannot use: names where it is, the key, the value
    and the fix. The CLI exits 2 for it, as for any other bad input before any work."""


class WorldTooSmallError(DaskHPCError):
    """Fewer MPI ranks than the roles need."""


class RoleFailedError(DaskHPCError):
    """An MPI rank's role could not start or failed: one line, and the rank exits 1."""


class SessionError(DaskHPCError):
    """A session cannot do what was asked; the message says its state and the fix."""


class UnknownSessionError(SessionError):
    """No session of that name in the sessions directory."""

    def __init__(self, name: str, known: Iterable[str], root: str) -> None:
        self.name = name
        names = sorted(known)
        listed = f"sessions: {', '.join(names)}" if names else "there are none; start one with dask-hpc up"
        super().__init__(f"no session {name!r} in {root}; {listed}")


class PartlySubmittedError(SessionError):
    """Some of the worker jobs asked for were submitted, the batch system refused the others."""

    def __init__(self, job_ids: list[str], asked: int, first_error: BaseException) -> None:
        self.job_ids = job_ids  # the accepted ones: they will join
        super().__init__(
            f"{len(job_ids)} of {asked} worker jobs submitted ({', '.join(job_ids)}); {first_error}"
        )


class CapError(SessionError):
    """A submission that would pass one of the site's caps on the user's jobs (SLURM's
    MaxSubmitJobs, Grid Engine's max_u_jobs) or its limits on one job (a SLURM partition's
    MaxTime): refused before anything is submitted."""


class ProtocolError(SessionError):
    """A message from a session's keeper (or to it) that the other side cannot read."""


class SchedulerUnreachableError(SessionError):
    """The session's scheduler does not answer (its job ended, or the network is in the way)."""


def _rebuilt(cls: type[DaskHPCError], args: tuple[object, ...], fields: dict[str, object]) -> DaskHPCError:
    """An unpickled error: its class, message and fields, without running its ``__init__``."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(fields)
    return error


def _first_lines(text: str, limit: int = 2) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "\n  ".join(lines[-limit:])
