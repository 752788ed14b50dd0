"""The keeper's decisions, as pure functions: which jobs to end, how many to have."""

from __future__ import annotations

import re
import shlex
import time

import pytest

from dask_hpc.cli.options import given_options
from dask_hpc.keeper.decisions import (
    adapt_target_jobs,
    cap_message,
    cap_refusal,
    capped_jobs,
    choose_removals,
    job_limit_message,
    job_of_worker,
    more_workers_a_job,
    running_cap_message,
    running_cap_refusal,
    scale_steps,
    session_holds,
)
from dask_hpc.spec import JobSpec, parse_memory
from dask_hpc.state.ledger import JobRecord
from dask_hpc.systems import Cap, JobLimit, JobState


def record(job_id: str, submitted: float, started: float | None = None, **kw: object) -> JobRecord:
    state = JobState.RUNNING if started is not None else JobState.PENDING
    return JobRecord(job_id, "w", 1, 600, submitted, state=state, started=started, **kw)  # type: ignore[arg-type]


def test_job_of_worker_by_name() -> None:
    jobs = {"12": 0, "12.0": 0, "7": 0}
    assert job_of_worker("12", jobs) == "12"
    assert job_of_worker("12-1", jobs) == "12"  # several workers per job
    assert job_of_worker("12.0-3", jobs) == "12.0"  # HTCondor ids
    assert job_of_worker("123", jobs) is None
    assert job_of_worker("tcp://10.0.0.1:4000", jobs) is None
    assert job_of_worker("7-x", jobs) is None


def test_removals_pending_newest_first_then_least_data() -> None:
    jobs = [
        record("a", 1, started=10),
        record("b", 2, started=11),
        record("c", 3),
        record("d", 4),
        record("e", 5, started=12, removed=True),  # already going
        record("f", 6, started=13, ended=20),  # gone
    ]
    held = {"a": 100, "b": 5}
    assert choose_removals(jobs, 1, held) == ["d"]
    assert choose_removals(jobs, 3, held) == ["d", "c", "b"]
    assert choose_removals(jobs, 10, held) == ["d", "c", "b", "a"]
    assert choose_removals(jobs, 0, held) == []


def test_removals_break_ties_by_youngest() -> None:
    jobs = [record("old", 1, started=10), record("young", 2, started=50)]
    assert choose_removals(jobs, 1, {}) == ["young"]


def test_adapt_target_in_jobs_within_bounds() -> None:
    assert adapt_target_jobs(0, 1, 1, 5) == 1
    assert adapt_target_jobs(3, 1, 0, 5) == 3
    assert adapt_target_jobs(30, 1, 0, 5) == 5
    assert adapt_target_jobs(5, 2, 0, 10) == 3  # two workers per job: round up
    assert adapt_target_jobs(-1, 1, 0, 5) == 0


def test_scale_steps_count_only_jobs_that_bring_workers() -> None:
    live = [record("a", 1, started=2), record("b", 1), record("c", 1, started=2, removed=True)]
    assert scale_steps(live, 4) == (2, 0)
    assert scale_steps(live, 1) == (0, 1)
    assert scale_steps(live, 2) == (0, 0)


def test_decisions_stay_fast_at_ten_thousand_jobs() -> None:
    now = time.time()
    jobs = [record(str(i), now + i, started=now + i if i % 2 else None) for i in range(10_000)]
    held = {str(i): i % 97 for i in range(10_000)}
    chosen = choose_removals(jobs, 5_000, held)
    assert len(chosen) == 5_000 and len(set(chosen)) == 5_000
    assert all(int(j) % 2 == 0 for j in chosen)  # every pending job goes before any running one
    from dask_hpc.keeper.decisions import replacement_times

    kept_jobs = [
        record(str(i), now + i, started=now + i, joined=now + i + 1, keep=True) for i in range(10_000)
    ]
    times = replacement_times(kept_jobs, lambda j: 10.0)  # the keeper asks this every second
    assert len(times) == 10_000


# ---- kept jobs: replacements ahead of the walltime ------------------------------------


def kept(job_id: str, submitted: float, **kw: object) -> JobRecord:
    return record(job_id, submitted, keep=True, **kw)


