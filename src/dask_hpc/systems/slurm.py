"""SLURM: sbatch, squeue, scancel."""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import ClassVar, NamedTuple

from dask_hpc import _process
from dask_hpc.errors import CommandError, SpecError
from dask_hpc.spec import JobSpec, format_walltime, parse_walltime
from dask_hpc.systems.base import (
    BatchSystem,
    Cap,
    JobLimit,
    JobState,
    JobStatus,
    must_match,
    setting_line,
    setting_whole,
    shell_command,
)

__all__ = [
    "SlurmSystem",
    "expand_hostlist",
    "parse_caps",
    "parse_job_limits",
    "parse_partition_limits",
    "partition_qos",
]

# squeue's %T names; everything not listed here is reported as UNKNOWN.
STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "PREEMPTED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
}

# One squeue call for all jobs; "|" ends every field so that empty ones survive. An array
# task's id is ArrayJobID_ArrayTaskID (JobID is a number of its own for each task).
QUERY_FIELDS = "JobID:|,ArrayJobID:|,ArrayTaskID:|,State:|,Reason:|,NodeList:|,exit_code:|"


class SlurmSystem(BatchSystem):
    name = "slurm"
    list_jobs = "squeue --me"
    directive_prefix = "#SBATCH"
    bare_walltime = "m"
    job_id_variable = "SLURM_JOB_ID"
    job_name_forbidden = r"\n/"
    # sbatch's long and short spellings; --mem, --mem-per-cpu and --mem-per-gpu exclude each other.
    directive_keys: ClassVar[Mapping[str, str]] = {
        "job_name": r"^(--job-name(=|\s|$)|-J)",
        "nodes": r"^(--nodes(=|\s|$)|-N)",
        "tasks": r"^(--ntasks(=|\s|$)|-n)",
        "cores": r"^(--cpus-per-(task|gpu)(=|\s|$)|-c)",  # --cpus-per-gpu excludes --cpus-per-task
        "memory": r"^--mem(-per-cpu|-per-gpu)?(=|\s|$)",
        "walltime": r"^(--time(=|\s|$)|-t)",
        "queue": r"^(--partition(=|\s|$)|-p)",
        "account": r"^(--account(=|\s|$)|-A)",
        "gpus": r"^(--gres(=|\s)\S*gpu|--gpus(-per-node|-per-task)?(=|\s|$)|-G)",
        "qos": r"^(--qos(=|\s|$)|-q)",
        "output": r"^(--output(=|\s|$)|-o)",
        "error": r"^(--error(=|\s|$)|-e)",
        "array": r"^(--array(=|\s|$)|-a)",
    }
    cancel_gone_phrases = ("already completing or completed", "Invalid job id specified")
    # dask-jobqueue's SLURMCluster job_cpu and job_mem: what the job asks SLURM for, where it
    # differs from what its workers use (cores, memory).
    setting_keys: ClassVar[Mapping[str, str]] = {
        "job-cpu": "job_cpu",
        "job-mem": "job_mem",
        "array-throttle": "array_throttle",
    }

    def __init__(
        self,
        job_cpu: int | str | None = None,
        job_mem: str | None = None,
        array_throttle: int | str | None = None,
    ) -> None:
        #: --cpus-per-task, instead of the cores.
        self.job_cpu = None if job_cpu is None else setting_whole("job_cpu", job_cpu)
        #: --mem as sbatch reads it (``16G``; a bare number is MiB), instead of the memory.
        self.job_mem = None if job_mem is None else setting_line("job_mem", str(job_mem))
        #: --array=1-N%K: at most K tasks of an array run at once (a site's request, or yours).
        self.array_throttle = (
            None if array_throttle is None else setting_whole("array_throttle", array_throttle)
        )

    nodes_asked = (r"^(?:--nodes[= ]\s*|-N\s*)(\d+)", "--nodes={nodes}")

    def directives(self, spec: JobSpec) -> list[str]:
        d = [
            f"--job-name={self.quote(self.job_name(spec))}",
            f"--nodes={spec.nodes}",
            f"--ntasks={spec.nodes}",  # a task per node: its workers (srun starts them on each)
            *(["--ntasks-per-node=1"] if spec.nodes > 1 else []),
            f"--cpus-per-task={self.job_cpu or spec.cores}",
            # SLURM's M is MiB; round up so that the worker's limit fits inside.
            f"--mem={self.job_mem or f'{math.ceil(spec.memory / 2**20)}M'}",
            f"--time={format_walltime(spec.walltime)}",
        ]
        if spec.gpus:
            d.append(f"--gres=gpu:{spec.gpus}")  # on each node, in every SLURM since GRES came
        if spec.queue:
            d.append(f"--partition={self.quote(spec.queue)}")
        if spec.account:
            d.append(f"--account={self.quote(spec.account)}")
        logs = self.log_directory(spec)
        if logs:
            d.append(f"--output={self.quote(logs + '/%x-%j.out')}")
            d.append(f"--error={self.quote(logs + '/%x-%j.err')}")
        return d

    # ---- arrays: --array=1-N; task 3 of job 4711 is 4711_3 in squeue, scancel and its logs

    arrays = True
    default_array_limit = 1000  # MaxArraySize's default is 1001: indices 0 to 1000

    def array_header(self, header: list[str], spec: JobSpec, tasks: int) -> list[str]:
        # %j is each task's own number; %A_%a is the array's and the index: the task's id.
        ours = {d for d in self.directives(spec) if self.sets(d) & {"output", "error"}}
        named = [d.replace("%j", "%A_%a") if d in ours else d for d in header]
        throttle = f"%{self.array_throttle}" if self.array_throttle else ""
        return [*named, f"--array=1-{tasks}{throttle}"]

    def task_ids(self, stdout: str, tasks: int) -> list[str]:
        job_id = self.parse_job_id(stdout)
        return [f"{job_id}_{i}" for i in range(1, tasks + 1)]

    def array_limit_argv(self) -> list[str]:
        return ["scontrol", "show", "config"]

    def parse_array_limit(self, stdout: str) -> int | None:
        # "MaxArraySize            = 1001": the largest index is one less; we number from 1.
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", stdout, re.M)
        return int(match[1]) - 1 if match else None

    def job_id_from_env(self, env: Mapping[str, str]) -> str | None:
        array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
        if array and task:
            return f"{array}_{task}"
        return super().job_id_from_env(env)

    # ---- caps: the association's and its QOS's limits on this user's jobs (sacctmgr) -----

    def caps(self, spec: JobSpec | None = None) -> list[Cap]:
        """The caps of the association the job's account and partition select, of its
        account and the accounts above it, and of the QOS it asks for (``--qos``,
        ``$SBATCH_QOS``) or else its association's default QOS, and of the QOS attached to its
        partition: three sacctmgr calls and scontrol's partitions (once a :meth:`one_look`)."""
        found = self._accounting()
        if found is None:
            return []  # no accounting here (or no answer): no caps known
        users, accounts, qos = found
        spec = spec or JobSpec()
        account, partition, qos_name = self.caps_scope(spec)
        partition_qos = self._partition_qos(spec)
        return parse_caps(
            users, qos, getpass.getuser(), account, partition, qos_name, accounts, partition_qos=partition_qos
        )

    def _accounting(self) -> tuple[str, str, str] | None:
        """``sacctmgr`` on the user's associations (with their default account and the Max
        limits they inherit), the accounts' own associations (their Grp limits bind every
        job below them) and the QOS; None where there is no accounting to ask. Once a
        :meth:`one_look`."""
        return self._once("sacctmgr", _ask_sacctmgr)

    def caps_scope(self, spec: JobSpec) -> tuple[str | None, ...]:
        """Account, partition, QOS: each may have its own limits."""
        qos = os.environ.get("SBATCH_QOS") or self.directive_value(spec, "qos")
        return (self.job_account(spec), self.job_partition(spec), qos)

    def job_limits(self, spec: JobSpec) -> list[JobLimit]:
        """The partition's MaxTime and MaxNodes (scontrol), and the MaxWall and MaxTRES per
        job of the job's association and QOS (sacctmgr, where there is accounting)."""
        limits = []
        partitions = self._once("partitions", _ask_partitions)
        if partitions is not None:  # None: no answer, sbatch will say
            limits += parse_partition_limits(partitions, self.job_partition(spec))
        nodes = self._once("nodes", _ask_nodes)
        partition = self.job_partition(spec) or self._default_partition()
        elsewhere = os.environ.get("SBATCH_CLUSTERS") or any(
            re.match(r"^(-M|--clusters?)\b", d.strip()) for d in spec.job_extra_directives
        )  # another cluster's nodes: not these
        if nodes is not None and partition is not None and "," not in partition and not elsewhere:
            # What the job asks of each node as sbatch reads it: a setting, directive or input
            # variable of the user's own (job_cpu, --mem, $SBATCH_MEM_PER_NODE) replaces ours,
            # and is theirs to size.
            user = self._set_by_user(spec)
            ours = {
                "node_cpu": self.job_cpu is None and "cores" not in user and not _env("CPUS_PER_GPU"),
                "node_mem": self.job_mem is None
                and "memory" not in user
                and not _env("MEM_PER_NODE", "MEM_PER_CPU", "MEM_PER_GPU"),
                "node": True,
            }
            total = re.search(
                rf"^PartitionName={re.escape(partition)}\s.*?\bTotalNodes=(\d+)", partitions or "", re.M
            )
            by_nodes = parse_node_limits(nodes, partition, int(total[1]) if total else None)
            limits += [limit for limit in by_nodes if ours[limit.what]]
        found = self._accounting()
        if found is not None:
            users, _, qos = found
            account, partition, qos_name = self.caps_scope(spec)
            partition_qos = self._partition_qos(spec)
            limits += parse_job_limits(
                users, qos, getpass.getuser(), account, partition, qos_name, partition_qos=partition_qos
            )
        return limits

    def _set_by_user(self, spec: JobSpec) -> set[str]:
        """The keys of :attr:`directive_keys` the user's extra directives set."""
        return {key for d in spec.job_extra_directives for key in self.sets(d)}

    def _partition_qos(self, spec: JobSpec) -> tuple[str, str] | None:
        """The job's partition and the QOS the site attached to it (its ``QoS=``), whose limits
        come first in SLURM's hierarchy; None where it has none, or cannot be told."""
        partitions = self._once("partitions", _ask_partitions)
        return partition_qos(partitions or "", self.job_partition(spec))

    def check_site(self, spec: JobSpec) -> None:
        """A partition that SLURM does not have (``scontrol show partition``) is refused in
        one line with the ones it has (sbatch says only "invalid partition specified")."""
        named = self.job_partition(spec)
        partitions = self._once("partitions", _ask_partitions) if named else None
        known = re.findall(r"^PartitionName=(\S+)", partitions or "", re.M)
        unknown = [p for p in (named or "").split(",") if p and known and p not in known]
        if unknown:
            raise SpecError(
                "queue",
                unknown[0],
                f"slurm has no partition {unknown[0]}; its partitions: {', '.join(known)} "
                "(scontrol show partition)",
            )
        self._check_account(spec)

    def _check_account(self, spec: JobSpec) -> None:
        """An account the user has no association with is refused in one line with the ones
        they have, where SLURM enforces associations (sbatch says only "Invalid account or
        account/partition combination specified")."""
        account = self.job_account(spec)
        if not account:
            return
        config = self._once("config", _ask_config) or ""
        enforce = re.search(r"^AccountingStorageEnforce\s*=\s*(\S+)", config, re.M)
        found = self._accounting() if enforce and "associations" in enforce[1] else None
        mine = (
            sorted({r["Account"] for r in _rows(found[0], ASSOC_FIELDS) if r.get("Account")}) if found else []
        )
        # slurmctld lowercases the job's account before it looks for the association.
        if mine and account.lower() not in {m.lower() for m in mine}:
            user = getpass.getuser()
            raise SpecError(
                "account",
                account,
                f"{user} has no association with account {account} on this slurm; {user}'s accounts: "
                f"{', '.join(mine)} (sacctmgr show association user={user})",
            )

    def job_partition(self, spec: JobSpec) -> str | None:
        """The partition sbatch puts a job of ``spec`` in: ``$SBATCH_PARTITION`` where set
        (sbatch's manual: input environment variables override the script's directives),
        else the user's extra directive (``-p``, ``--partition``), else ``--queue``; None:
        the default partition."""
        return os.environ.get("SBATCH_PARTITION") or self.directive_value(spec, "queue") or spec.queue

    def job_account(self, spec: JobSpec) -> str | None:
        """As :meth:`BatchSystem.job_account`, ``$SBATCH_ACCOUNT`` first (it overrides the
        script's directives, as ``$SBATCH_PARTITION`` does)."""
        return os.environ.get("SBATCH_ACCOUNT") or super().job_account(spec)

    def in_scope(self, spec: JobSpec, scope: tuple[tuple[str, str], ...]) -> bool:
        """A job of ``spec`` goes to its partition (else the default one), account and QOS;
        one whose account or QOS is the user's default, unknown here, is counted."""
        account, partition, qos = self.caps_scope(spec)
        job = {"account": account, "partition": partition or self._default_partition(), "qos": qos}
        for key, value in scope:
            given = job.get(key)
            if given is not None and value not in given.split(","):
                return False
        return True

    def _default_partition(self) -> str | None:
        """The default partition's name (scontrol), asked once: sites seldom change it."""
        if not hasattr(self, "_default"):
            found = re.search(
                r"^PartitionName=(\S+).*\bDefault=YES\b",
                self._once("partitions", _ask_partitions) or "",
                re.M,
            )
            self._default = found[1] if found else None
        return self._default

    def user_jobs(self) -> int | None:
        return self.user_jobs_in(())

    def user_jobs_in(self, scope: tuple[tuple[str, str], ...]) -> int | None:
        """The user's jobs (array tasks each) of an account, partition and QOS (squeue's %a,
        %P, %q; a job pending for several partitions counts for each)."""
        try:
            done = _process.run(
                ["squeue", "--noheader", "--array", f"--user={getpass.getuser()}", "--format=%a|%P|%q"],
                timeout=self.query_timeout,
            )
        except CommandError:
            return None
        return count_jobs_in(done.stdout, scope)

    def submit_argv(self, script: Path) -> list[str]:
        return ["sbatch", "--parsable", str(script)]

    def parse_job_id(self, stdout: str) -> str:
        # --parsable prints "ID" or "ID;cluster".
        return must_match(r"^\s*(\d+(?:_\d+)?)", stdout, "a SLURM job id")[1]

    def query_argv(self, job_ids: Sequence[str]) -> list[str]:
        return [
            "squeue",
            "--noheader",
            "--states=all",
            "--array",  # one line per array task, pending ones too (not 4711_[3-10])
            "--jobs",
            ",".join(job_ids),
            "-O",
            QUERY_FIELDS,
        ]

    def query_failure_means_unknown(self, stderr: str) -> bool:
        return "Invalid job id specified" in stderr

    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        for line in stdout.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) < 7 or not fields[0]:
                continue
            number, array_id, task, state_name, reason, nodes, raw_exit = fields[:7]
            job_id = f"{array_id}_{task}" if task.isdigit() else number
            state = STATES.get(state_name.split()[0] if state_name else "", JobState.UNKNOWN)
            found[job_id] = JobStatus(
                job_id,
                state,
                reason=None if reason in ("", "None", "(null)") else reason,
                node=next(iter(expand_hostlist(nodes)), None) if nodes and nodes != "(null)" else None,
                exit_code=_exit_code(raw_exit) if state.finished else None,
            )
        return {j: found.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        return f"{job_name}-{job_id}.out", f"{job_name}-{job_id}.err"

    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]

    node_launch = "srun"

    def node_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        # One task per node, each with the node's cores (srun does not take sbatch's
        # --cpus-per-task from the environment since Slurm 22.05: given again). srun gives
        # each task the job's environment and argv as they are.
        srun = [
            "srun",
            f"--nodes={spec.nodes}",
            "--ntasks-per-node=1",
            f"--cpus-per-task={self.job_cpu or spec.cores}",
            *([f"--gres=gpu:{spec.gpus}"] if spec.gpus else []),  # each task its node's GPUs
        ]
        return ["# Start the workers on each of the job's nodes.", shell_command([*srun, *command])]

    def node_name_from_env(self, env: Mapping[str, str]) -> str:
        return env.get("SLURMD_NODENAME") or super().node_name_from_env(env)

    def nodes_argv(self) -> list[str]:
        # NodeAddr (%o), by which SLURM itself reaches each node; one line a node.
        return ["sinfo", "--noheader", "--Node", "--format=%o"]

    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]:
        return expand_hostlist(env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", "")))

    def end_time(self, job_id: str, env: Mapping[str, str]) -> float | None:
        # SLURM knows the exact end (it moves if an admin extends the job).
        try:
            done = _process.run(["squeue", "--noheader", "--jobs", job_id, "-O", "EndTime:|"], timeout=10)
            return datetime.fromisoformat(done.stdout.strip().rstrip("|")).timestamp()
        except (CommandError, ValueError):
            return super().end_time(job_id, env)


SACCTMGR = ("sacctmgr", "--noheader", "--parsable2")
#: The user's associations (``list user where name=U withassoc``): each with the Max limits it
#: inherits from the accounts above it (sacctmgr shows them unless told WOPLimits).
ASSOC_FIELDS = (
    "Account",
    "Partition",
    "MaxJobs",
    "MaxSubmitJobs",
    "DefaultQOS",
    "QOS",
    "GrpJobs",
    "GrpTRES",
    "GrpSubmitJobs",
    "MaxWall",
    "MaxTRES",
    "DefaultAccount",
)
#: The accounts' own associations (``list association where user=``): their Grp limits bind
#: all the jobs below them, every user's, and are not shown on the users' rows.
ACCOUNT_FIELDS = ("Account", "Partition", "ParentName", "GrpJobs", "GrpSubmitJobs", "GrpTRES")
QOS_FIELDS = (
    "Name",
    "MaxJobsPU",
    "MaxSubmitJobsPU",
    "MaxTRESPU",
    "GrpJobs",
    "GrpTRES",
    "GrpSubmitJobs",
    "MaxJobsPA",
    "MaxSubmitJobsPA",
    "MaxWall",
    "MaxTRES",
    "Flags",
)
ASSOC_FORMAT = "format=" + ",".join(ASSOC_FIELDS)
ACCOUNT_FORMAT = "format=" + ",".join(ACCOUNT_FIELDS)
QOS_FORMAT = "format=" + ",".join(QOS_FIELDS)
#: The TRES a cap of dask-hpc's counts jobs by (what one job holds of it: base.job_resources).
TRES = ("cpu", "node", "mem")


def count_jobs_in(text: str, scope: tuple[tuple[str, str], ...]) -> int:
    """Lines of ``squeue --format=%a|%P|%q`` (account, partitions, QOS) of jobs in ``scope``."""
    count = 0
    for line in text.splitlines():
        if line.count("|") != 2:
            continue
        account, partitions, qos = line.strip().split("|")
        job = {"account": {account}, "partition": set(partitions.split(",")), "qos": {qos}}
        count += all(value in job.get(key, set()) for key, value in scope)
    return count


def _ask_sacctmgr() -> tuple[str, str, str] | None:
    """The three lists at once: each is a round trip to slurmdbd (0.2-0.3 s here)."""
    user = getpass.getuser()
    # One slurmdbd may serve several clusters: this one's associations only.
    here = [f"cluster={name}"] if (name := _cluster_name()) else []
    lists = (
        [*SACCTMGR, "list", "user", "where", f"name={user}", *here, "withassoc", ASSOC_FORMAT],
        [*SACCTMGR, "list", "association", "where", "user=", *here, ACCOUNT_FORMAT],
        [*SACCTMGR, "list", "qos", QOS_FORMAT],
    )
    with ThreadPoolExecutor(len(lists)) as pool:
        asked = [pool.submit(_process.run, argv, timeout=30) for argv in lists]
        answers: list[str | None] = []
        for done in asked:
            try:
                answers.append(done.result().stdout)
            except CommandError:
                answers.append(None)
    users, accounts, qos = answers
    if users is None:
        return None  # no accounting here (or no answer): no caps known
    # Without the accounts' or the QOS's list, the caps the others give still hold.
    return users, accounts or "", qos or ""


def _cluster_name() -> str | None:
    """This cluster's name (``scontrol show config``'s ClusterName); None if not told."""
    match = re.search(r"^ClusterName\s*=\s*(\S+)", _ask_config() or "", re.M)
    return match[1] if match else None


def _ask_config() -> str | None:
    try:
        return _process.run(["scontrol", "show", "config"], timeout=30).stdout
    except CommandError:
        return None


def _ask_partitions() -> str | None:
    try:
        return _process.run(["scontrol", "show", "partition", "--oneliner"], timeout=30).stdout
    except CommandError:
        return None


def parse_caps(
    associations: str,
    qos: str,
    user: str,
    account: str | None = None,
    partition: str | None = None,
    qos_name: str | None = None,
    accounts: str = "",
    *,
    partition_qos: tuple[str, str] | None = None,
) -> list[Cap]:
    """The caps on ``user``'s jobs from sacctmgr's ``list user where name=U withassoc``
    (:data:`ASSOC_FIELDS`), ``list qos`` (:data:`QOS_FIELDS`) and ``list association
    where user=`` (``accounts``, :data:`ACCOUNT_FIELDS`), for the jobs of ``account`` (else
    the user's default account, else every association of the user's, so that the most
    restrictive binds) in ``partition`` (an association of that partition where there is
    one, as SLURM picks it; else the account's own), asking for ``qos_name`` (None: the
    association's default QOS), in a partition with the QOS ``partition_qos`` (``(partition,
    QOS)``, :func:`partition_qos`; None: the partition has none):

    * the association's MaxSubmitJobs, MaxJobs, GrpSubmitJobs, GrpJobs and GrpTRES (cpu,
      node, mem);
    * its account's and every account's above it GrpSubmitJobs, GrpJobs and GrpTRES;
    * the QOSes' MaxSubmitJobsPerUser, MaxJobsPerUser and MaxTRESPerUser, their per account
      MaxSubmitJobsPerAccount and MaxJobsPerAccount, and their own GrpSubmitJobs, GrpJobs and
      GrpTRES: each limit (each TRES) from the partition's QOS where it sets it, else from the
      job's (the other way round where the job's has the flag OverPartQOS).

    A Max limit of the association (MaxSubmitJobs, MaxJobs) is left out where a QOS sets its
    own (MaxSubmitJobsPerUser, MaxJobsPerUser): SLURM uses the first point of its hierarchy
    (partition QOS, job QOS, association, accounts) that defines a limit (resource_limits.html,
    "Hierarchy"). The limits that all the
    jobs of an account or a QOS share are a bound on the user's only when nobody else uses
    them: what the others hold is not counted. SLURM applies all that are left; the
    tightest binds (keeper/decisions.py)."""
    limits = {q["Name"]: q for q in _rows(qos, QOS_FIELDS)}
    tree = {r["Account"]: r for r in _rows(accounts, ACCOUNT_FIELDS) if not r.get("Partition")}
    caps: list[Cap] = []
    for row in _association_rows(associations, account, partition):
        where = f"association of {user} in account {row['Account']}"
        qoses = _qos_order(limits, _qos_name(row, qos_name), partition_qos)
        # A Max limit is the QOS's where one sets it, else the association's (SLURM's
        # resource_limits: the first point of the hierarchy that defines it is used); every
        # Grp limit of the associations applies.
        own = {
            field: running
            for field, running, over in (
                ("MaxSubmitJobs", False, "MaxSubmitJobsPU"),
                ("MaxJobs", True, "MaxJobsPU"),
            )
            if _first(qoses, over) is None
        }
        # The user's jobs each counts (Cap.scope): those of the association, of the QOS.
        in_account = (("account", row["Account"]),)
        in_assoc = in_account + ((("partition", row["Partition"]),) if row.get("Partition") else ())
        caps += _job_caps(row, where, {**own, "GrpJobs": True, "GrpSubmitJobs": False}, scope=in_assoc)
        caps += _tres_caps(row.get("GrpTRES", ""), "GrpTRES", where)
        caps += _account_caps(tree, row["Account"])
        caps += _qos_caps(qoses, in_account, row["Account"])
    return list(dict.fromkeys(caps))  # several rows of one account share its tree's caps


def parse_job_limits(
    associations: str,
    qos: str,
    user: str,
    account: str | None = None,
    partition: str | None = None,
    qos_name: str | None = None,
    *,
    partition_qos: tuple[str, str] | None = None,
) -> list[JobLimit]:
    """The limits on one job (sacctmgr's MaxWall and MaxTRES, per job) of the association
    and the QOSes that :func:`parse_caps` picks the same way, each from the first of them
    that sets it (partition QOS, job QOS, association): a job past them is refused where
    the QOS has DenyOnLimit or the site sets EnforcePartLimits, and waits for ever
    (AssocMaxWallDurationPerJobLimit, QOSMaxWallDurationPerJobLimit) where not."""
    limits = {q["Name"]: q for q in _rows(qos, QOS_FIELDS)}
    found: list[JobLimit] = []
    for row in _association_rows(associations, account, partition):
        qoses = _qos_order(limits, _qos_name(row, qos_name), partition_qos)
        # The first of the QOSes that sets one, else the association's (as parse_caps' Max).
        sources = [(q.row, q.where) for q in qoses]
        sources.append((row, f"association of {user} in account {row['Account']}"))
        wall_from = next((source for source, _ in sources if source.get("MaxWall")), None)
        seen: set[str] = set()  # the TRES an earlier source set
        for source, where in sources:
            if source is wall_from:
                wall = source["MaxWall"]
                with contextlib.suppress(SpecError):  # a form we do not read: sbatch will say
                    found.append(JobLimit("walltime", parse_walltime(wall), f"MaxWall={wall} ({where})"))
            amounts = _tres_amounts(source.get("MaxTRES", ""))
            found += [JobLimit(t, n, f"MaxTRES={item} ({where})") for t, n, item in amounts if t not in seen]
            seen |= {tres for tres, _, _ in amounts}
    return list(dict.fromkeys(found))


def _rows(text: str, fields: Sequence[str]) -> list[dict[str, str]]:
    """sacctmgr's ``--parsable2`` lines as dicts of ``fields`` (fewer where a line has fewer)."""
    return [dict(zip(fields, line.split("|"), strict=False)) for line in text.splitlines() if "|" in line]


def _association_rows(associations: str, account: str | None, partition: str | None) -> list[dict[str, str]]:
    """The user's associations that a job of ``account`` in ``partition`` is charged to."""
    rows = _rows(associations, ASSOC_FIELDS)
    account = account or next((r["DefaultAccount"] for r in rows if r.get("DefaultAccount")), None)
    if account:
        rows = [r for r in rows if r.get("Account") == account] or rows
    return (
        [r for r in rows if partition and r.get("Partition") == partition]
        or [r for r in rows if not r.get("Partition")]
        or rows
    )


def _qos_name(row: Mapping[str, str], asked: str | None) -> str:
    """The QOS a job of the association ``row`` runs in: the one asked for, else its default;
    with no default, SLURM's jobs get "normal" where the association may use it."""
    listed = [q for q in row.get("QOS", "").split(",") if q]
    return asked or row.get("DefaultQOS") or ("normal" if not listed or "normal" in listed else listed[0])


class _Qos(NamedTuple):
    """A QOS whose limits bind a job: its sacctmgr row, the words a cap names it by, and the
    user's jobs its usage counts (Cap.scope)."""

    row: Mapping[str, str]
    where: str
    scope: tuple[tuple[str, str], ...]


def partition_qos(partitions: str, partition: str | None) -> tuple[str, str] | None:
    """``(partition, QOS)`` for a partition with a QOS attached (``QoS=`` of ``scontrol show
    partition --oneliner``; the default partition for None); None where it has none, or for a
    list of partitions (sbatch picks one)."""
    for line in partitions.splitlines():
        row = dict(re.findall(r"(\w+)=(\S*)", line))
        if "PartitionName" not in row:
            continue
        if row["PartitionName"] == partition or (partition is None and row.get("Default") == "YES"):
            qos = row.get("QoS", "N/A")
            return (row["PartitionName"], qos) if qos not in ("N/A", "", "(null)") else None
    return None


def _qos_order(
    limits: Mapping[str, Mapping[str, str]], job_qos: str, partition_qos: tuple[str, str] | None
) -> list[_Qos]:
    """The QOSes that bind a job in SLURM's order: the partition's QOS first, then the job's,
    unless the job's has the flag OverPartQOS (qos.html: "the Partition QOS limits will
    override the job's QOS"). A partition QOS's usage is every job of the partition's; the
    job QOS's, every job with that QOS."""
    job = limits.get(job_qos, {})
    qoses = [_Qos(job, f"QOS {job_qos}", (("qos", job_qos),))]
    if partition_qos is not None:
        partition, name = partition_qos
        if name == job_qos:  # one QOS: its usage is both kinds of job; count them all
            return [_Qos(job, f"QOS {job_qos} of partition {partition}", ())]
        part = _Qos(limits.get(name, {}), f"QOS {name} of partition {partition}", (("partition", partition),))
        over = "OverPartQOS" in job.get("Flags", "").split(",")
        qoses = [*qoses, part] if over else [part, *qoses]
    return qoses


def _first(qoses: Sequence[_Qos], field: str) -> _Qos | None:
    """The first of ``qoses`` that sets a number for ``field``: the one whose limit is used."""
    return next((q for q in qoses if q.row.get(field, "").isdigit()), None)


#: The QOS's limits: field, what it counts (running jobs only: True; all jobs: False; None: a
#: TRES list, on what running jobs hold), SLURM's word for it, and whose jobs it counts ("user":
#: the user's in the QOS; "account": all of the user's account's; "everyone": every user's).
QOS_LIMITS: tuple[tuple[str, bool | None, str, str], ...] = (
    ("MaxSubmitJobsPU", False, "MaxSubmitJobsPerUser", "user"),
    ("MaxJobsPU", True, "MaxJobsPerUser", "user"),
    ("MaxTRESPU", None, "MaxTRESPerUser", "user"),
    ("MaxSubmitJobsPA", False, "MaxSubmitJobsPerAccount", "account"),
    ("MaxJobsPA", True, "MaxJobsPerAccount", "account"),
    ("GrpJobs", True, "GrpJobs", "everyone"),
    ("GrpSubmitJobs", False, "GrpSubmitJobs", "everyone"),
    ("GrpTRES", None, "GrpTRES", "everyone"),
)


def _qos_caps(qoses: Sequence[_Qos], in_account: tuple[tuple[str, str], ...], account: str) -> list[Cap]:
    """The caps of the QOSes that bind a job, each limit (and each TRES of a TRES limit) from
    the first of ``qoses`` that sets it."""
    caps: list[Cap] = []
    for field, running, word, whose in QOS_LIMITS:
        seen: set[str] = set()  # the TRES an earlier QOS set
        for qos in qoses:
            where = {
                "user": qos.where,
                "account": f"{qos.where}, all jobs of account {account}",
                "everyone": f"{qos.where}, all its users",
            }[whose]
            if running is None:  # a TRES cap counts what the session's jobs in its scope hold
                found = _tres_amounts(qos.row.get(field, ""))
                caps += [
                    Cap(amount, True, f"{word}={item} ({where})", per=tres, scope=qos.scope)
                    for tres, amount, item in found
                    if tres not in seen
                ]
                seen |= {tres for tres, _, _ in found}
            elif qos is _first(qoses, field):
                scope = qos.scope + in_account if whose == "account" else qos.scope
                caps.append(
                    Cap(int(qos.row[field]), running, f"{word}={qos.row[field]} ({where})", scope=scope)
                )
    return caps


def _account_caps(tree: Mapping[str, Mapping[str, str]], account: str) -> list[Cap]:
    """The Grp limits of ``account`` and of each account above it, up to root. The job's own
    account's count the user's jobs in it; those above, all the user's jobs (some may be in
    sibling accounts below them)."""
    caps: list[Cap] = []
    seen: set[str] = set()
    name: str | None = account
    while name and name in tree and name not in seen:  # a cycle cannot be, but never loop
        seen.add(name)
        row = tree[name]
        where = f"account {name}, all jobs below it"
        scope = (("account", name),) if name == account else ()
        caps += _job_caps(row, where, {"GrpJobs": True, "GrpSubmitJobs": False}, scope=scope)
        caps += _tres_caps(row.get("GrpTRES", ""), "GrpTRES", where)
        name = row.get("ParentName")
    return caps


def _job_caps(
    row: Mapping[str, str],
    where: str,
    fields: Mapping[str, bool],
    names: Mapping[str, str] = {},
    scope: tuple[tuple[str, str], ...] = (),
) -> list[Cap]:
    """Caps on a number of jobs: ``fields`` maps each limit's field to whether it counts
    running jobs only; ``names`` gives the words SLURM's own messages use for a field;
    ``scope``: the user's jobs they count (Cap.scope)."""
    return [
        Cap(int(row[field]), running, f"{names.get(field, field)}={row[field]} ({where})", scope=scope)
        for field, running in fields.items()
        if row.get(field, "").isdigit()
    ]


def _tres_caps(text: str, name: str, where: str) -> list[Cap]:
    """Caps on running jobs from a TRES limit (``cpu=64,node=4,mem=100G``): one a TRES that
    counts jobs here."""
    return [
        Cap(amount, True, f"{name}={item} ({where})", per=tres) for tres, amount, item in _tres_amounts(text)
    ]


def _tres_amounts(text: str) -> list[tuple[str, int, str]]:
    """The TRES of :data:`TRES` in a TRES list (``cpu=64,node=4,mem=100G``): name, amount
    (memory in MiB: sacctmgr writes M, G or T) and the item as written."""
    found = []
    for item in text.split(","):
        tres, _, value = item.partition("=")
        match = re.fullmatch(r"(\d+)([KMGTP]?)", value)
        if tres not in TRES or match is None:
            continue
        amount = int(match[1])
        if tres == "mem":
            amount = amount * 1024 ** "KMGTP".index(match[2] or "M") // 1024
        found.append((tres, amount, item))
    return found


def _env(*names: str) -> bool:
    """Whether one of sbatch's input variables ``$SBATCH_<name>`` is set."""
    return any(os.environ.get(f"SBATCH_{name}") for name in names)


def _ask_nodes() -> str | None:
    """Each node of each partition, its CPUs and MiB (sinfo: one line a node and partition;
    --all: hidden partitions too). Slurm 22.05's sinfo has no --future: nodes in FUTURE
    state, and before 23.02 a cloud's powered down ones, are not listed; so the count of
    nodes may be low on such a site (a job asking more is refused, and the line says how
    many sinfo listed)."""
    argv = ["sinfo", "--all", "--noheader", "--Node", "--format=%P|%c|%m"]
    try:
        return _process.run(argv, timeout=30).stdout
    except CommandError:
        return None


def parse_node_limits(text: str, partition: str, total: int | None = None) -> list[JobLimit]:
    """The limits the nodes of ``partition`` set on one job, from ``sinfo --Node
    --format=%P|%c|%m`` (the default partition marked ``*``): its nodes (no job has more),
    and the CPUs and MiB of its largest node (no job asks more of each node: sbatch refuses
    it, "Requested node configuration is not available"). [] for a partition not listed.

    ``total``: the partition's TotalNodes (scontrol show partition), the count of nodes
    where given. Where sinfo listed fewer (a cloud's powered down nodes, FUTURE ones), the
    largest of them may not be the largest there is: no limit on a node's CPUs or memory."""
    rows = [line.split("|") for line in text.splitlines() if line.count("|") == 2]
    mine = [
        (int(c), int(m)) for p, c, m in rows if p.rstrip("*") == partition and c.isdigit() and m.isdigit()
    ]
    if not mine:
        return []
    count = max(len(mine), total or 0)
    limits = [JobLimit("node", count, f"its {count} nodes (partition {partition})")]
    if count > len(mine):
        return limits
    cpus, mem = max(c for c, _ in mine), max(m for _, m in mine)
    where = f"partition {partition}, sinfo"
    return [
        *limits,
        JobLimit("node_cpu", cpus, f"CPUs={cpus} on its largest node ({where})"),
        JobLimit("node_mem", mem, f"RealMemory={mem}M on its largest node ({where})"),
    ]


def parse_partition_limits(text: str, partition: str | None) -> list[JobLimit]:
    """The limits on one job in ``partition`` (the default one, for None) from ``scontrol show
    partition --oneliner``: its MaxTime and MaxNodes. A job past them is refused by sbatch
    where the site sets EnforcePartLimits, and waits forever (PartitionTimeLimit,
    PartitionNodeLimit) where it does not. [] for a partition not listed, or a list of
    several (sbatch picks one of them)."""
    rows = [
        dict(re.findall(r"(\w+)=(\S*)", line))
        for line in text.splitlines()
        if line.startswith("PartitionName=")
    ]
    if partition is None:
        found = [r for r in rows if r.get("Default") == "YES"]
    else:
        found = [r for r in rows if r.get("PartitionName") == partition]
    if len(found) != 1:
        return []
    row, limits = found[0], []
    name = row["PartitionName"]
    max_time = row.get("MaxTime", "UNLIMITED")
    if max_time not in ("UNLIMITED", "INFINITE", ""):
        try:
            seconds = parse_walltime(max_time)
        except SpecError:
            seconds = None  # a form we do not read: sbatch will say
        if seconds is not None:
            limits.append(JobLimit("walltime", seconds, f"MaxTime={max_time} (partition {name})"))
    if row.get("MaxNodes", "").isdigit():
        limits.append(
            JobLimit("node", int(row["MaxNodes"]), f"MaxNodes={row['MaxNodes']} (partition {name})")
        )
    return limits


def _exit_code(raw: str) -> int | None:
    """squeue's exit_code is a wait status: code << 8, or the signal number."""
    try:
        status = int(raw)
    except ValueError:
        return None
    signal = status & 0x7F
    return 128 + signal if signal else status >> 8


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_hostlist(hostlist: str) -> tuple[str, ...]:
    """``"node[1-3,07],gpu1"`` -> ``("node1", "node2", "node3", "node07", "gpu1")``."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", hostlist):
        hosts.extend(_expand_one(item.strip()))
    return tuple(h for h in dict.fromkeys(hosts) if h)


def _expand_one(item: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", item)
    if match is None:
        return [item]
    head, tail = item[: match.start()], item[match.end() :]
    names: list[str] = []
    for part in match[1].split(","):
        bounds = _RANGE.match(part.strip())
        if bounds is None:
            names.append(f"{head}{part}")
            continue
        lo, hi = bounds[1], bounds[2] or bounds[1]
        width = len(lo)
        names += [f"{head}{n:0{width}d}" for n in range(int(lo), int(hi) + 1)]
    return [full for name in names for full in _expand_one(name + tail)]
