"""The keeper's decisions, as pure functions of what it knows: easy to test, fast at 10,000 jobs."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dask_hpc.errors import SpecError
from dask_hpc.keeper.protocol import SubmitTrouble
from dask_hpc.spec import JobSpec, format_memory, format_walltime
from dask_hpc.state.ledger import JobRecord
from dask_hpc.state.session import DEFAULT_NAME
from dask_hpc.systems import Cap, JobLimit, JobState
from dask_hpc.systems.base import job_resources

__all__ = [
    "Backoff",
    "adapt_target_jobs",
    "cap_message",
    "cap_refusal",
    "capped_jobs",
    "choose_removals",
    "job_limit_message",
    "job_of_worker",
    "lost_kept_jobs",
    "more_workers_a_job",
    "pool_target_jobs",
    "queue_wait",
    "replacement_lead",
    "replacement_times",
    "running_cap_message",
    "running_cap_refusal",
    "scale_steps",
    "session_holds",
]

#: Seconds from submission to a connected worker assumed before any job of the session joined.
DEFAULT_QUEUE_WAIT = 30.0
#: How many recent jobs' waits the estimate uses, and the safety factor on it.
WAIT_SAMPLES = 5
WAIT_FACTOR = 1.5
#: Seconds added to every lead, for the keeper's own polling and the replacement's start-up.
LEAD_SLACK = 5.0


def job_of_worker(name: str, jobs: Mapping[str, object]) -> str | None:
    """The job a worker belongs to, from its name: ``<job id>``, ``<job id>-<n>``, and in a
    job of several nodes ``<job id>@<node>`` or ``<job id>@<node>-<n>``.

    Workers started by ``python -m dask_hpc.worker`` are named after their job (and node);
    distributed appends ``-<n>`` when a job runs several worker processes.
    """
    if name in jobs:
        return name
    head, sep, tail = name.rpartition("-")
    if sep and tail.isdigit() and head in jobs:
        return head
    job, at, _node = (head if sep and tail.isdigit() else name).rpartition("@")
    if at and job in jobs:
        return job
    return None


def choose_removals(
    jobs: Iterable[JobRecord],
    n: int,
    held_bytes: Mapping[str, int],
) -> list[str]:
    """Which ``n`` live jobs to end: those still pending first (newest first: they would
    start last), then running ones holding the least data (least to move), youngest first.
    A job being replaced is leaving anyway: its replacement is the one to end."""
    live = [j for j in jobs if j.counted]
    pending = sorted(
        (j for j in live if j.state is not JobState.RUNNING and j.started is None),
        key=lambda j: -j.submitted,
    )
    running = sorted(
        (j for j in live if j.state is JobState.RUNNING or j.started is not None),
        key=lambda j: (held_bytes.get(j.job_id, 0), -(j.started or 0.0)),
    )
    return [j.job_id for j in [*pending, *running][: max(0, n)]]


def adapt_target_jobs(
    target_workers: int,
    processes: int,
    minimum_jobs: int,
    maximum_jobs: int | None,
) -> int:
    """How many jobs the scheduler's wish for ``target_workers`` workers means, within bounds
    (``maximum_jobs`` None: no upper bound)."""
    wanted = math.ceil(max(0, target_workers) / max(1, processes))
    return max(minimum_jobs, wanted if maximum_jobs is None else min(maximum_jobs, wanted))


def pool_target_jobs(tasks: int, spec: JobSpec, minimum_jobs: int, maximum_jobs: int | None) -> int:
    """How many jobs of a pool's ``spec`` its ``tasks`` want (tasks that ask for the pool's
    resource: waiting for a worker of it, or running on one), within bounds: a thread for
    each (a pool worker holds ``pool-<name>`` one unit a thread), whole jobs."""
    threads = max(1, spec.threads_per_process * spec.workers)
    wanted = math.ceil(max(0, tasks) / threads)
    return max(minimum_jobs, wanted if maximum_jobs is None else min(maximum_jobs, wanted))


def cap_refusal(
    caps: Sequence[Cap], in_queue: int, n: int, submissions: int, scoped: Mapping[Cap, int] | None = None
) -> tuple[Cap, int] | None:
    """The tightest cap that ``n`` more jobs (in ``submissions`` submissions: arrays) would
    pass, with how many more it allows; None when none would. ``in_queue``: the user's jobs
    pending or running now (what the caps count: tasks, or jobs where an array counts once);
    ``scoped``: for a cap that counts only some of them (:attr:`Cap.scope`), those.
    Caps on running jobs only are not submission caps: jobs past them wait in the queue."""
    passed = []
    for cap in caps:
        if cap.running_only:
            continue
        need = submissions if cap.arrays_count_once else n
        counted = (scoped or {}).get(cap, in_queue)
        if counted + need > cap.limit:
            passed.append((cap, max(0, cap.limit - counted)))
    return min(passed, key=lambda p: p[1]) if passed else None


def cap_message(
    cap: Cap,
    more: int,
    n: int,
    in_queue: int,
    user: str,
    spec: JobSpec,
    **way: Any,
) -> str:
    """The one line that refuses ``n`` jobs of ``spec`` past ``cap``: the cap in the system's
    words, what the user has, how many more fit, and the way out. That is one command that
    gets the workers asked for (``n`` jobs' worth) within the jobs that fit: more workers a
    job, on more nodes a job where the system has a launcher for them (``several_nodes``) or
    more processes on one; for a cap that counts an array once, one call (one array).
    ``way``: what the way out needs (:func:`more_workers_a_job`'s keywords: the session's
    name, its spec, the launcher, the site's limits)."""
    counted = "jobs (an array counts once)" if cap.arrays_count_once else "jobs"
    said = (
        f"{n} more worker job{'s' if n != 1 else ''} would pass the site's cap {cap.words}, which "
        f"allows {user} {cap.limit} {counted} pending or running; {user} has {in_queue} in the "
        f"queue now, so at most {more} more."
    )
    workers = n * spec.processes * spec.nodes
    if cap.arrays_count_once and more > 0:
        return f"{said} For more workers, ask for them in one call: one array counts once"
    if more == 0:
        return (
            f"{said} End jobs of yours that you no longer need (dask-hpc status lists this "
            "session's), or wait for some to end; a session with more workers a job "
            "(--processes, --nodes) needs fewer jobs"
        )
    return f"{said} {more_workers_a_job(workers, more, spec, **way)}"


def session_holds(specs: Iterable[JobSpec]) -> dict[str, int]:
    """What jobs of these specs (a session's scheduler's and worker jobs) count against the
    caps on running jobs, by :attr:`Cap.per`: jobs, and SLURM's TRES (CPUs, nodes, MiB)."""
    holds = {"job": 0, "cpu": 0, "node": 0, "mem": 0}
    for spec in specs:
        holds["job"] += 1
        for what, value in job_resources(spec).items():
            holds[what] += value
    return holds


def running_cap_refusal(
    caps: Sequence[Cap],
    spec: JobSpec,
    n: int,
    session_holds: Mapping[str, int],
    scoped_holds: Mapping[Cap, Mapping[str, int]] | None = None,
) -> tuple[Cap, int] | None:
    """The tightest cap on running jobs (SLURM's MaxJobs, MaxTRESPerUser; PBS's max_run)
    under which ``n`` more jobs of ``spec`` and the jobs this session holds could never all
    run at once, with how many more could; None when they could. ``session_holds``: what
    the session's jobs (its scheduler's, its worker jobs) count against such caps, by
    :attr:`Cap.per` ("job", "cpu", "node", "mem"); ``scoped_holds``: for a cap of some of
    the user's jobs (:attr:`Cap.scope`: a partition's QOS), what the session's jobs among
    them hold.

    The user's jobs outside the session are not counted: they end by themselves, and jobs
    waiting for them is what the queue is for. Jobs waiting for the session's own would
    wait until its workers' walltimes: that is what this refuses (Summit's 5 running jobs)."""
    passed = []
    for cap in caps:
        if not cap.running_only:
            continue
        held = (scoped_holds or {}).get(cap, session_holds)
        room = cap.jobs(spec, taken=held.get(cap.per, 0))
        if n > room:
            passed.append((cap, room))
    return min(passed, key=lambda p: p[1]) if passed else None


def running_cap_message(
    cap: Cap,
    more: int,
    n: int,
    user: str,
    spec: JobSpec,
    **way: Any,
) -> str:
    """The one line that refuses ``n`` jobs of ``spec`` past a cap on running jobs
    (:func:`running_cap_refusal`): the cap, how many more could run, and the way out, as
    :func:`cap_message` gives it."""
    said = (
        f"{n} more worker job{'s' if n != 1 else ''} could not all run at once under the site's cap "
        f"{cap.words}, which bounds what {user} runs at once: beside this session's jobs (its "
        f"scheduler's and its workers'), at most {more} more could run, and the others would wait "
        "in the queue until jobs of the session end (a worker job ends at its walltime)."
    )
    if more == 0:
        return (
            f"{said} Remove worker jobs you no longer need (dask-hpc remove), or ask for more "
            "workers a job (--processes, --nodes) in place of them"
        )
    workers = n * spec.processes * spec.nodes
    return f"{said} {more_workers_a_job(workers, more, spec, **way)}"


def job_limit_message(
    limits: Sequence[JobLimit], spec: JobSpec, system: str, *, scheduler: bool = False
) -> str | None:
    """The one line that refuses a job of ``spec`` (a worker job, or the ``scheduler``'s)
    past one of the site's ``limits`` on one job: its words, the job's value, what to ask
    instead; None when it is within them all."""
    held = job_resources(spec)
    for limit in limits:
        if limit.what == "walltime":
            value, most = spec.walltime, limit.most
            option = "--scheduler-walltime" if scheduler else "--walltime"
            asked, fix = f"a walltime of {format_walltime(value)}", f"{option} {format_walltime(most)}"
        else:
            # node_cpu, node_mem: what the job asks of each node (the largest node's bound).
            held_a_node = {"node_cpu": spec.cores, "node_mem": -(-spec.memory // 2**20)}
            value, most = {**held, **held_a_node}[limit.what], limit.most
            asked, fix = {
                "node": (f"{value} nodes", f"--nodes {most}"),
                "cpu": (f"{value} CPUs", f"--cores {max(1, most // spec.nodes)}"),
                "mem": (f"{value} MiB", f"--memory {max(1, most // spec.nodes)}MiB"),
                "node_cpu": (
                    f"{value} cores a node",
                    f"--cores {most}" + (f" --processes {most}" if spec.processes > most else ""),
                ),
                "node_mem": (f"{value} MiB a node", f"--memory {most}MiB"),
            }[limit.what]
        if value > most:
            whose = "the scheduler's job" if scheduler else "a worker job"
            return (
                f"{whose} with {asked} would pass the site's limit {limit.words}, so {system} would "
                f"refuse it or hold it in the queue for ever; ask for less ({fix}), or another queue"
            )
    return None


def more_workers_a_job(
    workers: int,
    jobs: int,
    spec: JobSpec,
    *,
    several_nodes: bool,
    session: str | None = None,
    base: JobSpec | None = None,
    max_nodes: int | None = None,
    keep: bool = False,
    up: bool = False,
    fits: Callable[[JobSpec, int], bool] | None = None,
) -> str:
    """How to get at least ``workers`` workers from at most ``jobs`` jobs of ``spec``'s kind:
    the commands, each worker keeping its threads and memory, and each saying the workers
    it brings (rounding up to whole nodes or processes can bring a few more).

    ``base``: the session's spec; the commands carry ``spec``'s own options beside it (the
    add's queue, walltime, extra directives; ``--keep`` for kept jobs), so that they ask
    for the same kind of job. ``max_nodes``: the site's most nodes a job (SLURM's partition
    MaxNodes); ``fits(spec, jobs)``: whether that many jobs of that spec pass the site's
    caps on what running jobs hold (CPUs, nodes): a way past either is not given, and
    where none is left, the line says how many workers fit. ``several_nodes``: the system
    has a launcher for jobs of several nodes. ``up``: the refusal is ``up --workers``'s,
    whose session did not start: the commands are ``up``'s.
    """
    base = spec if base is None else base
    most = jobs
    each = math.ceil(workers / jobs)  # workers a job
    jobs = math.ceil(workers / each)
    name = ["--name", session] if session and session != DEFAULT_NAME else []
    kept = ["--keep"] if keep else []

    def command(count: int, options: list[str]) -> str:
        verb = ["up", *name, "--workers", str(count)] if up else ["add", str(count), *name]
        return shlex.join(["dask-hpc", *verb, *options, *kept])

    def allowed(way: JobSpec, count: int) -> bool:
        return (max_nodes is None or way.nodes <= max_nodes) and (fits is None or fits(way, count))

    def widest(make: Callable[[int], JobSpec], start: int, count: int) -> tuple[int, JobSpec] | None:
        """The most (at most ``start``) that ``make`` may take with ``count`` jobs allowed: a
        way as wide as the site lets it be. A wider job only holds more, so what is allowed
        is all below a bound: found by halving (a million workers asked: 20 looks)."""

        def ok(n: int) -> JobSpec | None:
            try:
                way = make(n)
            except SpecError:  # not a job at all (GPUs that n processes cannot share)
                return None
            return way if allowed(way, count) else None

        if (way := ok(start)) is not None:
            return start, way
        low, high = 0, start  # ok(low) holds (or low is 0), ok(high) does not
        while high - low > 1:
            middle = (low + high) // 2
            if ok(middle) is not None:
                low = middle
            else:
                high = middle
        found = ok(low) if low else None
        return (low, found) if found is not None else None

    threads = max(1, spec.cores // spec.processes)

    def wider(processes: int) -> JobSpec:
        memory = spec.memory // spec.processes * processes
        return replace(spec, cores=processes * threads, processes=processes, memory=memory)

    def find(count: int) -> list[tuple[int, str]]:
        """The ways with ``count`` jobs, each with the workers it brings."""
        found = []
        nodes = math.ceil(each / spec.processes)
        by_nodes = widest(lambda n: replace(spec, nodes=n), nodes, count) if several_nodes else None
        if by_nodes is not None:
            n = by_nodes[0]
            options = ["--nodes", str(n), *spec.command_options(base, leave_out=("nodes",))]
            got = count * n * spec.processes
            found.append(
                (got, f"{command(count, options)} ({_count(n, 'node')} a job, {_count(got, 'worker')})")
            )
        by_processes = widest(wider, math.ceil(each / spec.nodes), count)
        if by_processes is not None:
            processes, way = by_processes
            options = ["--cores", str(way.cores), "--processes", str(processes)]
            options += ["--memory", format_memory(way.memory)]
            options += ["--nodes", str(spec.nodes)] if spec.nodes != base.nodes else []
            options += spec.command_options(base, leave_out=("nodes", "cores", "processes", "memory"))
            got = count * processes * spec.nodes
            a_node = _count(processes, "worker")
            found.append((got, f"{command(count, options)} ({a_node} a node, {_count(got, 'worker')})"))
        return found

    more = "; give up's other options again" if up else ""
    first = find(jobs)
    ways = [(got, line) for got, line in first if got >= workers]
    if ways:
        listed = " or ".join(line for _, line in ways)
        return (
            f"For {_count(workers, 'worker')} in {_count(jobs, 'job')}: {listed}{more}; in Python, "
            "the same as nodes=, cores=, processes=, memory="
        )
    # The site's nodes or caps do not let so many workers into so few jobs: the widest jobs
    # that fit, all the jobs allowed.
    ways = find(most) if most != jobs else first
    fewer = max((got for got, _ in ways), default=0)
    if fewer > most * spec.workers:
        best = [line for got, line in ways if got == fewer]
        return (
            f"At most {_count(fewer, 'worker')} fit in {_count(most, 'job')}, as wide as the site's "
            f"nodes and caps let a job be: {' or '.join(best)}{more}"
        )
    # Wider jobs hold more of what the cap counts (CPUs, nodes), or no wider job fits: as
    # many jobs as fit are the most workers there are.
    options = spec.command_options(base)
    return (
        f"No wider job fits the site's nodes and caps: at most "
        f"{_count(most * spec.workers, 'worker')} fit, in {command(most, options)}{more}"
    )


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def capped_jobs(
    caps: Sequence[Cap],
    in_queue: int,
    session_jobs: int,
    spec: JobSpec | None = None,
    scheduler_holds: Mapping[str, int] | None = None,
    scoped: Mapping[Cap, int] | None = None,
    scoped_holds: Mapping[Cap, Mapping[str, int]] | None = None,
) -> tuple[int, Cap] | None:
    """The most worker jobs (tasks each) of ``spec``'s kind this session may hold under the
    caps, and the cap that sets it; None without caps that bound it. A cap on submitted jobs
    leaves the session its own ``session_jobs`` plus what the user's ``in_queue`` leaves
    free; a cap on running jobs (or on what they hold: SLURM's MaxTRESPerUser, GrpTRES)
    bounds the session at what its scheduler's job leaves of it (``scheduler_holds``, by
    :attr:`Cap.per`; jobs past it could only wait; the user's jobs pending elsewhere do not
    run, so they are not counted; ``scoped_holds``: for a cap of some of the user's jobs,
    what the session's jobs among them hold). A cap that counts an array once does not bound the tasks:
    adapt's submissions are arrays, each refused alone if it passes."""
    holds = scheduler_holds or {}
    best: tuple[int, Cap] | None = None
    for cap in caps:
        if cap.arrays_count_once:
            continue
        if cap.running_only:
            most = cap.jobs(spec, taken=(scoped_holds or {}).get(cap, holds).get(cap.per, 0))
        else:  # what the user's other jobs of its count leave free (``scoped``: of its scope)
            others = max(0, (scoped or {}).get(cap, in_queue) - session_jobs)
            most = max(0, cap.limit - others)
        if best is None or most < best[0]:
            best = (most, cap)
    return best


def scale_steps(live: Sequence[JobRecord], target: int) -> tuple[int, int]:
    """(jobs to submit, jobs to end) to go from the ``live`` jobs to ``target``.

    A job being replaced is not counted (its replacement is): it is leaving.
    """
    count = sum(1 for j in live if j.counted)
    return max(0, target - count), max(0, count - target)


def queue_wait(jobs: Iterable[JobRecord], default: float = DEFAULT_QUEUE_WAIT) -> float:
    """Seconds from submission to a connected worker, as observed: the median of the
    last few jobs that joined (the queue changes), else ``default``."""
    joined = sorted((j for j in jobs if j.joined is not None), key=lambda j: j.submitted)[-WAIT_SAMPLES:]
    if not joined:
        return default
    waits = sorted(max(0.0, (j.joined or 0.0) - j.submitted) for j in joined)
    return waits[len(waits) // 2]


def replacement_lead(wait: float, margin: float) -> float:
    """How long before a kept job's end its replacement is submitted: the observed queue
    ``wait`` with a safety factor, plus the ``margin`` at which the old job's workers leave
    by themselves, plus slack. Then the replacement has joined before the old job leaves."""
    return WAIT_FACTOR * wait + margin + LEAD_SLACK


def replacement_times(jobs: Iterable[JobRecord], margin: Callable[[JobRecord], float]) -> dict[str, float]:
    """When each kept job that has no replacement yet gets one (seconds since the epoch):
    its end less :func:`replacement_lead`, where ``margin(job)`` is when its workers leave."""
    jobs = list(jobs)
    wait = queue_wait(jobs)  # once: the same for every job
    times = {}
    for j in jobs:
        end = j.ends_at()
        if j.keep and j.counted and end is not None:
            times[j.job_id] = end - replacement_lead(wait, margin(j))
    return times


def lost_kept_jobs(jobs: Iterable[JobRecord]) -> list[str]:
    """Kept jobs that ended without our asking (killed, node failure, walltime) and were
    never replaced. Only jobs whose workers had joined: a job that fails before it starts
    is not resubmitted over and over."""
    return [
        j.job_id
        for j in jobs
        if j.keep and not j.live and not j.removed and j.replaced_by is None and j.joined is not None
    ]


#: The wait after the first failed automatic submission, in seconds; it doubles with each
#: failure in a row, up to the cap.
BACKOFF_FIRST = 5.0
BACKOFF_CAP = 300.0
#: Automatic submissions stop after this many identical failures in a row.
STOP_AFTER = 3


@dataclass(frozen=True)
class Backoff:
    """The keeper's memory of failed automatic submissions (adapt, replacements of kept jobs).

    A failure is a submission the batch system refused, or a kept job that ended before its
    worker joined (a job that cannot start is resubmitted as fast as it fails otherwise).
    After each failure the next automatic submission waits, ``BACKOFF_FIRST`` seconds doubled
    per failure in a row, at most ``BACKOFF_CAP``; after ``STOP_AFTER`` identical failures in a
    row (the same words, job ids aside) they stop until the user acts (adapt, scale). A worker
    joining ends the run of failures. Submission storms get accounts suspended on real sites;
    dask-jobqueue's adapt has no such memory (it resubmits every interval).
    """

    failures: int = 0  # in a row
    same: int = 0  # how many of the last ones had the same words
    words: str | None = None  # the last failure, in the batch system's words
    at: float = 0.0  # when it happened (seconds since the epoch)

    @property
    def stopped(self) -> bool:
        return self.same >= STOP_AFTER

    @property
    def wait(self) -> float:
        """Seconds after the last failure before the next automatic submission."""
        if self.failures == 0:
            return 0.0
        return min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** (self.failures - 1))

    def may_submit(self, now: float) -> bool:
        return not self.stopped and now >= self.at + self.wait

    def retry_in(self, now: float) -> float | None:
        """Seconds until the next automatic submission may go; None when stopped or no failure."""
        if self.failures == 0 or self.stopped:
            return None
        return max(0.0, self.at + self.wait - now)

    def failed(self, words: str, now: float) -> Backoff:
        same = self.same + 1 if _shape(words) == _shape(self.words or "") else 1
        return replace(self, failures=self.failures + 1, same=same, words=words, at=now)

    def trouble(self, now: float) -> SubmitTrouble | None:
        """What ``dask-hpc status`` says about it; None without failures."""
        if self.failures == 0:
            return None
        return SubmitTrouble(self.failures, self.words or "", self.retry_in(now), self.stopped)


def _shape(words: str) -> str:
    """A failure's words with numbers (job ids, counts) left out: what makes two alike."""
    return re.sub(r"\d+", "N", words)