def test_queue_wait_is_the_median_of_the_last_joins() -> None:
    from dask_hpc.keeper.decisions import DEFAULT_QUEUE_WAIT, queue_wait

    assert queue_wait([]) == DEFAULT_QUEUE_WAIT
    assert queue_wait([record("a", 0)]) == DEFAULT_QUEUE_WAIT  # never joined: nothing observed
    waits = [50, 2, 4, 3, 9, 7]  # the first is too old to count: the queue changes
    jobs = [record(str(i), 100 * i, started=100 * i, joined=100 * i + w) for i, w in enumerate(waits)]
    assert queue_wait(jobs) == 4  # median of 2, 3, 4, 7, 9


def test_replacement_time_is_end_less_wait_margin_and_slack() -> None:
    from dask_hpc.keeper.decisions import LEAD_SLACK, WAIT_FACTOR, replacement_times

    jobs = [
        kept("a", 0, started=2, joined=10, end=600),  # waited 10 s
        kept("b", 0, started=3, joined=10),  # no reported end: start + walltime (600)
        kept("c", 0),  # pending: no end known yet
        record("d", 0, started=2, joined=10, end=600),  # not kept
        kept("e", 0, started=2, joined=10, end=600, replaced_by="f"),  # already replaced
        kept("g", 0, started=2, joined=10, end=600, removed=True),  # being removed
    ]
    times = replacement_times(jobs, lambda j: 20.0)
    lead = WAIT_FACTOR * 10 + 20 + LEAD_SLACK
    assert times == {"a": 600 - lead, "b": 603 - lead}


def test_lost_kept_jobs_are_those_that_ran_and_ended_unasked() -> None:
    from dask_hpc.keeper.decisions import lost_kept_jobs

    jobs = [
        kept("a", 0, started=1, joined=2, ended=50),  # killed: replace
        kept("b", 0, started=1, joined=2, ended=50, removed=True),  # we removed it
        kept("c", 0, started=1, joined=2, ended=50, replaced_by="x"),  # replaced already
        kept("d", 0, ended=5),  # failed before any worker joined: not over and over
        record("e", 0, started=1, joined=2, ended=50),  # not kept
        kept("f", 0, started=1, joined=2),  # alive
    ]
    assert lost_kept_jobs(jobs) == ["a"]


def test_a_job_being_replaced_does_not_count_its_replacement_does() -> None:
    jobs = [kept("a", 0, started=1, replaced_by="b"), kept("b", 5), kept("c", 0, started=1)]
    assert scale_steps(jobs, 2) == (0, 0)
    assert scale_steps(jobs, 3) == (1, 0)
    # Removing one ends the replacement (pending), not the job that leaves anyway.
    assert choose_removals(jobs, 1, {}) == ["b"]
    assert choose_removals(jobs, 5, {}) == ["b", "c"]


def test_backoff_waits_grow_to_a_cap_and_identical_failures_stop_it() -> None:
    from dask_hpc.keeper.decisions import BACKOFF_CAP, BACKOFF_FIRST, STOP_AFTER, Backoff
    from dask_hpc.keeper.protocol import SubmitTrouble

    b = Backoff()
    assert b.may_submit(0.0) and b.wait == 0 and b.trouble(0.0) is None
    waits = []
    for n in range(1, 12):
        b = b.failed("sbatch: error: " + "AB"[n % 2], float(n))  # two kinds in turn: never 3 alike
        waits.append(b.wait)
        assert not b.stopped and not b.may_submit(n + b.wait - 0.1) and b.may_submit(n + b.wait)
    assert waits[:3] == [BACKOFF_FIRST, 2 * BACKOFF_FIRST, 4 * BACKOFF_FIRST]
    assert max(waits) == BACKOFF_CAP and waits == sorted(waits)
    # Identical words (job ids aside) STOP_AFTER times in a row: stopped, whatever the wait.
    b = Backoff()
    for n in range(STOP_AFTER):
        assert not b.stopped
        b = b.failed(f"job {100 + n} ended before its worker joined: failed (exit code 3)", 0.0)
    assert b.stopped and not b.may_submit(1e9) and b.retry_in(1e9) is None
    assert b.trouble(0.0) == SubmitTrouble(
        failures=STOP_AFTER,
        words="job 102 ended before its worker joined: failed (exit code 3)",
        retry_in=None,
        stopped=True,
    )
    # A different failure starts the count of identical ones again.
    assert not Backoff().failed("a", 0).failed("a", 0).failed("b", 0).stopped


