"""The contract every batch system fulfils, and the behaviour they share.

A batch system module is mostly data (directive prefix, flag table, environment
variable names, state names) plus a few pure functions: render a job script,
parse a job id, parse a state query. The I/O around them (write the script,
run the command, raise the error) lives here, once.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import shlex
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from dask_hpc import _process
from dask_hpc.errors import (
    CommandError,
    CommandTimeoutError,
    NotInJobError,
    ParseError,
    SpecError,
    SubmitError,
    SubmitUnclearError,
    WrongSystemError,
)
from dask_hpc.files import private_directory
from dask_hpc.spec import JobSpec

__all__ = [
    "BatchSystem",
    "Cap",
    "Expanded",
    "JobContext",
    "JobState",
    "JobStatus",
    "has_references",
    "shell_command",
    "shell_value",
]


_T = TypeVar("_T")


class JobState(str, enum.Enum):
    """One vocabulary for every batch system's job states."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"  # the system no longer knows the job (or not yet: accounting lag)

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT}


@dataclass(frozen=True)
class JobStatus:
    """What the batch system says about one job."""

    job_id: str
    state: JobState
    reason: str | None = None  # why pending, or why it failed, in the system's words
    node: str | None = None  # the (first) node it runs or ran on
    exit_code: int | None = None


#: Each thread's open :meth:`BatchSystem.one_look` blocks: the answers given in them, by system.
_LOOKS = threading.local()


@dataclass(frozen=True)
class Cap:
    """A limit of the site's on how many jobs this user may have, in its own words."""

    limit: int
    running_only: bool  # True: jobs running at once (SLURM MaxJobs); False: pending or running
    words: str  # "MaxSubmitJobs=5 (association of root, account dask-hpc)"
    arrays_count_once: bool = False  # Grid Engine's max_u_jobs counts an array as one job
    #: What the limit counts: jobs; or a resource that the running jobs share (SLURM's TRES:
    #: "cpu", "node", "mem" in MiB), which bounds the jobs by what each one takes of it.
    per: str = "job"
    #: The user's jobs it counts, where not all of them (SLURM's association of one account,
    #: a QOS; PBS's queue): what each must be, as pairs (("queue", "workq"),).
    scope: tuple[tuple[str, str], ...] = ()

    def jobs(self, spec: JobSpec | None = None, taken: int = 0) -> int:
        """The most jobs of ``spec``'s kind this cap allows: its limit where it counts jobs;
        else the limit over what one such job takes of its resource. ``taken``: what other
        jobs hold of it already (in :meth:`takes`'s units)."""
        return max(0, self.limit - taken) // self.takes(spec)

    def takes(self, spec: JobSpec | None) -> int:
        """What one job of ``spec`` counts against this cap: 1 where it counts jobs, else its
        CPUs, nodes or MiB."""
        if self.per == "job" or spec is None:
            return 1
        return max(1, job_resources(spec)[self.per])


@dataclass(frozen=True)
class JobLimit:
    """A limit of the site's on one job, in its own words (SLURM's partition MaxTime): a job
    past it is refused, or waits in the queue forever."""

    #: "walltime" (seconds), or a resource of the job's: "node", "cpu", "mem" (MiB); or what it
    #: asks of each node: "node_cpu" (cores), "node_mem" (MiB).
    what: str
    most: int
    words: str  # "MaxTime=1-00:00:00 (partition debug)"


