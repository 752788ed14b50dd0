"""The commands that jobs run: pure functions of a spec, so tests can read them."""

from __future__ import annotations

import sys
from pathlib import Path

from dask_hpc.errors import SpecError
from dask_hpc.security import TLSFiles
from dask_hpc.spec import DASK_WORKER_MODULES, JobSpec
from dask_hpc.systems.base import BatchSystem, Expanded

__all__ = ["scheduler_command", "takes_arrays", "worker_command", "worker_script"]


def worker_command(
    spec: JobSpec,
    scheduler_file: str | Path,
    *,
    python: str = sys.executable,
    interface: str | None = None,
    tls: TLSFiles | None = None,
    protocol: str | None = None,
    job_id_variable: str | None = None,
) -> list[str]:
    """``dask worker`` for one job: ``spec.processes`` workers sharing its cores and memory.

    Workers find the scheduler through the scheduler file on the shared
    filesystem, so the job can be submitted before the scheduler is up.
    ``dask_hpc.worker`` is ``dask worker`` that names its workers after the job; another
    ``spec.worker_command`` (``dask_cuda.cli.dask_cuda_worker``) gets what dask-jobqueue
    gives it (no ``--nworkers``) and ``--name`` from ``job_id_variable``, the job's id,
    by which the keeper knows its workers. The options follow the spec (dask-jobqueue's
    names): ``--death-timeout``, ``--no-nanny``, ``--local-directory``, then
    ``--worker-class`` (``auto`` for a job with one GPU a worker: dask-cuda's worker where
    the node has it, :mod:`dask_hpc.worker.classes`), ``--resources``, ``worker_extra_args``.
    """
    module = spec.worker_command or "dask_hpc.worker"
    ours = module in DASK_WORKER_MODULES
    if not ours and spec.nodes > 1:
        raise SpecError(
            "nodes",
            spec.nodes,
            f"worker_command {module} names its workers after the job (--name ${job_id_variable}), the "
            "same name on every node, and the scheduler takes one worker of a name: leave "
            "worker_command out for jobs of several nodes (dask-hpc's worker names them after job "
            "and node), or ask for --nodes 1 with more --processes",
        )
    command = [
        spec.python or python,
        "-m",
        "dask_hpc.worker" if ours else module,
        "--scheduler-file",
        str(scheduler_file),
        "--nthreads",
        str(spec.threads_per_process),
    ]
    if ours:
        command += ["--nworkers", str(spec.processes)]
    elif job_id_variable:
        command += ["--name", Expanded(f"${{{job_id_variable}}}")]
    command += ["--memory-limit", str(spec.memory_per_process), "--death-timeout", str(spec.death_timeout)]
    if ours:
        # No web page per worker: compute nodes are rarely reachable from a browser, the
        # scheduler's dashboard shows every worker, and bokeh's import costs each worker ~0.8 s.
        command.append("--no-dashboard")
    if not spec.nanny:
        command.append("--no-nanny")
    if spec.local_directory:
        command += ["--local-directory", Expanded(spec.local_directory)]
    if interface:
        command += ["--interface", interface]
    if protocol:
        command += ["--protocol", protocol]
    if tls is not None:
        command += tls.worker_arguments()
    if spec.worker_class:
        command += ["--worker-class", spec.worker_class]
    elif ours and spec.gpus and spec.gpus == spec.processes and spec.nanny:
        # One GPU a worker: dask-cuda's worker where the node has it (worker/classes.py).
        command += ["--worker-class", "auto"]
    resources, rest = worker_resources(spec)
    return [*command, *resources, *(Expanded(a) for a in rest)]


def worker_resources(spec: JobSpec) -> tuple[list[str], list[str]]:
    """The workers' ``--resources`` (distributed's abstract resources, by which tasks are
    routed: ``client.submit(f, resources={"GPU": 1})``), and the rest of
    ``worker_extra_args``: ``GPU`` for a job's GPUs (each worker process its share), with
    ``pool-<name>`` for a pool's, with the user's own ``--resources`` in one argument
    (dask worker reads only the last)."""
    ours = [f"GPU={spec.gpus // spec.processes}"] if spec.gpus else []
    if spec.pool:  # a unit a thread: as many of the pool's tasks at once as it has threads
        ours.append(f"pool-{spec.pool}={spec.threads_per_process}")
    rest: list[str] = []
    args = list(spec.worker_extra_args)
    theirs: list[str] = []
    while args:
        arg = args.pop(0)
        if arg == "--resources" and args:
            theirs += args.pop(0).replace(",", " ").split()
        elif arg.startswith("--resources="):
            theirs += arg.split("=", 1)[1].replace(",", " ").split()
        else:
            rest.append(arg)
    named = {entry.split("=")[0] for entry in theirs}
    merged = [*theirs, *(entry for entry in ours if entry.split("=")[0] not in named)]
    return (["--resources", " ".join(merged)] if merged else []), rest


def scheduler_command(state_dir: str | Path, *, python: str = sys.executable) -> list[str]:
    """What a session's scheduler job runs: the scheduler with the keeper inside."""
    return [python, "-m", "dask_hpc.scheduler_job", str(state_dir)]


def worker_script(
    system: BatchSystem,
    spec: JobSpec,
    scheduler_file: str | Path,
    *,
    python: str = sys.executable,
    interface: str | None = None,
    tls: TLSFiles | None = None,
    protocol: str | None = None,
    tasks: int = 1,
) -> str:
    """The job script of one worker job of a session; with ``tasks`` > 1, of an array of
    that many worker jobs (:meth:`~dask_hpc.systems.BatchSystem.array_header`)."""
    command = worker_command(
        spec,
        scheduler_file,
        python=python,
        interface=interface,
        tls=tls,
        protocol=protocol,
        job_id_variable=system.job_id_variable,
    )
    return system.render(spec, command, tasks)


def takes_arrays(spec: JobSpec, system: BatchSystem | None = None) -> bool:
    """Whether the spec's workers may be the tasks of an array: ours name themselves after
    their task (``4711_3``); another worker module is named from the job id variable, which
    an array's tasks do not carry in the form the batch system's commands take. And the
    system's say (:meth:`~dask_hpc.systems.BatchSystem.takes_arrays`)."""
    ours = (spec.worker_command or "dask_hpc.worker") in DASK_WORKER_MODULES
    return ours and (system is None or system.takes_arrays(spec))