# ---- the site's caps (issue 22) ---------------------------------------------------------


def test_cap_refusal_counts_tasks_or_submissions_as_the_cap_does() -> None:
    submit = Cap(5, False, "MaxSubmitJobs=5")
    running = Cap(2, True, "MaxJobs=2")
    assert cap_refusal([submit], in_queue=1, n=4, submissions=1) is None  # 5: at the cap
    assert cap_refusal([submit], in_queue=1, n=5, submissions=1) == (submit, 4)
    assert cap_refusal([submit], in_queue=7, n=1, submissions=1) == (submit, 0)
    assert cap_refusal([running], in_queue=10, n=10, submissions=10) is None  # they wait, not refused
    once = Cap(2, False, "max_u_jobs=2", arrays_count_once=True)
    assert cap_refusal([once], in_queue=1, n=100, submissions=1) is None
    assert cap_refusal([once], in_queue=1, n=100, submissions=2) == (once, 1)


def test_a_cap_of_one_queue_counts_the_users_jobs_in_that_queue() -> None:
    """A reviewer's case at a real Torque site: max_user_queuable = 1 in fpt-large, and the
    user's one job in fpt-small. Counted against all the user's jobs, `add 1` to fpt-large was
    refused though qsub takes it; counted in its queue, it passes, and a second is refused."""
    cap = Cap(1, False, "max_user_queuable = 1 (queue fpt-large)", scope=(("queue", "fpt-large"),))
    assert cap_refusal([cap], 1, 1, 1) == (cap, 0)  # all the user's jobs: wrong
    assert cap_refusal([cap], 1, 1, 1, {cap: 0}) is None
    assert cap_refusal([cap], 1, 2, 1, {cap: 0}) == (cap, 1)
    # adapt's bound: the jobs of its scope, less the session's own.
    assert capped_jobs([cap], 5, 0, scoped={cap: 0}) == (1, cap)
    assert capped_jobs([cap], 5, 0) == (0, cap)


def test_capped_jobs_is_the_tightest_cap_less_the_jobs_of_other_sessions() -> None:
    submit, running = Cap(10, False, "MaxSubmitJobs=10"), Cap(4, True, "MaxJobsPerUser=4 (QOS normal)")
    assert capped_jobs([], in_queue=3, session_jobs=1) is None
    assert capped_jobs([submit, running], in_queue=3, session_jobs=1) == (4, running)
    assert capped_jobs([submit], in_queue=12, session_jobs=0) == (0, submit)
    assert capped_jobs([submit], in_queue=3, session_jobs=1) == (8, submit)  # 2 jobs elsewhere
    # An array counts once there: adapt's arrays are not bounded in tasks by it.
    assert capped_jobs([Cap(2, False, "max_u_jobs=2", arrays_count_once=True)], 5, 5) is None


def test_the_tightest_cap_is_the_one_said() -> None:
    """Association MaxSubmitJobs=10 and QOS MaxSubmitJobsPU=5: add 12 is refused by the QOS's."""
    association, qos = Cap(10, False, "MaxSubmitJobs=10"), Cap(5, False, "MaxSubmitJobsPerUser=5")
    assert cap_refusal([association, qos], in_queue=1, n=12, submissions=1) == (qos, 4)


