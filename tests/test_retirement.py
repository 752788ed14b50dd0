"""Workers that know their walltime: the margin they leave by, and what preloads them."""

from __future__ import annotations

import dask
import pytest

from dask_hpc.worker import retirement
from dask_hpc.worker.entry import worker_arguments


def test_margin_floor_is_a_tenth_of_the_walltime_within_bounds() -> None:
    assert retirement.margin_floor(3600) == 60  # an hour: a minute
    assert retirement.margin_floor(600) == 60
    assert retirement.margin_floor(300) == 30
    assert retirement.margin_floor(40) == 5


def test_margin_grows_with_the_data_to_move() -> None:
    assert retirement.retire_margin(300, 0) == 30
    assert retirement.retire_margin(300, 10**9, bandwidth=100e6) == pytest.approx(40)
    assert retirement.retire_margin(300, 10**9, bandwidth=0) == pytest.approx(
        30 + 1e9 / retirement.DEFAULT_BANDWIDTH
    )


def test_margin_floor_from_dask_config() -> None:
    with dask.config.set({"dask-hpc.retire-margin": "2 minutes"}):
        assert retirement.margin_floor(40) == 120
    with dask.config.set({"dask-hpc.retire-margin": 7}):
        assert retirement.margin_floor(3600) == 7


def test_workers_in_a_job_preload_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_HPC_SYSTEM", "local")
    monkeypatch.setenv("DASK_HPC_LOCAL_JOB_ID", "17")
    args = worker_arguments(["--nthreads", "1"])
    assert args[-4:] == ["--name", "17", "--preload", "dask_hpc.worker.retirement"]
    named = worker_arguments(["--name", "x"])
    assert named == ["--name", "x", "--preload", "dask_hpc.worker.retirement"]


def test_outside_a_job_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASK_HPC_SYSTEM", raising=False)
    assert worker_arguments(["--nthreads", "1"]) == ["--nthreads", "1"]
    assert retirement.job_end() is None


class _Scheduler:
    """Answers retire_workers as distributed's scheduler does: the retired addresses."""

    def __init__(self, takes_data: bool) -> None:
        self.takes_data = takes_data
        self.asked = 0

    async def retire_workers(self, workers: list[str], **kwargs: object) -> dict[str, object]:
        self.asked += 1
        return {w: {} for w in workers} if self.takes_data else {}


class _Worker:
    def __init__(self, scheduler: _Scheduler) -> None:
        from types import SimpleNamespace

        self.address = "tls://10.0.0.5:4000"
        self.scheduler = scheduler
        self.state = SimpleNamespace(nbytes=0)
        self.status = SimpleNamespace(name="running")
        self.bandwidth = 100e6
        self.closed_with: str | None = None

    async def close(self, nanny: bool, reason: str) -> None:
        assert nanny  # the job must end with the worker
        self.closed_with = reason


def _watch(worker: _Worker, left: float, length: float = 300) -> retirement.WalltimeWatch:
    """A watch of a job ``length`` seconds long that ends in ``left`` seconds."""
    import time

    now = time.time()
    return retirement.WalltimeWatch(worker, now + left, now=now + left - length)  # type: ignore[arg-type]


def test_leaves_at_the_margin_once_its_data_moved() -> None:
    import asyncio

    async def run() -> tuple[_Worker, _Scheduler]:
        scheduler = _Scheduler(takes_data=True)
        worker = _Worker(scheduler)
        early = _watch(worker, left=200)  # margin 30 s: too early
        early.check()
        await asyncio.sleep(0)
        assert scheduler.asked == 0 and worker.closed_with is None
        due = _watch(worker, left=20)
        due.check()
        await due._attempt  # type: ignore[misc]
        return worker, scheduler

    worker, scheduler = asyncio.run(run())
    assert scheduler.asked == 1
    assert worker.closed_with is not None and "walltime ends in" in worker.closed_with


def test_stays_while_nobody_can_take_its_data_then_leaves_at_the_last_moment() -> None:
    import asyncio

    async def run() -> tuple[_Worker, _Scheduler, retirement.WalltimeWatch]:
        scheduler = _Scheduler(takes_data=False)
        worker = _Worker(scheduler)
        watch = _watch(worker, left=20)
        watch.check()
        await watch._attempt  # type: ignore[misc]
        assert worker.closed_with is None and not watch.leaving  # waits for a replacement
        last = _watch(worker, left=1.0)  # under LAST_CHANCE: goes, data or not
        last.check()
        await last._attempt  # type: ignore[misc]
        return worker, scheduler, last

    worker, scheduler, last = asyncio.run(run())
    assert scheduler.asked == 2 and last.leaving and worker.closed_with is not None


def test_a_slurm_array_tasks_workers_keep_the_tasks_id_as_their_name() -> None:
    """`dask worker --name 4711_3` would register as 47113 (int() takes underscores in numbers);
    the preload gives the task's id back before the worker registers (issue 22)."""
    from dask_hpc.worker.retirement import named_after_the_job

    assert int("4711_3") == 47113
    assert named_after_the_job(47113, "4711_3") == "4711_3"
    assert named_after_the_job("47113-1", "4711_3") == "4711_3-1"  # the second of several
    assert named_after_the_job(4712, "4712") == 4712  # a job of its own: as distributed made it
    assert named_after_the_job("48.3-0", "48.3") == "48.3-0"
    assert named_after_the_job(99, "4711_3") == 99  # not this task's: left alone


def test_a_worker_of_a_job_of_several_nodes_is_named_after_its_node() -> None:
    """Issue 22: srun starts the workers on each node; each set is named <job>@<node>."""
    from dask_hpc.worker.entry import worker_arguments

    env = {
        "DASK_HPC_SYSTEM": "slurm",
        "SLURM_JOB_ID": "4711",
        "SLURMD_NODENAME": "node2",
        "DASK_HPC_NODES": "2",
    }
    assert worker_arguments(["--nthreads", "1"], env)[2:4] == ["--name", "4711@node2"]
    one = {k: v for k, v in env.items() if k != "DASK_HPC_NODES"}
    assert worker_arguments(["--nthreads", "1"], one)[2:4] == ["--name", "4711"]
