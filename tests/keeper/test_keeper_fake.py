"""The keeper's decisions, end to end but fast: a Keeper in an in-process Scheduler, over a fake
batch system whose job states each test plays (:mod:`tests.keeper.fake_system`).

No daemon, no subprocess, no ``sbatch``: the scheduler and any workers live in the test's
event loop on 127.0.0.1. A worker "joins for a job" by being named after the job id, as
``python -m dask_hpc.worker`` names them in a real job. The keeper's periodic steps run
every 0.05 s here (their intervals are monkeypatched before the keeper starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dask
import pytest
from distributed import Scheduler, Worker
from distributed.core import Status

import dask_hpc.keeper.decisions as decisions
import dask_hpc.keeper.plugin as keeper_module
import dask_hpc.keeper.protocol as protocol
import dask_hpc.state.ledger as ledger_module
from dask_hpc.errors import (
    CapError,
    PartlySubmittedError,
    SessionError,
    SpecError,
    SubmitError,
    UnknownOptionError,
)
from dask_hpc.keeper.plugin import Keeper
from dask_hpc.network import InterfaceChoice
from dask_hpc.session.link import Link
from dask_hpc.spec import JobSpec
from dask_hpc.state.ledger import JobRecord, load_ledger
from dask_hpc.state.session import Session, SessionConfig
from dask_hpc.systems import Cap, JobLimit, JobState
from dask_hpc.systems.base import ENV_SYSTEM
from dask_hpc.worker.retirement import END_METRIC

from .fake_system import FakeSystem

pytestmark = pytest.mark.timeout(60)
A = TypeVar("A", bound=protocol.Answer)

#: The keeper's periodic steps (refresh, adapt, kept jobs), in seconds.
STEP = 0.05
#: The longest any one wait in these tests may take.
WAIT = 10.0
SPEC = JobSpec(cores=2, memory=4 * 2**30, walltime=3600, processes=1, job_name="dask-worker")


@pytest.fixture(autouse=True)
def fast_and_isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Short keeper intervals; nothing read from how pytest was started; no thread left behind."""
    monkeypatch.setattr(keeper_module, "ADAPT_INTERVAL", STEP)
    monkeypatch.setattr(keeper_module, "KEEP_INTERVAL", STEP)
    monkeypatch.delenv(ENV_SYSTEM, raising=False)  # else the keeper thinks it runs inside a job
    before = set(threading.enumerate())
    with dask.config.set({"dask-hpc.retire-margin": 5}):  # whatever the environment says
        yield
    deadline = time.monotonic() + 5
    while (left := [t for t in threading.enumerate() if t not in before and t.is_alive()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    # distributed's one offload thread is process-wide, started by whichever test needs it first.
    assert [t.name for t in left if not t.name.startswith("Dask-Offload")] == []


@dataclass
class Harness:
    """A running scheduler with the keeper in it, over a fake system."""

    scheduler: Scheduler
    keeper: Keeper
    system: FakeSystem
    session: Session
    directory: Path
    workers: list[Worker] = field(default_factory=list)
    steps: Counter[str] = field(default_factory=Counter)  # keeper steps done: "adapt", "keep"

    async def join(
        self, name: str, *, end: float | None = None, resources: dict[str, float] | None = None
    ) -> Worker:
        """Start a worker named ``name`` (a job id, or ``<job id>-<n>``); ``end``: the walltime
        end it reports, as dask_hpc.worker.retirement does in a job; ``resources``: its own
        (a pool's worker carries pool-<name>)."""
        worker = Worker(
            self.scheduler.address,
            resources=resources,
            name=name,
            nthreads=1,
            host="127.0.0.1",
            dashboard=False,
            memory_limit="1GiB",
            local_directory=str(self.directory / "workers"),
        )
        if end is not None:
            worker.metrics[END_METRIC] = lambda _: end
        self.workers.append(worker)
        await worker
        await until(lambda: worker.address in self.scheduler.workers, f"worker {name} to join")
        return worker

    async def ask(self, request: protocol.Request[A]) -> A:
        """The keeper's answer to ``request``, over distributed's RPC as a command asks it
        (:class:`~dask_hpc.session.link.Link`): a refusal is raised as the keeper's error."""
        return await Link(self.scheduler.address).ask_async(request)

    async def status(self) -> protocol.KeeperStatus:
        return await self.ask(protocol.Status())

    async def status_jobs(self) -> dict[str, dict[str, Any]]:
        """The jobs as ``dask-hpc status --json`` shows them."""
        return {j.job_id: j.to_dict() for j in (await self.status()).jobs}

    def ledger(self) -> dict[str, JobRecord]:
        return load_ledger(self.session.ledger_file)

    async def ledger_written(self) -> dict[str, JobRecord]:
        """The ledger file, once it says what the keeper knows (it is written once a second)."""
        await until(lambda: self.ledger() == self.keeper.jobs, "the ledger to be written")
        return self.ledger()

    async def steps_pass(self, kind: str, n: int = 3) -> None:
        """Wait for ``n`` more of the keeper's ``kind`` steps (``"adapt"`` or ``"keep"``)."""
        target = self.steps[kind] + n
        await until(lambda: self.steps[kind] >= target, f"{n} {kind} steps")

    async def refreshes_pass(self, n: int = 2) -> None:
        """Wait for ``n`` more queries of the batch system."""
        target = len(self.system.queries) + n
        await until(lambda: len(self.system.queries) >= target, f"{n} queries")


async def until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.01)


def record_state(h: Harness, job_id: str) -> JobState | None:
    record = h.keeper.jobs.get(job_id)
    return None if record is None else record.state


@contextlib.asynccontextmanager
async def keeper_over(tmp_path: Path, system: FakeSystem, **config: Any) -> AsyncIterator[Harness]:
    """A Scheduler on 127.0.0.1 with a Keeper plugged in, over ``system``; all closed at the end."""
    session = Session("keeper-test", root=tmp_path / "sessions")
    session.prepare()
    settings = SessionConfig(
        name=session.name,
        system=system.name,
        spec=SPEC,
        scheduler_spec=JobSpec(),
        refresh=STEP,
        python="/opt/python/bin/python3",
        **config,
    )
    keeper = Keeper(session, settings, InterfaceChoice("lo", "127.0.0.1", "tests: loopback only"), system)
    async with Scheduler(
        host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0", dashboard=False, protocol="tcp"
    ) as scheduler:
        h = Harness(scheduler, keeper, system, session, tmp_path)
        for kind in ("adapt", "keep"):  # count the steps, so tests wait for steps, not seconds
            step = getattr(keeper, f"_{kind}_step")

            async def counted(step: Callable[[], Any] = step, kind: str = kind) -> None:
                await step()
                h.steps[kind] += 1

            setattr(keeper, f"_{kind}_step", counted)
        await keeper.start(scheduler)  # as Scheduler.register_scheduler_plugin does; add_plugin does not
        scheduler.add_plugin(keeper)
        try:
            yield h
        finally:
            for worker in h.workers:
                await worker.close()


# ---- submitting ------------------------------------------------------------------------------


def test_add_submits_n_scripts_and_records_n_pending_jobs(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            answer = await h.ask(protocol.Add(3))
            assert sorted(answer.job_ids) == ["1", "2", "3"]
            assert list(h.system.scripts) == ["1", "2", "3"]
            scheduler_file = shlex.quote(str(h.session.scheduler_file))
            for script in h.system.scripts.values():
                assert script.startswith("#!/usr/bin/env bash\n#FAKE --job-name=dask-worker\n")
                assert "#FAKE --walltime=3600\n#FAKE --cores=2\n" in script
                assert "export DASK_HPC_SYSTEM=fake\n" in script
                assert (
                    f"/opt/python/bin/python3 -m dask_hpc.worker --scheduler-file {scheduler_file}" in script
                )
                assert "--nthreads 2 --nworkers 1" in script
                assert "--tls-ca-file" in script  # the session is not --insecure
            assert set(h.system.directories.values()) == {h.session.scripts}
            for job_id in ("1", "2", "3"):
                r = h.keeper.jobs[job_id]
                assert (r.state, r.job_name, r.processes, r.walltime, r.keep) == (
                    JobState.PENDING,
                    "dask-worker",
                    1,
                    3600,
                    False,
                )
                assert r.started is r.ended is r.joined is None
            jobs = await h.status_jobs()
            assert {j: (s["state"], s["workers"], s["walltime_left"]) for j, s in jobs.items()} == {
                j: ("pending", 0, None) for j in ("1", "2", "3")
            }
            ledger = await h.ledger_written()
            assert sorted(ledger) == ["1", "2", "3"]
            assert {r.state for r in ledger.values()} == {JobState.PENDING}

    asyncio.run(run())


def test_add_n_is_one_array_per_largest_array_and_each_task_a_job(tmp_path: Path) -> None:
    """Issue 22: add 5 on a system whose arrays take 2 tasks: three submissions (2, 2 and a
    lone job), five jobs in the ledger, each task queried, removed and cancelled on its own."""
    system = FakeSystem(array_limit=2)

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            answer = await h.ask(protocol.Add(5))
            # Submitted side by side, in no set order: which submission got which number varies.
            assert len(answer.job_ids) == 5 and sorted(answer.job_ids) == sorted(system.scripts)
            assert system.submit_calls == 3 and sorted(system.array_sizes) == [2, 2]
            arrays = [j for j in answer.job_ids if "_" in j]
            assert all("--array=1-2" in system.scripts[j] for j in arrays)
            (lone,) = [j for j in answer.job_ids if "_" not in j]
            assert "--array" not in system.scripts[lone]
            task = arrays[0]
            system.start(task)
            await until(lambda: record_state(h, task) is JobState.RUNNING, f"task {task} running")
            await h.ask(protocol.Remove(job_ids=[task]))
            assert system.cancelled == [task]  # the task alone, not its array
            assert {j for j, r in h.keeper.jobs.items() if r.live and not r.removed} == set(
                answer.job_ids
            ) - {task}

    asyncio.run(run())


def test_a_worker_module_of_the_users_own_is_never_an_array(tmp_path: Path) -> None:
    """Its workers are named from the job id variable, which is not an array task's id."""
    system = FakeSystem(array_limit=100)

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            answer = await h.ask(protocol.Add(3, {"worker_command": "dask_cuda.cli.dask_cuda_worker"}))
            assert sorted(answer.job_ids) == ["1", "2", "3"] and system.array_sizes == []

    asyncio.run(run())


def test_a_job_of_two_nodes_is_one_job_with_a_worker_on_each(tmp_path: Path) -> None:
    """Issue 22: add 1 --nodes 2 is one job, two workers (<job>@<node>), removed as one."""

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            (job,) = (await h.ask(protocol.Add(1, {"nodes": 2}))).job_ids
            assert h.keeper.jobs[job].processes == 2  # workers the job brings
            h.system.start(job)
            await h.join(f"{job}@node1")
            await h.join(f"{job}@node2")
            await until(lambda: len(h.keeper.workers_of[job]) == 2, "both workers counted as the job's")
            await h.ask(protocol.Remove(job_ids=[job]))
            assert h.system.cancelled == [job]
            await until(lambda: not h.scheduler.workers, "both workers retired")

    asyncio.run(run())


def test_add_with_options_changes_the_script_and_records(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            options = {"walltime": "30m", "cores": 4, "queue": "short"}
            answer = await h.ask(protocol.Add(1, options, keep=True))
            assert answer == protocol.Jobs(["1"])
            script = h.system.scripts["1"]
            assert "#FAKE --walltime=1800\n#FAKE --cores=4\n" in script
            assert "#FAKE --queue=short\n" in script
            r = h.keeper.jobs["1"]
            assert (r.walltime, r.keep) == (1800, True)
            # A bad option is refused before anything is submitted, with the known ones listed.
            # The same error, type and line, as the same mistake before any session exists.
            with pytest.raises(SpecError) as before:
                JobSpec.from_options(walltime="soon")
            with pytest.raises(SpecError) as after:
                await h.ask(protocol.Add(2, {"walltime": "soon"}))
            assert type(after.value) is type(before.value)
            assert str(after.value) == str(before.value)
            assert str(after.value).startswith("invalid walltime 'soon': ")
            # On the wire: the line, and the error itself.
            wire = await h.scheduler.handlers["dask_hpc_add"](n=2, options={"walltime": "soon"})
            assert set(wire) == {"error", "raised"} and wire["error"] == str(before.value)
            with pytest.raises(UnknownOptionError, match="unknown option gpu"):
                await h.ask(protocol.Add(1, {"gpu": 2}))
            assert h.system.submit_calls == 1
            assert list(h.keeper.jobs) == ["1"]

    asyncio.run(run())


def test_a_walltime_of_two_fields_is_read_as_the_sessions_system_reads_it(tmp_path: Path) -> None:
    """``add --walltime 00:30`` to an LSF session: 30 minutes, as bsub -W and dask-jobqueue's
    LSFCluster read it (it was 30 seconds); on the others 30 seconds (sbatch --time, qsub)."""

    async def run() -> None:
        async with keeper_over(tmp_path / "lsf", FakeSystem(walltime_fields="HH:MM")) as h:
            await h.ask(protocol.Add(1, {"walltime": "00:30"}))
            await h.ask(protocol.Adapt(0, 1, options={"walltime": "01:30"}))
            assert (h.keeper.jobs["1"].walltime, h.keeper.adapt_spec.walltime) == (1800, 5400)
        async with keeper_over(tmp_path / "slurm", FakeSystem()) as h:
            await h.ask(protocol.Add(1, {"walltime": "00:30"}))
            assert h.keeper.jobs["1"].walltime == 30

    asyncio.run(run())


def test_a_refused_submission_answers_the_systems_words_and_records_nothing(tmp_path: Path) -> None:
    words = "sbatch: error: Batch job submission failed: Invalid account or account/partition combination"
    system = FakeSystem(refuse=words)

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            with pytest.raises(SubmitError) as refused:
                await h.ask(protocol.Add(2))
            assert str(refused.value).startswith("fake refused the job: ")
            assert words in str(refused.value)
            assert (system.submit_calls, system.refused, system.scripts) == (2, 2, {})
            assert h.keeper.jobs == {}
            assert (await h.status_jobs()) == {}
            await until(h.session.ledger_file.exists, "the ledger to be written")
            assert h.ledger() == {}

    asyncio.run(run())


def test_a_partial_refusal_reports_both_the_accepted_jobs_and_the_refusal(tmp_path: Path) -> None:
    words = "sbatch: error: QOSMaxSubmitJobPerUserLimit"
    system = FakeSystem(refuse=words, refuse_after=2)

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            with pytest.raises(PartlySubmittedError) as partly:
                await h.ask(protocol.Add(4))
            # Both: the accepted ids (they will join) and the refusal, in the system's words.
            assert sorted(partly.value.job_ids) == ["1", "2"]
            line = str(partly.value)
            match = re.match(r"2 of 4 worker jobs submitted \((\d+), (\d+)\); fake refused the job", line)
            assert match is not None, line
            assert set(match.groups()) == {"1", "2"}
            assert words in line
            assert system.refused == 2
            assert sorted(h.keeper.jobs) == ["1", "2"]  # the accepted ones are kept track of
            assert sorted(await h.ledger_written()) == ["1", "2"]

    asyncio.run(run())


# ---- job states, as the batch system plays them ------------------------------------------


def test_states_played_pending_running_ended_show_in_status_and_ledger(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(3))
            h.system.pend("3", "Resources")
            await until(lambda: h.keeper.jobs["3"].reason == "Resources", "the pending reason")

            h.system.start("1", node="cn07")
            h.system.start("2", node="cn08")
            await until(lambda: record_state(h, "2") is JobState.RUNNING, "jobs 1 and 2 running")
            jobs = await h.status_jobs()
            assert (jobs["1"]["state"], jobs["1"]["node"], jobs["1"]["reason"]) == ("running", "cn07", None)
            assert jobs["1"]["started"] is not None and jobs["1"]["ended"] is None
            assert 3590 < jobs["1"]["walltime_left"] <= 3600  # from its start: no worker reported an end
            assert (jobs["3"]["state"], jobs["3"]["reason"]) == ("pending", "Resources")
            ledger = await h.ledger_written()
            assert ledger["1"].state is JobState.RUNNING and ledger["1"].node == "cn07"

            h.system.finish("1", JobState.COMPLETED, exit_code=0)
            h.system.finish("2", JobState.TIMEOUT)
            h.system.finish("3", JobState.FAILED, exit_code=1, reason="launch failed requeued held")
            await until(lambda: not any(r.live for r in h.keeper.jobs.values()), "every job ended")
            jobs = await h.status_jobs()
            assert {j: s["state"] for j, s in jobs.items()} == {
                "1": "completed",
                "2": "timeout",
                "3": "failed",
            }
            assert jobs["1"]["exit_code"] == 0 and jobs["1"]["node"] == "cn07"
            assert (jobs["3"]["exit_code"], jobs["3"]["reason"]) == (1, "launch failed requeued held")
            assert jobs["3"]["started"] is None  # it never ran
            assert all(s["walltime_left"] is None and s["ended"] is not None for s in jobs.values())
            ledger = await h.ledger_written()
            assert {j: r.state for j, r in ledger.items()} == {
                "1": JobState.COMPLETED,
                "2": JobState.TIMEOUT,
                "3": JobState.FAILED,
            }
            # Ended jobs are asked about no more; with none live, the system is not asked at all.
            asked = len(h.system.queries)
            await h.steps_pass("keep", 4)
            assert len(h.system.queries) == asked

    asyncio.run(run())


def test_workers_join_their_job_by_name(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(2))
            h.system.start("1")
            end = time.time() + 1800
            first = await h.join("1", end=end)
            await h.join("1-1")  # a job running several worker processes
            await h.join("stranger")  # not one of the session's jobs
            r = h.keeper.jobs["1"]
            assert (r.state, r.joined is not None, r.started is not None, r.end) == (
                JobState.RUNNING,
                True,
                True,
                end,
            )
            status = await h.status()
            jobs = {j.job_id: j for j in status.jobs}
            assert (jobs["1"].workers, jobs["2"].workers) == (2, 0)
            left = jobs["1"].walltime_left
            assert left is not None and 1790 < left <= 1800  # from the end the worker reported
            assert (status.workers, status.other_workers, status.threads) == (3, 1, 3)
            await first.close()
            await until(lambda: first.address not in h.scheduler.workers, "worker 1 to leave")
            assert (await h.status_jobs())["1"]["workers"] == 1

    asyncio.run(run())


def test_a_failing_query_keeps_what_was_known(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1))
            h.system.query_error = "slurm_load_jobs error: Socket timed out on send/recv operation"
            h.system.start("1")
            await h.refreshes_pass(3)
            assert record_state(h, "1") is JobState.PENDING  # not known to have changed
            h.system.query_error = None
            await until(lambda: record_state(h, "1") is JobState.RUNNING, "job 1 running")

    asyncio.run(run())


# ---- jobs lost behind our back ----------------------------------------------------------------


def test_a_forgotten_pending_job_is_kept_through_the_grace_then_ends_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1))
            h.system.forget("1")  # e.g. not in the queue yet, or accounting lag
            await h.refreshes_pass(3)
            assert record_state(h, "1") is JobState.PENDING and h.keeper.jobs["1"].live
            monkeypatch.setattr(ledger_module, "UNKNOWN_GRACE", 0.0)
            await until(lambda: not h.keeper.jobs["1"].live, "job 1 seen ended")
            assert record_state(h, "1") is JobState.UNKNOWN
            await h.steps_pass("keep", 4)
            assert h.system.submit_calls == 1  # not kept: nothing replaces it

    asyncio.run(run())


