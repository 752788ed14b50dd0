"""HTCondor: condor_submit, condor_q / condor_history -json, condor_rm.

HTCondor takes a submit description, not a job script: the job runs
``/bin/bash -c '...'`` with the same body as the other systems, joined onto one
line (as dask-jobqueue's HTCondorCluster does). It has no queues and no
walltime limit of its own: the walltime becomes a ``periodic_remove``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from dask_hpc import _process
from dask_hpc.errors import CommandError, ParseError, SpecError
from dask_hpc.spec import DEFAULT_SHEBANG, JobSpec, parse_arguments, parse_memory
from dask_hpc.systems.base import (
    ENV_START,
    ENV_SYSTEM,
    ENV_WALLTIME,
    BatchSystem,
    Cap,
    JobState,
    JobStatus,
    has_references,
    must_match,
    shell_value,
)

__all__ = ["HTCondorSystem", "condor_arguments", "condor_environment"]

# JobStatus numbers of the job ClassAd.
STATES: dict[int, JobState] = {
    1: JobState.PENDING,  # Idle
    2: JobState.RUNNING,
    3: JobState.CANCELLED,  # Removed (refined for our walltime removal)
    4: JobState.COMPLETED,  # Completed (refined by ExitCode)
    5: JobState.PENDING,  # Held
    6: JobState.RUNNING,  # Transferring output
    7: JobState.RUNNING,  # Suspended
}
ATTRIBUTES = ",".join(
    [
        "ClusterId",
        "ProcId",
        "JobStatus",
        "ExitCode",
        "ExitBySignal",
        "ExitSignal",
        "RemoteHost",
        "LastRemoteHost",
        "HoldReason",
        "RemoveReason",
    ]
)
JOB_ID_VARIABLE = "DASK_HPC_JOB_ID"
#: The schedd's caps: name, whether it counts running jobs only, and whose jobs it counts.
SCHEDD_CAPS = (
    ("MAX_JOBS_PER_OWNER", False, ""),
    ("MAX_JOBS_SUBMITTED", False, ", all users"),
    ("MAX_JOBS_RUNNING", True, ", all users"),
)
#: The submit commands by which a job runs the worker: ours (names without "_", lower case).
RUNS_THE_WORKER = ("executable", "arguments", "environment", "universe", "getenv", "queue")
WALLTIME_MARK = "dask-hpc walltime"


class HTCondorSystem(BatchSystem):
    name = "htcondor"
    list_jobs = "condor_q"
    directive_prefix = ""
    job_id_variable = JOB_ID_VARIABLE
    job_name_forbidden = r"\s/'\""
    # A submit description's commands; the user's line of the same command replaces ours.
    # Its commands' names ignore case and "_" (RequestMemory is request_memory, as
    # dask-jobqueue writes them).
    directive_keys: ClassVar[Mapping[str, str]] = {
        key: rf"(?i)^{key.replace('_', '_?')}\s*="
        for key in (
            "batch_name",
            "request_cpus",
            "request_memory",
            "periodic_remove",
            "periodic_remove_reason",
            "accounting_group",
            "request_disk",
            "request_gpus",
            "output",
            "error",
            "log",
        )
    }
    cancel_gone_phrases = ("not found", "Couldn't find", "already being removed")
    cancel_done_phrases = ("marked for removal",)
    # dask-jobqueue's HTCondorCluster disk, submit_command_extra and cancel_command_extra.
    setting_keys: ClassVar[Mapping[str, str]] = {
        "disk": "disk",
        "submit-command-extra": "submit_command_extra",
        "cancel-command-extra": "cancel_command_extra",
    }

    def __init__(
        self,
        disk: int | str | None = None,
        submit_command_extra: Sequence[str] | str | None = None,
        cancel_command_extra: Sequence[str] | str | None = None,
    ) -> None:
        #: Disk per job, bytes or "1GB": ``request_disk`` (HTCondor's unit: KiB).
        self.disk = None if disk is None else parse_memory(disk, "disk")
        #: Arguments added to condor_submit and condor_rm (``-name schedd01``).
        self.submit_command_extra = (
            None
            if submit_command_extra is None
            else parse_arguments("submit_command_extra", submit_command_extra)
        )
        self.cancel_command_extra = (
            None
            if cancel_command_extra is None
            else parse_arguments("cancel_command_extra", cancel_command_extra)
        )

    def header(self, spec: JobSpec) -> list[str]:
        """As every system's, and an extra command that would replace how the job runs the
        worker (its executable, arguments, environment) is refused in one line."""
        for line in spec.job_extra_directives:
            name = line.split("=", 1)[0].strip().lower().replace("_", "")
            if name in RUNS_THE_WORKER:
                raise SpecError(
                    "job_extra_directives",
                    line,
                    f"sets {name}, which dask-hpc writes to run the worker: give variables with "
                    "environment= (or --env), commands with job_script_prologue",
                )
        return super().header(spec)

    def directives(self, spec: JobSpec) -> list[str]:
        if spec.queue:
            raise SpecError(
                "queue",
                spec.queue,
                "HTCondor has no queues; use job_extra_directives, e.g. 'requirements = ...'",
            )
        d = [
            f"batch_name = {literal(self.job_name(spec))}",
            f"request_cpus = {spec.cores}",
            f"request_memory = {math.ceil(spec.memory / 2**20)}MB",
            *([f"request_gpus = {spec.gpus}"] if spec.gpus else []),
            *([f"request_disk = {math.ceil(self.disk / 1024)}"] if self.disk else []),
            # No walltime in HTCondor: remove the job when its run time is up.
            f"periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > {spec.walltime})",
            f'periodic_remove_reason = "{WALLTIME_MARK} of {spec.walltime} s reached"',
        ]
        if spec.account:
            d.append(f"accounting_group = {literal(spec.account)}")
        base = self.log_directory(spec)
        if base:
            base = literal(base)
            d += [
                f"output = {base}/$(Cluster).$(Process).out",
                f"error = {base}/$(Cluster).$(Process).err",
            ]
            d.append(f"log = {base}/$(Cluster).$(Process).log")
        return d

    def render(self, spec: JobSpec, command: Sequence[str], tasks: int = 1) -> str:
        # Values naming the node's variables ($TMPDIR) are exported by the job's shell; the
        # environment command would pass them on literally.
        exports = [f"export {k}={shell_value(v)}" for k, v in spec.environment if has_references(v)]
        body = [
            f"export {ENV_START}=$(date +%s)",
            *exports,
            *spec.job_script_prologue,
            *self.launch_lines(spec, command),  # one node: several are refused
            *spec.job_script_epilogue,
        ]
        env = {
            ENV_SYSTEM: self.name,
            ENV_WALLTIME: str(spec.walltime),
            **{k: v for k, v in spec.environment if not has_references(v)},
        }
        lines = [
            # condor_submit reads it as a comment; kept as dask-jobqueue writes it (its shebang).
            *([spec.shebang] if spec.shebang != DEFAULT_SHEBANG else []),
            "universe = vanilla",
            "executable = /bin/bash",
            f"arguments = {condor_arguments(['-c', '; '.join(body)])}",
            # $(Cluster).$(Process) is the one macro we mean; everything else is literal.
            f'environment = {condor_environment(env)[:-1]} {JOB_ID_VARIABLE}=$(Cluster).$(Process)"',
            "getenv = False",
            *self.header(spec),
            # One cluster of ``tasks`` jobs: each its own $(Process), condor_q and condor_rm id.
            f"queue {max(1, tasks)}",
        ]
        return "\n".join(lines) + "\n"

    def submit_argv(self, script: Path) -> list[str]:
        return ["condor_submit", *(self.submit_command_extra or ()), "-terse", str(script)]

    def parse_job_id(self, stdout: str) -> str:
        # -terse prints "123.0 - 123.0".
        return must_match(r"^\s*(\d+\.\d+)", stdout, "an HTCondor job id")[1]

    arrays = True
    default_array_limit = 20000  # MAX_JOBS_PER_SUBMISSION's default (the manual's configuration macros)

    def array_limit_argv(self) -> list[str]:
        return ["condor_config_val", "-schedd", "MAX_JOBS_PER_SUBMISSION"]

    def parse_array_limit(self, stdout: str) -> int | None:
        value = stdout.strip()
        return int(value) if value.isdigit() else None

    # ---- caps: the schedd's limits (condor_config_val -schedd), HTCondor's manual's
    # configuration macros: jobs of one owner in the queue, and of all users together.

    def caps(self, spec: JobSpec | None = None) -> list[Cap]:
        caps = []
        for name, running, whose in SCHEDD_CAPS:
            try:
                value = _process.run(["condor_config_val", "-schedd", name], timeout=30).stdout.strip()
            except CommandError:
                continue  # not set ("Not defined"), or no schedd to ask: no cap known
            if value.isdigit():
                caps.append(Cap(int(value), running, f"{name} = {value} (the schedd's{whose})"))
        return caps

    def user_jobs(self) -> int | None:
        """This user's jobs in the schedd's queue (condor_q lists only the user's own): one
        line each, whatever their state, as MAX_JOBS_PER_OWNER counts them."""
        try:
            done = _process.run(["condor_q", "-af", "ClusterId"], timeout=self.query_timeout)
        except CommandError:
            return None
        return len(done.stdout.split())

    def task_ids(self, stdout: str, tasks: int) -> list[str]:
        # -terse prints the first and last: "123.0 - 123.4".
        match = must_match(r"^\s*(\d+)\.(\d+)\s*-\s*\d+\.(\d+)", stdout, "an HTCondor job range")
        cluster, first, last = match[1], int(match[2]), int(match[3])
        return [f"{cluster}.{p}" for p in range(first, last + 1)]

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["condor_q", "-json", "-attributes", ATTRIBUTES, *job_ids]

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found = {s.job_id: s for s in parse_classads(stdout)}
        return {j: found.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def complete_query(self, statuses: dict[str, JobStatus]) -> dict[str, JobStatus]:
        # Jobs that left the queue are in the history: one call for all of them.
        gone = [j for j, s in statuses.items() if s.state is JobState.UNKNOWN]
        if gone:
            done = _process.run(
                ["condor_history", "-json", "-attributes", ATTRIBUTES, *gone],
                timeout=self.query_timeout,
                check=False,
            )
            if done.returncode == 0:
                for status in parse_classads(done.stdout):
                    if status.job_id in statuses:
                        statuses[status.job_id] = status
        return statuses

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        # Rendered as $(Cluster).$(Process).out; the job id is "cluster.process".
        return f"{job_id}.out", f"{job_id}.err"

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["condor_rm", *(self.cancel_command_extra or ()), *job_ids]

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        import socket

        return (socket.gethostname(),)


def parse_classads(text: str) -> list[JobStatus]:
    if not text.strip():
        return []
    try:
        ads = json.loads(text)
    except ValueError as exc:
        raise ParseError(f"could not read HTCondor -json output: {exc}") from None
    return [_status(ad) for ad in ads if isinstance(ad, dict) and "ClusterId" in ad]


def _status(ad: Mapping[str, object]) -> JobStatus:
    job_id = f"{ad['ClusterId']}.{ad.get('ProcId', 0)}"
    number = ad.get("JobStatus")
    state = STATES.get(number if isinstance(number, int) else -1, JobState.UNKNOWN)
    host = str(ad.get("RemoteHost") or ad.get("LastRemoteHost") or "")
    node = host.split("@")[-1] or None  # "slot1@node7.example.org"
    exit_code = ad.get("ExitCode")
    code = exit_code if isinstance(exit_code, int) else None
    reason: str | None = None
    if number == 5:
        reason = f"held: {ad.get('HoldReason', '')}".strip()
    elif number == 3:
        reason = str(ad.get("RemoveReason") or "") or None
        if reason and WALLTIME_MARK in reason:
            state = JobState.TIMEOUT
    elif number == 4:
        if ad.get("ExitBySignal") and isinstance(ad.get("ExitSignal"), int):
            code = 128 + int(ad["ExitSignal"])  # type: ignore[call-overload]
        state = JobState.COMPLETED if code == 0 else JobState.FAILED
    return JobStatus(job_id, state, reason=reason, node=node, exit_code=code)


def literal(text: str) -> str:
    """``text`` with HTCondor's ``$(macro)`` expansion turned off: ``$`` is ``$(DOLLAR)``."""
    return text.replace("$", "$(DOLLAR)")


def condor_arguments(args: Sequence[str]) -> str:
    """HTCondor's new argument syntax: double-quoted; args with spaces in single quotes."""
    quoted = []
    for arg in args:
        inner = literal(arg).replace('"', '""').replace("'", "''")
        quoted.append(f"'{inner}'" if (not arg or any(c in arg for c in " \t'")) else inner)
    return '"' + " ".join(quoted) + '"'


def condor_environment(env: Mapping[str, str]) -> str:
    """HTCondor's new environment syntax: "A=1 B='two words'"."""
    parts = []
    for key, value in env.items():
        inner = literal(value).replace('"', '""').replace("'", "''")
        parts.append(
            f"{key}='{inner}'" if (not value or any(c in value for c in " \t'")) else f"{key}={inner}"
        )
    return '"' + " ".join(parts) + '"'
