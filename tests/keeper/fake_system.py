"""A fake batch system for testing the keeper's decisions without a real one.

:class:`FakeSystem` fulfils the :class:`~dask_hpc.systems.BatchSystem` contract
in memory: ``submit``, ``query`` and ``cancel`` run no command. It renders job
scripts as the real systems do (directives ``#FAKE ...``), so that
``Keeper.job_script`` works and a test can read what would have been submitted.

A test plays the batch system's part: every job starts PENDING; the test then
calls :meth:`FakeSystem.start` (RUNNING), :meth:`FakeSystem.finish` (COMPLETED,
FAILED, TIMEOUT, ...) or :meth:`FakeSystem.forget` (the system no longer knows
the job: queries answer UNKNOWN, as for a job lost behind our back or forgotten
after it ended). :meth:`FakeSystem.refuse` makes submissions fail with a
:class:`~dask_hpc.errors.SubmitError` carrying the system's words, as
``sbatch`` refusing a job does; ``after`` lets a few through first.

The keeper calls ``submit``, ``query`` and ``cancel`` from threads (several
submissions at once), so every method takes a lock.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dask_hpc.errors import CommandError, SubmitError
from dask_hpc.spec import JobSpec
from dask_hpc.systems import BatchSystem, Cap, JobLimit, JobState, JobStatus
from dask_hpc.systems.base import shell_command

__all__ = ["FakeSystem"]


class FakeSystem(BatchSystem):
    """A batch system whose jobs' states the test decides; nothing runs."""

    name = "fake"
    directive_prefix = "#FAKE"
    job_id_variable = "FAKE_JOB_ID"

    def __init__(
        self,
        *,
        refuse: str | None = None,
        refuse_after: int = 0,
        submit_program: str | None = None,
        walltime_fields: str = "MM:SS",
        array_limit: int | None = None,
    ) -> None:
        """``refuse``: refuse every submission with this message (after ``refuse_after``
        accepted ones). ``submit_program``: what :meth:`submit_argv` names; the keeper only
        submits when :func:`shutil.which` finds it, so the default is this Python (an
        absolute path that exists, whatever ``$PATH`` says) and a missing path makes the
        keeper hand submission to the client. ``array_limit``: the system takes arrays of at
        most this many tasks (task ``i`` of submission ``n`` is ``n_i``, as SLURM's); None: none."""
        self._lock = threading.Lock()
        self.walltime_fields = walltime_fields  # "HH:MM" plays LSF (bsub -W)
        self.program = submit_program or sys.executable
        self.scripts: dict[str, str] = {}  # job id -> the script submitted, in submission order
        self.directories: dict[str, Path] = {}  # job id -> the directory given to submit
        self.states: dict[str, JobStatus] = {}  # what query answers; absent: UNKNOWN
        self.cancelled: list[str] = []  # every id passed to cancel, in order
        self.queries: list[list[str]] = []  # the ids of each query
        self.submit_calls = 0
        self.refused = 0  # submissions refused so far
        self.query_error: str | None = None  # set: queries fail with this message
        self.cancel_takes_effect = True  # False: cancel is recorded, the job runs on (a slow scancel)
        self.refusal = refuse
        self.refuse_after = refuse_after
        self._last_id = 0
        self.arrays = array_limit is not None  # type: ignore[misc]
        self.default_array_limit = array_limit or 1  # type: ignore[misc]
        self.array_sizes: list[int] = []  # the tasks of each array submitted
        self.site_caps: list[Cap] = []  # what caps() answers: the site's limits on the user's jobs
        self.site_limits: list[JobLimit] = []  # what job_limits() answers: on one job (MaxTime)
        self.limit_asks = 0  # how many times job_limits() was asked
        self.other_jobs = 0  # the user's jobs outside this session, counted by user_jobs()

    # ---- played by the test ----------------------------------------------------

    def refuse(self, message: str, *, after: int = 0) -> None:
        """Refuse submissions with ``message`` (the system's words), after ``after`` more accepted."""
        with self._lock:
            self.refusal = message
            self.refuse_after = after

    def accept(self) -> None:
        """Accept submissions again."""
        with self._lock:
            self.refusal = None
            self.refuse_after = 0

    def start(self, job_id: str, node: str = "node-1") -> None:
        """The job runs (on ``node``)."""
        self._set(JobStatus(job_id, JobState.RUNNING, node=node))

    def pend(self, job_id: str, reason: str = "Resources") -> None:
        """The job waits in the queue, for ``reason``."""
        self._set(JobStatus(job_id, JobState.PENDING, reason=reason))

    def finish(
        self,
        job_id: str,
        state: JobState = JobState.COMPLETED,
        *,
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> None:
        """The job ended in ``state`` (COMPLETED, FAILED, TIMEOUT, CANCELLED)."""
        if not state.finished:
            raise ValueError(f"{state} is not a finished state")
        with self._lock:
            node = self.states[job_id].node if job_id in self.states else None
            self.states[job_id] = JobStatus(job_id, state, reason=reason, node=node, exit_code=exit_code)

    def forget(self, job_id: str) -> None:
        """The system no longer knows the job: queries answer UNKNOWN."""
        with self._lock:
            self.states.pop(job_id, None)

    def state(self, job_id: str) -> JobState:
        with self._lock:
            status = self.states.get(job_id)
        return JobState.UNKNOWN if status is None else status.state

    def _set(self, status: JobStatus) -> None:
        with self._lock:
            if status.job_id not in self.scripts:
                raise KeyError(f"no job {status.job_id} was submitted; jobs: {', '.join(self.scripts)}")
            self.states[status.job_id] = status

    # ---- the BatchSystem contract: I/O, in memory --------------------------------

    def submit(self, script: str, directory: Path, *, timeout: float = 60.0) -> str:
        with self._lock:
            return self._submit_one(script, directory)

    def submit_array(self, script: str, directory: Path, tasks: int, *, timeout: float = 60.0) -> list[str]:
        with self._lock:
            if not self.arrays or tasks > self.default_array_limit:
                raise AssertionError(f"an array of {tasks} tasks: at most {self.default_array_limit} here")
            first = self._submit_one(script, directory)
            del self.scripts[first], self.states[first]
            ids = [f"{first}_{i}" for i in range(1, tasks + 1)]
            for job_id in ids:
                self.scripts[job_id] = script
                self.directories[job_id] = directory
                self.states[job_id] = JobStatus(job_id, JobState.PENDING, reason="Priority")
            self.array_sizes.append(tasks)
            return ids

    def node_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        """Jobs of several nodes, as SLURM's (its srun): a fake launcher's name."""
        return [shell_command(["fake-launch", f"--nodes={spec.nodes}", *command])]

    def array_header(self, header: list[str], spec: JobSpec, tasks: int) -> list[str]:
        return [*header, f"--array=1-{tasks}"]

    def _submit_one(self, script: str, directory: Path) -> str:
        """One submission (call under the lock): refused as set, else a new job id."""
        self.submit_calls += 1
        if self.refusal is not None:
            if self.refuse_after > 0:
                self.refuse_after -= 1
            else:
                self.refused += 1
                # As the real submit raises it: the argv, the exit code and the system's words.
                raise SubmitError(
                    self.submit_argv(directory / "job.sh"),
                    1,
                    "",
                    self.refusal,
                    what=f"{self.name} refused the job",
                )
        self._last_id += 1
        job_id = str(self._last_id)
        self.scripts[job_id] = script
        self.directories[job_id] = directory
        self.states[job_id] = JobStatus(job_id, JobState.PENDING, reason="Priority")
        return job_id

    def caps(self, spec: JobSpec | None = None) -> list[Cap]:
        return list(self.site_caps)

    def job_limits(self, spec: JobSpec) -> list[JobLimit]:
        self.limit_asks += 1
        return list(self.site_limits)

    def user_jobs(self) -> int | None:
        """The user's jobs pending or running: this session's (tasks each) and the others."""
        with self._lock:
            live = sum(1 for s in self.states.values() if not s.state.finished)
            return live + self.other_jobs

    def query(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        ids = list(dict.fromkeys(job_ids))
        with self._lock:
            self.queries.append(ids)
            if self.query_error is not None:
                raise CommandError(self.query_argv(ids), 1, "", self.query_error, what="fake query failed")
            return {j: self.states.get(j) or JobStatus(j, JobState.UNKNOWN) for j in ids}

    def cancel(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            for job_id in dict.fromkeys(job_ids):
                self.cancelled.append(job_id)
                status = self.states.get(job_id)
                if not self.cancel_takes_effect:
                    continue
                if status is not None and not status.state.finished:  # ended ones: not an error
                    self.states[job_id] = JobStatus(job_id, JobState.CANCELLED, node=status.node)

    # ---- the BatchSystem contract: rendering and parsing, minimal ------------------

    def directives(self, spec: JobSpec) -> list[str]:
        d = [
            f"--job-name={self.quote(self.job_name(spec))}",
            f"--walltime={spec.walltime}",
            f"--cores={spec.cores}",
            f"--memory={spec.memory}",
        ]
        if spec.queue:
            d.append(f"--queue={self.quote(spec.queue)}")
        if spec.account:
            d.append(f"--account={self.quote(spec.account)}")
        logs = self.log_directory(spec)
        if logs:
            d.append(f"--output={self.quote(logs + '/%j.out')}")
        return d

    def submit_argv(self, script: Path) -> list[str]:
        return [self.program, str(script)]

    def parse_job_id(self, stdout: str) -> str:
        return stdout.strip()

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.program, "--query", ",".join(job_ids)]

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Lines ``<id> <state>``; a job missing from them is UNKNOWN."""
        found = {}
        for line in stdout.splitlines():
            job_id, _, state = line.strip().partition(" ")
            if job_id in job_ids:
                found[job_id] = JobStatus(job_id, JobState(state.strip()))
        return {j: found.get(j) or JobStatus(j, JobState.UNKNOWN) for j in job_ids}

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [self.program, "--cancel", *job_ids]

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        return f"{job_id}.out", f"{job_id}.err"

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        return (env.get("FAKE_NODE", "node-1"),)
