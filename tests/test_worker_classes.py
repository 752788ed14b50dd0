"""--worker-class (issue 23): which class a job's workers are, chosen where they run, and the
command that runs it; dask-cuda's worker by its own command, its GPUs left as it sets them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dask_hpc.errors import DaskHPCError, SpecError
from dask_hpc.keeper.scripts import worker_command
from dask_hpc.spec import CUDA_WORKER, JobSpec
from dask_hpc.worker.classes import (
    GPUS_SHARED_BY,
    check_worker_class,
    choose,
    cuda_worker_arguments,
    take_option,
)
from dask_hpc.worker.gpus import share_gpus

TAGGED = "tests.workers_of_our_own.TaggedWorker"


def test_the_option_is_taken_from_the_arguments_in_either_form() -> None:
    assert take_option(["a", "--worker-class", "x.Y", "b"], "--worker-class") == ("x.Y", ["a", "b"])
    assert take_option(["--worker-class=x.Y", "b"], "--worker-class") == ("x.Y", ["b"])
    assert take_option(["a"], "--worker-class") == (None, ["a"])


def test_auto_is_dask_cudas_worker_only_where_dask_cuda_is() -> None:
    assert choose("auto", lambda: True) == CUDA_WORKER
    assert choose("auto", lambda: False) is None
    assert choose(None, lambda: True) is None  # no GPUs a worker: distributed's, even with dask-cuda
    assert choose("distributed.Worker", lambda: True) is None


def test_a_subclass_of_distributeds_worker_is_used_and_anything_else_is_one_line() -> None:
    assert choose(TAGGED) == TAGGED
    with pytest.raises(DaskHPCError, match=r"NotAWorker is not a subclass of distributed.Worker"):
        choose("tests.workers_of_our_own.NotAWorker")
    with pytest.raises(
        DaskHPCError,
        match=r"tests.nosuch.Worker cannot be imported by .* --env PYTHONPATH=DIR",
    ):
        choose("tests.nosuch.Worker")
    with pytest.raises(DaskHPCError, match=r"dask-cuda is not installed in this Python"):
        choose(CUDA_WORKER, lambda: False)


def test_the_class_is_checked_before_jobs_are_submitted_unless_the_workers_python_is_another() -> None:
    check_worker_class(JobSpec(worker_class=TAGGED))
    with pytest.raises(DaskHPCError, match="cannot be imported"):
        check_worker_class(JobSpec(worker_class="tests.nosuch.Worker"))
    check_worker_class(JobSpec(worker_class="tests.nosuch.Worker", python="/opt/other/bin/python"))


def test_the_spec_takes_a_dotted_path_and_dask_cudas_worker_one_a_gpu() -> None:
    assert JobSpec.from_options(worker_class=TAGGED).worker_class == TAGGED
    with pytest.raises(SpecError, match="dotted path"):
        JobSpec(worker_class="TaggedWorker")
    spec = JobSpec(cores=4, gpus=2, processes=2, worker_class=CUDA_WORKER)
    assert spec.workers == 2
    with pytest.raises(SpecError, match=r"--gpus N --processes N \(now 2 GPUs, 1 processes\)"):
        JobSpec(cores=4, gpus=2, worker_class=CUDA_WORKER)
    with pytest.raises(SpecError, match=r"worker_command dask_cuda\.cli is a command of its own"):
        JobSpec(worker_command="dask_cuda.cli", worker_class=CUDA_WORKER, gpus=1)
    with pytest.raises(SpecError, match="nannies"):
        JobSpec(gpus=1, nanny=False, worker_class=CUDA_WORKER)
    with pytest.raises(SpecError, match=r"dask cuda worker has no --lifetime: leave it out"):
        JobSpec(gpus=1, worker_class=CUDA_WORKER, worker_extra_args=("--lifetime", "55m"))


def test_the_job_script_says_which_class() -> None:
    assert "--worker-class" not in worker_command(JobSpec(), "s.json")
    tagged = worker_command(JobSpec(worker_class=TAGGED), "s.json")
    assert tagged[tagged.index("--worker-class") + 1] == TAGGED
    # One GPU a worker: the node chooses (dask-cuda's worker where it is installed there).
    gpu = worker_command(JobSpec(cores=4, gpus=2, processes=2), "s.json")
    assert gpu[gpu.index("--worker-class") + 1] == "auto"
    # Two GPUs a worker: dask-cuda's worker cannot be that; distributed's, sharing them.
    assert "--worker-class" not in worker_command(JobSpec(cores=4, gpus=2), "s.json")


def test_dask_cudas_command_gets_our_options_but_those_it_has_not() -> None:
    ours = worker_command(JobSpec(cores=4, gpus=2, processes=2, worker_class=CUDA_WORKER), "s.json")
    argv = [*ours[3:], "--name", "4711", "--preload", "dask_hpc.worker.retirement"]
    _, argv = take_option(argv, "--worker-class")
    theirs = cuda_worker_arguments(argv)
    assert "--nworkers" not in theirs
    assert theirs[:2] == ["--scheduler-file", "s.json"]
    for option in ("--nthreads", "--memory-limit", "--death-timeout", "--resources", "--name", "--preload"):
        assert option in theirs, option
    assert theirs[theirs.index("--resources") + 1] == "GPU=1"
    assert cuda_worker_arguments(["--nworkers=2", "--nanny", "x"]) == ["x"]


def test_dask_cudas_workers_keep_the_gpu_it_gave_each() -> None:
    """dask-cuda gives worker 1 of 2 CUDA_VISIBLE_DEVICES=1,0 (its own first): our share of
    plain workers (the i-th) would make it 0, another worker's GPU."""
    env = {"CUDA_VISIBLE_DEVICES": "1,0", GPUS_SHARED_BY: "dask-cuda"}
    assert share_gpus("4711-1", {"GPU": 1}, env) is None
    assert env["CUDA_VISIBLE_DEVICES"] == "1,0"
    plain = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert share_gpus("4711-1", {"GPU": 1}, plain) == "1"


