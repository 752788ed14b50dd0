"""OAR (2.5): oarsub -S, oarstat -f, oardel.

How OAR reads what we write, from its own code (Debian's oar-user 2.5.9, OAR::Sub::scan_script
and oarsub): with ``oarsub -S`` it reads the ``#OAR`` lines of the script; each takes the rest
of its line as the value, word for word (no shell quoting: quotes would be part of the value).
A second ``-l`` line is another choice of resources (a "moldable" job), not more of them; only
the last ``-p`` line counts. A walltime is ``hour[:min[:sec]]``: a bare number is hours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from dask_hpc.errors import ParseError, SpecError
from dask_hpc.spec import JobSpec, format_walltime
from dask_hpc.systems.base import (
    BatchSystem,
    JobState,
    JobStatus,
    must_match,
    read_lines,
    resource_line,
    setting_line,
)
from dask_hpc.systems.nodes import each_node, node_script_lines

__all__ = ["OARSystem", "parse_oarstat_full"]

STATES: dict[str, JobState] = {
    "Waiting": JobState.PENDING,
    "Hold": JobState.PENDING,
    "toLaunch": JobState.PENDING,
    "toAckReservation": JobState.PENDING,
    "Launching": JobState.PENDING,
    "Running": JobState.RUNNING,
    "Suspended": JobState.RUNNING,  # still holds its resources
    "Resuming": JobState.RUNNING,
    "Finishing": JobState.RUNNING,
    # Terminated, Error and toError are decided from the exit code and the events: _finished_state.
}
#: The memory property that means "no such property here": no -p is written (dask-jobqueue's word).
NOT_APPLICABLE = "not_applicable"


class OARSystem(BatchSystem):
    name = "oar"
    list_jobs = "oarstat -u"
    directive_prefix = "#OAR"
    bare_walltime = "h"  # oarsub: walltime=hour[:min[:sec]]
    walltime_fields = "HH:MM"
    job_id_variable = "OAR_JOB_ID"
    # The name goes into the log file's name (OAR.<name>.<id>.stdout) and OAR's SQL quoting.
    job_name_forbidden = r"\s/'\"%\\"
    job_name_max = 100
    # The log paths are written into a Perl string in single quotes on the node (oarexec).
    path_forbidden = "'\\"
    directive_keys: ClassVar[Mapping[str, str]] = {
        "job_name": r"^(-n|--name)\s",
        "resources": r"^(-l|--resource)\s",
        "walltime": r"^(-l|--resource)\s.*\bwalltime\s*=",
        "queue": r"^(-q|--queue)\s",
        "account": r"^--project\s",
        "properties": r"^(-p|--property)\s",
        "output": r"^(-O|--stdout)\s",
        "error": r"^(-E|--stderr)\s",
        "array": r"^--array(-param-file)?\s",
    }
    # oardel: "Cannot frag 5 ; This job was already killed." for a job already being deleted;
    # "... You are not the right user." for an id OAR does not know (ours are always ours).
    cancel_gone_phrases = ("This job was already killed", "You are not the right user")
    cancel_done_phrases = ("Deleting the job", "will be deleted in the near future")

    # dask-jobqueue's OARCluster resource_spec (the -l line's resources, before the walltime)
    # and memory_per_core_property_name (the resources' property that holds MiB per core).
    setting_keys: ClassVar[Mapping[str, str]] = {
        "resource-spec": "resource_spec",
        "memory-per-core-property-name": "memory_property",
    }

    def __init__(self, resource_spec: str | None = None, memory_property: str | None = None) -> None:
        #: Replaces our ``/nodes=1/core=N`` (the walltime is added to it).
        self.resource_spec = None if resource_spec is None else _resources(resource_spec)
        #: The property ``-p`` asks ``>=`` the memory per core of (``memcore``), in MiB.
        self.memory_property = None if memory_property is None else _property_name(memory_property)

    def quote(self, value: str) -> str:
        """OAR takes the rest of a directive's line as its value: nothing to quote, but a
        line break would end it."""
        if "\n" in value or "\r" in value:
            raise SpecError("directive", value, "OAR reads a value to the end of its line: no line breaks")
        return value

    def notes(self, spec: JobSpec) -> list[str]:
        if self.memory_property is not None:
            return []
        # As dask-jobqueue's OARCluster warns: OAR has no memory request of its own.
        return [
            "worker jobs: OAR is not asked for the memory (it has no memory request of its own): "
            "name the resources' property of MiB per core (oarnodes lists them, e.g. memcore) with "
            "memory_per_core_property_name= in Python or memory-per-core-property-name in "
            "dask-hpc's configuration, or say not_applicable where there is none"
        ]

    # OAR's hierarchy names hosts as nodes, host or network_address (Grid'5000: /host=2).
    nodes_asked = (r"(?:^|[\s/{}])(?:nodes|host|network_address)=(\d+)", "/nodes={nodes}/core={cores}")

    def resources(self, spec: JobSpec) -> str:
        if spec.gpus and not self.resource_spec:
            raise SpecError(
                "gpus",
                spec.gpus,
                "OAR asks for GPUs in its resource hierarchy, whose levels are the site's: write "
                "them in resource_spec, e.g. /nodes=1/gpu=2 (oarnodes lists the resources); "
                "--gpus then gives the workers their share",
            )
        # nodes=1: all the cores on one node (without it OAR may spread them over nodes).
        return self.resource_spec or f"/nodes={spec.nodes}/core={spec.cores}"

    # oarsh (OAR's ssh into the job's cpuset) to each host of $OAR_NODEFILE, which lists a
    # host once per core.
    node_launch = "oarsh"

    def node_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        start = 'oarsh "$node" /bin/bash "$node_script"'
        return node_script_lines(command, self.node_launch, each_node('$(sort -u "$OAR_NODEFILE")', start))

    def properties(self, spec: JobSpec) -> str | None:
        """The ``-p`` line's SQL: the user's last ``-p`` and ours (OAR reads only the last
        line), or None when no memory property is configured."""
        if self.memory_property in (None, NOT_APPLICABLE):
            return None
        per_core = math.ceil(spec.memory / spec.cores / 2**20)  # OAR's memory properties are MiB
        ours = f"{self.memory_property}>={per_core}"
        theirs = [_value(d) for d in spec.job_extra_directives if self.sets(d) & {"properties"}]
        return f"({theirs[-1]}) AND {ours}" if theirs else ours

    def directives(self, spec: JobSpec) -> list[str]:
        d = [
            f"-n {self.quote(self.job_name(spec))}",
            f"-l {self.resources(spec)},walltime={format_walltime(spec.walltime)}",
        ]
        if spec.queue:
            d.append(f"-q {self.quote(spec.queue)}")
        if spec.account:
            d.append(f"--project {self.quote(spec.account)}")
        properties = self.properties(spec)
        if properties:
            d.append(f"-p {properties}")
        logs = self.log_directory(spec)
        if logs:
            # OAR fills in %jobid% (its own default names are OAR.<name>.<id>.stdout).
            d.append(f"-O {self.quote(logs)}/OAR.%jobname%.%jobid%.stdout")
            d.append(f"-E {self.quote(logs)}/OAR.%jobname%.%jobid%.stderr")
        return d

    def header(self, spec: JobSpec) -> list[str]:
        """As :meth:`BatchSystem.header`, but a user's ``-l`` is refused (OAR would read it
        as another choice of resources), and ``-p``: the user's and ours are one line, last."""
        for d in spec.job_extra_directives:
            if self.sets(d) & {"resources"} and not self.sets(d) & self.own_keys:
                raise SpecError(
                    "job_extra_directives",
                    d,
                    "OAR reads a second -l as another choice of resources, not more of them: give "
                    "the resources with resource_spec (dask-hpc config key resource-spec), e.g. "
                    "resource_spec='/nodes=1/core=16'",
                )
        lines = super().header(spec)
        properties = self.properties(spec)
        ours = f"-p {properties}" if properties else None
        if ours is None or ours not in lines:
            return lines
        return [line for line in lines if not self.sets(line) & {"properties"}] + [ours]

    def replaced(self, spec: JobSpec) -> dict[str, str]:
        # The user's -p is joined with ours (properties), not a replacement of it.
        return {d: by for d, by in super().replaced(spec).items() if not d.startswith("-p ")}

    # ---- arrays: --array N; each task is a job of its own id (OAR_JOB_ID), its array OAR_ARRAY_ID

    arrays = True

    def array_header(self, header: list[str], spec: JobSpec, tasks: int) -> list[str]:
        return [*header, f"--array {tasks}"]

    def task_ids(self, stdout: str, tasks: int) -> list[str]:
        ids = re.findall(r"(?m)^OAR_JOB_ID=(\d+)\s*$", stdout)
        if len(ids) != tasks:
            raise ParseError(f"oarsub --array {tasks} answered {len(ids)} job ids: {stdout.strip()[:200]!r}")
        return ids

    def submit_argv(self, script: Path) -> list[str]:
        # -S: read the #OAR lines. The script stays in the session's folder, which the nodes
        # share: OAR runs it from there when the job starts (not a copy taken at submission).
        return ["oarsub", "-S", str(script)]

    def parse_job_id(self, stdout: str) -> str:
        # "[ADMISSION RULE] ...\nOAR_JOB_ID=4711"
        return must_match(r"(?m)^OAR_JOB_ID=(\d+)\s*$", stdout, "an OAR job id")[1]

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        # -f: the full text (state, exit code, hosts, events), which needs no Perl JSON module;
        # -j: each job, finished ones too.
        return ["oarstat", "-f", *(a for j in job_ids for a in ("-j", j))]

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found = {job_id: _status(job_id, attrs) for job_id, attrs in parse_oarstat_full(stdout).items()}
        return {j: found.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        return f"OAR.{job_name}.{job_id}.stdout", f"OAR.{job_name}.{job_id}.stderr"

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["oardel", *job_ids]

    def nodes_argv(self) -> list[str]:
        return ["oarnodes", "-l"]  # the hosts of the resources, one a line (their network_address)

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        # One line per core, as PBS's node file.
        return read_lines(env.get("OAR_NODEFILE") or env.get("OAR_FILE_NODES"))


def parse_oarstat_full(text: str) -> dict[str, dict[str, str]]:
    """``oarstat -f`` blocks as {job id: {attribute: value}}; the events (one a line after
    ``events =``, ``date> TYPE:description``) joined by newlines under ``events``."""
    jobs: dict[str, dict[str, str]] = {}
    attrs: dict[str, str] = {}
    in_events = False
    for line in text.splitlines():
        if line.startswith("Job_Id:"):
            attrs = jobs.setdefault(line.split(":", 1)[1].strip(), {})
            in_events = False
        elif re.match(r"^ {4}\w+ = ?", line):
            key, _, value = line[4:].partition(" =")
            attrs[key] = value.strip()
            in_events = key == "events"
        elif in_events and line.strip():
            attrs["events"] = (attrs["events"] + "\n" + line.strip()).strip()
    return jobs


def _status(job_id: str, attrs: Mapping[str, str]) -> JobStatus:
    state_word = attrs.get("state", "")
    node = attrs.get("assigned_hostnames", "").split("+")[0] or None
    if state_word in STATES:
        state = STATES[state_word]
        reason = _pending_reason(state_word, attrs) if state is JobState.PENDING else None
        return JobStatus(job_id, state, reason=reason, node=node)
    if state_word in ("Terminated", "Error", "toError"):
        # exit_code = 256 (1,1,0): the wait status, then (exit value, signal, core).
        status = re.match(r"^(-?\d+)", attrs.get("exit_code", ""))
        wait_status = int(status[1]) if status else None
        exit_code = wait_status >> 8 if wait_status is not None and wait_status >= 0 else None
        events = attrs.get("events", "")
        state = _finished_state(state_word, wait_status, events)
        reason = _last_event(events) if state is not JobState.COMPLETED else None
        return JobStatus(job_id, state, reason=reason, node=node, exit_code=exit_code)
    return JobStatus(job_id, JobState.UNKNOWN, reason=f"state {state_word}" if state_word else None)


def _pending_reason(state_word: str, attrs: Mapping[str, str]) -> str:
    """Why a job waits, in OAR's words: its message, unless that is only the scheduler's
    summary of the request (``R=1,W=2:0:0,J=B (Karma=0.000,quota_ok)``), and when the
    scheduler plans to start it."""
    message = attrs.get("message", "")
    words = [] if re.match(r"^R=\d+,W=", message) or not message else [message]
    start = attrs.get("scheduledStart", "")
    if re.match(r"^\d{4}-\d\d-\d\d ", start):
        words.append(f"scheduled to start at {start}")
    return "; ".join(words) or state_word


def _finished_state(state_word: str, wait_status: int | None, events: str) -> JobState:
    if re.search(r"> WALLTIME:", events):
        return JobState.TIMEOUT
    if re.search(r"> FRAG_JOB_REQUEST:", events):
        return JobState.CANCELLED
    if state_word == "Terminated" and wait_status == 0:
        return JobState.COMPLETED
    return JobState.FAILED


def _last_event(events: str) -> str | None:
    lines = [line.split("> ", 1)[-1] for line in events.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _value(directive: str) -> str:
    """A directive's value: what follows its flag (``-p cluster='a'`` -> ``cluster='a'``)."""
    return directive.strip().split(None, 1)[1] if len(directive.split(None, 1)) > 1 else ""


def _resources(value: str) -> str:
    return resource_line("resource_spec", value, r"\bwalltime\s*=")


def _property_name(value: str) -> str:
    name = setting_line("memory_per_core_property_name", value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SpecError(
            "memory_per_core_property_name",
            name,
            "must be the name of an OAR resource property (oarnodes lists them, e.g. memcore), "
            f"or {NOT_APPLICABLE}",
        )
    return name
