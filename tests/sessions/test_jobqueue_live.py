"""A script written for dask-jobqueue 0.9.0 runs on the real SLURM, Grid Engine and OAR with only its
import changed (issue 21's done-when), and a distributed Security of the user's own reaches
the worker jobs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ..conftest import systems
from ..refusal import refused
from .conftest import HPC, bring_up, poll

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("system", systems("slurm", "sge", "oar"))
def test_a_dask_jobqueue_script_runs_with_its_import_changed(
    system: str, hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import dask.array as da
    from distributed import Client

    from dask_hpc import OARCluster, SGECluster, SLURMCluster  # was: from dask_jobqueue import ...

    bring_up(system, request)
    hpc_for(system)  # this test's sessions directory; whatever is left is brought down
    logs = tmp_path / "new" / "logs"  # dask-jobqueue makes a missing log directory
    cls = {"slurm": SLURMCluster, "sge": SGECluster, "oar": OARCluster}[system]
    # As each system reads it: a bare number (SLURM: minutes; Grid Engine: seconds), OAR's H:MM.
    walltime = {"slurm": "10", "sge": "600", "oar": "0:10"}[system]
    # scripts/local-oar's resources have a memcore property (MiB per core), as many OAR sites.
    own = {"memory_per_core_property_name": "memcore"} if system == "oar" else {}
    with cls(
        cores=2,
        memory="1GB",
        walltime=walltime,
        log_directory=str(logs),
        local_directory="$TMPDIR",
        worker_extra_args=["--resources", "FOO=1"],
        job_script_prologue=["export FROM_PROLOGUE=yes"],
        job_script_epilogue=["echo after-the-workers"],
        death_timeout=120,
        **own,
    ) as cluster:
        assert cluster.spec.processes == 2 and cluster.spec.walltime == 600  # sqrt-ish of 2 cores
        cluster.scale(jobs=1)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            n = 100_000
            assert int(da.arange(n, chunks=n // 4).sum().compute()) == n * (n - 1) // 2

            def seen(dask_worker):  # type: ignore[no-untyped-def]
                import os

                return (
                    dask_worker.state.total_resources,
                    os.environ.get("FROM_PROLOGUE"),
                    dask_worker.local_directory,
                )

            for resources, prologue, local in client.run(seen).values():
                assert resources == {"FOO": 1} and prologue == "yes"
                assert not local.startswith(str(tmp_path / "sessions"))
        job_ids = list(cluster.workers)
    # Closing the cluster ends its jobs; their logs are where the user said.
    batch = cluster.system
    poll("the worker job to end", lambda: all(s.state.finished for s in batch.query(job_ids).values()), 90)
    assert any(logs.iterdir())


@pytest.mark.session
def test_a_security_of_the_users_own_reaches_the_worker_jobs(
    hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    """dask-jobqueue's ``security=Security.temporary()``: the scheduler, the client and the
    workers (jobs of the local system) all speak TLS with the user's certificate."""
    from distributed import Client, Security

    from dask_hpc import BatchCluster

    hpc_for("local")
    security = Security.temporary()
    with BatchCluster("local", scheduler="local", name="own-tls", security=security, cores=1) as cluster:
        assert cluster.scheduler_address.startswith("tls://") and cluster.security is security
        cluster.scale(1)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=90)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        assert refused(cluster.scheduler_address, "temporary")  # another certificate does not get in


@pytest.mark.session
def test_an_asynchronous_cluster_scales_and_computes(hpc_for: Callable[[str], HPC]) -> None:
    """dask-jobqueue's ``asynchronous=True``: the scheduler on the caller's event loop, a worker
    job of the local system, an asynchronous Client; scale and adapt are awaitable."""
    import asyncio

    from distributed import Client

    from dask_hpc import BatchCluster

    hpc_for("local")

    async def main() -> None:
        async with BatchCluster(
            "local", scheduler="local", name="async", asynchronous=True, refresh=1
        ) as cluster:
            await cluster.scale(1)
            async with Client(cluster, asynchronous=True) as client:
                await client.wait_for_workers(1, timeout=90)
                assert await client.submit(sum, [1, 2, 3]) == 6
            bounds = await cluster.adapt(minimum_jobs=0, maximum_jobs=1)
            assert bounds is not None and (bounds.minimum_jobs, bounds.maximum_jobs) == (0, 1)
            report = await cluster.status_report()
            assert report.keeper is not None and report.keeper.adapt is not None

    asyncio.run(asyncio.wait_for(main(), 180))
