"""``local``: jobs are plain processes on this machine, with walltimes enforced.

The embedded default, for laptops, login-node tests and the demo. It behaves
like a small batch system: a job script with ``#LOCAL`` directives, job ids,
states kept in a spool directory, an optional number of slots (jobs beyond it
pend, oldest first), cancel, and a walltime kill (SIGTERM, then SIGKILL after a
grace). A runner process per job (``_local_runner``) does the waiting, so jobs
outlive the command that submitted them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import psutil

from dask_hpc import _process
from dask_hpc.errors import SpecError, SubmitError
from dask_hpc.files import private_directory, write_private
from dask_hpc.spec import JobSpec
from dask_hpc.systems.base import PRIVATE_UMASK, BatchSystem, JobState, JobStatus

__all__ = ["LocalSystem", "spool_directory"]

SPOOL_VARIABLE = "DASK_HPC_LOCAL_SPOOL"
#: How many local jobs may run at once; unset means no limit.
SLOTS_VARIABLE = "DASK_HPC_LOCAL_SLOTS"
JOB_ID_VARIABLE = "DASK_HPC_LOCAL_JOB_ID"
JOB_END_VARIABLE = "DASK_HPC_LOCAL_JOB_END"
#: Seconds between SIGTERM and SIGKILL at the walltime or on cancel.
KILL_WAIT = 5.0
#: In a job's spool folder: who runs it (written at submit), and that it was cancelled.
RUNNER_FILE = "runner.json"
CANCEL_FILE = "cancelled"


def spool_directory() -> Path:
    """Where local jobs keep their scripts and states (one folder per job)."""
    return Path(os.environ.get(SPOOL_VARIABLE) or Path.home() / ".dask-hpc" / "local-jobs")


class LocalSystem(BatchSystem):
    name = "local"
    directive_prefix = "#LOCAL"
    job_id_variable = JOB_ID_VARIABLE
    job_name_forbidden = r"\s/"
    directive_keys: ClassVar[Mapping[str, str]] = {
        key: rf"^--{key.replace('_', '-')}\b" for key in ("job_name", "walltime", "output", "error")
    }

    def __init__(self, spool: Path | None = None, slots: int | None = None) -> None:
        self.spool = spool
        self.slots = slots

    @property
    def slot_limit(self) -> int | None:
        if self.slots is not None:
            return self.slots
        value = os.environ.get(SLOTS_VARIABLE, "").strip()
        if not value:
            return None
        if not value.isdigit() or int(value) < 1:
            raise SpecError(SLOTS_VARIABLE, value, "a whole number >= 1, or unset for no limit")
        return int(value)

    @property
    def spool_dir(self) -> Path:
        return self.spool or spool_directory()

    def header(self, spec: JobSpec) -> list[str]:
        # The runner reads these four and nothing else: any other line would be ignored silently.
        for d in spec.job_extra_directives:
            if not self.sets(d):
                raise SpecError(
                    "job_extra_directives",
                    d,
                    "local takes only these directives: --job-name=, --output=, --error= "
                    "(and --walltime, given with --walltime)",
                )
        return super().header(spec)

    def directives(self, spec: JobSpec) -> list[str]:
        if spec.queue or spec.account:
            field, value = ("queue", spec.queue) if spec.queue else ("account", spec.account)
            raise SpecError(field, value, "local has no queues or accounts; leave it out")
        d = [f"--job-name={self.quote(self.job_name(spec))}", f"--walltime={spec.walltime}"]
        logs = self.log_directory(spec)
        if logs:
            d.append(f"--output={self.quote(logs + '/%x-%j.out')}")
            d.append(f"--error={self.quote(logs + '/%x-%j.err')}")
        return d

    # ``local`` has no submit program: submit starts a runner instead.
    def submit_argv(self, script: Path) -> list[str]:
        argv = [sys.executable, "-m", "dask_hpc.systems._local_runner", str(script.parent)]
        slots = self.slot_limit
        return argv if slots is None else [*argv, str(slots)]

    def parse_job_id(self, stdout: str) -> str:
        return stdout.strip()

    def submit(self, script: str, directory: Path, *, timeout: float = 60.0) -> str:
        private_directory(directory)  # the job's working directory
        job_dir = self._new_job_dir()
        path = job_dir / "script.sh"
        path.write_text(script)
        path.chmod(0o700)
        pid = _process.spawn(
            self.submit_argv(path), stdout=job_dir / "runner.log", cwd=directory, umask=PRIVATE_UMASK
        )
        # Who runs the job, known from now on (the runner writes its state a moment later):
        # cancel can reach it and liveness can judge it before its first word.
        write_private(job_dir / RUNNER_FILE, {"runner_pid": pid, "runner_started": process_start(pid)})
        return job_dir.name

    def _new_job_dir(self) -> Path:
        spool = self.spool_dir
        private_directory(spool)
        ids = [int(p.name) for p in spool.iterdir() if p.name.isdigit()]
        next_id = max(ids, default=0) + 1
        for job_id in range(next_id, next_id + 1000):
            try:
                (spool / str(job_id)).mkdir(mode=0o700)  # atomic: concurrent submits differ
            except FileExistsError:
                continue
            return spool / str(job_id)
        raise SubmitError(["local"], None, "", f"no free job id in {spool}", what="local")

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return []  # states are files, read directly

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {j: self._status(j) for j in job_ids}

    def query(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        return self.parse_query("", list(dict.fromkeys(job_ids)))

    def _status(self, job_id: str) -> JobStatus:
        record = Record.read(self.spool_dir / job_id)
        if record is None:
            return JobStatus(job_id, JobState.UNKNOWN)
        node = socket.gethostname() if record.state is not JobState.PENDING else None
        if not record.state.finished and not pid_alive(record.runner_pid, record.runner_started):
            if (self.spool_dir / job_id / CANCEL_FILE).exists():
                return JobStatus(job_id, JobState.CANCELLED, reason="cancelled", node=node)
            return JobStatus(job_id, JobState.FAILED, reason="the job's runner died", node=node)
        return JobStatus(job_id, record.state, record.reason, node, record.exit_code)

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        return f"{job_name}-{job_id}.out", f"{job_name}-{job_id}.err"

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return []

    def cancel(self, job_ids: Iterable[str]) -> None:
        for job_id in dict.fromkeys(job_ids):
            record = Record.read(self.spool_dir / job_id)
            if record is None or record.state.finished:
                continue
            # Marked first: a runner not yet listening for SIGTERM sees it when it starts.
            (self.spool_dir / job_id / CANCEL_FILE).touch(mode=0o600)
            if record.runner_pid is None or not pid_alive(record.runner_pid, record.runner_started):
                continue  # gone; its pid may be another process's by now: never signal that one
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.runner_pid, signal.SIGTERM)

    def node_hosts(self) -> tuple[str, ...]:
        return ("localhost",)  # every local job runs on this machine

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        return (socket.gethostname(),)

    def end_time(self, job_id: str, env: Mapping[str, str]) -> float | None:
        try:
            return float(env[JOB_END_VARIABLE])
        except (KeyError, ValueError):
            return super().end_time(job_id, env)


@dataclass(frozen=True)
class Record:
    """A local job's state, as its runner writes it to ``state.json``."""

    state: JobState
    runner_pid: int | None = None
    runner_started: float | None = None  # the runner's start (process_start): pids are reused
    exit_code: int | None = None
    reason: str | None = None
    start: float | None = None
    end: float | None = None

    @classmethod
    def read(cls, job_dir: Path) -> Record | None:
        try:
            data = json.loads((job_dir / "state.json").read_text())
        except FileNotFoundError:
            if not job_dir.is_dir():
                return None
            # The runner writes nothing else to its log: any text there means it failed to start.
            log = job_dir / "runner.log"
            words = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
            if words:
                return cls(JobState.FAILED, reason=f"the job's runner failed: {words[-1]}")
            try:  # submitted; the runner has not written its state yet
                runner = json.loads((job_dir / RUNNER_FILE).read_text())
            except (OSError, ValueError):
                return cls(JobState.PENDING)
            return cls(JobState.PENDING, runner["runner_pid"], runner["runner_started"])
        except (OSError, ValueError):
            return None
        return cls(**{**data, "state": JobState(data["state"])})

    def write(self, job_dir: Path) -> None:
        write_private(job_dir / "state.json", {**asdict(self), "state": self.state.value})


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether the process ``pid`` (started at ``started``, :func:`process_start`) still runs.

    A zombie (ended, not yet reaped by its parent) has ended; a live process of another start
    is another process that was given the same pid.
    """
    if pid is None:
        return True  # submitted a moment ago: the runner's pid is written right after it starts
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process that we cannot look at: it exists
    now = process_start(pid)
    return started is None or now is None or abs(now - started) < 0.5


def process_start(pid: int) -> float | None:
    """When process ``pid`` started: on Linux its start in clock ticks since boot
    (``/proc/<pid>/stat``, exact, and unmoved by changes of the wall clock), elsewhere
    psutil's create_time rounded to the second; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return float(fields[19])  # field 22, starttime; the name before ")" may hold spaces
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # Linux, and the process is gone
    except (OSError, IndexError, ValueError):
        return None
    try:
        return float(round(psutil.Process(pid).create_time()))
    except psutil.Error:
        return None


def runner_started() -> float | None:
    """This process's start, as :func:`pid_alive` compares it."""
    return process_start(os.getpid())