@pytest.mark.parametrize("how", ["forgotten", "failed", "timeout"])
def test_a_kept_job_lost_behind_our_back_is_replaced_once(tmp_path: Path, how: str) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1, {"walltime": "2h"}, keep=True))
            h.system.start("1")
            worker = await h.join("1")
            await until(lambda: h.keeper.jobs["1"].started is not None, "job 1 running")
            if how == "forgotten":  # a started job gets no grace: the system has lost it
                h.system.forget("1")
                # ... and its worker is gone with it (a connected worker is proof of life).
                await worker.close()
            else:
                h.system.finish("1", JobState(how), reason="NodeFail")
            await until(lambda: h.keeper.jobs["1"].replaced_by is not None, "a replacement for job 1")
            old, new = h.keeper.jobs["1"], h.keeper.jobs["2"]
            assert old.state is (JobState.UNKNOWN if how == "forgotten" else JobState(how))
            assert (old.live, old.removed, old.replaced_by) == (False, False, "2")
            assert (new.state, new.keep, new.walltime, new.replaced_by) == (
                JobState.PENDING,
                True,
                7200,
                None,
            )
            assert "#FAKE --walltime=7200\n" in h.system.scripts["2"]  # the lost job's own spec
            await h.steps_pass("keep", 4)
            assert h.system.submit_calls == 2  # once
            assert h.system.cancelled == []
            jobs = await h.status_jobs()
            assert (jobs["1"]["replaced_by"], jobs["2"]["state"]) == ("2", "pending")

    asyncio.run(run())


