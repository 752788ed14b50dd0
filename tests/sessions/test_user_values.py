"""Paths, values and directives mean what the user meant where they typed them (issue 18).

A relative log directory is the user's working directory's and is made; ``$VAR`` in
``--env`` is the job's, on its node; a user's directive replaces ours that sets the same
thing; the scheduler's one-core job takes no worker directives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import HPC, bring_up, poll, systems

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("system", systems("local", "slurm"))
def test_up_takes_paths_values_and_directives_as_meant(
    system: str, hpc_for: Callable[[str], HPC], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import dask_hpc

    bring_up(system, request)
    hpc = hpc_for(system)
    work = tmp_path / "work"  # where the user types the commands
    node_tmp = tmp_path / "node-tmp"  # the jobs' $TMPDIR
    work.mkdir()
    node_tmp.mkdir()
    hpc.env["TMPDIR"] = str(node_tmp)
    extra = []
    if system == "slurm":
        # sbatch refuses --mem beside --mem-per-cpu: the user's wins, and stays off the scheduler's job.
        extra = ["--job-extra-directive=--mem-per-cpu=1G"]
    name = f"values-{system}"
    out = hpc.up(
        name,
        "--log-directory",
        "dask-logs/run1",
        "--env",
        "DASK_TEMPORARY_DIRECTORY=$TMPDIR",
        *extra,
        cwd=work,
    )
    if extra:
        note = next(line for line in out.stderr.splitlines() if line.startswith("scheduler job:"))
        assert note == (
            "scheduler job: 1 core, 2.00 GiB, 00:10:00; took --walltime, --log-directory, --env; "
            "not --memory, --job-extra-directive (it takes --scheduler-directive)"
        )
        replaced = "worker jobs: your directives replace dask-hpc's --mem=1024M (by --mem-per-cpu=1G)"
        assert replaced in out.stderr
    logs = work / "dask-logs" / "run1"
    assert logs.is_dir() and (logs.stat().st_mode & 0o777) == 0o700
    hpc("add", "1", "--name", name, "--wait", "120", cwd=tmp_path)  # from elsewhere: the path stays

    scheduler_log = poll(
        "the scheduler's log in the user's log directory",
        lambda: "Scheduler at" in (text := hpc("logs", "--name", name).stdout) and text,
        timeout=60,
    )
    assert f"==> {logs}/" in scheduler_log
    with dask_hpc.connect(name) as client:
        where = client.run(lambda dask_worker: dask_worker.local_directory)
    assert [str(p).startswith(str(node_tmp)) for p in where.values()] == [True], where
    state = hpc.session(name).directory
    assert not list(state.rglob("$TMPDIR")), "a folder literally named $TMPDIR"
    workers = [j["job_id"] for j in hpc.status(name)["jobs"]]
    assert "(not written yet)" not in hpc("logs", workers[0], "--name", name).stdout
    if system == "slurm":
        scripts = sorted((state / "scripts").glob("*.sh"))
        scheduler_script, worker_script = scripts[0].read_text(), scripts[-1].read_text()
        assert "--mem-per-cpu" not in scheduler_script and "#SBATCH --mem=" in scheduler_script
        assert "#SBATCH --mem-per-cpu=1G" in worker_script and "#SBATCH --mem=" not in worker_script
