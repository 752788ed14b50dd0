"""Worker pools (issue 23) on the live SLURM: one session holds three pools: its own jobs, a
"himem" pool of another memory and partition, and a "tagged" pool of a worker class of the
user's own (``--worker-class``). Tasks asked for a pool's resource land only on its workers,
the others anywhere; adapt of one pool follows its tasks up and down while the others stay;
status shows each job's pool; remove --pool ends that pool's job."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import HPC, bring_up, live_jobs

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
TAGGED = "tests.workers_of_our_own.TaggedWorker"


def pool_of(job: dict[str, object]) -> object:
    return (job.get("spec") or {}).get("pool")  # type: ignore[union-attr]


def jobs_of(hpc: HPC, name: str, pool: str | None) -> list[str]:
    return [j["job_id"] for j in live_jobs(hpc.status(name)) if pool_of(j) == pool]


def until_jobs(hpc: HPC, name: str, pool: str, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(jobs_of(hpc, name, pool)) == count:
            return
        time.sleep(1)
    raise AssertionError(f"pool {pool}: not {count} jobs in {timeout:.0f} s: {hpc.status(name)['jobs']}")


@pytest.mark.slurm
def test_three_pools_route_tasks_by_their_resources_and_adapt_one_by_one(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    import dask
    import dask.array as da
    import xarray as xr
    from distributed import get_worker, wait

    import dask_hpc

    from ..workers_of_our_own import kind

    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    # The scheduler's job (which checks the class) and the workers import tests.workers_of_our_own.
    hpc.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), hpc.env.get("PYTHONPATH")]))
    name = "pools"
    hpc.up(name)
    hpc("add", "1", "--name", name, "--wait", "90")
    himem_options = ("--pool", "himem", "--memory", "1536MiB", "--queue", "short")
    hpc("add", "1", "--name", name, *himem_options, "--wait", "90")
    hpc("add", "1", "--name", name, "--pool", "tagged", "--worker-class", TAGGED, "--wait", "90")
    (himem,) = jobs_of(hpc, name, "himem")
    (tagged,) = jobs_of(hpc, name, "tagged")
    (own,) = jobs_of(hpc, name, None)
    text = hpc("status", "--name", name).stdout
    assert "pool" in text and "himem" in text and "tagged" in text, text

    def where() -> str:
        return str(get_worker().name)

    def nap(i: int) -> int:
        time.sleep(4)
        return i

    with dask_hpc.connect(name) as client:
        names = {a: str(w["name"]) for a, w in client.scheduler_info()["workers"].items()}
        assert sorted(names.values()) == sorted([own, himem, tagged]), names
        kinds = {names[a]: k for a, k in client.run(kind).items()}
        assert kinds == {own: "Worker", himem: "Worker", tagged: "TaggedWorker"}, kinds
        # Tasks that ask for a pool run on its worker only; the others may run anywhere.
        for pool, job in (("himem", himem), ("tagged", tagged)):
            routed = client.gather(
                [client.submit(where, resources={f"pool-{pool}": 1}, pure=False) for _ in range(6)]
            )
            assert set(routed) == {job}, (pool, routed)
        # An xarray reduction, all its tasks in the pool (a collection's resources=).
        ds = xr.Dataset({"t": (("time", "x"), da.ones((40, 10), chunks=(10, 10)))})
        mean = client.persist(ds.t.mean("time"), resources={"pool-himem": 1})
        assert float(mean.sum().compute()) == 10.0
        assert {names[w] for held in client.who_has(mean.data).values() for w in held} == {himem}
        # dask.annotate, kept through the graph where it is not optimized away.
        with dask.annotate(resources={"pool-himem": 1}):
            doubled = ds.t * 2
        doubled = client.persist(doubled, optimize_graph=False)
        wait(doubled, timeout=60)
        assert {names[w] for held in client.who_has(doubled.data).values() for w in held} == {himem}
        del mean, doubled

        # adapt of himem: 4 tasks of a thread each want 4 jobs, at most 2; tagged adapts too but
        # has no task (it stays at its minimum, 1); the session's own jobs have no adapt.
        hpc("adapt", "--name", name, "--pool", "tagged", "--min", "1", "--max", "2")
        hpc("adapt", "--name", name, "--pool", "himem", "--min", "0", "--max", "2")
        naps = client.map(nap, range(4), resources={"pool-himem": 1}, pure=False)
        until_jobs(hpc, name, "himem", 2)
        assert jobs_of(hpc, name, "tagged") == [tagged]
        assert "adapt of pool himem: 0 to 2 jobs" in hpc("status", "--name", name).stdout
        assert sorted(client.gather(naps)) == [0, 1, 2, 3]
        del naps
        until_jobs(hpc, name, "himem", 0, timeout=60)  # no task of the pool: it scales down to min
        assert jobs_of(hpc, name, "tagged") == [tagged] and jobs_of(hpc, name, None) == [own]
    hpc("adapt", "--name", name, "--pool", "tagged", "--off")
    hpc("remove", "1", "--name", name, "--pool", "tagged")
    left = live_jobs(hpc.status(name))
    assert [j["job_id"] for j in left] == [own], left
