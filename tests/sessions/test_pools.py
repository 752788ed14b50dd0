"""Worker pools (issue 23) on the live SLURM: one session, its own jobs and a "himem" pool of
another memory and partition; tasks asked for the pool's resource land only on its workers,
the others anywhere; status shows each job's pool; remove --pool ends that pool's job."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import HPC, bring_up, live_jobs

pytestmark = pytest.mark.timeout(240)


def pool_of(job: dict[str, object]) -> object:
    return (job.get("spec") or {}).get("pool")  # type: ignore[union-attr]


@pytest.mark.slurm
def test_two_pools_route_tasks_by_their_resources(
    request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    import dask
    import dask.array as da
    import xarray as xr
    from distributed import get_worker, wait

    import dask_hpc

    bring_up("slurm", request)
    hpc = hpc_for("slurm")
    name = "pools"
    hpc.up(name)
    hpc("add", "1", "--name", name, "--wait", "90")
    hpc(
        "add",
        "1",
        "--name",
        name,
        "--pool",
        "himem",
        "--memory",
        "1536MiB",
        "--queue",
        "short",
        "--wait",
        "90",
    )
    jobs = live_jobs(hpc.status(name))
    (himem,) = [j["job_id"] for j in jobs if pool_of(j) == "himem"]
    (own,) = [j["job_id"] for j in jobs if pool_of(j) is None]
    text = hpc("status", "--name", name).stdout
    assert "pool" in text and "himem" in text, text

    def where() -> str:
        return str(get_worker().name)

    with dask_hpc.connect(name) as client:
        names = {a: str(w["name"]) for a, w in client.scheduler_info()["workers"].items()}
        assert sorted(names.values()) == sorted([own, himem]), names
        # Tasks that ask for the pool run on its worker only; the others may run anywhere.
        routed = client.gather(
            [client.submit(where, resources={"pool-himem": 1}, pure=False) for _ in range(8)]
        )
        assert set(routed) == {himem}, routed
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
    hpc("remove", "1", "--name", name, "--pool", "himem")
    left = live_jobs(hpc.status(name))
    assert [j["job_id"] for j in left] == [own], left
    hpc("down", "--name", name)
