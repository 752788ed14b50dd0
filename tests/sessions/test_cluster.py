"""BatchCluster, the Python face of a session, with dask-jobqueue's keyword names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dask_hpc import BatchCluster
from dask_hpc.errors import ConfigError, UnknownOptionError
from dask_hpc.keeper.protocol import AdaptBounds
from dask_hpc.systems import JobState, get_system

from .conftest import HPC, bring_up, poll, processes_mentioning

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize(
    ("system", "scheduler"),
    [("local", "local"), ("local", "job"), pytest.param("slurm", "job", marks=pytest.mark.slurm)],
)
def test_cluster_scale_compute_close(
    system: str, scheduler: str, hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    import dask.array as da
    from distributed import Client

    bring_up(system, request)
    hpc = hpc_for(system)
    name = f"py-{system}-{scheduler}"
    with BatchCluster(
        system,
        name=name,
        scheduler=scheduler,
        cores=2,
        processes=2,
        memory="1GiB",
        walltime="00:10:00",
        refresh=1,
    ) as cluster:
        assert "--nworkers 2" in cluster.job_script()
        assert cluster.job_name == f"dask-worker-{name}"
        prefix = get_system(system).directive_prefix
        assert cluster.job_header and all(line.startswith(prefix) for line in cluster.job_header.splitlines())
        cluster.scale(4)  # four workers: two jobs of two processes
        # dask-jobqueue's view right after scale: the workers asked for, by name (no AttributeError).
        assert len(cluster.workers) == 2 and len(cluster.plan) == 4 and cluster.requested == cluster.plan
        assert all(spec.processes == 2 for spec in cluster.worker_spec.values())
        assert all(n.startswith(tuple(cluster.workers)) for n in cluster.plan)
        with Client(cluster) as client:
            client.wait_for_workers(4, timeout=90)
            n = 1_000_000
            assert int(da.arange(n, chunks=n // 8).sum().compute()) == n * (n - 1) // 2
        report = hpc.status(name)
        jobs = [j["job_id"] for j in report["jobs"]]
        assert len(jobs) == 2 and report["workers"] == 4
        cluster.scale(jobs=1)
        poll("scale(jobs=1) to leave one job", lambda: hpc.status(name)["workers"] == 2, timeout=60)
        assert cluster.adapt(minimum=2, maximum=6) == AdaptBounds(1, 3)
        # As distributed's Cluster.adapt: bounds in cores or memory, its interval and wait_count;
        # the tighter of two upper bounds wins.
        assert cluster.adapt(maximum_memory="3GiB", maximum_cores=8, interval="2s", wait_count=5) == (
            AdaptBounds(0, 3, 2.0, 5)
        )
        # No bound: 0 to no upper bound, as dask-jobqueue (it was an error).
        assert cluster.adapt() == AdaptBounds(0, None)
    assert hpc.status(name)["down"] is True
    states = get_system(system).query(jobs)
    assert all(s.state not in (JobState.PENDING, JobState.RUNNING) for s in states.values())
    directory = str(hpc.session(name).directory)
    poll("no process of the session left", lambda: not processes_mentioning(directory) or None, timeout=60)


def test_unknown_keyword_lists_the_known_ones(hpc_for: Callable[[str], HPC]) -> None:
    hpc_for("local")
    with pytest.raises(
        UnknownOptionError, match=r"unknown option cpus \(did you mean cores\?\); known options: .*cores"
    ):
        BatchCluster("local", cpus=4)


def test_keywords_left_out_take_the_configured_values(
    hpc_for: Callable[[str], HPC], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's ~/.config/dask/dask-hpc.yaml (here $DASK_CONFIG): BatchCluster() needs no keyword."""
    hpc_for("local")
    user = tmp_path / "dask-config"
    user.mkdir()
    (user / "dask-hpc.yaml").write_text(
        "dask-hpc:\n  system: local\n  cores: 2\n  processes: 2\n  walltime: 7m\n"
    )
    monkeypatch.setenv("DASK_CONFIG", str(user))
    monkeypatch.setenv("DASK_ROOT_CONFIG", str(tmp_path / "no-site-files"))
    with BatchCluster(name="py-configured", scheduler="local") as cluster:
        assert cluster.system.name == "local"
        assert (cluster.spec.cores, cluster.spec.processes, cluster.spec.walltime) == (2, 2, 420)
        assert "--nworkers 2" in cluster.job_script()
    (user / "dask-hpc.yaml").write_text("dask-hpc:\n  cores: many\n")
    with pytest.raises(ConfigError, match=r"user file .*dask-hpc.yaml: cores 'many': "):
        BatchCluster(name="py-bad", scheduler="local")