def test_the_cap_line_says_the_cap_what_the_user_has_and_the_one_command_that_gets_the_workers() -> None:
    """A site with a 5-job cap: 40 one-worker jobs asked for, 4 fit. The line gives one
    command that gets 40 workers in 4 jobs: 10 nodes a job, or 10 workers on one node, each
    worker keeping its threads and memory."""
    spec = JobSpec.from_options(cores=2, processes=1, memory="4GiB")
    cap = Cap(5, False, "MaxSubmitJobs=5 (association of alice in account a1)")
    line = cap_message(cap, 4, 40, 1, "alice", spec, several_nodes=True)
    assert line == (
        "40 more worker jobs would pass the site's cap MaxSubmitJobs=5 (association of alice in "
        "account a1), which allows alice 5 jobs pending or running; alice has 1 in the queue now, "
        "so at most 4 more. For 40 workers in 4 jobs: dask-hpc add 4 --nodes 10 (10 nodes a job, "
        "40 workers) or dask-hpc add 4 --cores 20 --processes 10 --memory 40GiB (10 workers a node, "
        "40 workers); in Python, the same as nodes=, cores=, processes=, memory="
    )
    # No launcher for several nodes (HTCondor): only more workers on one node; a named session.
    one_node = cap_message(cap, 4, 40, 1, "alice", spec, several_nodes=False, session="era5")
    assert "--nodes" not in one_node
    assert "dask-hpc add 4 --name era5 --cores 20 --processes 10 --memory 40GiB" in one_node
    # Jobs of 2 nodes with 2 processes (4 workers a job): 9 jobs asked (36 workers), 3 fit.
    wide = JobSpec.from_options(cores=8, processes=2, memory="16GiB", nodes=2)
    line = cap_message(cap, 3, 9, 2, "alice", wide, several_nodes=True)
    assert "For 36 workers in 3 jobs: dask-hpc add 3 --nodes 6 (6 nodes a job, 36 workers)" in line
    assert "dask-hpc add 3 --cores 24 --processes 6 --memory 48GiB (6 workers a node, 36 workers)" in line
    max_u_jobs = Cap(2, False, "max_u_jobs=2 (qconf -sconf)", arrays_count_once=True)
    once = cap_message(max_u_jobs, 1, 3, 1, "bob", spec, several_nodes=True)
    assert "jobs (an array counts once)" in once and "one array counts once" in once
    # Full: no call fits, so the line does not say to make one.
    once_full = cap_message(max_u_jobs, 0, 1, 2, "bob", spec, several_nodes=True)
    assert "at most 0 more. End jobs of yours" in once_full and "one call" not in once_full
    full = cap_message(cap, 0, 2, 5, "alice", spec, several_nodes=True)
    assert "at most 0 more. End jobs of yours that you no longer need" in full


WAY = re.compile(r"(dask-hpc add \d+ [^(]*?) \((\d+) (?:nodes? a job|workers? a node), (\d+) workers?\)")


def add_command(command: str, base: JobSpec) -> tuple[int, JobSpec, str | None]:
    """What ``dask-hpc add`` makes of a command line in a session of ``base``'s jobs: its job
    count, the spec of its jobs, its session; parsed by the CLI's own options, as the
    keeper reads them (JobSpec.with_options)."""
    from dask_hpc.cli import cli

    argv = shlex.split(command)
    assert argv[:2] == ["dask-hpc", "add"], command
    context = cli.commands["add"].make_context("add", argv[2:])
    params = context.params
    return int(params["n"]), base.with_options(**given_options(params)), params.get("name")


@pytest.mark.parametrize(("workers", "jobs"), [(40, 4), (41, 4), (7, 3), (1, 1), (100, 7), (5, 9)])
@pytest.mark.parametrize(("processes", "nodes"), [(1, 1), (2, 1), (1, 3), (4, 2)])
def test_the_way_out_gets_at_least_the_workers_asked_for_in_the_jobs_that_fit(
    workers: int, jobs: int, processes: int, nodes: int
) -> None:
    """Each command of the line, read by the CLI's own parser, makes at most ``jobs`` jobs
    and at least ``workers`` workers, as many as it says; each worker keeps its threads and
    memory; the line's "For N workers" is what was asked for."""
    spec = JobSpec.from_options(cores=2 * processes, processes=processes, memory="2GiB", nodes=nodes)
    line = more_workers_a_job(workers, jobs, spec, several_nodes=True, base=spec)
    assert line.startswith(f"For {workers} worker{'s' if workers > 1 else ''} in "), line
    ways = WAY.findall(line)
    assert len(ways) == 2, line  # more nodes a job, more workers a node
    for command, _, said in ways:
        count, got, _ = add_command(command, spec)
        assert count <= jobs and count * got.workers == int(said) >= workers, line
        assert got.cores // got.processes == 2, line  # each worker keeps its threads...
        assert got.memory // got.processes == parse_memory("2GiB") // processes, line  # ...and memory


