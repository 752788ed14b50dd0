"""Grid Engine (SGE, Son of Grid Engine, Univa/Altair GE): qsub, qstat, qacct, qdel."""

from __future__ import annotations

import fnmatch
import getpass
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from dask_hpc import _process
from dask_hpc.errors import CommandError, ParseError, SpecError
from dask_hpc.spec import JobSpec, format_walltime
from dask_hpc.systems.base import (
    BatchSystem,
    Cap,
    JobState,
    JobStatus,
    must_match,
    read_lines,
    resource_line,
    setting_line,
)
from dask_hpc.systems.nodes import each_node, node_script_lines

__all__ = [
    "NO_PARALLEL_ENVIRONMENT",
    "SGESystem",
    "count_jobs",
    "parse_conf_caps",
    "parse_qacct",
    "parse_qacct_tasks",
    "parse_resource_quotas",
]

#: ``sge-parallel-environment: none``: ask for no parallel environment; a job of several cores
#: gets one slot, as dask-jobqueue's SGECluster writes it (and its SGECluster here, by default).
NO_PARALLEL_ENVIRONMENT = "none"

# qstat's state letters; the first letter that matches decides.
STATE_LETTERS: list[tuple[str, JobState]] = [
    ("E", JobState.FAILED),  # error state: will not run without qmod -cj
    ("d", JobState.RUNNING),  # being deleted
    ("h", JobState.PENDING),
    ("q", JobState.PENDING),
    ("w", JobState.PENDING),
    ("r", JobState.RUNNING),
    ("t", JobState.RUNNING),
    ("R", JobState.RUNNING),
    ("s", JobState.RUNNING),
    ("S", JobState.RUNNING),
]
STATE_REASONS = {"h": "held", "q": "queued, waiting for a free slot"}

# qacct's "failed" codes that are not the job's own failure.
FAILED_TIMEOUT = {37}  # qmaster enforced h_rt, h_cpu, or h_vmem limit
FAILED_CANCELLED = {100}  # killed by a signal (qdel), "assumedly after job"


