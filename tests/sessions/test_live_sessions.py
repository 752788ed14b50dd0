"""Sessions on real batch systems: local processes, SLURM (virtual nodes) and Grid Engine.

Every test drives the real ``dask-hpc`` CLI, computes on the workers it brought
and checks the batch system itself afterwards: no job and no process left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from dask_hpc.systems import JobState, get_system

from .conftest import HPC, bring_up, live_jobs, poll, processes_mentioning, systems

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(params=systems("local", "slurm", "sge", "oar"))
def hpc(request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]) -> HPC:
    bring_up(request.param, request)
    return hpc_for(request.param)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except OSError:
        return None


def assert_nothing_left(hpc: HPC, name: str, job_ids: list[str]) -> None:
    system = get_system(hpc.system)  # local: the test's own spool, from the environment

    def all_gone() -> bool:
        states = system.query(job_ids)
        return all(s.state not in (JobState.PENDING, JobState.RUNNING) for s in states.values())

    poll(f"{hpc.system} jobs {job_ids} to leave the queue", all_gone, timeout=60)
    directory = str(hpc.session(name).directory)
    poll(
        f"no process of session {name} left",
        lambda: not processes_mentioning(directory) or None,
        timeout=60,
    )


def test_up_add_compute_remove_down(hpc: HPC) -> None:
    from distributed import Client

    import dask_hpc

    name = f"main-{hpc.system}"
    out = hpc.up(name)
    assert "scheduler" in out.stdout and "dashboard" in out.stdout
    hpc("add", "3", "--name", name, "--wait", "90")

    report = hpc.status(name)
    assert report["scheduler"]["answering"] is True
    dashboard = report["scheduler"]["dashboard"]
    poll("the dashboard to serve its status page", lambda: http_status(dashboard) == 200, timeout=30)
    assert report["interface"]["name"] == "lo"  # the host name resolves to 127.0.0.1 here
    assert len(live_jobs(report)) == 3 and report["workers"] == 3

    import dask.array as da

    n = 2_000_000
    with dask_hpc.connect(name) as client:
        assert len(client.scheduler_info()["workers"]) == 3
        assert int(da.arange(n, chunks=n // 12).sum().compute()) == n * (n - 1) // 2
        # Every worker belongs to one of the session's jobs, named after it (distributed makes "12" 12).
        names = {str(w["name"]) for w in client.scheduler_info()["workers"].values()}
        assert names == {j["job_id"] for j in live_jobs(report)}
    session = hpc.session(name)
    with Client(
        scheduler_file=str(session.scheduler_file), security=dask_hpc.client_security(name)
    ) as client:
        x = da.ones(n, chunks=n // 12).persist()  # data on every worker, kept through the remove
        hpc("remove", "1", "--name", name)
        assert int(x.sum().compute()) == n

    report = hpc.status(name)
    assert len(live_jobs(report)) == 2 and report["workers"] == 2
    removed = [j for j in report["jobs"] if j["removed"]]
    assert len(removed) == 1

    job_ids = [j["job_id"] for j in report["jobs"]] + [report["scheduler"]["job_id"]]
    out = hpc("down", "--name", name)
    assert "ended 2 worker jobs" in out.stdout
    assert_nothing_left(hpc, name, job_ids)
    assert hpc.status(name)["down"] is True
    # Logs are kept, and `logs` shows the scheduler's.
    logs = hpc("logs", "--name", name).stdout
    assert "Scheduler at" in logs
    # The commands above (status, add --wait, remove) connected to it many times: none of them
    # left a line there (a bare connection to a TLS listener made distributed warn each time).
    assert "handshake" not in logs, [line for line in logs.splitlines() if "handshake" in line][:3]
    # A command for the ended session says how to start it again, not to clean up what is gone.
    again = hpc("add", "1", "--name", name, check=False)
    assert again.returncode == 1 and f"start it again with dask-hpc up --name {name}" in again.stderr
    assert "clean up" not in again.stderr


def test_workers_cancelled_behind_our_back(hpc: HPC) -> None:

    import dask_hpc

    name = f"cancel-{hpc.system}"
    hpc.up(name)
    hpc("add", "3", "--name", name, "--wait", "90")
    ids = [j["job_id"] for j in live_jobs(hpc.status(name))]
    system = get_system(hpc.system)

    def slow_square(x: int) -> int:
        time.sleep(0.05)
        return x * x

    with dask_hpc.connect(name) as client:
        futures = client.map(slow_square, range(100))
        total = client.submit(sum, futures)
        time.sleep(1.0)  # in the middle of the computation
        assert not total.done()
        system.cancel(ids[:2])  # scancel / qdel, not through dask-hpc
        assert total.result(timeout=120) == sum(i * i for i in range(100))

    def two_gone() -> bool:
        jobs = {j["job_id"]: j for j in hpc.status(name)["jobs"]}
        return all(jobs[i]["ended"] is not None and not jobs[i]["removed"] for i in ids[:2])

    poll("status to show the two cancelled jobs as ended", two_gone, timeout=60)
    report = hpc.status(name)
    assert [j["job_id"] for j in live_jobs(report)] == [ids[2]]
    assert report["workers"] == 1


@pytest.mark.parametrize("system", systems("local", "slurm"))
def test_adapt_scales_up_then_back_down_without_a_client(
    system: str, hpc_for: Callable[[str], HPC], request: pytest.FixtureRequest
) -> None:
    bring_up(system, request)
    hpc = hpc_for(system)
    name = f"adapt-{system}"
    hpc.up(name)
    hpc("adapt", "--min", "1", "--max", "3", "--name", name)
    poll("adapt to start the minimum", lambda: hpc.status(name)["workers"] == 1, timeout=60)

    import dask_hpc

    client = dask_hpc.connect(name)
    futures = client.map(time.sleep, [0.5] * 120, pure=False)
    poll("a burst to scale up to the maximum", lambda: len(live_jobs(hpc.status(name))) == 3, timeout=60)
    del futures
    client.close()  # nobody connected from here on: the scheduler scales by itself
    poll(
        "idle to scale back to the minimum",
        lambda: len(live_jobs(hpc.status(name))) == 1,
        timeout=90,
    )
    report = hpc.status(name)
    assert report["adapt"] == {"minimum_jobs": 1, "maximum_jobs": 3, "interval": 1.0, "wait_count": 3}
    assert sum(j["removed"] for j in report["jobs"]) >= 2


def test_client_submits_where_the_scheduler_node_may_not(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    name = "login-submits"
    hpc.up(name, "--submit-from", "client")
    out = hpc("add", "2", "--name", name, "--wait", "90")
    assert "submitted 2 worker jobs" in out.stdout
    report = hpc.status(name)
    assert "login node" in report["submit_from"]
    assert len(live_jobs(report)) == 2 and report["workers"] == 2  # registered: the keeper owns them
    line = hpc("adapt", "--max", "3", "--name", name, check=False).stderr.strip()
    assert line.startswith("error: adapt needs to submit jobs from the scheduler's node")
    keep = hpc("add", "1", "--keep", "--name", name, check=False)
    assert keep.returncode != 0 and "Traceback" not in keep.stderr
    assert keep.stderr.strip().startswith("error: --keep needs to submit jobs from the scheduler's node")
    hpc("remove", "--job", live_jobs(report)[0]["job_id"], "--name", name)
    assert len(live_jobs(hpc.status(name))) == 1


def test_logs_follow_ends_with_the_job(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    name = "follow"
    hpc.up(name)
    follow = subprocess.Popen(
        [sys.executable, "-m", "dask_hpc", "logs", "--follow", "--name", name],
        env=hpc.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    hpc("down", "--name", name)
    out, _ = follow.communicate(timeout=30)  # returns by itself once the scheduler's job has ended
    assert follow.returncode == 0
    assert "Scheduler at" in out


@pytest.mark.timeout(240)
def test_bench_network_on_a_session(hpc_for: Callable[[str], HPC], tmp_path: Path) -> None:
    """``dask-hpc bench network --session``: two of the session's workers, over its TLS."""
    hpc = hpc_for("local")
    hpc.up("net", "--workers", "2", "--wait", "60")
    out = tmp_path / "net.json"
    hpc(
        "bench",
        "network",
        "--session",
        "net",
        "--no-mpi",
        "--sizes",
        "1MiB",
        "--repeat",
        "2",
        "--json",
        str(out),
    )
    rows = json.loads(out.read_text())["rows"]
    assert {r["method"] for r in rows} == {"dask-tls", "raw-tcp", "memcpy"}
    assert all(r["median_gbps"] > 0 for r in rows)
    hpc("remove", "1", "--name", "net")
    line = hpc("bench", "network", "--session", "net", "--no-mpi", "--sizes", "1MiB", check=False).stderr
    assert line.strip().startswith("error: bench network needs two workers; the cluster has 1")
    # More asked for than there are: the one there is goes, and the line says so.
    out = hpc("remove", "5", "--name", "net").stdout
    assert "removed 1 worker job: " in out and "(asked for 5: only 1 was live)" in out, out


