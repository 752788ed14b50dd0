"""GPUs a node (issue 23): asked in each system's own words (the goldens: *-gpus.txt), and
the workers' share of them as distributed's resource GPU, by which tasks are routed."""

from __future__ import annotations

import pytest

from dask_hpc.errors import SpecError
from dask_hpc.keeper.scripts import worker_command, worker_resources
from dask_hpc.spec import JobSpec
from dask_hpc.systems import get_system


def test_the_workers_share_the_gpus_of_their_node_as_the_resource_gpu() -> None:
    spec = JobSpec.from_options(cores=8, processes=4, gpus=4)
    command = worker_command(spec, "/s.json")
    assert command[command.index("--resources") + 1] == "GPU=1"
    assert "--resources" not in worker_command(JobSpec.from_options(cores=8), "/s.json")
    # Two GPUs for one worker process: it holds both (one task of GPU=2, or two of GPU=1).
    assert worker_resources(JobSpec.from_options(cores=8, gpus=2)) == (["--resources", "GPU=2"], [])


def test_the_users_own_resources_are_kept_in_one_argument() -> None:
    """dask worker reads only its last --resources: the user's and ours go in one; a GPU
    count of the user's own wins."""
    spec = JobSpec.from_options(
        cores=4, gpus=1, worker_extra_args=["--resources", "MEMORY=100e9", "--lifetime", "1h"]
    )
    assert worker_resources(spec) == (["--resources", "MEMORY=100e9 GPU=1"], ["--lifetime", "1h"])
    spec = JobSpec.from_options(cores=4, gpus=1, worker_extra_args=["--resources=GPU=2,FPGA=1"])
    assert worker_resources(spec) == (["--resources", "GPU=2 FPGA=1"], [])


@pytest.mark.parametrize(("gpus", "processes"), [(3, 2), (1, 2), (-1, 1)])
def test_gpus_the_processes_cannot_share_evenly_are_refused_in_one_line(gpus: int, processes: int) -> None:
    with pytest.raises(SpecError, match=r"invalid gpus") as raised:
        JobSpec.from_options(cores=4, processes=processes, gpus=gpus)
    assert "\n" not in str(raised.value)


def test_the_fix_that_the_gpu_line_gives_is_taken() -> None:
    """`--gpus 3 --processes 2 --cores 2` said to give --processes 3, which --cores 2 refused."""
    with pytest.raises(SpecError) as raised:
        JobSpec.from_options(cores=2, processes=2, gpus=3)
    assert "--processes 3 (one worker a GPU; with --cores 3 or more)" in str(raised.value)
    assert JobSpec.from_options(cores=3, processes=3, gpus=3).gpus == 3


def test_grid_engine_asks_the_sites_consumable_and_refuses_without_one() -> None:
    spec = JobSpec.from_options(cores=1, gpus=2)
    assert "#$ -l gpu=2\n" in get_system("sge", {"sge-gpu-resource": "gpu"}).render(spec, ["true"])
    with pytest.raises(
        SpecError, match=r"invalid gpus 2: Grid Engine has no GPU request of its own.*sge-gpu-resource"
    ):
        get_system("sge").render(spec, ["true"])


def test_oar_takes_gpus_only_in_the_sites_own_resource_hierarchy() -> None:
    spec = JobSpec.from_options(cores=4, gpus=2)
    script = get_system("oar", {"resource-spec": "/nodes=1/gpu=2"}).render(spec, ["true"])
    assert "#OAR -l /nodes=1/gpu=2," in script


def test_a_gpu_directive_of_the_users_replaces_ours() -> None:
    spec = JobSpec.from_options(cores=4, gpus=2, job_extra_directives=["--gres=gpu:a100:2"])
    script = get_system("slurm").render(spec, ["true"])
    assert "--gres=gpu:a100:2" in script and "--gres=gpu:2\n" not in script


@pytest.mark.parametrize("pool", ["", "1gpu", "a b", "x" * 41, "hi/mem"])
def test_a_pools_name_that_could_not_name_a_resource_is_refused_in_one_line(pool: str) -> None:
    with pytest.raises(SpecError, match=r"invalid pool .*a letter, then letters, digits") as raised:
        JobSpec.from_options(pool=pool)
    assert "\n" not in str(raised.value)


def test_the_sessions_own_jobs_are_of_no_pool() -> None:
    """`up --pool` is refused in one line: pools are for add, scale and remove."""
    from pathlib import Path

    from dask_hpc.session.lifecycle import session_specs

    with pytest.raises(SpecError, match="invalid pool 'gpu': the session's own jobs are of no pool"):
        session_specs("s", {"pool": "gpu"}, logs=Path("/tmp/logs"))


@pytest.mark.parametrize(
    ("visible", "index", "per", "share"),
    [("0,1,2,3", 0, 1, "0"), ("0,1,2,3", 3, 1, "3"), ("0,1,2,3", 1, 2, "2,3"), ("4,6", 1, 1, "6"),
     ("GPU-a,GPU-b", 1, 1, "GPU-b"), ("", 0, 1, None), ("0", 1, 1, None), ("0,1", 0, 0, None)],
)  # fmt: skip
def test_each_worker_process_gets_its_share_of_the_jobs_gpus(
    visible: str, index: int, per: int, share: str | None
) -> None:
    from dask_hpc.worker.gpus import gpu_share

    assert gpu_share(visible, index, per) == share


@pytest.mark.timeout(90)
def test_the_worker_processes_of_a_job_see_one_gpu_each(tmp_path: object) -> None:
    """`dask worker --nworkers 2 --resources GPU=1` with dask-hpc's preload, in a job whose
    batch system set CUDA_VISIBLE_DEVICES=3,5: each worker process sees its own GPU (no
    GPU needed: it is the variable CUDA reads when it starts)."""
    import os
    import subprocess
    import sys

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None, protocol="tcp") as cluster:
        argv = [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address]
        argv += ["--nworkers", "2", "--nthreads", "1", "--resources", "GPU=1", "--no-dashboard"]
        argv += ["--preload", "dask_hpc.worker.retirement", "--host", "127.0.0.1", "--name", "4711"]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "3,5"}
        env.pop("DASK_HPC_SYSTEM", None)  # outside a dask-hpc job: the names stay distributed's
        workers = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with Client(cluster) as client:
                client.wait_for_workers(2, timeout=60)
                seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
                names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
                assert {names[a]: v for a, v in seen.items()} == {"4711-0": "3", "4711-1": "5"}
        finally:
            workers.terminate()
            workers.wait(timeout=30)