def test_a_kept_job_that_ends_before_any_worker_joined_is_not_replaced(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1, keep=True))
            h.system.start("1")
            await until(lambda: record_state(h, "1") is JobState.RUNNING, "job 1 running")
            h.system.finish("1", JobState.FAILED, exit_code=127)  # e.g. a wrong python in the script
            await until(lambda: not h.keeper.jobs["1"].live, "job 1 ended")
            await h.steps_pass("keep", 5)
            assert h.system.submit_calls == 1
            assert h.keeper.jobs["1"].replaced_by is None

    asyncio.run(run())


def test_a_refused_replacement_is_tried_again_only_after_the_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = "sbatch: error: QOSMaxSubmitJobPerUserLimit"

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1, keep=True))
            h.system.start("1")
            worker = await h.join("1")
            h.system.refuse(words)
            h.system.forget("1")
            await worker.close()  # lost with its job
            await until(lambda: h.system.refused == 1, "a refused replacement")
            await h.steps_pass("keep", 5)
            assert (h.system.submit_calls, h.system.refused) == (2, 1)  # no sbatch storm
            assert h.keeper.jobs["1"].replaced_by is None
            trouble = (await h.status()).submit_trouble
            assert trouble.failures == 1 and not trouble.stopped and 0 < trouble.retry_in <= 60
            assert trouble.words.startswith("the replacement of job 1: fake refused the job")
            assert words in trouble.words
            h.system.accept()
            monkeypatch.setattr(decisions, "BACKOFF_FIRST", 0.0)
            await until(lambda: h.keeper.jobs["1"].replaced_by == "2", "the replacement, the second time")
            assert h.system.submit_calls == 3

    asyncio.run(run())


def test_a_kept_job_near_its_walltime_is_replaced_and_retired_once_its_replacement_joins(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1, keep=True))
            h.system.start("1")
            # It reports an end closer than the lead (queue wait x 1.5 + 5 s margin + 5 s slack): due now.
            old_worker = await h.join("1", end=time.time() + 8)
            await until(lambda: h.keeper.jobs["1"].replaced_by == "2", "a replacement ahead of the end")
            assert h.keeper.jobs["1"].live and not h.keeper.jobs["1"].removed
            assert h.system.cancelled == []  # it keeps working until the replacement has joined
            h.system.start("2")
            await h.join("2", end=time.time() + 3600)
            await until(lambda: h.keeper.jobs["1"].removed, "job 1 handed over")
            await until(lambda: old_worker.status in (Status.closing, Status.closed), "its worker retired")
            await until(lambda: record_state(h, "1") is JobState.CANCELLED, "job 1 cancelled")
            assert h.system.cancelled == ["1"]
            assert old_worker.address not in h.scheduler.workers
            jobs = await h.status_jobs()
            assert (jobs["1"]["replace_in"], jobs["2"]["replaced_by"]) == (None, None)
            assert 3000 < jobs["2"]["replace_in"] < 3600
            assert h.system.submit_calls == 2

    asyncio.run(run())


def test_kept_array_tasks_due_together_are_replaced_by_one_array(tmp_path: Path) -> None:
    """Issue 22: the tasks of an array near their walltime at once get their replacements in
    one submission, each task replaced by one task of the new array."""
    system = FakeSystem(array_limit=10)

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            ids = (await h.ask(protocol.Add(3, keep=True))).job_ids
            assert system.array_sizes == [3]
            async with h.keeper._lock:  # no keep step while they join: all three due in the next
                for job_id in ids:
                    system.start(job_id)
                    await h.join(job_id, end=time.time() + 8)  # due now
            await until(lambda: all(h.keeper.jobs[j].replaced_by for j in ids), "replacements")
            news = [h.keeper.jobs[j].replaced_by for j in ids]
            assert system.array_sizes == [3, 3] and system.submit_calls == 2
            assert len(set(news)) == 3 and {h.keeper.jobs[n].array for n in news if n} == {news[0]}

    asyncio.run(run())