def test_the_way_out_carries_the_adds_own_options_and_the_sites_most_nodes() -> None:
    """`add 40 --queue short --walltime 30m --job-extra-directive=--qos=high` on a session
    of one-core jobs: each way out asks for the same kind of job (queue, walltime, extra
    directives), and a partition's MaxNodes=4 leaves out the way of 10 nodes a job."""
    base = JobSpec.from_options(cores=1, memory="2GiB", walltime="1h")
    spec = base.with_options(
        queue="short", walltime="30m", job_extra_directives=["--qos=high"], environment=["A=a b"]
    )
    line = more_workers_a_job(40, 4, spec, several_nodes=True, session="era5", base=base)
    ways = WAY.findall(line)
    assert [w[2] for w in ways] == ["40", "40"], line
    for command, _, _ in ways:
        count, got, name = add_command(command, base)
        assert (count, name, got.queue, got.walltime) == (4, "era5", "short", 1800), command
        assert (got.job_extra_directives, got.environment) == (("--qos=high",), (("A", "a b"),)), command
    capped = more_workers_a_job(40, 4, spec, several_nodes=True, base=base, max_nodes=4)
    assert "--nodes" not in capped and len(WAY.findall(capped)) == 1, capped
    # A session of 2-node jobs, an add of 1-node jobs: the wider way says --nodes 1.
    wide = JobSpec.from_options(cores=2, nodes=2)
    one = wide.with_options(nodes=1)
    (_, (command, _, said)) = WAY.findall(more_workers_a_job(8, 2, one, several_nodes=True, base=wide))
    assert add_command(command, wide)[1].nodes == 1 and said == "8", command


def test_a_cap_of_some_jobs_counts_only_the_sessions_jobs_among_them() -> None:
    """A partition QOS's GrpTRES=cpu=2 counts the jobs of its partition: with the scheduler's
    job (1 CPU) in another partition, two 1-CPU worker jobs fit; counted with everything the
    session holds, only one would (the refusal came before the scoped holds)."""
    cap = Cap(
        2, True, "GrpTRES=cpu=2 (QOS partcap of partition short)", per="cpu", scope=(("partition", "short"),)
    )
    scheduler, worker = JobSpec.from_options(cores=1), JobSpec.from_options(cores=1, queue="short")
    everything = session_holds([scheduler])
    assert running_cap_refusal([cap], worker, 2, everything) == (cap, 1)
    scoped = {cap: session_holds([])}  # the scheduler's job is not in partition short
    assert running_cap_refusal([cap], worker, 2, everything, scoped) is None
    assert running_cap_refusal([cap], worker, 3, everything, scoped) == (cap, 2)
    assert capped_jobs([cap], 1, 0, worker, everything, scoped_holds=scoped) == (2, cap)
    assert capped_jobs([cap], 1, 0, worker, everything) == (1, cap)


def test_summits_five_running_jobs_refuse_forty_jobs_and_say_the_one_command_for_forty_workers() -> None:
    """Summit's MaxJobs-like cap of 5 running jobs (distributed #3691): the scheduler's job
    holds one, so 40 one-worker jobs could never all run; 4 could. The line says so and
    gives the command for 40 workers in 4 jobs. Adapt is bounded at 4, not 5."""
    running = Cap(5, True, "MaxJobs=5 (association of alice in account a1)")
    scheduler = JobSpec.from_options(cores=1, memory="4GiB")
    spec = JobSpec.from_options(cores=2, memory="4GiB")
    holds = session_holds([scheduler])
    assert running_cap_refusal([running], spec, 40, holds) == (running, 4)
    assert running_cap_refusal([running], spec, 4, holds) is None
    # The session's worker jobs count too (not the user's jobs elsewhere: they end by themselves).
    assert running_cap_refusal([running], spec, 2, session_holds([scheduler, spec, spec, spec])) == (
        running,
        1,
    )
    # Caps on submitted jobs are cap_refusal's.
    assert running_cap_refusal([Cap(5, False, "MaxSubmitJobs=5")], spec, 40, holds) is None
    line = running_cap_message(running, 4, 40, "alice", spec, several_nodes=True, base=spec)
    assert line.startswith(
        "40 more worker jobs could not all run at once under the site's cap MaxJobs=5 (association "
        "of alice in account a1), which bounds what alice runs at once: beside this session's jobs "
        "(its scheduler's and its workers'), at most 4 more could run"
    ), line
    ways = WAY.findall(line)
    assert [add_command(w[0], spec)[0] for w in ways] == [4, 4] and [w[2] for w in ways] == ["40", "40"], line
    full = running_cap_message(running, 0, 1, "alice", spec, several_nodes=True)
    assert "at most 0 more could run" in full and "dask-hpc remove" in full
    # Adapt: the scheduler's job leaves 4 (it was bounded at 5: one job always waited).
    assert capped_jobs([running], 3, 0, spec, session_holds([scheduler])) == (4, running)
    # A cap on CPUs: the scheduler's core leaves 15 of 16, seven jobs of 2 cores.
    cpus = Cap(16, True, "MaxTRESPerUser=cpu=16 (QOS normal)", per="cpu")
    assert capped_jobs([cpus], 1, 0, spec, session_holds([scheduler])) == (7, cpus)
    assert running_cap_refusal([cpus], spec, 8, holds) == (cpus, 7)