class SGESystem(BatchSystem):
    name = "sge"
    list_jobs = "qstat -u $USER"
    directive_prefix = "#$"
    bare_walltime = "s"
    job_id_variable = "JOB_ID"
    # Grid Engine refuses these in names; it also drops quote characters.
    job_name_forbidden = r"\s/:@\\*?'\""
    # Its directive parser drops quote characters, even escaped ones.
    path_forbidden = "'\""
    directive_keys: ClassVar[Mapping[str, str]] = {
        "job_name": r"^-N\b",
        "shell": r"^-S\b",
        "walltime": r"^-l\s.*\bh_rt=",
        "memory": r"^-l\s.*\b(mem_free|h_vmem|s_vmem|virtual_free|h_rss|m_mem_free)=",
        "cores": r"^-pe\b",
        "queue": r"^-q\b",
        "account": r"^-P\b",
        "output": r"^-o\b",
        "error": r"^-e\b",
        "array": r"^-t\b",
    }
    setting_keys: ClassVar[Mapping[str, str]] = {
        "sge-parallel-environment": "parallel_environment",
        "resource-spec": "resource_spec",
        "sge-gpu-resource": "gpu_resource",
    }

    def __init__(
        self,
        parallel_environment: str | None = None,
        resource_spec: str | None = None,
        gpu_resource: str | None = None,
    ) -> None:
        #: The site's consumable complex of GPUs (qconf -sc lists them, often ``gpu``): Grid
        #: Engine has no GPU request of its own. Asked as the job's (consumable JOB).
        self.gpu_resource = None if gpu_resource is None else setting_line("sge_gpu_resource", gpu_resource)
        #: The parallel environment that gives a job several slots on one host: its name is
        #: the site's (qconf -spl lists them), so none is assumed (as dask-jobqueue).
        self.parallel_environment = (
            None
            if parallel_environment is None
            else setting_line("sge_parallel_environment", parallel_environment)
        )
        #: dask-jobqueue's resource_spec: a ``-l`` line of the user's (``h_vmem=8G,mem_free=8G``);
        #: where it asks for memory, ours is left out.
        self.resource_spec = (
            None if resource_spec is None else resource_line("resource_spec", resource_spec, r"\b[hs]_rt\s*=")
        )

    def slots(self, spec: JobSpec) -> int:
        """The slots the job asks for, among which a per-slot request is shared: the cores
        through the site's parallel environment, the N of the user's own ``-pe NAME N``
        (its lowest, for a range), else one (no parallel environment: one slot)."""
        for line in spec.job_extra_directives:
            match = re.match(r"^-pe\s+\S+\s+(\d+)", line.strip())
            if match:
                return max(1, int(match[1]))
        skipped = any("-pe" in s for s in spec.job_directives_skip)
        several = self.parallel_environment not in (None, NO_PARALLEL_ENVIRONMENT) and spec.cores > 1
        return spec.cores if several and not skipped else 1

    cancel_gone_phrases = ("does not exist",)
    cancel_done_phrases = ("has registered the job", "has deleted job", "is already in deletion")

    def directives(self, spec: JobSpec) -> list[str]:
        d = [
            f"-N {self.quote(self.job_name(spec))}",
            "-S /bin/bash",
            f"-l h_rt={format_walltime(spec.walltime)}",
            # Per slot on most sites; a request, not a limit (h_vmem would kill
            # Python's large virtual mappings).
            f"-l mem_free={math.ceil(spec.memory / self.slots(spec) / 2**20)}M",
        ]
        if self.resource_spec:
            line = f"-l {self.resource_spec}"
            d = [x for x in d if not (self.sets(x) & self.sets(line) - {"walltime"})] + [line]
        if spec.nodes > 1:
            _refuse_nodes_without_a_parallel_environment(spec, self.parallel_environment)
        if spec.cores > 1 or spec.nodes > 1:
            if self.parallel_environment is None:
                _refuse_cores_without_a_parallel_environment(spec)
            elif self.parallel_environment != NO_PARALLEL_ENVIRONMENT:
                # Several nodes: the parallel environment's allocation_rule (the cores) puts
                # that many slots on each node.
                d.append(f"-pe {self.parallel_environment} {spec.cores * spec.nodes}")
        if spec.gpus:
            d.append(self._gpus(spec))
        if spec.queue:
            d.append(f"-q {self.quote(spec.queue)}")
        if spec.account:
            d.append(f"-P {self.quote(spec.account)}")
        logs = self.log_directory(spec)
        if logs:
            d.append(f"-o {self.quote(logs + '/')}")
            d.append(f"-e {self.quote(logs + '/')}")
        return d

    def check_site(self, spec: JobSpec) -> None:
        """A job of several nodes needs a parallel environment (ours, or the user's own
        ``-pe NAME N``) that puts the same slots on each host, ``allocation_rule`` N (its
        cores for ours; $fill_up or $round_robin spread them as they come, $pe_slots keeps
        them on one host), and lets qrsh -inherit start tasks on them (``control_slaves
        TRUE``): read with ``qconf -sp`` and refused in one line otherwise (sge_pe(5)). With
        the user's own ``-pe NAME N``, each host's slots are N over the nodes."""
        if spec.nodes == 1:
            return
        own = next((d.split() for d in spec.job_extra_directives if re.match(r"^-pe\s+\S+", d.strip())), None)
        name = own[1] if own else self.parallel_environment
        if name is None or name == NO_PARALLEL_ENVIRONMENT:
            return  # refused when the script is rendered
        # The slots each host must get: the cores (ours), or the user's -pe slots over the nodes.
        slots = spec.cores
        if own and len(own) > 2 and own[2].isdigit():
            slots = int(own[2]) // spec.nodes if int(own[2]) % spec.nodes == 0 else 0
        try:
            done = _process.run(["qconf", "-sp", name], timeout=30)
        except CommandError as exc:
            said = " ".join(f"{exc.stderr} {exc.stdout}".split())
            if "is not a parallel environment" not in said:
                return  # no answer, or not from this host (neither submit nor admin): qsub will say
            raise SpecError(
                "nodes",
                spec.nodes,
                f"Grid Engine does not know the parallel environment {name} ({said}); qconf -spl "
                "lists them: set sge-parallel-environment in dask-hpc's configuration",
            ) from None
        pe = parse_parallel_environment(done.stdout)
        rule, slaves = pe.get("allocation_rule", "?"), pe.get("control_slaves", "?")
        why = None
        if rule != str(slots) or slots == 0:
            each = f"{slots} slots" if slots else "the same slots"
            why = f"has allocation_rule {rule}, which does not put {each} on each of {spec.nodes} hosts"
        elif slaves.upper() != "TRUE":
            why = f"has control_slaves {slaves}, so qrsh -inherit cannot start workers on its other hosts"
        if why:
            raise SpecError(
                "nodes",
                spec.nodes,
                f"parallel environment {name} {why} (qconf -sp {name}): a job of several nodes needs "
                f"one with allocation_rule {slots or spec.cores} and control_slaves TRUE (qconf -spl lists "
                "them; set sge-parallel-environment), or --nodes 1 with more --processes",
            )

    def _gpus(self, spec: JobSpec) -> str:
        """``-l <the site's GPU complex>=N``: refused in one line where none is configured
        (its name is the site's) or for several nodes (a job's consumable is its first host's)."""
        if self.gpu_resource is None:
            raise SpecError(
                "gpus",
                spec.gpus,
                "Grid Engine has no GPU request of its own: name the site's consumable of GPUs "
                "(qconf -sc lists them, e.g. gpu) with sge-gpu-resource in dask-hpc's "
                "configuration (dask-hpc.yaml: `sge-gpu-resource: gpu`, or the environment's "
                "DASK_DASK_HPC__SGE_GPU_RESOURCE=gpu), or give -l yourself with --job-extra-directive "
                "(job_extra_directives=)",
            )
        if spec.nodes > 1:
            raise SpecError(
                "gpus",
                spec.gpus,
                "a Grid Engine job's consumable is counted on its first host: GPUs on several "
                "nodes are not asked here; use --nodes 1, or give -l yourself",
            )
        return f"-l {self.gpu_resource}={spec.gpus}"

    # qrsh -inherit starts a task on a host of the job's parallel environment (its
    # control_slaves must be TRUE); $PE_HOSTFILE lists each host once, with its slots.
    node_launch = "qrsh -inherit"

    def node_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        start = 'qrsh -inherit -nostdin "$node" /bin/bash "$node_script"'
        return node_script_lines(
            command, self.node_launch, each_node("""$(awk '{print $1}' "$PE_HOSTFILE")""", start)
        )

    # ---- arrays: -t 1-N; task 3 of job 48 is 48.3 (qstat's ja-task-ID, qacct -t, log names)

    arrays = True
    default_array_limit = 75000  # max_aj_tasks's default (sge_conf(5))

    def array_header(self, header: list[str], spec: JobSpec, tasks: int) -> list[str]:
        # -o DIR/: Grid Engine names each task's logs <name>.o<job>.<task> (log_files).
        return [*header, f"-t 1-{tasks}"]

    def task_ids(self, stdout: str, tasks: int) -> list[str]:
        # -terse prints "48.1-5:1" for an array.
        job_id = self.parse_job_id(stdout)
        return [f"{job_id}.{i}" for i in range(1, tasks + 1)]

    def array_limit_argv(self) -> list[str]:
        return ["qconf", "-sconf"]

    def parse_array_limit(self, stdout: str) -> int | None:
        match = re.search(r"^max_aj_tasks\s+(\d+)", stdout, re.M)
        if match is None:
            return None
        return int(match[1]) or None  # 0: no limit (the default is used, to keep arrays small)

    def job_id_from_env(self, env: Mapping[str, str]) -> str | None:
        job, task = env.get("JOB_ID"), env.get("SGE_TASK_ID", "")
        if job and task.isdigit():  # "undefined" outside an array
            return f"{job}.{task}"
        return super().job_id_from_env(env)

    # ---- caps (sge_conf(5)): max_u_jobs, the jobs each user may have; max_jobs, the jobs
    # ---- the whole cluster may have, all users together. Both count an array once. And the
    # ---- resource quotas' slots (sge_resource_quota(5), qconf -srqs) on running jobs.

    def caps(self, spec: JobSpec | None = None) -> list[Cap]:
        quotas = self._quota_caps(spec or JobSpec())
        try:
            done = _process.run(["qconf", "-sconf"], timeout=30)
        except CommandError:
            return quotas
        user, cluster = parse_conf_caps(done.stdout)
        caps = []
        if user:
            caps.append(Cap(user, False, f"max_u_jobs={user} (qconf -sconf)", arrays_count_once=True))
        if cluster:
            # What is left to this user is the cluster's cap less the other users' jobs, which
            # change without us: read again with the caps (every minute, and after a refusal).
            try:
                everyone = _process.run(["qstat", "-xml", "-u", "*"], timeout=self.query_timeout)
                others = count_jobs(everyone.stdout, but=getpass.getuser())
            except (CommandError, ParseError):
                others = 0
            caps.append(
                Cap(
                    max(0, cluster - others),
                    False,
                    f"max_jobs={cluster} (qconf -sconf: all users together; others hold {others})",
                    arrays_count_once=True,
                )
            )
        return caps + quotas

    def caps_scope(self, spec: JobSpec) -> tuple[str | None, ...]:
        return (self.job_queue(spec), self.job_account(spec), self.job_pe(spec))

    def job_pe(self, spec: JobSpec) -> str | None:
        """The parallel environment the job asks for: the user's ``-pe NAME``, else the
        site's for a job of several slots; None: none (one slot)."""
        for line in spec.job_extra_directives:
            match = re.match(r"^-pe\s+(\S+)", line.strip())
            if match:
                return match[1]
        return self.parallel_environment if self.slots(spec) > 1 else None

    def _quota_caps(self, spec: JobSpec) -> list[Cap]:
        try:
            done = _process.run(["qconf", "-srqs"], timeout=30)
        except CommandError:
            return []  # none defined ("no resource quota set list defined"), or no answer
        return parse_resource_quotas(
            done.stdout,
            getpass.getuser(),
            queue=self.job_queue(spec),
            project=self.job_account(spec),
            pe=self.job_pe(spec),
        )

    def user_jobs(self) -> int | None:
        """Jobs, not tasks: what max_u_jobs counts."""
        try:
            done = _process.run(self.query_argv([]), timeout=self.query_timeout)
            return count_jobs(done.stdout)
        except (CommandError, ParseError):
            return None

    def submit_argv(self, script: Path) -> list[str]:
        return ["qsub", "-terse", str(script)]

    def parse_job_id(self, stdout: str) -> str:
        # -terse prints "ID" (or "ID.1-4:1" for arrays).
        return must_match(r"^\s*(\d+)", stdout, "a Grid Engine job id")[1]

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        # qstat cannot list states for given ids: ask for the user's jobs, once.
        return ["qstat", "-xml", "-u", getpass.getuser()]

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        try:
            root = ET.fromstring(stdout)
        except ET.ParseError as exc:
            raise ParseError(f"could not read qstat -xml output: {exc}") from None
        found: dict[str, JobStatus] = {}
        for job in root.iter("job_list"):
            job_id = (job.findtext("JB_job_number") or "").strip()
            letters = (job.findtext("state") or "").strip()
            state = next((s for c, s in STATE_LETTERS if c in letters), JobState.UNKNOWN)
            queue = (job.findtext("queue_name") or "").strip()
            node = queue.partition("@")[2] or None
            reason = next((STATE_REASONS[c] for c in "hq" if c in letters), None)
            if state is JobState.PENDING:
                reason = f"{reason} ({letters})" if reason else letters
            tasks = (job.findtext("tasks") or "").strip()
            for one in [f"{job_id}.{t}" for t in _task_numbers(tasks)] if tasks else [job_id]:
                found[one] = JobStatus(one, state, reason=reason, node=node)
        return {j: found.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def complete_query(self, statuses: dict[str, JobStatus]) -> dict[str, JobStatus]:
        # Finished jobs leave qstat; their end is in the accounting file (written
        # a few seconds late: until then the job stays UNKNOWN). Only jobs that
        # just left are looked up: one qacct for a job, or for all the tasks of an array
        # that left together (qacct -j 48 lists every task's record).
        left: dict[str, list[str]] = {}
        for job_id, status in statuses.items():
            if status.state is JobState.UNKNOWN:
                left.setdefault(job_id.partition(".")[0], []).append(job_id)
        for job, ids in left.items():
            task = ids[0].partition(".")[2]
            argv = ["qacct", "-j", job, *(["-t", task] if len(ids) == 1 and task else [])]
            done = _process.run(argv, timeout=self.query_timeout, check=False)
            if done.returncode != 0:
                continue
            if len(ids) == 1:
                statuses[ids[0]] = parse_qacct(ids[0], done.stdout)
            else:
                found = parse_qacct_tasks(job, done.stdout)
                statuses.update({j: found[j] for j in ids if j in found})
        return statuses

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        # -o/-e name a directory: Grid Engine writes <name>.o<id> and <name>.e<id> there.
        return f"{job_name}.o{job_id}", f"{job_name}.e{job_id}"

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def nodes_argv(self) -> list[str]:
        return ["qconf", "-sel"]  # the execution hosts, one a line

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        nodes = read_lines(env.get("PE_HOSTFILE"))
        return nodes or tuple(h for h in [env.get("HOSTNAME", "")] if h)


def parse_conf_caps(conf: str) -> tuple[int, int]:
    """``max_u_jobs`` and ``max_jobs`` from ``qconf -sconf`` (0: no limit, or not there)."""

    def value(name: str) -> int:
        match = re.search(rf"^{name}\s+(\d+)\s*$", conf, re.M)
        return int(match[1]) if match else 0

    return value("max_u_jobs"), value("max_jobs")


def parse_resource_quotas(
    text: str, user: str, *, queue: str | None = None, project: str | None = None, pe: str | None = None
) -> list[Cap]:
    """The caps on running jobs in ``qconf -srqs``: each enabled resource quota set's first
    rule that binds a job of ``user`` (sge_resource_quota(5): a set's rules are tried in
    order, the first that matches is the set's), where it limits ``slots``. A job holds one
    slot, or its cores in a parallel environment (``pe``): the cap counts jobs, or CPUs.

    A rule matches where its ``users`` take the user (``*``, a name or pattern, ``{...}``
    for each; ``!name`` leaves one out), its ``queues`` the job's ``queue``, its
    ``projects`` the job's ``project`` (-P) and its ``pes`` the job's parallel environment
    (``!*``: a job with none); a filter that names some while the job gives none (no -q,
    no -P) does not match. A rule of ``hosts {*}`` limits each host: it is the set's rule
    for every job, and no cap on the user's; one of some hosts may or may not be the job's,
    and the next rule is tried. ``users {*}`` limits each user's jobs; ``users *`` or none,
    all users' together (a bound on the user's only while the others leave it free: theirs
    are not counted). An entry this cannot read (``@userset``) does not match."""
    caps: list[Cap] = []
    text = re.sub(r"\\\n\s*", " ", text)  # a value continued on the next line (backslash)
    for block in re.findall(r"\{\s*\n(.*?)^\s*\}", text, re.M | re.S):
        fields = re.findall(r"^\s*(\w+)\s+(.*?)\s*$", block, re.M)
        name = next((v for k, v in fields if k == "name"), "?")
        if next((v for k, v in fields if k == "enabled"), "FALSE").upper() != "TRUE":
            continue  # sge_resource_quota(5): a set is disabled unless enabled TRUE
        job = {"users": user, "projects": project, "pes": pe, "queues": queue}
        for rule in (v for k, v in fields if k == "limit"):
            filters, limits = _rule_parts(rule)
            tokens = filters.split()
            pairs = dict(zip(tokens[0::2], tokens[1::2], strict=False))
            pairs.pop("name", None)
            hosts = pairs.pop("hosts", "*")
            if not all(_quota_matches(pairs[k], job.get(k)) for k in pairs):
                continue
            if hosts != "*":  # of each host ({*}: the set's rule, no cap), or of some hosts
                if hosts.strip("{}") == "*":
                    break
                continue
            slots = re.search(r"(?:^|,)\s*slots\s*=\s*(\d+)\b", limits)
            if slots:
                users = pairs.get("users", "*")
                whose = (
                    "each user"
                    if users.startswith("{")
                    else "all users together"
                    if users == "*"
                    else f"users {users} together"
                )
                words = f"slots={slots[1]} (resource quota {name}: limit {' '.join(rule.split())}; {whose})"
                scope = (("queue", queue),) if "queues" in pairs and queue else ()
                caps.append(Cap(int(slots[1]), True, words, per="cpu" if pe else "job", scope=scope))
            break  # the first rule that matches the job is the set's
    return caps


def _rule_parts(rule: str) -> tuple[str, str]:
    """A rule's filters and its limits: ``users {*} to slots=4``; ``to slots=100`` has none."""
    parts = re.split(r"(?:^|\s)to\s+", rule.strip(), maxsplit=1)
    return (parts[0], parts[1]) if len(parts) == 2 else ("", rule)


def _quota_matches(value: str, item: str | None) -> bool:
    """Whether a resource quota rule's filter (``{*}``, ``alice,bob``, ``{!bob}``, ``!*``,
    ``short*``: patterns, as Grid Engine's) takes ``item`` (None: the job gives none)."""
    entries = [e.strip() for e in value.strip("{}").split(",") if e.strip()]
    if "!*" in entries:  # the jobs that give none
        return item is None
    if item is None or any(e.startswith("!") and fnmatch.fnmatchcase(item, e[1:]) for e in entries):
        return False
    taken = [e for e in entries if not e.startswith("!")]
    return any(fnmatch.fnmatchcase(item, e) for e in taken) or (not taken and bool(entries))


def count_jobs(qstat_xml: str, but: str | None = None) -> int:
    """The jobs in ``qstat -xml`` (an array once, as Grid Engine's caps count it), leaving
    out those of user ``but``. ParseError when it is not XML."""
    try:
        root = ET.fromstring(qstat_xml)
    except ET.ParseError as exc:
        raise ParseError(f"could not read qstat -xml output: {exc}") from None
    return len(
        {
            (j.findtext("JB_job_number") or "").strip()
            for j in root.iter("job_list")
            if but is None or (j.findtext("JB_owner") or "").strip() != but
        }
    )


def _task_numbers(tasks: str) -> list[int]:
    """An array's task numbers as qstat shows them: ``3``, ``2-5:1``, ``2-9:2``, ``1,4-5:1``."""
    numbers: list[int] = []
    for part in tasks.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if match:
            first, last, step = int(match[1]), int(match[2] or match[1]), int(match[3] or 1)
            numbers += range(first, last + 1, max(1, step))
    return numbers


def _qacct_records(stdout: str) -> list[dict[str, str]]:
    """``qacct -j`` records (between lines of ``=``), each as {field: value}."""
    records = []
    for text in re.split(r"^=+\s*$", stdout, flags=re.M):
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key:
                fields[key] = value.strip()
        if "jobnumber" in fields:
            records.append(fields)
    return records


def parse_qacct_tasks(job: str, stdout: str) -> dict[str, JobStatus]:
    """The tasks of array ``job`` in ``qacct -j JOB``, by their ids (``48.3``): each task's
    last record (ids are reused after a restart)."""
    found: dict[str, JobStatus] = {}
    for fields in _qacct_records(stdout):
        task = fields.get("taskid", "undefined")
        if task.isdigit():
            found[f"{job}.{task}"] = _qacct_status(f"{job}.{task}", fields)
    return found


def parse_qacct(job_id: str, stdout: str) -> JobStatus:
    """The last record of ``qacct -j ID`` (ids are reused after a restart)."""
    records = _qacct_records(stdout)
    if not records:
        return JobStatus(job_id, JobState.UNKNOWN)
    return _qacct_status(job_id, records[-1])


def _qacct_status(job_id: str, fields: Mapping[str, str]) -> JobStatus:
    failed_text = fields.get("failed", "0")
    failed = int(failed_text.split()[0]) if failed_text.split() else 0
    exit_code = int(fields.get("exit_status", "0").split()[0])
    node = fields.get("hostname") or None
    reason = failed_text.partition(":")[2].strip() or None
    if failed in FAILED_TIMEOUT:
        state = JobState.TIMEOUT
    elif failed in FAILED_CANCELLED:
        state = JobState.CANCELLED
    elif failed or exit_code:
        state = JobState.FAILED
    else:
        state = JobState.COMPLETED
    return JobStatus(job_id, state, reason=reason, node=node, exit_code=exit_code)


def parse_parallel_environment(text: str) -> dict[str, str]:
    """``qconf -sp NAME``: one ``name value`` a line (sge_pe(5))."""
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {p[0]: p[1].strip() if len(p) > 1 else "" for p in pairs}


def _refuse_nodes_without_a_parallel_environment(spec: JobSpec, parallel_environment: str | None) -> None:
    """A job of several nodes is a parallel environment's slots spread over hosts: refused in
    one line without one (the user's own ``-pe`` line counts)."""
    own = any(re.match(r"^-pe\b", d) for d in spec.job_extra_directives)
    if own or parallel_environment not in (None, NO_PARALLEL_ENVIRONMENT):
        return
    raise SpecError(
        "nodes",
        spec.nodes,
        "a Grid Engine job holds several nodes only through a parallel environment that puts "
        f"{spec.cores} slots on each host (allocation_rule {spec.cores}, control_slaves TRUE): "
        "name it with sge-parallel-environment in dask-hpc's configuration (qconf -spl lists them)",
    )


def _refuse_cores_without_a_parallel_environment(spec: JobSpec) -> None:
    """Several cores need a parallel environment, whose name only the site knows: refused in
    one line unless the user gives one (``-pe NAME N``) or leaves it out on purpose."""
    own = any(re.match(r"^-pe\b", d) for d in spec.job_extra_directives)
    skipped = any("-pe" in s for s in spec.job_directives_skip)
    if not (own or skipped):
        raise SpecError(
            "cores",
            spec.cores,
            "Grid Engine gives a job several cores only through a parallel environment, and "
            "its name is the site's: set sge-parallel-environment in dask-hpc's configuration "
            f"(qconf -spl lists them), or give --job-extra-directive '-pe NAME {spec.cores}'",
        )