@pytest.mark.parametrize("system", systems("slurm"))
def test_a_worker_job_of_two_nodes_computes_with_a_worker_on_each(
    system: str, request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]
) -> None:
    """Issue 22: `add 1 --nodes 2` is one job holding two of the virtual nodes; srun starts a
    worker on each, named after the job and its node; a sum computes on both; down ends it."""
    import dask.array as da
    from distributed import wait

    import dask_hpc

    bring_up(system, request)
    hpc = hpc_for(system)
    name = "two-nodes"
    hpc.up(name)
    hpc("add", "1", "--nodes", "2", "--name", name, "--wait", "90")
    report = hpc.status(name)
    (job,) = live_jobs(report)
    assert report["workers"] == 2 and job["workers"] == 2
    with dask_hpc.connect(name) as client:
        names = sorted(str(w["name"]) for w in client.scheduler_info()["workers"].values())
        nodes = [n.partition("@")[2] for n in names]
        assert [n.partition("@")[0] for n in names] == [job["job_id"]] * 2 and len(set(nodes)) == 2, names
        n = 1_000_000
        x = da.arange(n, chunks=n // 8).persist()
        wait(x)
        held = client.has_what()
        assert all(held.values()), held  # both workers hold a part
        assert int(x.sum().compute()) == n * (n - 1) // 2
    out = hpc("down", "--name", name)
    assert "ended 1 worker job" in out.stdout
