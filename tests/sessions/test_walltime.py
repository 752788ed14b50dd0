"""Kept worker jobs outlive their walltimes: replacements join ahead, data moves, nothing is recomputed.

On the real batch systems, with walltimes far shorter than the computation:
the workers of each generation retire before their job's end and hand their
results to the next generation, which the keeper submitted ahead of time. The
keeper counts tasks computed twice (a result lost with its worker); it must
stay 0. Connected workers never drop below the target minus one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from dask_hpc.systems import get_system

from .conftest import HPC, bring_up, poll, systems

#: Walltime of each worker job: SLURM's minimum is a minute; Grid Engine enforces h_rt in seconds.
#: On the real systems only (local's walltimes and replacements: the keeper's tests over a fake
#: system, and a kept local job killed anyway, below): 76 s of CI saved for the suite's budget.
WALLTIMES = {"slurm": "1m", "sge": "40s"}
#: Seconds of work per worker: past the first generation's retirement (well before its
#: walltime's end) and its replacements' start; shortened for the suite's budget (130 s and
#: 100 s before): one handover of every job proves the kind.
WORK = {"slurm": 95, "sge": 70}
TARGET = 2
TASK_SECONDS = 0.5


def workload() -> tuple[Callable[[int], object], Callable[..., int], Callable[[object], int]]:
    """The task, the final sum and a scheduler probe; made here, as closures, so that they
    are sent by value (the scheduler and workers cannot import this test module)."""
    seconds = TASK_SECONDS

    def slow_array(i: int) -> object:

        import numpy as np

        time.sleep(seconds)
        return np.full(100_000, i, dtype=np.int64)

    def total(*arrays: object) -> int:
        return int(sum(int(a.sum()) for a in arrays))  # type: ignore[attr-defined]

    def connected_workers(dask_scheduler: object) -> int:
        return len(dask_scheduler.workers)  # type: ignore[attr-defined]

    return slow_array, total, connected_workers


@pytest.mark.timeout(480)
@pytest.mark.parametrize("system", systems("slurm", "sge"))
def test_kept_workers_outlive_their_walltimes(
    system: str, request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    import dask_hpc

    bring_up(system, request)
    hpc = hpc_for(system)
    name = f"keep-{system}"
    hpc.up(name)
    walltime = WALLTIMES[system]
    hpc("add", str(TARGET), "--keep", "--walltime", walltime, "--cores", "1", "--name", name, "--wait", "90")

    n = int(WORK[system] * TARGET / TASK_SECONDS)
    slow_array, total, connected_workers = workload()
    samples: list[int] = []
    with dask_hpc.connect(name) as client:
        futures = client.map(slow_array, range(n), pure=False)  # every result held to the end
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):  # ends with the computation; the test's timeout bounds it
                try:
                    samples.append(client.run_on_scheduler(connected_workers))
                except Exception:  # the client is closing: stop sampling
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            answer = client.submit(total, *futures).result(timeout=WORK[system] * 3)
        finally:
            stop.set()
            sampler.join(timeout=10)
        assert answer == 100_000 * n * (n - 1) // 2

    # A job whose replacement joined just as the computation ended may still be handing over
    # (its data moving, then our cancel): wait for every replaced job to end before judging.
    def handed_over() -> dict[str, object] | None:
        report = hpc.status(name)
        ending = [j for j in report["jobs"] if j["replaced_by"] and j["state"] in ("pending", "running")]
        return None if ending else report

    report = poll("replaced jobs ended", handed_over, timeout=60)
    jobs = report["jobs"]
    replaced = [j for j in jobs if j["replaced_by"]]
    assert len(replaced) >= TARGET, f"not several generations: {jobs}"
    assert report["recomputed"] == 0, jobs
    assert samples and min(samples) >= TARGET - 1, samples
    # No kept job reached its walltime: each was ended by us after its replacement joined.
    walltime_kills = [j for j in replaced if j["state"] not in ("cancelled", "completed")]
    assert not walltime_kills, [(j["job_id"], j["state"], j.get("end"), j["replaced_by"]) for j in jobs]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("system", systems("local", "slurm"))
def test_a_kept_job_killed_anyway_is_replaced_and_the_answer_is_right(
    system: str, request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    import dask_hpc

    bring_up(system, request)
    hpc = hpc_for(system)
    name = f"killed-{system}"
    hpc.up(name)
    hpc("add", str(TARGET), "--keep", "--cores", "1", "--name", name, "--wait", "90")
    first = [j["job_id"] for j in hpc.status(name)["jobs"]]
    n = 60
    slow_array, total, _ = workload()
    with dask_hpc.connect(name) as client:
        futures = client.map(slow_array, range(n), pure=False)
        poll("a few results", lambda: sum(f.done() for f in futures) >= 10, timeout=60)
        get_system(system).cancel(first[:1])  # behind the keeper's back, as a node failure would
        answer = client.submit(total, *futures).result(timeout=120)
        assert answer == 100_000 * n * (n - 1) // 2

    def replacement_joined() -> object:
        jobs = {j["job_id"]: j for j in hpc.status(name)["jobs"]}
        new = jobs[first[0]]["replaced_by"]
        return new and jobs[new]["workers"] >= 1

    poll("a replacement for the killed job", replacement_joined, timeout=90, interval=1)
