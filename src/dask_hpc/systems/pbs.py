"""PBS Professional / OpenPBS (``pbs``), Torque (``torque``): qsub, qstat -f, qdel; and Moab
over Torque (``moab``): msub, qstat -f, canceljob."""

from __future__ import annotations

import contextlib
import getpass
import grp
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, NamedTuple

from dask_hpc import _process
from dask_hpc.errors import CommandError, ParseError, SpecError
from dask_hpc.spec import JobSpec, format_walltime, parse_walltime
from dask_hpc.systems.base import (
    BatchSystem,
    Cap,
    JobLimit,
    JobState,
    JobStatus,
    must_match,
    read_lines,
    resource_line,
)
from dask_hpc.systems.nodes import node_script_lines

__all__ = [
    "DEFAULT_PROJECT",
    "MoabSystem",
    "Owner",
    "PBSSystem",
    "TorqueSystem",
    "parse_qstat_full",
    "parse_queue_caps",
    "parse_resources_max",
    "parse_server_caps",
]

STATES: dict[str, JobState] = {
    "Q": JobState.PENDING,
    "H": JobState.PENDING,
    "W": JobState.PENDING,
    "T": JobState.PENDING,
    "M": JobState.PENDING,
    "R": JobState.RUNNING,
    "E": JobState.RUNNING,  # exiting: still holds its nodes
    "B": JobState.RUNNING,
    "S": JobState.RUNNING,
    "U": JobState.RUNNING,
    # F (PBS Pro, finished), X (finished subjob) and C (Torque, completed) are
    # decided from Exit_status and comment: see _finished_state.
}
# Negative Exit_status values the server uses for its own kills.
WALLTIME_EXIT = {-29, -11}  # PBS Pro JOB_EXEC_KILL_WALLTIME, Torque JOB_EXEC_OVERLIMIT_WT
SIGTERM_EXIT = {271, 143}  # 256+15 (PBS Pro) and 128+15: qdel, or a limit's kill