def test_the_workers_of_a_job_of_several_nodes_are_its_own() -> None:
    """`<job id>@<node>` (one worker on each node), `<job id>@<node>-<n>` (several there)."""
    jobs = {"4711": 1, "4712_3": 2}
    assert job_of_worker("4711@node1", jobs) == "4711"
    assert job_of_worker("4711@node2-1", jobs) == "4711"
    assert job_of_worker("4712_3@gpu-07", jobs) == "4712_3"  # a node name with a dash
    assert job_of_worker("4713@node1", jobs) is None


def test_a_cap_on_cpus_bounds_the_session_by_the_cpus_of_its_jobs() -> None:
    """SLURM's MaxTRESPerUser=cpu=16: four jobs of 4 cores, or two of 4 cores on 2 nodes;
    the tightest of it and a MaxJobs=3 binds."""
    cpus = Cap(16, True, "MaxTRESPerUser=cpu=16 (QOS normal)", per="cpu")
    jobs = Cap(3, True, "MaxJobs=3")
    assert capped_jobs([cpus], 0, 0, JobSpec.from_options(cores=4)) == (4, cpus)
    assert capped_jobs([cpus], 0, 0, JobSpec.from_options(cores=4, nodes=2)) == (2, cpus)
    assert capped_jobs([cpus, jobs], 0, 0, JobSpec.from_options(cores=4)) == (3, jobs)
    # A cap on running jobs is not a cap on submitting them: add is not refused by it.
    assert cap_refusal([cpus, jobs], in_queue=0, n=10, submissions=1) is None


def test_a_job_past_a_partitions_limit_is_refused_in_one_line_with_what_to_ask() -> None:
    limits = [
        JobLimit("walltime", 600, "MaxTime=00:10:00 (partition short)"),
        JobLimit("node", 2, "MaxNodes=2 (partition short)"),
    ]
    within = JobSpec.from_options(walltime="10m", nodes=2)
    assert job_limit_message(limits, within, "slurm") is None
    line = job_limit_message(limits, JobSpec.from_options(walltime="1h"), "slurm")
    assert line == (
        "a worker job with a walltime of 01:00:00 would pass the site's limit MaxTime=00:10:00 "
        "(partition short), so slurm would refuse it or hold it in the queue for ever; ask for "
        "less (--walltime 00:10:00), or another queue"
    )
    line = job_limit_message(limits, JobSpec.from_options(walltime="1h"), "slurm", scheduler=True)
    assert (
        line is not None
        and line.startswith("the scheduler's job")
        and "--scheduler-walltime 00:10:00" in line
    )
    line = job_limit_message(limits, JobSpec.from_options(walltime="5m", nodes=3), "slurm")
    assert (
        line is not None and "3 nodes would pass the site's limit MaxNodes=2" in line and "--nodes 2" in line
    )
    mem = [JobLimit("mem", 4096, "MaxTRES=mem=4G (QOS normal)"), JobLimit("cpu", 8, "MaxTRES=cpu=8")]
    line = job_limit_message(mem, JobSpec.from_options(memory="8GiB", cores=4), "slurm")
    assert line is not None and "8192 MiB" in line and "--memory 4096MiB" in line
    line = job_limit_message(mem, JobSpec.from_options(memory="2GiB", cores=8, nodes=2), "slurm")
    assert line is not None and "16 CPUs" in line and "--cores 4" in line


def printed_commands(line: str) -> list[str]:
    return re.findall(r"(dask-hpc (?:add|up) .*?)(?: \(| or |; |$)", line)