def test_every_option_given_to_dask_cudas_command_is_one_it_has() -> None:
    """Against the options of the real ``dask cuda worker`` (dask-cuda 26.10, recorded: no GPU
    here to run it; its parser took these arguments then, TLS files and all)."""
    from pathlib import Path

    recorded = Path(__file__).parent / "recorded" / "dask-cuda-worker-options.txt"
    theirs = {line for line in recorded.read_text().splitlines() if line.startswith("--")}
    spec = JobSpec(cores=4, gpus=2, processes=2, worker_class=CUDA_WORKER, pool="gpu", local_directory="/l")
    argv = [
        *worker_command(spec, "s.json", interface="ib0", protocol="tls")[3:],
        *["--name", "4711", "--preload", "dask_hpc.worker.retirement"],
        *["--tls-ca-file", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
    ]
    _, argv = take_option(argv, "--worker-class")
    given = {arg for arg in cuda_worker_arguments(argv) if arg.startswith("--")}
    assert given <= theirs, given - theirs
    assert "--nworkers" not in theirs and "--nworkers" in argv  # what is left out, and why


def test_under_mpi_a_class_whose_workers_are_processes_of_their_own_is_no_rank_for_mpi() -> None:
    """initialize(worker_class="dask_cuda.CUDAWorker") defaulted to mpi://, which a nanny's
    workers (dask-cuda's are) cannot use: such classes count as a nanny there."""
    from dask_hpc.mpi.world import own_processes

    assert own_processes(CUDA_WORKER)  # without importing dask-cuda
    assert own_processes("distributed.Nanny")
    assert own_processes("tests.workers_of_our_own.NotAWorker")
    assert not own_processes("distributed.Worker")
    assert not own_processes(TAGGED)
    assert not own_processes("tests.nosuch.Worker")  # its start says it cannot be imported


def test_dask_cudas_workers_get_the_jobs_gpus_only() -> None:
    """Where the batch system set no list (local, many Grid Engine sites) dask-cuda would start
    a worker on every GPU of the node, other users' too: the job's --nworkers first ones."""
    from dask_hpc.worker.classes import cuda_devices

    env: dict[str, str] = {}
    assert cuda_devices(["--nworkers", "2"], env) == "0,1" == env["CUDA_VISIBLE_DEVICES"]
    env = {"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b,GPU-c"}
    assert cuda_devices(["--nworkers", "2"], env) == "GPU-a,GPU-b"
    with pytest.raises(DaskHPCError, match=r"4 workers, one a GPU, but this node's job has 2 GPUs"):
        cuda_devices(["--nworkers", "4"], {"CUDA_VISIBLE_DEVICES": "0,1"})


class Ran:
    """What the entry ran: the command (dask worker or dask cuda worker) and its arguments."""

    def __init__(self, name: str) -> None:
        self.name, self.args = name, None

    def main(self, args: list[str], prog_name: str) -> None:
        self.args = args


@pytest.fixture
def entry(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[str, list[str]]]:
    """Run the worker entry (outside a job) with distributed's dask worker, and dask-cuda's
    dask cuda worker where ``cuda=True`` (a stand-in: no GPU, no dask-cuda here), replaced by
    recorders: which one ran, with what."""
    import importlib.machinery
    import sys
    import types

    import distributed.cli.dask_worker as dask_worker

    from dask_hpc.worker import classes
    from dask_hpc.worker import entry as worker_entry

    for name in ("DASK_HPC_JOB_ID", "DASK_HPC_SYSTEM", "CUDA_VISIBLE_DEVICES", GPUS_SHARED_BY):
        monkeypatch.setenv(name, "")  # so that the end of the test restores it, whatever the entry set
        monkeypatch.delenv(name)

    def run(*argv: str, cuda: bool = False) -> tuple[str, list[str]]:
        plain, theirs = Ran("dask worker"), Ran("dask cuda worker")
        monkeypatch.setattr(dask_worker, "main", plain)
        monkeypatch.setattr(classes, "has_dask_cuda", lambda: cuda)  # whatever this machine has
        if cuda:
            package = types.ModuleType("dask_cuda")
            package.__spec__ = importlib.machinery.ModuleSpec("dask_cuda", None)
            cli = types.ModuleType("dask_cuda.cli")
            cli.worker = theirs  # type: ignore[attr-defined]
            monkeypatch.setitem(sys.modules, "dask_cuda", package)
            monkeypatch.setitem(sys.modules, "dask_cuda.cli", cli)
        worker_entry.main(list(argv))
        ran = theirs if theirs.args is not None else plain
        assert ran.args is not None
        return ran.name, ran.args

    return run


BASE = ("--scheduler-file", "s.json", "--nthreads", "2", "--nworkers", "2")


def test_auto_runs_dask_cuda_where_it_is_with_the_jobs_gpus(
    entry: Callable[..., tuple[str, list[str]]],
) -> None:
    import os

    name, args = entry(*BASE, "--worker-class", "auto", cuda=True)
    assert name == "dask cuda worker" and "--nworkers" not in args and "--worker-class" not in args
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and os.environ[GPUS_SHARED_BY] == "dask-cuda"
    assert entry(*BASE, "--worker-class", "auto") == ("dask worker", list(BASE))  # no dask-cuda


def test_auto_falls_back_to_distributeds_worker_for_what_dask_cuda_cannot_take(
    entry: Callable[..., tuple[str, list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """--lifetime (a dask-jobqueue habit) killed every job under dask cuda worker, which has no
    such option: auto runs distributed's worker instead, and says so in one line."""
    name, args = entry(*BASE, "--lifetime", "55m", "--worker-class", "auto", cuda=True)
    assert (name, args) == ("dask worker", [*BASE, "--lifetime", "55m"])
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [
        "dask-hpc worker: dask cuda worker has no --lifetime: leave it out of "
        "--worker-extra-args, or give --worker-class distributed.Worker; distributed's worker instead"
    ]


def test_a_class_that_cannot_be_used_ends_the_job_in_one_line(
    entry: Callable[..., tuple[str, list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert entry(*BASE, "--worker-class", TAGGED) == ("dask worker", [*BASE, "--worker-class", TAGGED])
    for value, words in (
        ("tests.workers_of_our_own.NotAWorker", "is not a subclass of distributed.Worker"),
        (CUDA_WORKER, "dask-cuda is not installed in this Python"),
    ):
        with pytest.raises(SystemExit) as ended:
            entry(*BASE, "--worker-class", value)
        assert ended.value.code == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("dask-hpc worker: --worker-class") and words in line, line