def test_add_past_the_sites_submit_cap_is_refused_in_one_line_and_submits_nothing(tmp_path: Path) -> None:
    """Issue 22: a site that allows 5 jobs (MaxSubmitJobs=5): add 4 with 2 elsewhere in the
    queue is refused, saying the cap, its value, what the user has and the way out."""
    system = FakeSystem(array_limit=100)
    system.site_caps = [Cap(5, False, "MaxSubmitJobs=5 (association of alice in account a1)")]
    system.other_jobs = 2

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            with pytest.raises(CapError) as refused:
                await h.ask(protocol.Add(4))
            line = str(refused.value)
            assert "MaxSubmitJobs=5 (association of alice in account a1)" in line
            assert "has 2 in the queue now, so at most 3 more" in line and "--processes" in line
            assert "\n" not in line and system.submit_calls == 0
            assert len((await h.ask(protocol.Add(3))).job_ids) == 3  # up to the cap: fine
            with pytest.raises(CapError, match="at most 0 more"):
                await h.ask(protocol.Add(1))

    asyncio.run(run())


def test_a_cap_on_running_jobs_refuses_jobs_that_could_never_run_and_says_how_to_get_the_workers(
    tmp_path: Path,
) -> None:
    """Summit's case (issue 22, distributed #3691): 5 running jobs a user. The scheduler's job
    is one, so `add 40` could run 4 jobs and leave 36 waiting for the workers' walltimes: it
    is refused in one line, nothing submitted, with one command for 40 workers in 4 jobs,
    which is then accepted."""
    system = FakeSystem(array_limit=100)
    system.site_caps = [Cap(5, True, "MaxJobs=5 (association of alice in account a1)")]
    system.other_jobs = 3  # the user's jobs elsewhere wait their turn: they do not count

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            with pytest.raises(CapError) as refused:
                await h.ask(protocol.Add(40, {"walltime": "30m", "queue": "short"}))
            line = str(refused.value)
            assert "\n" not in line and system.submit_calls == 0, line
            assert "could not all run at once under the site's cap MaxJobs=5" in line, line
            assert "at most 4 more could run" in line, line
            way = re.search(r"dask-hpc (add 4 --name keeper-test --cores \S+ .*?) \(10 workers a node", line)
            assert way is not None and "--walltime 00:30:00 --queue short" in way[1], line
            options = dict(re.findall(r"--(\S+) (\S+)", way[1]))
            del options["name"]
            ids = (await h.ask(protocol.Add(4, options))).job_ids
            assert len(ids) == 4 and sum(h.system.scripts[i].count("--nworkers 10") for i in ids) == 4
            with pytest.raises(CapError, match="at most 0 more could run"):
                await h.ask(protocol.Add(1))

    asyncio.run(run())


def test_a_kept_jobs_replacement_is_submitted_at_a_cap_on_running_jobs(tmp_path: Path) -> None:
    """MaxJobs=2 with the scheduler's job and one kept worker job: its replacement is not
    refused (it waits in the queue for the job it replaces, which leaves at its margin)."""
    system = FakeSystem()
    system.site_caps = [Cap(2, True, "MaxJobs=2")]

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            (old,) = (await h.ask(protocol.Add(1, keep=True))).job_ids
            with pytest.raises(CapError, match="at most 0 more could run"):
                await h.ask(protocol.Add(1))  # the user's add is refused...
            system.start(old)
            await h.join(old, end=time.time() + 8)  # due now
            # ...the replacement is not.
            await until(lambda: h.keeper.jobs[old].replaced_by is not None, "a replacement at the cap")
            assert h.keeper.backoff.failures == 0

    asyncio.run(run())


def test_adapt_under_a_cap_on_running_jobs_leaves_room_for_the_schedulers_job(tmp_path: Path) -> None:
    """MaxJobs=5 with the scheduler in a job: adapt holds 4 worker jobs (it held 5, and the
    fifth waited in the queue for ever); with the scheduler outside a job, 5."""
    for scheduler_here, most in ((False, 4), (True, 5)):
        system = FakeSystem()
        system.site_caps = [Cap(5, True, "MaxJobs=5 (association of alice in account a1)")]

        async def run(
            system: FakeSystem = system, scheduler_here: bool = scheduler_here, most: int = most
        ) -> None:
            async with keeper_over(tmp_path / str(most), system, scheduler_here=scheduler_here) as h:
                await h.ask(protocol.Adapt(8, 8))
                await h.steps_pass("adapt")
                assert len([r for r in h.keeper.jobs.values() if r.live]) == most
                assert (
                    await h.status()
                ).capped == f"at most {most} jobs by MaxJobs=5 (association of alice in account a1)"

        asyncio.run(run())


def test_a_scheduler_outside_a_job_checks_the_sessions_own_jobs_against_the_sites_limits(
    tmp_path: Path,
) -> None:
    """BatchCluster(scheduler="local") has no `up` that checked the session's jobs against the
    partition's MaxTime: its first add does, in one line, before anything is submitted."""
    system = FakeSystem()
    system.site_limits = [JobLimit("walltime", 600, "MaxTime=00:10:00 (partition short)")]

    async def run() -> None:
        async with keeper_over(tmp_path, system, scheduler_here=True) as h:
            # Asked when the keeper starts, with the caps, while nobody waits (sacctmgr is slow):
            # the first add does not ask again.
            await until(lambda: system.limit_asks == 1, "the session's own limits asked at the start")
            with pytest.raises(CapError, match=r"MaxTime=00:10:00 \(partition short\).*--walltime 00:10:00"):
                await h.ask(protocol.Add(1))
            assert system.submit_calls == 0 and system.limit_asks == 1
            assert len((await h.ask(protocol.Add(1, {"walltime": "10m"}))).job_ids) == 1
            asks = system.limit_asks
            assert len((await h.ask(protocol.Add(1, {"walltime": "10m"}))).job_ids) == 1
            assert system.limit_asks == asks  # once a spec: not a command for every add
            # adapt with options of its own is checked too (it submitted jobs that pended forever).
            with pytest.raises(SessionError, match=r"MaxTime=00:10:00 \(partition short\)"):
                await h.ask(protocol.Adapt(1, 2, options={"walltime": "1h"}))
            assert h.keeper.adapt_bounds is None

    asyncio.run(run())


def test_limits_asked_ahead_long_ago_are_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's own limits asked when the keeper started serve its first add only while
    fresh (CAPS_TTL): an add hours later asks the site again (a limit may have changed)."""
    monkeypatch.setattr(keeper_module, "CAPS_TTL", 0.0)
    system = FakeSystem()

    async def run() -> None:
        async with keeper_over(tmp_path, system, scheduler_here=True) as h:
            await until(lambda: system.limit_asks == 1, "the session's own limits asked at the start")
            assert len((await h.ask(protocol.Add(1))).job_ids) == 1
            assert system.limit_asks == 2

    asyncio.run(run())


def test_a_cap_that_counts_an_array_once_lets_one_array_through(tmp_path: Path) -> None:
    """Grid Engine's max_u_jobs counts jobs, an array once: 10 tasks in one array pass a cap of 3."""
    system = FakeSystem(array_limit=100)
    system.site_caps = [Cap(3, False, "max_u_jobs=3 (qconf -sconf)", arrays_count_once=True)]

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            assert len((await h.ask(protocol.Add(10))).job_ids) == 10
            assert system.array_sizes == [10]

    asyncio.run(run())


def test_adapt_stays_under_the_caps_says_so_and_grows_when_they_leave_room(tmp_path: Path) -> None:
    """Adapt asked for 8 jobs where a cap of 4 submitted jobs leaves 3 (one is the user's job
    elsewhere): it holds 3, no refusals; once that job has left, it grows to 4 by itself."""
    system = FakeSystem()
    system.site_caps = [Cap(4, False, "MaxSubmitJobs=4 (association of alice in account a1)")]
    system.other_jobs = 1

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            await h.ask(protocol.Adapt(8, 8))
            await h.steps_pass("adapt")
            assert len([r for r in h.keeper.jobs.values() if r.live]) == 3
            assert h.keeper.last_refusal is None and h.keeper.backoff.failures == 0
            status = await h.status()
            assert status.capped == "at most 3 jobs by MaxSubmitJobs=4 (association of alice in account a1)"
            system.other_jobs = 0  # the user's other job ended
            await until(lambda: len([r for r in h.keeper.jobs.values() if r.live]) == 4, "adapt to grow")
            assert h.keeper.backoff.failures == 0

    asyncio.run(run())


