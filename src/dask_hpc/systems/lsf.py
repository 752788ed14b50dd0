"""IBM Spectrum LSF: bsub (script on stdin), bjobs -json, bkill."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from dask_hpc import _process
from dask_hpc.errors import CommandError, ParseError, SpecError
from dask_hpc.spec import JobSpec, parse_boolean, parse_memory
from dask_hpc.systems.base import BatchSystem, Cap, JobState, JobStatus, must_match, setting_whole
from dask_hpc.systems.nodes import node_script_lines

__all__ = ["LSFSystem", "default_queue", "parse_bqueues", "parse_busers"]

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
# jobindex: an array element's index (0 for a job of its own): its id is jobid[index].
QUERY_FIELDS = "jobid jobindex stat exit_code exec_host pend_reason exit_reason"


class LSFSystem(BatchSystem):
    name = "lsf"
    list_jobs = "bjobs"
    directive_prefix = "#BSUB"
    bare_walltime = "m"
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
        "gpus": r"^-gpu\b",
        "output": r"^-oo?\b",
        "error": r"^-eo?\b",
        "array": r"^-J\s+\S*\[",  # -J "name[1-10]": an array
    }
    cancel_gone_phrases = ("Job has already finished", "No matching job found", "is not found")
    cancel_done_phrases = ("is being terminated", "is being signaled")

    # dask-jobqueue's LSFCluster ncpus, mem, lsf_units and use_stdin.
    setting_keys: ClassVar[Mapping[str, str]] = {
        "ncpus": "ncpus",
        "mem": "mem",
        "lsf-units": "lsf_units",
        "lsf-use-stdin": "use_stdin",
    }

    def __init__(
        self,
        ncpus: int | str | None = None,
        mem: int | str | None = None,
        lsf_units: str | None = None,
        use_stdin: bool | str | None = None,
    ) -> None:
        #: -n, instead of the cores.
        self.ncpus = None if ncpus is None else setting_whole("ncpus", ncpus)
        #: The memory asked of LSF (-M and rusage), instead of the memory: bytes, or "25GB".
        self.mem = None if mem is None else parse_memory(mem, "mem")
        #: The unit we write memory in (kb, mb, gb, tb): always with the unit, so that it does
        #: not depend on the site's LSF_UNIT_FOR_LIMITS (dask-jobqueue writes a bare number).
        self.lsf_units = None if lsf_units is None else _unit(lsf_units)
        #: False: ``bsub script`` instead of ``bsub < script``.
        self.use_stdin = None if use_stdin is None else parse_boolean("use_stdin", use_stdin)

    @property
    def script_on_stdin(self) -> bool:
        # bsub reads #BSUB directives from a script on its standard input.
        return self.use_stdin is not False

    def memory_text(self, nbytes: int) -> str:
        """``2048MB``: in :attr:`lsf_units` (MB by default), rounded up; LSF's units are 1024s."""
        unit = self.lsf_units or "mb"
        power = "kmgtpe".index(unit[0]) + 1
        return f"{math.ceil(nbytes / 1024**power)}{unit.upper()}"

    def directives(self, spec: JobSpec) -> list[str]:
        memory = self.memory_text(self.mem or spec.memory)
        minutes = math.ceil(spec.walltime / 60)  # -W is [HH:]MM: whole minutes
        d = [
            f"-J {self.quote(self.job_name(spec))}",
            # Slots: the cores of each node; several nodes: that many on each (span[ptile]).
            f"-n {(self.ncpus or spec.cores) * spec.nodes}",
            '-R "span[hosts=1]"' if spec.nodes == 1 else f'-R "span[ptile={self.ncpus or spec.cores}]"',
            f'-R "rusage[mem={memory}]"',
            f"-M {memory}",
            f"-W {minutes // 60:02d}:{minutes % 60:02d}",
        ]
        if spec.gpus:
            d.append(f'-gpu "num={spec.gpus}"')  # LSF 10.1's GPUs, on each host of the job
        if spec.queue:
            d.append(f"-q {self.quote(spec.queue)}")
        if spec.account:
            d.append(f"-P {self.quote(spec.account)}")
        logs = self.log_directory(spec)
        if logs:
            d.append(f"-o {self.quote(logs + '/%J.out')}")
            d.append(f"-e {self.quote(logs + '/%J.err')}")
        return d

    # ---- arrays: -J "name[1-N]"; element 3 of job 123 is 123[3] (bjobs, bkill, its logs)

    arrays = True
    default_array_limit = 1000  # MAX_JOB_ARRAY_SIZE's default (lsb.params)

    def array_header(self, header: list[str], spec: JobSpec, tasks: int) -> list[str]:
        name = f"-J {self.quote(self.job_name(spec))}"
        ours = {d for d in self.directives(spec) if self.sets(d) & {"output", "error"}}
        out = []
        for d in header:
            if d == name:
                d = f'-J "{self.job_name(spec)}[1-{tasks}]"'
            elif d in ours:
                d = d.replace("%J.", "%J[%I].")  # each element's own log files
            out.append(d)
        return out

    # blaunch stands in for rsh: one task on each host it is given (-z); without hosts it
    # would start one per slot. LSB_MCPU_HOSTS ("hostA 8 hostB 8") names each host once.
    node_launch = "blaunch"

    def node_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        hosts = """hosts=$(echo $LSB_MCPU_HOSTS | awk '{for (i = 1; i < NF; i += 2) printf "%s ", $i}')"""
        return node_script_lines(
            command, self.node_launch, [hosts, 'blaunch -z "$hosts" /bin/bash "$node_script"']
        )

    def takes_arrays(self, spec: JobSpec) -> bool:
        # LSF's array is its -J: where the user's -J names the job, single jobs (their name kept).
        return not any(self.sets(d) & {"job_name"} for d in spec.job_extra_directives)

    def task_ids(self, stdout: str, tasks: int) -> list[str]:
        job_id = self.parse_job_id(stdout)
        return [f"{job_id}[{i}]" for i in range(1, tasks + 1)]

    def array_limit_argv(self) -> list[str]:
        return ["bparams", "-a"]

    def parse_array_limit(self, stdout: str) -> int | None:
        match = re.search(r"^\s*MAX_JOB_ARRAY_SIZE\s*=\s*(\d+)", stdout, re.M)
        return int(match[1]) if match else None

    def job_id_from_env(self, env: Mapping[str, str]) -> str | None:
        job, index = env.get("LSB_JOBID"), env.get("LSB_JOBINDEX", "0")
        if job and index.isdigit() and index != "0":  # 0 outside an array
            return f"{job}[{index}]"
        return super().job_id_from_env(env)

    def submit_argv(self, script: Path) -> list[str]:
        return ["bsub"] if self.script_on_stdin else ["bsub", str(script)]

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
                index = str(rec.get("JOBINDEX") or "0")
                if index.isdigit() and index != "0":
                    job_id = f"{job_id}[{index}]"
                if not job_id or rec.get("ERROR"):
                    continue
                found[job_id] = _status(job_id, rec)
        return {j: found.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    # ---- caps: job slots (LSF's unit: a job of -n N holds N), per user (busers' MAX) and of
    # the job's queue (bqueues: JL/U per user, MAX for all users); running jobs only.

    def caps(self, spec: JobSpec | None = None) -> list[Cap]:
        spec = spec or JobSpec()
        caps = []
        try:
            caps += parse_busers(_process.run(["busers"], timeout=30).stdout)
            queue = self.job_queue(spec)
            if queue is None:
                queue = default_queue(_process.run(["bparams"], timeout=30).stdout)
            if queue is not None:
                caps += parse_bqueues(_process.run(["bqueues", "-w", queue], timeout=30).stdout, queue)
        except CommandError:
            pass  # what was read before the failure stands; the rest is unknown
        return caps

    def caps_scope(self, spec: JobSpec) -> tuple[str | None, ...]:
        return (self.job_queue(spec),)

    def user_jobs(self) -> int | None:
        """The user's unfinished jobs, an array's elements each (bjobs lists only the user's)."""
        try:
            done = _process.run(
                ["bjobs", "-noheader", "-o", "jobid"], timeout=self.query_timeout, check=False
            )
        except CommandError:
            return None
        if done.returncode != 0 and "No unfinished job found" not in done.stderr + done.stdout:
            return None
        return sum(1 for line in done.stdout.splitlines() if line.strip().isdigit())

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        return f"{job_id}.out", f"{job_id}.err"  # an array element's: 123[3].out

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["bkill", *job_ids]

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        # LSB_MCPU_HOSTS="host1 4 host2 4"; LSB_HOSTS="host1 host1 host2".
        mcpu = env.get("LSB_MCPU_HOSTS", "").split()
        hosts = mcpu[0::2] if mcpu else env.get("LSB_HOSTS", "").split()
        return tuple(dict.fromkeys(hosts))


def parse_busers(text: str) -> list[Cap]:
    """The user's MAX in ``busers`` (the job slots their jobs may hold at once; ``-``: none)."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if len(rows) < 2 or "MAX" not in rows[0]:
        return []
    value = rows[1][rows[0].index("MAX")] if len(rows[1]) == len(rows[0]) else ""
    if not value.isdigit():
        return []
    return [Cap(int(value), True, f"MAX={value} job slots (busers)", per="cpu")]


def parse_bqueues(text: str, queue: str) -> list[Cap]:
    """``queue``'s JL/U (job slots a user's jobs may hold in it) and MAX (all users' jobs)
    in ``bqueues -w`` (wide: without it, long queue names are cut)."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows or "JL/U" not in rows[0]:
        return []
    head = rows[0]
    for row in rows[1:]:
        if row[0] == queue and len(row) == len(head):
            found = dict(zip(head, row, strict=True))
            caps = []
            for column, whose in (("JL/U", f"queue {queue}, a user"), ("MAX", f"queue {queue}, all users")):
                if found[column].isdigit():
                    words = f"{column}={found[column]} job slots ({whose})"
                    caps.append(Cap(int(found[column]), True, words, per="cpu"))
            return caps
    return []


def default_queue(text: str) -> str | None:
    """The default queue in ``bparams`` (``Default Queues:  normal``); None for several (bsub
    picks one that takes the job) or none."""
    match = re.search(r"^\s*Default Queues:\s*(.*?)\s*$", text, re.M)
    queues = match[1].split() if match else []
    return queues[0] if len(queues) == 1 else None


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


def _unit(value: str) -> str:
    unit = str(value).strip().lower()
    if unit not in ("kb", "mb", "gb", "tb", "pb", "eb", "k", "m", "g", "t", "p", "e"):
        raise SpecError("lsf_units", value, "must be one of kb, mb, gb, tb, pb, eb (LSF_UNIT_FOR_LIMITS)")
    return unit[0] + "b"
