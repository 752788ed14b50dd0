"""The one place where dask-hpc runs subprocesses.

Commands are argv lists, never a shell string. A failure raises a
:class:`~dask_hpc.errors.CommandError` carrying argv, exit code, stdout, stderr.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dask_hpc.errors import CommandError, CommandNotFoundError, CommandTimeoutError

__all__ = ["Completed", "run", "spawn", "start_child"]

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def failure(self, what: str, error: type[CommandError] = CommandError) -> CommandError:
        """The error for this run, for callers that decide themselves what counts as failure."""
        return error(list(self.argv), self.returncode, self.stdout, self.stderr, what=what)


def run(
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    input: str | None = None,
    error: type[CommandError] = CommandError,
    what: str = "command failed",
    umask: int = -1,
) -> Completed:
    """Run ``argv`` and return its output; raise ``error`` when it exits non-zero.

    ``input`` is written to its standard input (LSF's bsub reads scripts there).

    ``env`` is added to this process's environment rather than replacing it, since
    batch system clients need PATH, HOME and their own variables. ``umask`` is the
    child's (-1: ours); submit commands pass it on to the job, whose logs then are
    private.
    """
    argv = [str(a) for a in argv]
    full_env = _environment(env)
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
            umask=umask,
        )
    except FileNotFoundError as exc:
        raise CommandNotFoundError(
            argv, None, "", f"{argv[0]}: not found on PATH", what=f"{argv[0]} is not installed"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandTimeoutError(
            argv,
            None,
            _text(exc.stdout),
            _text(exc.stderr),
            what=f"no answer within {timeout:g} s",
        ) from exc
    done = Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise done.failure(what, error)
    return done


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """Our environment plus ``env``, as a snapshot handed to the child explicitly.

    Never ``None`` (which would exec with the C ``environ``): a thread of ours
    may be importing numpy, which calls putenv/unsetenv, and glibc can free the
    ``environ`` array under a vfork'ed child that is still reading it in execve
    (seen: "OSError: [Errno 14] Bad address" from Popen).
    """
    return {**os.environ, **(env or {})}


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def spawn(
    argv: Sequence[str],
    *,
    stdout: str | os.PathLike[str],
    stderr: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    umask: int = -1,
) -> int:
    """Start ``argv`` detached from us (own session, no stdin); return its pid.

    Used for processes that must outlive the caller, e.g. a local job. Output
    goes to files, so nothing blocks when nobody reads it.
    """
    argv = [str(a) for a in argv]
    full_env = _environment(env)
    # Created 0600: a local job's runner log sits beside its script in the user's spool.
    out = os.fdopen(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    err = os.fdopen(os.open(stderr or stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
    with out, err:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                umask=umask,
            )
        except FileNotFoundError as exc:
            raise CommandNotFoundError(
                argv, None, "", f"{argv[0]}: not found", what=f"{argv[0]} is not installed"
            ) from exc
    # It is our child until we exit: reap it if it ends before, else it stays a zombie that
    # every liveness check (kill -0, /proc) finds "alive" while we wait for it.
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    return proc.pid


def start_child(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` as our child, in our process group, writing to our stdout and stderr.

    For helpers that live and die with the caller's batch job (JupyterLab
    beside the scheduler): the batch system's end of the job reaches them too,
    and their log is the job's.
    """
    argv = [str(a) for a in argv]
    full_env = _environment(env)
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=full_env)
    except FileNotFoundError as exc:
        raise CommandNotFoundError(
            argv, None, "", f"{argv[0]}: not found", what=f"{argv[0]} is not installed"
        ) from exc