def test_a_cap_set_during_the_session_is_read_again_once_the_system_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caps are asked when the keeper starts; a limit set since (sacctmgr) makes sbatch
    refuse: the caps are read again at once and the refusal is the cap's one line, not
    sbatch's three (the newcomer's first add after setting MaxSubmitJobs)."""
    monkeypatch.setattr(keeper_module, "FRESH", 0.0)  # every answer is old: the limit lifted is seen
    system = FakeSystem()

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            await h.ask(protocol.Add(1))
            system.site_caps = [Cap(1, False, "MaxSubmitJobs=1")]
            system.refuse("sbatch: error: AssocMaxSubmitJobLimit")
            with pytest.raises(CapError, match="MaxSubmitJobs=1") as refused:
                await h.ask(protocol.Add(1))
            assert "\n" not in str(refused.value)
            system.accept()
            with pytest.raises(CapError, match="MaxSubmitJobs=1"):
                await h.ask(protocol.Add(1))
            # A refusal the caps do not explain is the system's own.
            system.site_caps = []
            system.refuse("sbatch: error: Batch job submission failed: Invalid qos specification")
            with pytest.raises(SubmitError, match="Invalid qos"):
                await h.ask(protocol.Add(1))

    asyncio.run(run())


def test_a_refusal_near_a_cap_that_the_cap_does_not_explain_is_the_systems_own(tmp_path: Path) -> None:
    """The review's case: MaxSubmitJobs=10 with 8 jobs in the queue, add 2 refused by sbatch
    for another reason (Invalid qos). The check before had counted the 2 as in the queue:
    asked again with that count, the cap said "at most 0 more" and hid sbatch's reason."""
    system = FakeSystem()
    system.site_caps = [Cap(10, False, "MaxSubmitJobs=10")]
    system.other_jobs = 8

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            system.refuse("sbatch: error: Batch job submission failed: Invalid qos specification")
            with pytest.raises(SubmitError, match="Invalid qos"):
                await h.ask(protocol.Add(2))
            system.accept()
            assert len((await h.ask(protocol.Add(2))).job_ids) == 2  # counted once, not twice

    asyncio.run(run())


def test_a_cap_raised_during_the_session_lets_jobs_through_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caps are kept a minute, but a refusal asks again first: a limit the admin has
    just raised lets the add through at once (the newcomer was refused by the old one for
    45 s)."""
    monkeypatch.setattr(keeper_module, "FRESH", 0.0)
    system = FakeSystem()
    system.site_caps = [Cap(2, False, "MaxSubmitJobs=2")]

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            await h.ask(protocol.Add(1))
            with pytest.raises(CapError, match="MaxSubmitJobs=2"):
                await h.ask(protocol.Add(2))
            system.site_caps = [Cap(10, False, "MaxSubmitJobs=10")]
            assert len((await h.ask(protocol.Add(2))).job_ids) == 2

    asyncio.run(run())


def test_a_cap_holds_for_jobs_the_client_submits_too(tmp_path: Path) -> None:
    """Where the scheduler's node cannot submit, the keeper still refuses past the cap."""
    system = FakeSystem(submit_program=str(tmp_path / "no-such-sbatch"))
    system.site_caps = [Cap(2, False, "MaxSubmitJobs=2")]

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            with pytest.raises(CapError, match="at most 2 more"):
                await h.ask(protocol.Add(3))
            assert isinstance(await h.ask(protocol.Add(2)), protocol.SubmitHere)

    asyncio.run(run())


def test_replacements_at_the_cap_wait_without_counting_as_failures(tmp_path: Path) -> None:
    """A kept job near its walltime on a site at its cap: no replacement, no backoff (nothing
    storms); once it has ended, it is replaced in the room it left."""
    system = FakeSystem()
    system.site_caps = [Cap(1, False, "MaxSubmitJobs=1")]

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            (old,) = (await h.ask(protocol.Add(1, keep=True))).job_ids
            system.start(old)
            await h.join(old, end=time.time() + 8)  # due now, and the cap is full
            await h.steps_pass("keep", 5)
            assert h.keeper.jobs[old].replaced_by is None and h.keeper.backoff.failures == 0
            system.finish(old, JobState.TIMEOUT)
            await until(lambda: h.keeper.jobs[old].replaced_by is not None, "a replacement once it ended")
            assert h.keeper.backoff.failures == 0

    asyncio.run(run())


# ---- removing ---------------------------------------------------------------------------------


def test_remove_n_cancels_pending_jobs_newest_first(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            for _ in range(4):  # one by one: their submission times are in id order
                await h.ask(protocol.Add(1))
            h.system.start("1")
            await h.join("1")
            answer = await h.ask(protocol.Remove(2))
            assert answer == protocol.Jobs(["4", "3"])
            assert h.system.cancelled == ["4", "3"]
            for job_id in ("4", "3"):  # asked again right away: status shows them ended at once
                r = h.keeper.jobs[job_id]
                assert (r.removed, r.state, r.live) == (True, JobState.CANCELLED, False)
            assert (await h.ask(protocol.Remove(2))) == protocol.Jobs(["2", "1"])  # then the running ones
            assert h.system.cancelled == ["4", "3", "2", "1"]
            assert (await h.ask(protocol.Remove(1))) == protocol.Jobs([])
            assert h.system.cancelled == ["4", "3", "2", "1"]

    asyncio.run(run())


def test_remove_prefers_running_jobs_holding_the_least_data(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1))
            await h.ask(protocol.Add(1))
            for job_id in ("1", "2"):
                h.system.start(job_id)
                await h.join(job_id)
            await until(lambda: record_state(h, "2") is JobState.RUNNING, "jobs running")
            w1 = h.scheduler.workers[h.workers[0].address]
            w1.nbytes = 10**6  # what the scheduler counts as held by job 1's worker
            # Job 2 started last, but job 1 holds data: job 2 goes (less to move).
            assert (await h.ask(protocol.Remove(1))) == protocol.Jobs(["2"])

    asyncio.run(run())


def test_remove_by_id_retires_the_jobs_workers_then_cancels(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(2))
            h.system.start("1")
            h.system.start("2")
            worker = await h.join("1")
            await until(lambda: record_state(h, "2") is JobState.RUNNING, "job 2 running")
            assert (await h.ask(protocol.Remove(job_ids=["1"]))) == protocol.Jobs(["1"])
            assert worker.address not in h.scheduler.workers  # retired before the cancel
            assert h.system.cancelled == ["1"]
            assert record_state(h, "1") is JobState.CANCELLED and h.keeper.jobs["1"].removed
            assert record_state(h, "2") is JobState.RUNNING
            with pytest.raises(SessionError, match=r"^no job 9 in this session; its jobs: 2$"):
                await h.ask(protocol.Remove(job_ids=["9", "1"]))
            assert (await h.ask(protocol.Remove(job_ids=["1"]))) == protocol.Jobs([])  # ended: nothing to do
            assert h.system.cancelled == ["1"]

    asyncio.run(run())


async def two_jobs_running(h: Harness) -> Worker:
    """Jobs 1 and 2 submitted, running, a worker joined in each: job 1's worker."""
    await h.ask(protocol.Add(2))
    h.system.start("1")
    h.system.start("2")
    first = await h.join("1")
    await h.join("2")
    return first


def test_a_worker_that_cannot_hand_over_its_data_does_not_hold_the_keeper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """distributed's retire_workers waits for ever for data that no other worker can fetch
    (its holder no longer answers): the keeper held its lock, and remove, scale and down hung.
    After RETIRE_TIMEOUT the job is ended anyway, said in the log, and the keeper goes on."""
    from distributed import Client

    monkeypatch.setattr("dask_hpc.keeper.plugin.RETIRE_TIMEOUT", 1.0)

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            stuck = await two_jobs_running(h)
            async with Client(h.scheduler.address, asynchronous=True) as client:
                held = await client.scatter(42, workers=[stuck.address])  # only job 1's worker has it

                async def never(**_: Any) -> None:
                    await asyncio.Event().wait()

                stuck.handlers["get_data"] = never  # asked for its data, it never answers
                started = time.monotonic()
                answer = await asyncio.wait_for(h.ask(protocol.Remove(job_ids=["1"])), 30)
                assert answer == protocol.Jobs(["1"]) and time.monotonic() - started < 20
                assert h.system.cancelled == ["1"] and h.keeper.jobs["1"].removed
                assert "did not hand over their data within 1 s: ended anyway" in caplog.text
                # Not held: the next request is answered.
                assert len((await asyncio.wait_for(h.ask(protocol.Add(1)), 10)).job_ids) == 1
                del held

    with caplog.at_level(logging.WARNING, logger="dask_hpc.keeper.plugin"):
        asyncio.run(run())