def test_where_the_nodes_do_not_take_all_the_workers_the_way_out_gives_the_widest_jobs_that_fit() -> None:
    """The newcomer's case: 10 workers of 1 core and 1 GiB asked, 2 jobs left under
    MaxSubmitJobs, nodes of 8 cores and 4096 MiB, 4 of them. `--nodes 5` and `--processes 5
    --memory 5GiB` were printed and sbatch refused both; now the widest jobs that fit, and
    how many workers they bring."""
    from dask_hpc.systems import JobLimit

    limits = [
        JobLimit("node", 4, "its 4 nodes"),
        JobLimit("node_cpu", 8, "CPUs=8"),
        JobLimit("node_mem", 4096, "4096M"),
    ]
    spec = JobSpec.from_options(cores=1, memory="1GiB")

    def fits(way: JobSpec, count: int) -> bool:
        return job_limit_message(limits, way, "slurm") is None

    line = more_workers_a_job(10, 2, spec, several_nodes=True, fits=fits)
    assert line == (
        "At most 8 workers fit in 2 jobs, as wide as the site's nodes and caps let a job be: "
        "dask-hpc add 2 --nodes 4 (4 nodes a job, 8 workers) or "
        "dask-hpc add 2 --cores 4 --processes 4 --memory 4GiB (4 workers a node, 8 workers)"
    )
    # Where they do, as before: every worker asked for.
    assert more_workers_a_job(8, 2, spec, several_nodes=True, fits=fits).startswith(
        "For 8 workers in 2 jobs: "
    )
    # However many are asked for, the widest that fit are found by halving: the same answer.
    assert more_workers_a_job(10**6, 2, spec, several_nodes=True, fits=fits) == line
    # GPUs that a wider job's processes could not share are not a job: no way of that kind,
    # and no error in place of the cap's line.
    gpus = JobSpec.from_options(cores=4, processes=4, gpus=4, memory="4GiB")
    assert "dask-hpc add 2 --nodes 8 (8 nodes a job, 64 workers)" in more_workers_a_job(
        64, 2, gpus, several_nodes=True
    )


def test_the_way_out_gives_only_commands_that_pass_every_cap_on_running_jobs() -> None:
    """Caps on what running jobs hold (CPUs, nodes) are not passed by more workers a job:
    a way past any cap is not printed; where none is left, the line says how many workers
    fit, in a command that does (the review's case: a command refused again)."""
    scheduler, spec = JobSpec.from_options(cores=1), JobSpec.from_options(cores=2)
    holds = session_holds([scheduler])
    cpus = Cap(16, True, "MaxTRESPerUser=cpu=16 (QOS normal)", per="cpu")
    cap, more = running_cap_refusal([cpus], spec, 40, holds) or (None, 0)
    assert (cap, more) == (cpus, 7)  # 15 CPUs left, 2 a job

    def fits(caps: list[Cap]) -> object:
        return lambda way, count: running_cap_refusal(caps, way, count, holds) is None

    line = running_cap_message(cpus, more, 40, "alice", spec, several_nodes=True, fits=fits([cpus]))
    assert "at most 7 workers fit, in dask-hpc add 7" in line, line
    for caps in ([cpus], [Cap(5, True, "MaxJobs=5"), Cap(8, True, "GrpTRES=node=8", per="node")]):
        cap, more = running_cap_refusal(caps, spec, 40, holds) or (None, 0)
        assert cap is not None
        line = running_cap_message(cap, more, 40, "alice", spec, several_nodes=True, fits=fits(caps))
        commands = printed_commands(line)
        assert commands, line
        for command in commands:
            count, way, _ = add_command(command, spec)
            assert running_cap_refusal(caps, way, count, holds) is None, command


def test_the_way_out_of_up_is_ups_and_kept_jobs_stay_kept() -> None:
    """`up --workers 40` past a cap does not start the session: the way out is up's own
    command; a refused `scale` (kept jobs) gives commands with --keep."""
    spec = JobSpec.from_options(cores=1)
    cap = Cap(5, True, "MaxJobs=5")
    line = running_cap_message(cap, 4, 40, "alice", spec, several_nodes=True, session="era5", up=True)
    assert "dask-hpc up --name era5 --workers 4 --nodes 10 (10 nodes a job, 40 workers)" in line, line
    assert "give up's other options again" in line
    kept = running_cap_message(cap, 4, 40, "alice", spec, several_nodes=True, keep=True)
    assert all(c.endswith("--keep") for c in printed_commands(kept)) and len(printed_commands(kept)) == 2, (
        kept
    )
