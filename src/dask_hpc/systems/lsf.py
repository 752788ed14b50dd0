"""IBM Spectrum LSF: bsub (script on stdin), bjobs -json, bkill."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from dask_hpc.errors import ParseError
from dask_hpc.spec import JobSpec
from dask_hpc.systems.base import BatchSystem, JobState, JobStatus, must_match

__all__ = ["LSFSystem"]

STATES: dict[str, JobState] = {
    "PEND": JobState.PENDING,
    "PSUSP": JobState.PENDING,
    "WAIT": JobState.PENDING,
    "RUN": JobState.RUNNING,
    "USUSP": JobState.RUNNING,
    "SSUSP": JobState.RUNNING,
    "PROV": JobState.RUNNING,
    "DONE": JobState.COMPLETED,
    "EXIT": JobState.FAILED,  # refined by EXIT_REASON: see _finished_state
    "ZOMBI": JobState.FAILED,
}
QUERY_FIELDS = "jobid stat exit_code exec_host pend_reason exit_reason"


class LSFSystem(BatchSystem):
    name = "lsf"
    list_jobs = "bjobs"
    directive_prefix = "#BSUB"
    job_id_variable = "LSB_JOBID"
    # bsub -W [hour:]minute: "00:30" is 30 minutes (and so in dask-jobqueue's LSFCluster).
    walltime_fields = "HH:MM"
    # "[" starts a job array index in LSF names.
    job_name_forbidden = r"\s/\[\]'\"#$"
    directive_keys: ClassVar[Mapping[str, str]] = {
        "job_name": r"^-J\b",
        "cores": r"^-n\b",
        "span": r"^-R\s.*\bspan\[",
        "memory_reservation": r"^-R\s.*\brusage\[.*\bmem=",
        "memory_limit": r"^-M\b",
        "walltime": r"^-W\b",
        "queue": r"^-q\b",
        "account": r"^-P\b",
        "output": r"^-oo?\b",
        "error": r"^-eo?\b",
    }
    cancel_gone_phrases = ("Job has already finished", "No matching job found", "is not found")
    cancel_done_phrases = ("is being terminated", "is being signaled")

    def directives(self, spec: JobSpec) -> list[str]:
        mem_mb = math.ceil(spec.memory / 2**20)
        minutes = math.ceil(spec.walltime / 60)  # -W is [HH:]MM: whole minutes
        d = [
            f"-J {self.quote(self.job_name(spec))}",
            f"-n {spec.cores}",
            '-R "span[hosts=1]"',
            f'-R "rusage[mem={mem_mb}MB]"',
            f"-M {mem_mb}MB",
            f"-W {minutes // 60:02d}:{minutes % 60:02d}",
        ]
        if spec.queue:
            d.append(f"-q {self.quote(spec.queue)}")
        if spec.account:
            d.append(f"-P {self.quote(spec.account)}")
        logs = self.log_directory(spec)
        if logs:
            d.append(f"-o {self.quote(logs + '/%J.out')}")
            d.append(f"-e {self.quote(logs + '/%J.err')}")
        return d

    # bsub reads #BSUB directives only from a script on its standard input.
    script_on_stdin = True

    def submit_argv(self, script: Path) -> list[str]:
        return ["bsub"]

    def parse_job_id(self, stdout: str) -> str:
        # "Job <1234> is submitted to queue <normal>."
        return must_match(r"Job <(\d+)>", stdout, "an LSF job id")[1]

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["bjobs", "-a", "-json", "-o", QUERY_FIELDS, *job_ids]

    def query_failure_means_unknown(self, stderr: str) -> bool:
        return "is not found" in stderr

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        if stdout.strip():
            try:
                records = json.loads(stdout).get("RECORDS", [])
            except (ValueError, AttributeError) as exc:
                raise ParseError(f"could not read bjobs -json output: {exc}") from None
            for rec in records:
                job_id = str(rec.get("JOBID", ""))
                if not job_id or rec.get("ERROR"):
                    continue
                found[job_id] = _status(job_id, rec)
        return {j: found.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        return f"{job_id}.out", f"{job_id}.err"

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["bkill", *job_ids]

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        # LSB_MCPU_HOSTS="host1 4 host2 4"; LSB_HOSTS="host1 host1 host2".
        mcpu = env.get("LSB_MCPU_HOSTS", "").split()
        hosts = mcpu[0::2] if mcpu else env.get("LSB_HOSTS", "").split()
        return tuple(dict.fromkeys(hosts))


def _status(job_id: str, rec: Mapping[str, str]) -> JobStatus:
    stat = rec.get("STAT", "")
    state = STATES.get(stat, JobState.UNKNOWN)
    node = (rec.get("EXEC_HOST") or "").split(":")[0] or None
    if "*" in (node or ""):
        node = node.split("*")[-1] if node else None  # "4*host1"
    exit_text = rec.get("EXIT_CODE") or ""
    exit_code = int(exit_text) if exit_text.lstrip("-").isdigit() else None
    reason: str | None = None
    if state is JobState.PENDING:
        reason = (rec.get("PEND_REASON") or "").strip().rstrip(";") or None
    elif stat == "EXIT":
        reason = rec.get("EXIT_REASON") or None
        state = _finished_state(reason)
    elif state is JobState.COMPLETED:
        exit_code = 0
    return JobStatus(job_id, state, reason=reason, node=node, exit_code=exit_code)


def _finished_state(reason: str | None) -> JobState:
    text = reason or ""
    if text.startswith("TERM_RUNLIMIT"):
        return JobState.TIMEOUT
    if text.startswith(("TERM_OWNER", "TERM_ADMIN", "TERM_FORCE_OWNER", "TERM_FORCE_ADMIN")):
        return JobState.CANCELLED
    return JobState.FAILED