def test_a_slow_retirement_whose_data_keeps_moving_is_not_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The other side of the cut above: a retirement that takes longer than RETIRE_TIMEOUT in
    all, but moves some of its data within every RETIRE_TIMEOUT, is waited for: nothing is
    lost. Here each of 6 keys held only by job 1's worker takes 1 s to hand over (one key a
    transfer: message-bytes-limit of 1 byte), 6 s in all, under a RETIRE_TIMEOUT of 3 s."""
    from distributed import Client

    monkeypatch.setattr("dask_hpc.keeper.plugin.RETIRE_TIMEOUT", 3.0)

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            slow = await two_jobs_running(h)
            async with Client(h.scheduler.address, asynchronous=True) as client:
                held = await client.scatter([f"value {i}" for i in range(6)], workers=[slow.address])
                served = slow.handlers["get_data"]
                calls = []

                # distributed passes the comm to a handler whose first parameter is named so.
                async def one_second_a_transfer(comm: Any, **kwargs: Any) -> Any:
                    calls.append(time.monotonic())
                    await asyncio.sleep(1.0)
                    return await served(comm, **kwargs)

                slow.handlers["get_data"] = one_second_a_transfer

                answer = await asyncio.wait_for(h.ask(protocol.Remove(job_ids=["1"])), 60)
                assert answer == protocol.Jobs(["1"]) and h.system.cancelled == ["1"]
                assert "ended anyway" not in caplog.text
                assert len(calls) >= 4, calls  # it took longer than RETIRE_TIMEOUT: several transfers
                # Nothing lost: scattered data cannot be computed again, and it is all there.
                assert await client.gather(held) == [f"value {i}" for i in range(6)]

    with (
        caplog.at_level(logging.WARNING, logger="dask_hpc.keeper.plugin"),
        dask.config.set({"distributed.worker.transfer.message-bytes-limit": 1}),
    ):
        asyncio.run(run())


def test_a_removed_job_that_the_cancel_kills_is_cancelled_not_failed(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1, keep=True))
            h.system.start("1")
            await h.join("1")
            h.system.cancel_takes_effect = False  # a slow scancel: the job is still running just after
            await h.ask(protocol.Remove(job_ids=["1"]))
            assert h.system.cancelled == ["1"]
            assert record_state(h, "1") is JobState.RUNNING and h.keeper.jobs["1"].removed
            h.system.finish("1", JobState.FAILED, exit_code=143)  # SIGTERM's exit
            await until(lambda: not h.keeper.jobs["1"].live, "job 1 ended")
            assert record_state(h, "1") is JobState.CANCELLED
            await h.steps_pass("keep", 4)
            assert h.system.submit_calls == 1  # removed on purpose: not replaced though kept

    asyncio.run(run())


# ---- scale and adapt --------------------------------------------------------------------------


def test_scale_up_and_down(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            up = await h.ask(protocol.Scale(3))
            assert sorted(up.job_ids) == ["1", "2", "3"]
            assert all(r.keep for r in h.keeper.jobs.values())  # the size holds through walltimes
            h.system.start("1")
            await h.join("1")
            down = await h.ask(protocol.Scale(1))
            assert sorted(down.job_ids) == ["2", "3"]  # the pending ones, not the running one
            assert sorted(h.system.cancelled) == ["2", "3"]
            assert (await h.ask(protocol.Scale(1))) == protocol.Jobs([])
            await h.steps_pass("keep", 4)
            assert h.system.submit_calls == 3  # removed kept jobs are not replaced
            assert (await h.ask(protocol.Scale(2))).job_ids == ["4"]
            assert (await h.ask(protocol.Scale(0))).job_ids == ["4", "1"]
            assert not any(r.live for r in h.keeper.jobs.values())

    asyncio.run(run())


def test_adapt_submits_up_to_its_minimum_and_ends_idle_jobs_when_lowered(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            bounds = re.escape("invalid adapt bounds 'min 3, max 1': need 0 <= min <= max")
            with pytest.raises(SpecError, match=bounds):
                await h.ask(protocol.Adapt(3, 1))
            with pytest.raises(SpecError, match=r"^invalid jobs -1: must be a whole number >= 0$"):
                await h.ask(protocol.Scale(-1))
            answer = await h.ask(protocol.Adapt(minimum_jobs=2, maximum_jobs=4))
            assert answer == protocol.Adapting(protocol.AdaptBounds(2, 4, STEP))
            assert (await h.status()).adapt == protocol.AdaptBounds(2, 4, STEP)
            await until(lambda: len(h.keeper.jobs) == 2, "two jobs submitted")
            await h.steps_pass("adapt", 5)
            assert h.system.submit_calls == 2  # no work: the minimum, and no more
            assert all(r.keep for r in h.keeper.jobs.values())
            # Lowered to 0 with no work: the idle (pending) jobs go, after ADAPT_WAIT_COUNT steps agree.
            await h.ask(protocol.Adapt(minimum_jobs=0, maximum_jobs=4))
            await until(lambda: not any(r.live for r in h.keeper.jobs.values()), "both jobs ended")
            assert sorted(h.system.cancelled) == ["1", "2"]
            assert all(r.removed and r.state is JobState.CANCELLED for r in h.keeper.jobs.values())
            assert (await h.ask(protocol.Adapt(off=True))) == protocol.Adapting(None)
            assert (await h.status()).adapt is None

    asyncio.run(run())


def test_adapt_without_an_upper_bound_and_with_adaptives_interval_and_wait_count(tmp_path: Path) -> None:
    """dask-jobqueue's adapt() is 0 to no upper bound; distributed's Adaptive takes interval
    and wait_count. A bad one is the same SpecError as anywhere."""

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            answer = await h.ask(protocol.Adapt(minimum_jobs=2, interval=0.5, wait_count=1))
            assert answer == protocol.Adapting(protocol.AdaptBounds(2, None, 0.5, 1))
            await until(lambda: len(h.keeper.jobs) == 2, "the minimum submitted")
            assert (await h.status()).adapt == protocol.AdaptBounds(2, None, 0.5, 1)
            # wait_count 1: lowered to 0, the idle jobs end at adapt's next decision.
            await h.ask(protocol.Adapt(minimum_jobs=0, maximum_jobs=None, wait_count=1))
            await until(lambda: not any(r.live for r in h.keeper.jobs.values()), "both jobs ended")
            for bad in (protocol.Adapt(interval=0), protocol.Adapt(wait_count=0)):
                with pytest.raises(SpecError, match=r"invalid adapt (interval 0|wait_count 0)"):
                    await h.ask(bad)

    asyncio.run(run())


def test_adapt_whose_first_jobs_are_all_refused_says_why_and_is_off(tmp_path: Path) -> None:
    """The live case: adapt on a partition whose time limit the walltime exceeds answered
    "adapting" and then called sbatch once a second, each refused, with nothing in status."""
    words = "sbatch: error: Batch job submission failed: Requested time limit is invalid"
    system = FakeSystem(refuse=words)

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            with pytest.raises(SessionError) as refused:
                await h.ask(protocol.Adapt(minimum_jobs=1, maximum_jobs=2))
            assert words in str(refused.value) and "adapt is off" in str(refused.value)
            assert h.keeper.adapt_bounds is None
            await h.steps_pass("adapt", 10)
            assert system.submit_calls == 1  # the one refusal, no storm

    asyncio.run(run())


def test_adapt_partly_refused_warns_and_backs_off_then_stops_on_identical_refusals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = "sbatch: error: QOSMaxSubmitJobPerUserLimit"
    system = FakeSystem(refuse=words, refuse_after=1)
    monkeypatch.setattr(decisions, "BACKOFF_FIRST", 0.2)  # then 0.4: steps are 0.05 s

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            answer = await h.ask(protocol.Adapt(minimum_jobs=3, maximum_jobs=3))
            assert answer.bounds == protocol.AdaptBounds(3, 3, STEP)
            assert answer.warning
            assert answer.warning.startswith("1 of 3 worker jobs submitted (1); fake refused the job")
            assert "adapt goes on" in answer.warning
            # Then the 2 missing jobs, refused: 0.2, 0.4, 0.8 s apart (adapt steps every 0.05 s
            # would otherwise each submit), and after 3 identical refusals no more.
            await until(lambda: h.keeper.backoff.stopped, "automatic submissions to stop")
            await h.steps_pass("adapt", 20)
            assert system.refused == 2 + 3 * 2
            trouble = (await h.status()).submit_trouble
            assert trouble.stopped is True and words in trouble.words
            assert h.keeper.adapt_bounds == (3, 3)  # still on: removing idle jobs goes on
            # The user acts: adapt again starts afresh.
            system.accept()
            await h.ask(protocol.Adapt(minimum_jobs=3, maximum_jobs=3))
            assert (await h.status()).submit_trouble is None
            assert sum(r.live for r in h.keeper.jobs.values()) == 3

    asyncio.run(run())


def test_adapt_jobs_that_end_before_their_worker_joins_back_off_then_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that cannot start (a bad prologue, a wrong python) must not be resubmitted as
    fast as it fails: each counts as a failed submission."""
    monkeypatch.setattr(decisions, "BACKOFF_FIRST", 0.2)

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Adapt(minimum_jobs=1, maximum_jobs=1))
            for n in range(1, 4):
                # In the keeper's ledger too: the system has the job a moment before the keeper
                # has written it down (a CI run looked it up in between: KeyError).
                await until(
                    lambda n=n: str(n) in h.system.scripts and str(n) in h.keeper.jobs, f"job {n} submitted"
                )
                h.system.finish(str(n), JobState.FAILED, exit_code=3)
                await until(lambda n=n: not h.keeper.jobs[str(n)].live, f"job {n} seen ended")
            assert h.keeper.backoff.stopped
            await h.steps_pass("adapt", 20)
            assert h.system.submit_calls == 3
            trouble = (await h.status()).submit_trouble
            assert trouble.words == (
                "job 3 ended before its worker joined: failed (exit code 3); "
                "see dask-hpc logs 3 --name keeper-test"
            )
            assert trouble.stopped is True and trouble.failures == 3

    asyncio.run(run())