class PBSSystem(BatchSystem):
    name = "pbs"
    list_jobs = "qstat -u $USER"
    directive_prefix = "#PBS"
    bare_walltime = "s"
    job_id_variable = "PBS_JOBID"
    # PBS names: no whitespace, and none of these; at most 236 characters.
    job_name_forbidden = r"\s@:/\\'\"#$"
    job_name_max = 236
    # PBS Pro refuses job-wide ncpus/mem/nodes beside a select: any of them replaces our select.
    directive_keys: ClassVar[Mapping[str, str]] = {
        "job_name": r"^-N\b",
        "resources": r"^-l\s.*\b(select|nodes|ncpus|mem)=",
        "walltime": r"^-l\s.*\bwalltime=",
        "queue": r"^-q\b",
        "account": r"^-A\b",
        "project": r"^-P\b",
        "group": r"^-W\s*group_list\b",
        "output": r"^-o\b",
        "error": r"^-e\b",
        "array": r"^-J\b",
    }
    cancel_gone_phrases = ("Unknown Job Id", "Job has finished")

    # dask-jobqueue's resource_spec: the -l line of the job's resources, written by the user.
    setting_keys: ClassVar[Mapping[str, str]] = {"resource-spec": "resource_spec"}

    def __init__(self, resource_spec: str | None = None) -> None:
        #: Replaces our resource line (``select=1:ncpus=36:mem=100GB``) as dask-jobqueue does.
        self.resource_spec = (
            None
            if resource_spec is None
            else resource_line("resource_spec", resource_spec, r"\bwalltime\s*=")
        )

    nodes_asked: ClassVar[tuple[str, str] | None] = (
        r"\bselect=(\d+)",
        "select={nodes}:ncpus={cores}:mpiprocs=1 with place=scatter",
    )
    nodes_placed: ClassVar[tuple[str, str] | None] = (
        r"\bplace=\S*\bv?scatter",
        "place the chunks on separate hosts (place=scatter)",
    )

    def resources(self, spec: JobSpec) -> list[str]:
        if self.resource_spec:
            return [self.resource_spec]
        mem = math.ceil(spec.memory / 2**20)  # PBS's mb is MiB
        gpus = f":ngpus={spec.gpus}" if spec.gpus else ""  # PBS Pro's GPUs, in each chunk
        if spec.nodes == 1:
            return [f"select=1:ncpus={spec.cores}{gpus}:mem={mem}mb"]
        # A chunk a node (place=scatter), each listed once in the node file (mpiprocs=1),
        # so that pbsdsh starts one task on each.
        return [f"select={spec.nodes}:ncpus={spec.cores}{gpus}:mem={mem}mb:mpiprocs=1", "place=scatter"]

    def directives(self, spec: JobSpec) -> list[str]:
        d = [f"-N {self.quote(self.job_name(spec))}"]
        d += [f"-l {r}" for r in self.resources(spec)]
        d.append(f"-l walltime={format_walltime(spec.walltime)}")
        if spec.queue:
            d.append(f"-q {self.quote(spec.queue)}")
        if spec.account:
            d.append(f"-A {self.quote(spec.account)}")
        logs = self.log_directory(spec)
        if logs:
            d.append(f"-o {self.quote(logs + '/')}")
            d.append(f"-e {self.quote(logs + '/')}")
        return d

    # ---- arrays: PBS Pro's -J 1-N; subjob 3 of 123[].server is 123[3].server (its PBS_JOBID)

    arrays = True
    default_array_limit = 10000  # the server's max_array_size default
    array_flag: ClassVar[str] = "-J"

    def array_header(self, header: list[str], spec: JobSpec, tasks: int) -> list[str]:
        return [*header, f"{self.array_flag} 1-{tasks}"]

    def task_ids(self, stdout: str, tasks: int) -> list[str]:
        job_id = self.parse_job_id(stdout)  # "123[].server"
        head, sep, tail = job_id.partition("[]")
        if not sep:
            raise ParseError(f"qsub answered {job_id!r} for an array, not an array id (123[].server)")
        return [f"{head}[{i}]{tail}" for i in range(1, tasks + 1)]

    def array_limit_argv(self) -> list[str]:
        return ["qmgr", "-c", "list server"]

    def parse_array_limit(self, stdout: str) -> int | None:
        # PBS Pro's max_array_size, Torque's max_job_array_size.
        match = re.search(r"^\s*max_(?:job_)?array_size\s*=\s*(\d+)", stdout, re.M)
        return int(match[1]) if match else None

    # ---- caps: the server's and the job's queue's limits per user (qmgr -c "list server",
    # qstat -Qf QUEUE), and the queue's and server's resources_max on one job

    def caps(self, spec: JobSpec | None = None) -> list[Cap]:
        site = self._site(spec or JobSpec())
        if site is None:
            return []
        server, queue, queue_text = site
        spec = spec or JobSpec()
        who = Owner(getpass.getuser(), self.job_group(spec), self.job_project(spec))
        caps = parse_server_caps(server, who)
        if queue:
            caps += parse_queue_caps(queue_text, queue, who)
        return caps

    def caps_scope(self, spec: JobSpec) -> tuple[str | None, ...]:
        return (self.job_queue(spec), self.job_group(spec), self.job_project(spec))

    def in_scope(self, spec: JobSpec, scope: tuple[tuple[str, str], ...]) -> bool:
        """A job of ``spec`` goes to its queue (None: the server's default, counted)."""
        queue = self.job_queue(spec)
        return all(queue is None or key != "queue" or queue == value for key, value in scope)

    def job_group(self, spec: JobSpec) -> str:
        """The group a job of ``spec`` runs as: of ``-W group_list=``, the first entry that
        names no host (qsub's manual: that one serves every host not named), else the first
        (without its host, ``g1@host``); else the user's primary group."""
        listed = self.directive_value(spec, "group")
        if listed:
            entries = [e for e in listed.split(",") if e]
            plain = [e for e in entries if "@" not in e]
            return (plain or entries or [""])[0].partition("@")[0]
        try:
            return grp.getgrgid(os.getgid()).gr_name
        except KeyError:  # a gid without a name here: PBS's entity limits name groups
            return str(os.getgid())

    def job_project(self, spec: JobSpec) -> str:
        """The project of a job of ``spec``: ``-P``, else PBS Pro's default project."""
        return self.directive_value(spec, "project") or DEFAULT_PROJECT

    def job_limits(self, spec: JobSpec) -> list[JobLimit]:
        site = self._site(spec)
        if site is None:
            return []
        server, queue, queue_text = site
        limits = parse_resources_max(attributes(server), "server")
        if queue:
            limits += parse_resources_max(queue_attributes(queue_text, queue), f"queue {queue}")
        return limits

    def _site(self, spec: JobSpec) -> tuple[str, str | None, str] | None:
        """``qmgr -c "list server"``, the job's queue (else the server's default_queue) and
        ``qstat -Qf`` of it; None where the server cannot be asked. Once a :meth:`one_look`."""
        return self._once(("pbs", self.job_queue(spec)), lambda: _ask_site(self.job_queue(spec)))

    def user_jobs(self) -> int | None:
        try:
            done = _process.run(["qstat", "-u", getpass.getuser(), "-t"], timeout=self.query_timeout)
        except CommandError:
            return None
        return count_user_jobs(done.stdout)

    def user_jobs_in(self, scope: tuple[tuple[str, str], ...]) -> int | None:
        """The user's jobs and subjobs in a queue (the only scope of PBS's caps)."""
        queue = dict(scope).get("queue")
        try:
            done = _process.run(["qstat", "-u", getpass.getuser(), "-t"], timeout=self.query_timeout)
        except CommandError:
            return None
        return count_user_jobs(done.stdout, queue)

    def submit_argv(self, script: Path) -> list[str]:
        return ["qsub", str(script)]

    def parse_job_id(self, stdout: str) -> str:
        # "1234.server" (Torque/PBS Pro), "1234[].server" for arrays.
        last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
        return must_match(r"^(\d+(?:\[\d*\])?(?:\.\S+)?)$", last, "a PBS job id")[1]

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        # -x: finished jobs too (PBS Pro keeps them while job_history is on).
        return ["qstat", "-f", "-x", *job_ids]

    def query_failure_means_unknown(self, stderr: str) -> bool:
        # qstat prints found jobs and exits 153/35 for unknown ids among them.
        return "Unknown Job Id" in stderr or "Job has finished" in stderr

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        for job_id, attrs in parse_qstat_full(stdout).items():
            status = _status(job_id, attrs)
            found[job_id] = status
            found.setdefault(job_id.split(".")[0], status)
        return {
            j: _rename(found.get(j) or found.get(j.split(".")[0]) or JobStatus(j, JobState.UNKNOWN), j)
            for j in job_ids
        }

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        # -o/-e name a directory: PBS writes <name>.o<sequence number> there; a subjob's
        # (123[3]) are <name>.o123.3.
        number = job_id.split(".")[0]
        subjob = re.fullmatch(r"(\d+)\[(\d+)\]", number)
        if subjob:
            number = f"{subjob[1]}{self.subjob_log_separator}{subjob[2]}"
        return f"{job_name}.o{number}", f"{job_name}.e{number}"

    subjob_log_separator: ClassVar[str] = "."

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        return read_lines(env.get("PBS_NODEFILE"))

    # PBS Pro's pbsdsh starts its program once on each of the job's chunks (its vnodes).
    node_launch = "pbsdsh"
    pbsdsh: ClassVar[str] = "pbsdsh"

    def node_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        return node_script_lines(command, self.node_launch, [f'{self.pbsdsh} /bin/bash "$node_script"'])


