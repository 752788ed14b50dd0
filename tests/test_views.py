"""What `dask-hpc status` shows, from a report: the tasks of an array grouped, each state seen."""

from __future__ import annotations

import io

from rich.console import Console

from dask_hpc.cli.views import status_view
from dask_hpc.keeper.protocol import JobReport, KeeperStatus
from dask_hpc.session.report import SchedulerReport, SessionStatus
from dask_hpc.systems import JobState


def shown(jobs: list[JobReport], keeper: KeeperStatus | None = None) -> str:
    """What status shows of a session's jobs: down (from the ledger), or live with ``keeper``."""
    state, node = ("running", "cn01") if keeper else ("completed", None)
    report = SessionStatus(
        name="big",
        system="slurm",
        directory="/home/alice/.dask-hpc/sessions/big",
        down=keeper is None,
        security="tls",
        scheduler=SchedulerReport(job_id="4700", state=state, reason=None, node=node),
        jobs=jobs,
        keeper=keeper,
    )
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(status_view(report))
    return out.getvalue()


def task(i: int, state: JobState, reason: str | None = None, node: str | None = None) -> JobReport:
    return JobReport(
        f"4711_{i}",
        "dask-worker",
        1,
        600,
        submitted=1.0,
        state=state,
        reason=reason,
        node=node,
        array="4711_1",
    )


def test_an_arrays_tasks_are_one_row_per_state_and_reason() -> None:
    jobs = [task(i, JobState.RUNNING, node=f"node{i % 2}") for i in range(1, 4)]
    jobs += [task(i, JobState.PENDING, reason="QOSMaxJobsPerUserLimit") for i in range(4, 1001)]
    jobs.append(
        JobReport("5000", "dask-worker", 1, 600, submitted=2.0, state=JobState.PENDING, reason="Priority")
    )
    text = shown(jobs)
    rows = [line for line in text.splitlines() if "4711_" in line or "5000" in line]
    assert len(rows) == 3, text
    assert "4711_1 … 4711_3 (3 tasks)" in rows[0] and "running" in rows[0] and "2 nodes" in rows[0]
    assert "4711_4 … 4711_1000 (997 tasks)" in rows[1] and "QOSMaxJobsPerUserLimit" in rows[1]
    assert "5000" in rows[2] and "Priority" in rows[2]  # a job of its own: its own row
    assert "1001 live worker jobs (3 running, 998 pending)" in text


def test_a_pools_adapt_and_the_cap_that_holds_it_back_are_shown() -> None:
    from dataclasses import replace

    from dask_hpc.keeper import protocol

    from .keeper.test_protocol import STATUS

    keeper = replace(
        STATUS,
        submit_trouble=None,
        last_refusal=None,
        pool_adapt={"gpu": protocol.AdaptBounds(0, 8), "himem": protocol.AdaptBounds(1, None)},
        pool_capped={"gpu": "at most 2 jobs by MaxJobs=4 (association of alice in account a1)"},
    )
    lines = shown(keeper.jobs, keeper).splitlines()
    assert (
        "adapt of pool gpu: 0 to 8 jobs, by the tasks that ask for it; held back by the site's cap: "
        "at most 2 jobs by MaxJobs=4 (association of alice in account a1)"
    ) in [line.strip() for line in lines]
    assert "adapt of pool himem: 1 to no upper bound jobs, by the tasks that ask for it" in [
        line.strip() for line in lines
    ]