def test_a_worker_joining_ends_the_run_of_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decisions, "BACKOFF_FIRST", 0.2)

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Adapt(minimum_jobs=1, maximum_jobs=1))
            h.system.finish("1", JobState.FAILED, exit_code=3)
            await until(lambda: h.keeper.backoff.failures == 1, "the failure counted")
            await until(lambda: "2" in h.system.scripts, "job 2 submitted after the wait")
            h.system.start("2")
            await h.join("2")
            assert h.keeper.backoff.failures == 0
            assert (await h.status()).submit_trouble is None

    asyncio.run(run())


def test_a_job_whose_submission_we_lost_is_adopted_when_its_worker_joins(tmp_path: Path) -> None:
    """A submit command that timed out (or whose answer we could not read) may have queued a
    job; its worker, named after it, joins: the job is in the ledger from then on, and down
    cancels it, instead of it running on unseen."""

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.join("4711", end=time.time() + 600)  # a worker of a dask-hpc job
            await h.join("someone", end=None)  # a worker the user started by hand: not a job
            assert list(h.keeper.jobs) == ["4711"]
            record = h.keeper.jobs["4711"]
            assert record.live and record.joined is not None and record.state is JobState.RUNNING
            assert (await h.status()).other_workers == 1
            await h.ask(protocol.Down())
            assert h.system.cancelled == ["4711"]

    asyncio.run(run())


def test_a_replacement_that_fails_before_joining_gets_another_after_the_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisions, "BACKOFF_FIRST", 0.2)

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1, keep=True))
            h.system.start("1")
            worker = await h.join("1")
            h.system.forget("1")
            await worker.close()  # lost with its job
            await until(lambda: h.keeper.jobs["1"].replaced_by == "2", "the first replacement")
            h.system.finish("2", JobState.FAILED, exit_code=1)  # it never starts a worker
            await until(lambda: h.keeper.jobs["1"].replaced_by == "3", "another replacement")
            assert h.keeper.backoff.failures == 1

    asyncio.run(run())


def test_every_refusal_is_in_status_whoever_asked(tmp_path: Path) -> None:
    words = "sbatch: error: Batch job submission failed: Invalid account"

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem(refuse=words)) as h:
            assert (await h.status()).last_refusal is None
            with pytest.raises(SubmitError):
                await h.ask(protocol.Scale(2))
            refusal = (await h.status()).last_refusal
            assert refusal is not None and refusal.by == "scale" and words in refusal.words
            with pytest.raises(SessionError, match="adapt is off"):
                await h.ask(protocol.Adapt(minimum_jobs=1, maximum_jobs=1))
            refusal = (await h.status()).last_refusal
            assert refusal is not None and refusal.by == "adapt"

    asyncio.run(run())


def test_scale_turns_adapt_off(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Adapt(minimum_jobs=2, maximum_jobs=2))
            await until(lambda: len(h.keeper.jobs) == 2, "two jobs submitted")
            assert sorted((await h.ask(protocol.Scale(3))).job_ids) == ["3"]
            assert h.keeper.adapt_bounds is None
            await h.steps_pass("adapt", 5)
            assert h.system.submit_calls == 3 and h.system.cancelled == []

    asyncio.run(run())


# ---- submission from the client, down ------------------------------------------------------------


def test_without_the_submit_program_the_client_submits_and_registers(tmp_path: Path) -> None:
    system = FakeSystem(submit_program=str(tmp_path / "no-such-sbatch"))

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            assert not h.keeper.can_submit
            answer = await h.ask(protocol.Add(2))
            assert isinstance(answer, protocol.SubmitHere) and answer.n == 2
            assert answer.script.startswith("#!/usr/bin/env bash\n#FAKE --job-name=dask-worker\n")
            with pytest.raises(SessionError) as kept:
                await h.ask(protocol.Add(1, keep=True))
            assert "--keep needs to submit jobs from the scheduler's node" in str(kept.value)
            assert "no-such-sbatch is not available" in str(kept.value)
            with pytest.raises(SessionError, match="use dask-hpc add/remove instead"):
                await h.ask(protocol.Adapt(1, 2))
            assert system.submit_calls == 0
            # The client submitted them itself and hands them over.
            await h.join("77")  # a worker may join before its job is registered
            assert (await h.ask(protocol.Register(["77", "78"]))) == protocol.Jobs(["77", "78"])
            before = h.keeper.jobs["77"]
            await h.ask(protocol.Register(["77"]))  # again (a retried command): what we knew stays
            assert h.keeper.jobs["77"] == before and before.joined is not None
            jobs = await h.status_jobs()
            assert (jobs["77"]["state"], jobs["77"]["workers"], jobs["78"]["state"]) == (
                "running",
                1,
                "pending",
            )
            # scale asks the same of the client: the jobs missing to make 3 (lifecycle.scale
            # submits them; it used to read job_ids from this answer, a KeyError).
            scaled = await h.ask(protocol.Scale(3))
            assert isinstance(scaled, protocol.SubmitHere) and scaled.n == 1
            assert system.submit_calls == 0
            # Where the system has arrays, the client gets an array's script to submit.
            system.arrays = True  # type: ignore[misc]
            system.default_array_limit = 10  # type: ignore[misc]
            more = await h.ask(protocol.Add(4))
            assert isinstance(more, protocol.SubmitHere) and more.n == 4
            assert [tasks for tasks, _ in more.arrays] == [4]
            assert "--array=1-4" in more.arrays[0][1]

    asyncio.run(run())


def test_down_cancels_every_live_job_and_closes_the_scheduler(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(3))
            h.system.start("1")
            h.system.finish("3")
            await until(lambda: not h.keeper.jobs["3"].live, "job 3 ended")
            answer = await h.ask(protocol.Down())
            assert sorted(answer.job_ids) == ["1", "2"] and answer.warning is None
            assert sorted(h.system.cancelled) == ["1", "2"]
            await until(
                lambda: h.scheduler.status in (Status.closing, Status.closed), "the scheduler to close"
            )
            assert {j: r.state for j, r in load_ledger(h.session.ledger_file).items()} == {
                "1": JobState.CANCELLED,
                "2": JobState.CANCELLED,
                "3": JobState.COMPLETED,
            }

    asyncio.run(run())


def test_a_restarted_keeper_takes_its_jobs_over_from_the_ledger(tmp_path: Path) -> None:
    system = FakeSystem()

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            await h.ask(protocol.Add(2, keep=True))
            options = {"walltime": "30m", "cores": 4, "environment": ["A=1"]}
            await h.ask(protocol.Add(1, options, keep=True))  # job 3
            h.system.start("1")
            await until(lambda: record_state(h, "1") is JobState.RUNNING, "job 1 running")
            before = await h.ledger_written()
        async with keeper_over(tmp_path, system) as h:  # a new scheduler over the same state dir
            assert h.keeper.jobs == before
            h.system.finish("1")
            await until(lambda: record_state(h, "1") is JobState.COMPLETED, "job 1 seen ended")
            assert (await h.status_jobs())["2"]["state"] == "pending"
            # Job 3's replacement has job 3's options, not the session's: they were in the ledger.
            h.system.start("3")
            worker = await h.join("3")
            h.system.forget("3")
            await worker.close()  # lost with its job
            await until(lambda: h.keeper.jobs["3"].replaced_by == "4", "job 3's replacement")
            script = h.system.scripts["4"]
            assert "--walltime=1800" in script and "--cores=4" in script

    asyncio.run(run())


# ---- found by these tests, and fixed --------------------------------------------------------------