class TorqueSystem(PBSSystem):
    """Torque keeps PBS's commands but asks for resources with nodes/ppn."""

    name = "torque"
    job_name_max = 15  # older Torque servers cut or refuse longer names

    nodes_asked = (r"\bnodes=(\d+)", "nodes={nodes}:ppn={cores}")
    nodes_placed = None  # Torque's nodes=K are K hosts

    def resources(self, spec: JobSpec) -> list[str]:
        if self.resource_spec:
            return [self.resource_spec]
        # Torque's GPUs: nodes=K:ppn=C:gpus=N, on each node.
        nodes = f"nodes={spec.nodes}:ppn={spec.cores}" + (f":gpus={spec.gpus}" if spec.gpus else "")
        if spec.nodes == 1:
            return [nodes, f"mem={math.ceil(spec.memory / 2**20)}mb"]
        # Torque ignores mem on Linux for a job of several nodes (its manual, "Requesting
        # resources"): pmem, the memory of each process, a core's share of the node's.
        return [nodes, f"pmem={math.ceil(spec.memory / spec.cores / 2**20)}mb"]

    # Torque's node file lists a node once per core: -u starts one task per node.
    pbsdsh = "pbsdsh -u"

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["qstat", "-f", *job_ids]  # Torque has no -x; completed jobs stay as C

    # Torque's arrays: -t 1-N; its ids as PBS Pro's (123[3].server); logs <name>.o123-3.
    array_flag = "-t"
    subjob_log_separator = "-"
    directive_keys: ClassVar[Mapping[str, str]] = {
        **{k: v for k, v in PBSSystem.directive_keys.items() if k not in ("resources", "array")},
        "nodes": r"^-l\s.*\b(nodes|ncpus|procs)=",
        "memory": r"^-l\s.*\b(p?v?mem)=",
        "array": r"^-t\b",
    }

    def array_limit_argv(self) -> list[str]:
        return ["qmgr", "-c", "list server"]  # max_job_array_size