def job_resources(spec: JobSpec) -> dict[str, int]:
    """What one job of ``spec`` holds, by SLURM's TRES names: its CPUs, nodes and MiB."""
    return {
        "cpu": spec.cores * spec.nodes,
        "node": spec.nodes,
        "mem": -(-spec.memory * spec.nodes // 2**20),
    }


@dataclass(frozen=True)
class JobContext:
    """What a job knows about itself, from inside it."""

    system: str
    job_id: str
    nodes: tuple[str, ...]
    end_time: float | None  # seconds since the epoch when the walltime ends

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.end_time is None:
            return None
        return self.end_time - (time.time() if now is None else now)


# Environment variables that every rendered script exports, so that the job can
# find out its system and walltime end the same way on every system.
ENV_SYSTEM = "DASK_HPC_SYSTEM"
ENV_WALLTIME = "DASK_HPC_WALLTIME"
ENV_START = "DASK_HPC_JOB_START"
#: Exported by a job of several nodes: its workers are named after the job and their node.
ENV_NODES = "DASK_HPC_NODES"

#: Submit with this umask: the systems pass it on to the job, so that its logs
#: and files are the user's only (SLURM, PBS and LSF take the submitter's umask).
PRIVATE_UMASK = 0o077


class BatchSystem(ABC):
    """A batch system: rendering and parsing are pure; submit/query/cancel run commands."""

    name: ClassVar[str]
    #: The comment that starts a directive line, e.g. ``#SBATCH``.
    directive_prefix: ClassVar[str]
    #: Environment variables a job sees: its id, and its nodes (a list or a file).
    job_id_variable: ClassVar[str]
    #: Characters a job name may not contain on this system (a regex class); refused.
    job_name_forbidden: ClassVar[str] = r"\s/"
    #: Longer names are cut to this length (some systems cut or refuse them).
    job_name_max: ClassVar[int] = 200
    #: What each of our directives sets, as a pattern on a directive line (without its
    #: prefix). A user's extra directive that sets the same thing replaces ours.
    directive_keys: ClassVar[Mapping[str, str]] = {}
    #: Characters this system cannot take in a path inside a directive.
    path_forbidden: ClassVar[str] = ""
    #: How long a state query may take before we call the system unresponsive.
    query_timeout: ClassVar[float] = 30.0
    #: How this system reads a walltime of two fields, ``A:B`` (``JobSpec.from_options``):
    #: minutes and seconds for sbatch --time, PBS and Grid Engine; LSF says otherwise.
    walltime_fields: ClassVar[str] = "MM:SS"
    #: The unit this system reads a bare number of walltime in (``sbatch --time=90``: minutes;
    #: PBS and Grid Engine: seconds): how dask-jobqueue's values, passed on as written, meant it.
    bare_walltime: ClassVar[str | None] = None
    #: A site's settings for this system: configuration key -> constructor argument
    #: (``get_system(name, settings)``; :meth:`settings` gives them back for the session).
    setting_keys: ClassVar[Mapping[str, str]] = {}

    #: Settings that describe a worker job's resources (dask-jobqueue's job_cpu, resource_spec,
    #: ...): the scheduler's own small job does not take them.
    resource_settings: ClassVar[frozenset[str]] = frozenset(
        {"job-cpu", "job-mem", "resource-spec", "ncpus", "mem", "disk"}
    )

    def for_scheduler(self) -> BatchSystem:
        """This system without the settings of a worker job's resources, for the scheduler's job."""
        kept = {a: getattr(self, a) for k, a in self.setting_keys.items() if k not in self.resource_settings}
        return type(self)(**kept)

    def settings(self) -> dict[str, Any]:
        """This system's site settings, by configuration key (kept with a session, so that
        its keeper renders worker jobs as ``up`` did): plain values for a JSON file."""
        values = {key: getattr(self, attribute, None) for key, attribute in self.setting_keys.items()}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}

    # ---- rendering (pure) ---------------------------------------------------

    @abstractmethod
    def directives(self, spec: JobSpec) -> list[str]:
        """Directive arguments for ``spec`` (without the prefix)."""

    def quote(self, value: str) -> str:
        """Quote a value inside a directive line; systems parse these themselves."""
        if re.search(r"[\s'\"\\#$]", value):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return value

    def job_name(self, spec: JobSpec) -> str:
        """The spec's job name, refused if this system cannot take it; cut to its longest."""
        bad = sorted(set(re.findall(f"[{self.job_name_forbidden}]", spec.job_name)))
        if bad:
            shown = ", ".join("a space" if c == " " else repr(c) for c in bad)
            raise SpecError("job_name", spec.job_name, f"{self.name} cannot take {shown} in a job name")
        return spec.job_name[: self.job_name_max]

    def log_directory(self, spec: JobSpec) -> str | None:
        """The spec's log directory, without a trailing slash, checked for this system."""
        if spec.log_directory is None:
            return None
        bad = sorted({c for c in spec.log_directory if c in self.path_forbidden})
        if bad:
            raise SpecError(
                "log_directory",
                spec.log_directory,
                f"{self.name} cannot take {' or '.join(bad)} in a path; choose another directory",
            )
        return spec.log_directory.rstrip("/") or "/"

    def sets(self, directive: str) -> set[str]:
        """The keys of :attr:`directive_keys` that a directive line sets."""
        line = directive.strip()
        return {key for key, pattern in self.directive_keys.items() if re.search(pattern, line)}

    def directive_value(self, spec: JobSpec, key: str) -> str | None:
        """What the user's extra directives set ``key`` (of :attr:`directive_keys`) to, the
        last one winning as in the systems' own reading: ``--partition=short``,
        ``--partition short``, ``-p short``, ``-pshort`` all give ``short``. None: not set."""
        pattern, value = self.directive_keys.get(key), None
        for directive in spec.job_extra_directives if pattern else ():
            line = directive.strip()
            found = re.search(pattern, line) if pattern else None
            if found:
                value = line[found.end() :].lstrip("= \t").strip().strip("'\"") or None
        return value

    def job_queue(self, spec: JobSpec) -> str | None:
        """The queue a job of ``spec`` goes to, as the batch system will read it: the user's
        extra directive (``-q``), else ``--queue``; of a list, the first; without its server
        or host (PBS's ``workq@pbs01``, Grid Engine's ``all.q@node1``). None: the system's
        default."""
        queue = self.directive_value(spec, "queue") or spec.queue
        return queue.split(",")[0].partition("@")[0] or None if queue else None

    def job_account(self, spec: JobSpec) -> str | None:
        """The account a job of ``spec`` is charged to, as the batch system will read it: the
        user's extra directive, else ``--account``; None: the user's default account."""
        return self.directive_value(spec, "account") or spec.account

    #: What only dask-hpc's own options may set, and how to ask for it instead: the walltime,
    #: since workers retire and replacements are planned by it (a directive would change the
    #: job, not the plan); an array, since each of its tasks is a job the keeper follows.
    own_keys: ClassVar[frozenset[str]] = frozenset({"walltime", "array"})
    OWN_KEY_FIX: ClassVar[Mapping[str, str]] = {
        "walltime": "give it with --walltime (walltime= in Python), by which dask-hpc retires "
        "workers and plans their replacements",
        "array": "dask-hpc submits arrays itself: add N (or scale) submits one array of N jobs",
    }

    def header(self, spec: JobSpec) -> list[str]:
        """Our directives, less those the user's extra directives replace or
        ``job_directives_skip`` names, then the user's: the user's words win.

        Raises SpecError for an extra directive that sets one of :attr:`own_keys`.
        """
        for d in spec.job_extra_directives:
            if d.lstrip().startswith("#"):
                raise SpecError(
                    "job_extra_directives",
                    d,
                    f"give it without its prefix: dask-hpc writes {self.directive_prefix} before each, "
                    f"so '-q debug' becomes '{self.directive_prefix} -q debug'",
                )
            own = sorted(self.sets(d) & self.own_keys)
            if own:
                raise SpecError(
                    "job_extra_directives",
                    d,
                    f"sets the {' and '.join(own)}: " + "; ".join(self.OWN_KEY_FIX[k] for k in own),
                )
        dropped = set(self.replaced(spec))
        return [*(d for d in self.directives(spec) if d not in dropped), *spec.job_extra_directives]

    def replaced(self, spec: JobSpec) -> dict[str, str]:
        """Our directives that the user's replace (each with the user's that does, or the
        ``job_directives_skip`` text that drops it), for ``up`` to say which."""
        out = {}
        for d in self.directives(spec):
            by = [u for u in spec.job_extra_directives if self.sets(d) & self.sets(u)]
            by += [skip for skip in spec.job_directives_skip if skip in d]
            if by:
                out[d] = by[0]
        return out

    def notes(self, spec: JobSpec) -> list[str]:
        """Lines that say what this system's jobs will not ask for although the spec says so
        (OAR without a memory property): printed by ``up``, warned by BatchCluster."""
        return []

    #: How a job's directives ask for its nodes: a pattern whose group is their number
    #: (PBS Pro's ``select=N``), what to write (``{nodes}``, ``{cores}`` filled in), and a
    #: pattern they must match too with what it means (PBS Pro's ``place=scatter``); None:
    #: not read here (LSF's slots, Grid Engine's parallel environment: check_site).
    nodes_asked: ClassVar[tuple[str, str] | None] = None
    nodes_placed: ClassVar[tuple[str, str] | None] = None

    def check_nodes_asked(self, spec: JobSpec, header: Sequence[str]) -> None:
        """A job of several nodes whose directives, as rendered, do not ask for them (the
        user's resource_spec, or a directive of theirs that replaced ours) would get fewer
        nodes, and the launcher would start fewer workers, or two of one name on a node:
        SpecError in one line. Ours always do."""
        if spec.nodes == 1 or self.nodes_asked is None:
            return
        pattern, example = self.nodes_asked
        text = "\n".join(header)
        found = [int(m[1]) for m in re.finditer(pattern, text, re.M)]
        wrong = None
        if not found:
            wrong = "name no nodes"
        elif found[-1] != spec.nodes:
            wrong = f"ask for {found[-1]} nodes"
        elif self.nodes_placed is not None and not re.search(self.nodes_placed[0], text, re.M):
            wrong = f"do not {self.nodes_placed[1]}"
        if wrong:
            asked = "; ".join(header)
            raise SpecError(
                "nodes",
                spec.nodes,
                f"the job's directives ({asked}) {wrong}, so the workers would not be one set on "
                f"each of {spec.nodes} nodes: write {example.format(nodes=spec.nodes, cores=spec.cores)} "
                "in resource_spec or your directive, or leave them out (--nodes, --cores and --memory "
                "make them)",
            )

    def render(self, spec: JobSpec, command: Sequence[str], tasks: int = 1) -> str:
        """The job script that runs ``command`` with ``spec``'s resources; with ``tasks`` > 1,
        an array of that many tasks, each a job of its own (:meth:`array_header`)."""
        header = self.header(spec)
        self.check_nodes_asked(spec, header)
        if tasks > 1:
            if not self.arrays:
                raise SpecError("tasks", tasks, f"{self.name} has no job arrays here: submit single jobs")
            header = self.array_header(header, spec, tasks)
        lines = [spec.shebang]
        lines += [f"{self.directive_prefix} {d}" for d in header]
        lines += self.body(spec, command)
        return "\n".join(lines) + "\n"

    #: The launcher that starts a worker on each node of a job of several (``spec.nodes``),
    #: in the system's own words; None: this system's worker jobs hold one node here.
    node_launch: ClassVar[str | None] = None

    def launch_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        """The lines that run the worker ``command``: as it is in a job of one node; once on
        each node of a job of several (``spec.nodes``), with :meth:`node_lines`."""
        if spec.nodes == 1:
            return [shell_command(command)]
        return self.node_lines(spec, command)

    def node_lines(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        """The lines that start ``command`` on every node of a job of ``spec.nodes`` nodes with
        the system's own launcher (:attr:`node_launch`); refused where there is none."""
        raise SpecError(
            "nodes",
            spec.nodes,
            f"a {self.name} worker job holds one node (jobs of several nodes: SLURM, PBS, Torque, "
            "Moab, LSF, Grid Engine, OAR); ask for more jobs instead, or more workers per job "
            "with --cores and --processes",
        )

    def node_name_from_env(self, env: Mapping[str, str]) -> str:
        """The name of the node this process runs on, as the system calls it (workers of a job
        of several nodes are named after it)."""
        return socket.gethostname().split(".")[0]

    def body(self, spec: JobSpec, command: Sequence[str]) -> list[str]:
        lines = [
            "",
            "# Where and how long this job runs, for dask-hpc inside it.",
            f"export {ENV_SYSTEM}={self.name}",
            f"export {ENV_WALLTIME}={spec.walltime}",
            f'export {ENV_START}="$(date +%s)"',
        ]
        if spec.nodes > 1:
            lines.append(f"export {ENV_NODES}={spec.nodes}")
        lines += [f"export {key}={shell_value(value)}" for key, value in spec.environment]
        if spec.job_script_prologue:
            lines += ["", *spec.job_script_prologue]
        lines += ["", *self.launch_lines(spec, command)]
        if spec.job_script_epilogue:
            lines += ["", *spec.job_script_epilogue]
        return lines

    # ---- job arrays: one submission, many jobs ---------------------------------

    #: Whether this system takes job arrays (:meth:`array_header`, :meth:`task_ids`).
    arrays: ClassVar[bool] = False
    #: The most tasks of one array when the site's own limit cannot be read (its manual's default).
    default_array_limit: ClassVar[int] = 1000

    def array_header(self, header: list[str], spec: JobSpec, tasks: int) -> list[str]:
        """``header`` (our directives and the user's) for an array of ``tasks`` tasks: the
        array's directive added, the log files named per task."""
        raise SpecError("tasks", tasks, f"{self.name} has no job arrays here: submit single jobs")

    def task_ids(self, stdout: str, tasks: int) -> list[str]:
        """The ids of an array's tasks, from the submit command's answer: each is the id the
        system's own commands take for that task (SLURM ``4711_3``, Grid Engine ``48.3``)."""
        raise ParseError(f"{self.name} has no job arrays here")

    def array_limit_argv(self) -> list[str] | None:
        """The command whose answer holds the site's largest array; None: not asked."""
        return None

    def parse_array_limit(self, stdout: str) -> int | None:
        """The most tasks of one array, from :meth:`array_limit_argv`'s answer."""
        return None

    def array_limit(self) -> int:
        """The most tasks this site takes in one array: asked once (a big request is split
        into several arrays); the system's default when the answer cannot be read; 1 where
        the site turned arrays off (SLURM's MaxArraySize=0): single jobs."""
        if not self.arrays:
            return 1
        cached = getattr(self, "_array_limit", None)
        if cached is None:
            argv = self.array_limit_argv()
            cached = None
            if argv is not None:
                try:
                    cached = self.parse_array_limit(_process.run(argv, timeout=self.query_timeout).stdout)
                except CommandError:
                    cached = None
            cached = self.default_array_limit if cached is None else max(1, cached)
            self._array_limit: int | None = cached
        return cached

    def takes_arrays(self, spec: JobSpec) -> bool:
        """Whether ``spec``'s jobs may be an array here (LSF: not where the user's -J names them)."""
        return self.arrays

    def batches(self, n: int, arrays: bool = True) -> list[int]:
        """How ``n`` jobs are submitted: the tasks of each submission. Arrays of at most
        :meth:`array_limit` tasks where this system has them and ``arrays`` (a lone job is a
        job of its own); else ``n`` single jobs. Asks the site's limit once (a command)."""
        if n < 2 or not (arrays and self.arrays):
            return [1] * max(0, n)
        limit = max(1, self.array_limit())
        return [limit] * (n // limit) + ([n % limit] if n % limit else [])

    # ---- the site's caps on a user's jobs ------------------------------------------------

    def caps(self, spec: JobSpec | None = None) -> list[Cap]:
        """The site's limits on this user's jobs of ``spec``'s kind (its account, partition,
        QOS where the system tells them apart; None: the user's defaults), where the system
        tells them (SLURM's associations and QOS, Grid Engine's max_u_jobs); [] where it does
        not or cannot be asked. Runs commands."""
        return []

    def caps_scope(self, spec: JobSpec) -> tuple[str | None, ...]:
        """What the caps of jobs of ``spec`` depend on (the keeper asks once for each)."""
        return (self.job_account(spec),)

    def job_limits(self, spec: JobSpec) -> list[JobLimit]:
        """The site's limits on one job of ``spec``'s (in its queue), where the system tells
        them (SLURM's partition MaxTime and MaxNodes); [] where it does not or cannot be
        asked. Runs commands."""
        return []

    @contextlib.contextmanager
    def one_look(self) -> Iterator[None]:
        """Within this block the site's settings (sacctmgr's associations and QOS, qmgr's
        server, a queue's limits) are asked once, however many caps and limits are read: for
        one decision over several jobs (up checks the workers' and the scheduler's). Outside
        it every call asks again, so that a limit set meanwhile is seen. The block is this
        thread's (the keeper asks from several threads at once); a block inside another is
        part of it."""
        looks: dict[int, dict[Any, Any]] = _LOOKS.__dict__.setdefault("by_system", {})
        outer = id(self) in looks
        looks.setdefault(id(self), {})
        try:
            yield
        finally:
            if not outer:
                del looks[id(self)]

    def _once(self, key: Any, ask: Callable[[], _T]) -> _T:
        """``ask()``, or its answer already given in this thread's :meth:`one_look`."""
        looked = _LOOKS.__dict__.get("by_system", {}).get(id(self))
        if looked is None:
            return ask()
        if key not in looked:
            looked[key] = ask()
        answer: _T = looked[key]
        return answer

    def check_site(self, spec: JobSpec) -> None:
        """Raise SpecError for a job of ``spec`` that the site is set up not to run as asked,
        where its commands can tell (Grid Engine's parallel environment for several nodes);
        nothing where they cannot, or cannot be asked. Runs commands."""
        return None  # most systems tell nothing of the kind

    def user_jobs(self) -> int | None:
        """How many jobs (array tasks each) this user has pending or running, in every session
        and outside them; None where it cannot be asked. One command."""
        return None

    def user_jobs_in(self, scope: tuple[tuple[str, str], ...]) -> int | None:
        """As :meth:`user_jobs`, only those of ``scope`` (:attr:`Cap.scope`); where the system
        cannot tell, all of them (a cap may then refuse early, never late)."""
        return self.user_jobs()

    def in_scope(self, spec: JobSpec, scope: tuple[tuple[str, str], ...]) -> bool:
        """Whether a job of ``spec`` is one of the jobs a cap of ``scope`` counts
        (:attr:`Cap.scope`: its queue, account, partition, QOS). True where the system cannot
        tell: counted, a cap refuses early, never late."""
        return True

    def scoped_counts(self, caps: Sequence[Cap]) -> dict[Cap, int]:
        """For each cap on submitted jobs that counts only some of the user's jobs, how many
        it counts now (one command a scope); the other caps count :meth:`user_jobs`."""
        asked: dict[tuple[tuple[str, str], ...], int | None] = {}
        for cap in caps:
            if cap.scope and not cap.running_only and cap.scope not in asked:
                asked[cap.scope] = self.user_jobs_in(cap.scope)
        return {cap: count for cap in caps if (count := asked.get(cap.scope)) is not None}

    def job_id_from_env(self, env: Mapping[str, str]) -> str | None:
        """The job's id as this system's commands take it (an array task's own id), from inside."""
        return env.get(self.job_id_variable) or None

    # ---- commands (pure) ----------------------------------------------------

    @abstractmethod
    def submit_argv(self, script: Path) -> list[str]: ...

    @abstractmethod
    def parse_job_id(self, stdout: str) -> str: ...

    @abstractmethod
    def query_argv(self, job_ids: Sequence[str]) -> list[str]: ...

    @abstractmethod
    def parse_query(self, stdout: str, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """States of ``job_ids``; a job missing from the output is UNKNOWN."""

    @abstractmethod
    def cancel_argv(self, job_ids: Sequence[str]) -> list[str]: ...

    @abstractmethod
    def log_files(self, job_name: str, job_id: str) -> tuple[str, str]:
        """Names of a job's stdout and stderr files inside its log directory."""

    # ---- I/O, shared --------------------------------------------------------

    def submit(self, script: str, directory: Path, *, timeout: float = 60.0) -> str:
        """Write ``script`` into ``directory`` and submit it; return the job id."""
        return self._submitted(script, directory, timeout, self.parse_job_id)

    def submit_array(self, script: str, directory: Path, tasks: int, *, timeout: float = 60.0) -> list[str]:
        """Submit ``script`` (rendered with ``tasks``) as one array; return its tasks' ids."""
        return self._submitted(script, directory, timeout, lambda out: self.task_ids(out, tasks))

    def _submitted(self, script: str, directory: Path, timeout: float, read: Callable[[str], _T]) -> _T:
        self.check_commands()
        private_directory(directory)
        path = write_new_script(directory, script)
        argv = self.submit_argv(path)
        try:
            done = _process.run(
                argv,
                input=script if self.script_on_stdin else None,
                timeout=timeout,
                cwd=directory,
                error=SubmitError,
                what=f"{self.name} refused the job",
                umask=PRIVATE_UMASK,
            )
        except SubmitError:
            path.unlink(missing_ok=True)  # refused: no job has it; the error has the system's words
            raise
        except CommandTimeoutError:
            raise SubmitUnclearError(
                f"{argv[0]} did not answer within {timeout:g} s: a job may have been queued anyway; "
                f"{self.find_hint(path)}"
            ) from None
        try:
            return read(done.stdout)
        except ParseError:
            answer = " ".join((done.stdout + " " + done.stderr).split())[:200]
            raise SubmitUnclearError(
                f"{argv[0]} took the job but its answer is not a {self.name} job id: {answer!r}; "
                f"{self.find_hint(path)}"
            ) from None

    @property
    def script_on_stdin(self) -> bool:
        """Whether the submit program reads the script on its standard input (LSF's bsub);
        the script is written to the session's scripts folder all the same."""
        return False

    #: How a user lists their jobs on this system, for a job we could not keep track of.
    list_jobs: ClassVar[str] = ""

    def find_hint(self, script: Path) -> str:
        """Where to look for a job whose submission we could not read, and what to do."""
        return (
            f"find it with {self.list_jobs} and cancel it (its script: {script})"
            if self.list_jobs
            else f"find it and cancel it (its script: {script})"
        )

    def check_commands(self) -> None:
        """Refuse, before submitting, when this system's commands belong to another system.

        PBS Pro, Torque and Grid Engine share the name ``qsub`` (systems/identify.py).
        """
        if self.name not in ("pbs", "torque", "sge"):
            return
        from dask_hpc.systems.identify import recognise

        found = recognise(self.name)
        if found is not None and found.system != self.name:
            raise WrongSystemError(
                f"--system {self.name}, but qsub here is {found.title}'s (qstat --version: "
                f"{found.words!r}): use --system {found.system}"
            )

    def query(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        """States of many jobs, with one call to the batch system."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        done = _process.run(self.query_argv(ids), timeout=self.query_timeout, check=False)
        if done.returncode != 0 and not self.query_failure_means_unknown(done.stderr):
            raise done.failure(f"{self.name} query failed")
        statuses = self.parse_query(done.stdout, ids)
        return self.complete_query(statuses)

    def query_failure_means_unknown(self, stderr: str) -> bool:
        """Some systems exit non-zero when none of the asked-for jobs is known."""
        return False

    def complete_query(self, statuses: dict[str, JobStatus]) -> dict[str, JobStatus]:
        """Hook for systems that look finished jobs up elsewhere (accounting)."""
        return statuses

    #: Phrases of the cancel command's output that mean "that job has already ended".
    cancel_gone_phrases: ClassVar[tuple[str, ...]] = ()
    #: Phrases that confirm a job is being cancelled: a command given several jobs says this
    #: of some and "gone" of others, and exits non-zero for the gone ones (Grid Engine's qdel).
    cancel_done_phrases: ClassVar[tuple[str, ...]] = ()

    def cancel(self, job_ids: Iterable[str]) -> None:
        """End these jobs. Jobs that have already ended are not an error."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return
        done = _process.run(self.cancel_argv(ids), check=False)
        if done.returncode != 0 and not self.cancel_failure_is_only_gone_jobs(done.stdout + done.stderr):
            raise done.failure(f"{self.name} could not cancel")

    def cancel_failure_is_only_gone_jobs(self, output: str) -> bool:
        """Whether a cancel that exited non-zero failed only for jobs that had already ended:
        each line it printed says a job is gone or being cancelled, and one says gone.
        Grid Engine's qdel says it on stdout, the others on stderr."""
        lines = [line for line in output.splitlines() if line.strip()]
        gone = any(p in line for line in lines for p in self.cancel_gone_phrases)
        known = (*self.cancel_gone_phrases, *self.cancel_done_phrases)
        return gone and all(any(p in line for p in known) for line in lines)

    # ---- where jobs may run -------------------------------------------------

    #: How long listing the nodes may take; past it they are unknown (maybe other hosts).
    nodes_timeout: ClassVar[float] = 10.0

    def nodes_argv(self) -> list[str] | None:
        """The command that lists the hosts this system's jobs may run on; None: we do not ask."""
        return None

    def parse_nodes(self, stdout: str) -> tuple[str, ...]:
        """Host names or addresses from the output of :meth:`nodes_argv`, one a line."""
        return tuple(dict.fromkeys(line.split()[0] for line in stdout.splitlines() if line.strip()))

    def node_hosts(self) -> tuple[str, ...] | None:
        """The hosts (names or addresses) this system's jobs may run on, to tell whether they
        are all this host (then a scheduler may listen on loopback); None when unknown: we
        cannot ask, or got no answer within :attr:`nodes_timeout`."""
        argv = self.nodes_argv()
        if argv is None:
            return None
        try:
            done = _process.run(argv, timeout=self.nodes_timeout)
        except CommandError:
            return None
        return self.parse_nodes(done.stdout) or None

    # ---- inside a job -------------------------------------------------------

    def job_context(self, env: Mapping[str, str] | None = None) -> JobContext:
        """The job's id, nodes and walltime end, read from inside the job."""
        env = os.environ if env is None else env
        job_id = self.job_id_from_env(env)
        if not job_id:
            raise NotInJobError(f"not inside a {self.name} job: ${self.job_id_variable} is not set")
        return JobContext(self.name, job_id, self.nodes_from_env(env), self.end_time(job_id, env))

    @abstractmethod
    def nodes_from_env(self, env: Mapping[str, str]) -> tuple[str, ...]: ...

    def end_time(self, job_id: str, env: Mapping[str, str]) -> float | None:
        """When the walltime ends: the script's start plus its walltime.

        The start is taken when the script begins, a little after the system
        started the job, so this errs late by the job's launch time; systems that
        can tell the exact end override this.
        """
        try:
            return float(env[ENV_START]) + float(env[ENV_WALLTIME])
        except (KeyError, ValueError):
            return None


# $NAME, ${NAME}, ${NAME:-default}: the references to the job's environment that a value may make.
_REFERENCE = re.compile(
    r"\\\$(?=[A-Za-z_{])|\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*(?::?[-=+?][^}$`\"\\]*)?\})"
)


def has_references(value: str) -> bool:
    """Whether ``value`` names a variable of the job's environment (``\\$NAME`` is plain text)."""
    return any(m[0] != "\\$" for m in _REFERENCE.finditer(value))


class Expanded(str):
    """A word of a job's command in which the job's shell expands the variables it names
    (``$TMPDIR`` is the node's), as dask-jobqueue's unquoted command lines do; other
    words are literal."""


def shell_command(command: Sequence[str]) -> str:
    """``command`` as one shell line: each word literal, but an :class:`Expanded` word's
    references to the job's variables, as :func:`shell_value` writes them."""
    return " ".join(
        shell_value(word, "worker command") if isinstance(word, Expanded) else shlex.quote(word)
        for word in command
    )


def shell_value(value: str, field: str = "environment") -> str:
    """``value`` for ``export NAME=...`` in a job script.

    Literal, except ``$NAME``, ``${NAME}`` and ``${NAME:-default}``, which the job's
    shell expands on the node (``$TMPDIR`` is the node's). Nothing else runs:
    ``$(...)``, backquotes and any other ``$`` stay as written; ``\\$NAME`` is the text ``$NAME``.
    """
    if re.search(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?[-=+?][^}]*[$`]", value):
        raise SpecError(
            field,
            value,
            "a ${NAME:-default} whose default refers to another variable or runs a command is "
            "not expanded as a shell would; give the default plainly",
        )
    if not has_references(value):
        return shlex.quote(re.sub(r"\\\$(?=[A-Za-z_{])", "$", value))
    parts: list[str] = []
    end = 0
    for match in _REFERENCE.finditer(value):
        parts.append(_double_quoted(value[end : match.start()]))
        parts.append("\\$" if match[0] == "\\$" else match[0])
        end = match.end()
    parts.append(_double_quoted(value[end:]))
    return '"' + "".join(parts) + '"'


def _double_quoted(text: str) -> str:
    """Literal text inside double quotes: only these four characters mean something there."""
    return re.sub(r'([\\"`$])', r"\\\1", text)


def read_lines(path: str | None) -> tuple[str, ...]:
    """Unique host names from a node file (one per line, possibly repeated)."""
    if not path:
        return ()
    try:
        text = Path(path).read_text()
    except OSError:
        return ()
    return tuple(dict.fromkeys(line.split()[0] for line in text.splitlines() if line.strip()))


def must_match(pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise ParseError(f"could not read {what} from: {text.strip()[:200]!r}")
    return match


def write_new_script(directory: Path, text: str) -> Path:
    """Write a job script to a new file (0700) in ``directory``; never overwrite one.

    Scripts are kept: they show what was submitted when a job misbehaves.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(10_000):
        path = directory / f"job-{stamp}-{os.getpid()}-{n}.sh"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)  # atomic: no two writers
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path
    raise FileExistsError(f"no free file name for a job script in {directory}")


# ---- site settings: values from a keyword, a command line or a configuration file ----------


def setting_whole(name: str, value: Any) -> int:
    """A whole number >= 1 (``job_cpu``, ``ncpus``)."""
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
        raise SpecError(name, value, "must be a whole number >= 1")
    return int(value)


def resource_line(name: str, value: Any, walltime: str) -> str:
    """A ``resource_spec``: one line, without the walltime (``walltime``: the pattern of the
    system's walltime resource), which dask-hpc writes itself: the batch system and the
    keeper would otherwise disagree on when the job ends."""
    line = setting_line(name, value)
    if re.search(walltime, line):
        raise SpecError(
            name,
            value,
            "holds a walltime: give it with --walltime (walltime= in Python), by which dask-hpc "
            "retires workers and plans their replacements; leave it out of the resources",
        )
    return line


def setting_line(name: str, value: Any) -> str:
    """One non-empty line, as the batch system reads it (``resource_spec``, ``job_mem``)."""
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        raise SpecError(name, value, "must be one non-empty line of text")
    return value.strip()