def test_a_worker_joining_a_job_seen_ended_brings_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue forgot a job (its accounting lags) and the grace ran out; then its worker
    connects: the job runs after all, and stays running while the queue still lags."""

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1))
            h.system.forget("1")
            monkeypatch.setattr(ledger_module, "UNKNOWN_GRACE", 0.0)
            await until(lambda: not h.keeper.jobs["1"].live, "job 1 seen ended")
            await h.join("1")
            await h.refreshes_pass(3)  # the queue still says nothing of job 1
            r = h.keeper.jobs["1"]
            # Once: state RUNNING with `ended` still set: never queried again, not cancelled by down.
            assert (r.state, r.live) == (JobState.RUNNING, True)
            answer = await h.ask(protocol.Down())
            assert answer.job_ids == ["1"] and "1" in h.system.cancelled

    asyncio.run(run())


def test_a_lagging_queue_that_says_pending_does_not_undo_a_joined_worker(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(1))
            worker = await h.join("1")  # its worker connected before the queue says it runs
            h.system.pend("1", "Priority")
            await h.refreshes_pass(3)
            assert record_state(h, "1") is JobState.RUNNING
            await worker.close()  # gone: the queue's word counts again
            await until(lambda: record_state(h, "1") is JobState.PENDING, "the queue's state again")

    asyncio.run(run())


def test_down_cancels_a_removed_job_still_ending_again_but_does_not_count_it(tmp_path: Path) -> None:
    """Grid Engine takes seconds to delete a running job: a job removed just before `down`
    is still live then. Seen in a full CI run as "ended 3 worker jobs" after removing one of 3."""

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await h.ask(protocol.Add(2))
            for job_id in ("1", "2"):
                h.system.start(job_id)
            h.system.cancel_takes_effect = False  # still being deleted after the remove
            await h.ask(protocol.Remove(job_ids=["1"]))
            assert h.keeper.jobs["1"].live and h.keeper.jobs["1"].removed
            answer = await h.ask(protocol.Down())
            assert answer.job_ids == ["2"]
            assert h.system.cancelled.count("1") == 2  # once by remove, again by down

    asyncio.run(run())


def test_two_scales_at_once_submit_the_difference_once(tmp_path: Path) -> None:
    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            await asyncio.gather(h.ask(protocol.Scale(3)), h.ask(protocol.Scale(3)))
            assert h.system.submit_calls == 3  # once 6: each counted before the other submitted

    asyncio.run(run())


# ---- pools (issue 23) -------------------------------------------------------------------


def test_a_pool_keeps_its_spec_and_its_workers_carry_its_resource(tmp_path: Path) -> None:
    """`add 2 --pool himem --memory 8GiB`, then `add 1 --pool himem`: the third job is the
    pool's kind (8 GiB), not the session's; every pool worker carries pool-himem, one unit
    a thread (SPEC: 2 cores, 1 process), so the pool runs as many of its tasks at once."""

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            first = (await h.ask(protocol.Add(2, {"pool": "himem", "memory": "8GiB"}))).job_ids
            (third,) = (await h.ask(protocol.Add(1, {"pool": "himem"}))).job_ids
            (own,) = (await h.ask(protocol.Add(1))).job_ids
            for job_id in [*first, third]:
                script = h.system.scripts[job_id]
                assert "--resources pool-himem=2" in script and f"--memory-limit {8 * 2**30}" in script
            assert "--resources" not in h.system.scripts[own]
            status = await h.status()
            assert {j.job_id: (j.spec or {}).get("pool") for j in status.jobs} == {
                **dict.fromkeys([*first, third], "himem"),
                own: None,
            }

    asyncio.run(run())


def test_remove_scale_and_adapt_keep_to_their_pool(tmp_path: Path) -> None:
    """remove --pool ends that pool's jobs only, remove without it the session's own; scale
    with a pool counts its jobs only; adapt (the session's own jobs) neither counts nor ends
    a pool's; adapt of a pool is refused in one line (not there yet)."""

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            gpu = (await h.ask(protocol.Add(2, {"pool": "gpu"}))).job_ids
            own = (await h.ask(protocol.Add(2))).job_ids
            (removed,) = (await h.ask(protocol.Remove(1, pool="gpu"))).job_ids
            assert removed in gpu
            (removed,) = (await h.ask(protocol.Remove(1))).job_ids
            assert removed in own
            with pytest.raises(SessionError, match="no pool nosuch in this session; its pools: gpu"):
                await h.ask(protocol.Remove(1, pool="nosuch"))  # was: "removed 0 worker jobs"
            added = (await h.ask(protocol.Scale(3, {"pool": "gpu"}))).job_ids
            assert len(added) == 2  # one gpu job was left: 3 in all
            assert len(h.keeper._pool_jobs("gpu")) == 3 and len(h.keeper._pool_jobs(None)) == 1
            await h.ask(protocol.Adapt(0, 0))  # the session's own to none; the pool's stay
            await until(lambda: not h.keeper._pool_jobs(None), "adapt to end the session's own job")
            assert len(h.keeper._pool_jobs("gpu")) == 3

    asyncio.run(run())


def test_adapt_of_a_pool_follows_the_tasks_that_ask_for_it(tmp_path: Path) -> None:
    """adapt --pool gpu --min 0 --max 3: no task of the pool, no job; 4 tasks that ask for
    pool-gpu (a job holds 2 threads of it) want 2 jobs; once they are done, the idle jobs
    end; the session's own adapt (off here) and jobs are not touched."""
    from distributed import Client

    async def run() -> None:
        async with keeper_over(tmp_path, FakeSystem()) as h:
            (own,) = (await h.ask(protocol.Add(1))).job_ids
            answer = await h.ask(protocol.Adapt(0, 3, options={"pool": "gpu"}))
            assert answer.bounds is not None and answer.bounds.maximum_jobs == 3
            await h.steps_pass("adapt")
            assert h.keeper._pool_jobs("gpu") == []
            assert (await h.status()).pool_adapt["gpu"].maximum_jobs == 3
            async with Client(h.scheduler.address, asynchronous=True) as client:
                futures = client.map(lambda i: i * 2, range(4), resources={"pool-gpu": 1}, pure=False)
                await until(lambda: len(h.keeper._pool_jobs("gpu")) == 2, "2 jobs for 4 tasks")
                first = h.keeper._pool_jobs("gpu")[0].job_id
                assert "--resources pool-gpu=2" in h.system.scripts[first]
                h.system.start(first)
                await h.join(first, resources={"pool-gpu": 2})
                assert await client.gather(futures) == [0, 2, 4, 6]
            await until(lambda: not h.keeper._pool_jobs("gpu"), "the idle pool jobs to end")
            assert [r.job_id for r in h.keeper._pool_jobs(None)] == [own]
            await h.ask(protocol.Adapt(off=True, options={"pool": "gpu"}))
            assert (await h.status()).pool_adapt == {}

    asyncio.run(run())


def test_adapt_of_a_pool_stays_under_the_caps_beside_the_sessions_other_jobs(tmp_path: Path) -> None:
    """MaxJobs=4, the scheduler in a job and one job of the session's own: adapt --pool gpu
    --max 5 with 8 tasks for it (4 jobs' worth) holds 2 jobs and status says why (it submitted
    4, two of which could never run); the session's own adapt then counts the pool's jobs too
    (it counted only the scheduler's and held 3 of its own)."""
    from distributed import Client

    system = FakeSystem()
    system.site_caps = [Cap(4, True, "MaxJobs=4 (association of alice in account a1)")]

    async def run() -> None:
        async with keeper_over(tmp_path, system) as h:
            (own,) = (await h.ask(protocol.Add(1))).job_ids
            await h.ask(protocol.Adapt(0, 5, options={"pool": "gpu"}))
            async with Client(h.scheduler.address, asynchronous=True) as client:
                futures = client.map(lambda i: i, range(8), resources={"pool-gpu": 1}, pure=False)
                await until(lambda: len(h.keeper._pool_jobs("gpu")) == 2, "2 jobs of the pool")
                await h.steps_pass("adapt")
                assert len(h.keeper._pool_jobs("gpu")) == 2
                status = await h.status()
                cap = "MaxJobs=4 (association of alice in account a1)"
                assert status.pool_capped == {"gpu": f"at most 2 jobs by {cap}"}
                assert "gpu" in status.to_dict()["pool_capped"]
                await h.ask(protocol.Adapt(3, 3))
                await h.steps_pass("adapt")
                assert [r.job_id for r in h.keeper._pool_jobs(None)] == [own]
                assert (await h.status()).capped == f"at most 1 jobs by {cap}"
                assert h.keeper.last_refusal is None
                await client.cancel(futures)

    asyncio.run(run())