class MoabSystem(TorqueSystem):
    """Moab over Torque, as dask-jobqueue's MoabCluster: the same job script (msub reads
    ``#PBS`` lines), submitted with ``msub`` and cancelled with ``canceljob``.

    The keeper follows the jobs with the resource manager's ``qstat -f``, as Moab sites'
    workflow tools do (Rocoto's MoabTorque system): Moab has no state query whose output
    we have seen from a real site. So the job id must be the resource manager's (Moab's
    default with Torque: ``msub`` answers ``4711`` or ``4711.server``); an answer of Moab's
    own (``Moab.12``) is refused as unclear, with where to find the job.
    """

    name = "moab"
    list_jobs = "showq -u $USER"
    arrays = False  # msub's arrays are Moab's own ids, which Torque's qstat does not know

    def submit_argv(self, script: Path) -> list[str]:
        return ["msub", str(script)]

    def parse_job_id(self, stdout: str) -> str:
        # msub prints the id alone on its last line (often after an empty one).
        lines = [line.strip() for line in stdout.splitlines() if line.strip()]
        return must_match(r"^(\d+(?:\.\S+)?)$", lines[-1] if lines else "", "a Torque job id")[1]

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["canceljob", *job_ids]

    def cancel(self, job_ids: Iterable[str]) -> None:
        """canceljob's words for a job that has already ended are not on record here: when it
        fails, the jobs the resource manager no longer runs are not an error."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return
        done = _process.run(self.cancel_argv(ids), check=False)
        if done.returncode == 0:
            return
        states = self.query(ids)
        if any(not states[j].state.finished and states[j].state is not JobState.UNKNOWN for j in ids):
            raise done.failure(f"{self.name} could not cancel")


def count_user_jobs(text: str, queue: str | None = None) -> int:
    """Jobs pending or running in ``qstat -u USER -t`` (of ``queue`` only, where given: the
    third column): one line per job or subjob after the header's dashes (``7001.pbs01  alice
    workq ... R 00:01``); an array's own line (``7002[].pbs01``) is not a job of its own, and
    finished ones (F, X; Torque's C) are not pending or running. The state is the last but
    one column."""
    count = 0
    for line in text.splitlines():
        words = line.split()
        if re.match(r"^\d+(\[\d+\])?\.", line) and len(words) > 2 and words[-2] not in ("C", "F", "X"):
            # qstat cuts the queue's name to its column's 8 characters (small-express: small-ex).
            count += queue is None or words[2] == queue or (len(words[2]) == 8 and queue.startswith(words[2]))
    return count


def _ask_site(queue: str | None) -> tuple[str, str | None, str] | None:
    try:
        server = _process.run(["qmgr", "-c", "list server"], timeout=30).stdout
    except CommandError:
        return None
    queue = queue or attributes(server).get("default_queue")
    text = ""
    if queue:
        with contextlib.suppress(CommandError):  # no such queue: qsub will say
            text = _process.run(["qstat", "-Qf", queue], timeout=30).stdout
    return server, queue, text


#: The project of a job not given one (``-P``): PBS Pro's.
DEFAULT_PROJECT = "_pbs_project_default"


class Owner(NamedTuple):
    """Whose a job is, for PBS's entity limits: ``[u:user=N]``, ``[g:group=N]``,
    ``[p:project=N]`` (each also ``PBS_GENERIC``, for every user, group, project)."""

    user: str
    group: str | None = None
    project: str | None = None


def parse_server_caps(text: str, who: Owner | str) -> list[Cap]:
    """The caps on ``who``'s jobs in ``qmgr -c "list server"``, as a queue's
    (:func:`parse_queue_caps`), for all the user's jobs on the server. qmgr lists an entity
    limit one entry a line, each under the attribute's name: they are read together."""
    return _caps(attributes(text), _owner(who), "qmgr list server", "the server's, all users", ())


def parse_queue_caps(text: str, queue: str, who: Owner | str) -> list[Cap]:
    """The caps on the jobs of ``who`` (a user, or a user with the job's group and project)
    in the block of ``queue`` of ``qstat -Qf``, which count the user's jobs in that queue:
    PBS Pro's ``max_queued`` and ``max_run`` (``[u:PBS_GENERIC=20]`` for every user,
    ``[u:alice=5]`` for one; the user's own wins) and ``max_run_res.ncpus``, ``.mem``,
    ``.nodect`` (what the user's running jobs may hold together), Torque's
    ``max_user_queuable`` and ``max_user_run``; the same of the job's group (``[g:...]``,
    and PBS's older ``max_group_run``) and project (``[p:...]``), which the group's members and
    the project's users share; and the limits of all users together, ``[o:PBS_ALL=N]`` and
    Torque's ``max_queuable``, ``max_running``. A limit shared with others is a bound on the
    user's only while they leave it free: their jobs are not counted."""
    where = f"queue {queue}"
    found = queue_attributes(text, queue)
    return _caps(found, _owner(who), where, f"{where}, all users", (("queue", queue),))


def _owner(who: Owner | str) -> Owner:
    return who if isinstance(who, Owner) else Owner(who)


def _caps(
    found: Mapping[str, str], who: Owner, where: str, everyone: str, scope: tuple[tuple[str, str], ...]
) -> list[Cap]:
    caps = [replace(cap, scope=scope) for cap in _entity_caps(found, who, where)]
    resources = (("max_run_res.ncpus", "cpu"), ("max_run_res.mem", "mem"), ("max_run_res.nodect", "node"))
    for name, per in resources:
        value = found.get(name, "")
        entries = [(entry, f"{where}{whose}") for entry, whose in _entity_values(value, who)]
        for cap, whose in [*entries, (_overall(value), everyone)]:
            amount = None if cap is None else _mib(cap[1]) if per == "mem" else _whole(cap[1])
            if cap and amount is not None:
                caps.append(Cap(amount, True, f"{name} = {cap[0]} ({whose})", per=per))
    for name, running in (("max_run", True), ("max_queued", False)):
        overall = _overall(found.get(name, ""))
        if overall and overall[1].isdigit():
            caps.append(Cap(int(overall[1]), running, f"{name} = {overall[0]} ({everyone})", scope=scope))
    for name, running in (("max_queuable", False), ("max_running", True)):
        value = found.get(name, "")
        if value.isdigit():
            caps.append(Cap(int(value), running, f"{name} = {value} ({everyone})", scope=scope))
    return caps


def parse_resources_max(found: Mapping[str, str], where: str) -> list[JobLimit]:
    """The limits on one job in ``resources_max``: walltime, ncpus (the job's CPUs), mem and
    nodect (its nodes). qsub refuses a job past them ("Job exceeds queue resource limits")."""
    limits = []
    walltime = found.get("resources_max.walltime", "")
    if walltime:
        with contextlib.suppress(SpecError):  # a form we do not read: qsub will say
            limits.append(
                JobLimit(
                    "walltime", parse_walltime(walltime), f"resources_max.walltime = {walltime} ({where})"
                )
            )
    for name, what in (("ncpus", "cpu"), ("nodect", "node"), ("nodes", "node")):  # nodes: Torque's
        value = found.get(f"resources_max.{name}", "")
        if value.isdigit():
            limits.append(JobLimit(what, int(value), f"resources_max.{name} = {value} ({where})"))
    mem = found.get("resources_max.mem", "")
    if _mib(mem) is not None:
        limits.append(JobLimit("mem", _mib(mem) or 0, f"resources_max.mem = {mem} ({where})"))
    return limits


def attributes(text: str) -> dict[str, str]:
    """``name = value`` lines (qmgr's ``list server``, one block of ``qstat -Qf``) as a dict;
    an attribute listed on several lines (an entity limit, one entry a line) joined by commas."""
    found: dict[str, str] = {}
    for name, value in re.findall(r"^\s*([\w.]+)\s*=\s*(.*?)\s*$", text, re.M):
        found[name] = f"{found[name]},{value}" if name in found else value
    return found


def queue_attributes(text: str, queue: str) -> dict[str, str]:
    """The attributes of ``queue``'s block (``Queue: workq``) in ``qstat -Qf``."""
    blocks = re.split(r"^Queue: *(\S+) *$", text, flags=re.M)
    for name, block in zip(blocks[1::2], blocks[2::2], strict=True):
        if name == queue:
            return attributes(block)
    return {}


def _entity_caps(found: Mapping[str, str], who: Owner, where: str) -> list[Cap]:
    caps: list[Cap] = []
    for name, running in (("max_queued", False), ("max_run", True)):
        for cap, whose in _entity_values(found.get(name, ""), who):
            if cap and cap[1].isdigit():
                caps.append(Cap(int(cap[1]), running, f"{name} = {cap[0]} ({where}{whose})"))
    # The older per-user and per-group limits (Torque's, which PBS Pro still reads): queued
    # counts pending and running jobs, as max_queued does.
    older = (
        ("max_user_queuable", False, ""),
        ("max_user_run", True, ""),
        ("max_group_run", True, f", all jobs of group {who.group}"),
    )
    for name, running, whose in older:
        value = found.get(name, "")
        if value.isdigit() and (who.group or not whose):
            caps.append(Cap(int(value), running, f"{name} = {value} ({where}{whose})"))
    return caps


def _entity_values(value: str, who: Owner) -> list[tuple[tuple[str, str] | None, str]]:
    """The entries of an entity limit that bind ``who``'s job, each with the words for whose
    jobs it counts: the user's ("u"), the group's ("g"), the project's ("p")."""
    kinds = (
        ("u", who.user, ""),
        ("g", who.group, f", all jobs of group {who.group}"),
        ("p", who.project, f", all jobs of project {who.project}"),
    )
    return [(_entity_value(value, name, kind), whose) for kind, name, whose in kinds if name]


def _entity_value(value: str, name: str, kind: str = "u") -> tuple[str, str] | None:
    """The entry of an entity limit (``[u:PBS_GENERIC=4],[u:alice=99]``) that binds the user,
    group or project ``name`` (``kind``: u, g, p): their own, else every one's; as written and
    its value. None: neither is set."""
    for who in (re.escape(name), "PBS_GENERIC"):
        found = re.search(rf"\[{kind}:{who}=([^\]]+)\]", value)
        if found:
            return found[0], found[1]
    return None


def _overall(value: str) -> tuple[str, str] | None:
    """The entry of an entity limit for all users together (``[o:PBS_ALL=1024]``)."""
    found = re.search(r"\[o:PBS_ALL=([^\]]+)\]", value)
    return (found[0], found[1]) if found else None


def _whole(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _mib(value: str) -> int | None:
    """A PBS size (``250gb``, ``11534336kb``, ``100``: bytes) in MiB; None if not one."""
    found = re.fullmatch(r"(\d+)([kmgtp]?)(b|w)?", value.strip().lower())
    if found is None:
        return None
    scale = int(1024 ** "bkmgtp".index(found[2] or "b")) * (8 if found[3] == "w" else 1)
    return -(-int(found[1]) * scale // 2**20)


def parse_qstat_full(text: str) -> dict[str, dict[str, str]]:
    """``qstat -f`` blocks as {job id: {attribute: value}}, wrapped lines joined."""
    jobs: dict[str, dict[str, str]] = {}
    attrs: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            attrs = jobs.setdefault(line.split(":", 1)[1].strip(), {})
            key = ""
        elif " = " in line and re.match(r"^ {4}\S", line):
            key, _, value = line[4:].partition(" = ")
            key = key.lower()
            attrs[key] = value
        elif key and line[:1] in ("\t", " ") and line.strip():
            # Continuation: qstat wraps long values at a fixed width onto indented
            # lines; the break may fall right after a space, so keep trailing ones.
            attrs[key] += line.lstrip()
    return {job: {k: v.strip() for k, v in a.items()} for job, a in jobs.items()}


def _status(job_id: str, attrs: dict[str, str]) -> JobStatus:
    letter = attrs.get("job_state", "")
    node = attrs.get("exec_host", "").split("/")[0].split("+")[0] or None
    comment = attrs.get("comment")
    if letter in STATES:
        state = STATES[letter]
        reason = comment if state is JobState.PENDING else None
        return JobStatus(job_id, state, reason=reason, node=node)
    if letter in ("F", "X", "C"):
        exit_text = attrs.get("exit_status")
        exit_code = int(exit_text) if exit_text and re.match(r"^-?\d+$", exit_text) else None
        return JobStatus(
            job_id,
            _finished_state(exit_code, comment),
            reason=comment,
            node=node,
            exit_code=exit_code,
        )
    return JobStatus(job_id, JobState.UNKNOWN, reason=f"job_state {letter}" if letter else None)


def _finished_state(exit_code: int | None, comment: str | None) -> JobState:
    text = (comment or "").lower()
    if exit_code in WALLTIME_EXIT or ("walltime" in text and "exceeded" in text):
        return JobState.TIMEOUT
    if exit_code == 0:
        return JobState.COMPLETED
    if exit_code is None:
        # Deleted before it ran: no exit status at all.
        return JobState.CANCELLED if "delet" in text else JobState.UNKNOWN
    if exit_code in SIGTERM_EXIT and "exceeded" not in text:
        return JobState.CANCELLED
    return JobState.FAILED


def _rename(status: JobStatus, job_id: str) -> JobStatus:
    if status.job_id == job_id:
        return status
    return JobStatus(job_id, status.state, status.reason, status.node, status.exit_code)
