"""Options shared by several commands: a job's resources, the batch system, the session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from dask_hpc.config import Configuration, flags, resolve
from dask_hpc.spec import JobSpec, absolute_path
from dask_hpc.state.session import DEFAULT_NAME
from dask_hpc.systems import SYSTEMS

F = TypeVar("F", bound=Callable[..., Any])


def spec_options(func: F) -> F:
    """The options of a job's resources, shared by every command that makes jobs."""
    options = [
        click.option("--cores", help="CPU cores per job [1]"),
        click.option("--memory", help="memory per job, e.g. 8GB, 8GiB [2GiB]"),
        click.option("--walltime", help="e.g. 1:00:00, 90m, 1h30m, 2-00:00:00 [1:00:00]"),
        click.option("--processes", help="worker processes per job, sharing its cores [1]"),
        click.option(
            "--nodes",
            help="nodes per job: a worker (x --processes) on each, started by the system's launcher "
            "(srun, pbsdsh, blaunch, qrsh -inherit, oarsh); --cores, --memory and --processes are "
            "per node [1]",
        ),
        click.option(
            "--gpus",
            help="GPUs on each node, asked as the batch system asks for them; the worker "
            "processes share them (resource GPU) [0]",
        ),
        click.option(
            "--pool",
            help="the pool of workers these jobs join (e.g. himem, gpu): their workers carry the "
            "resource pool-NAME; the options it was first given are its defaults (an add's own "
            "options change that add's jobs)",
        ),
        click.option("--queue", help="queue or partition"),
        click.option("--account", help="account or project to charge"),
        click.option("--job-name", help="name of the job [dask-worker]"),
        click.option(
            "--job-extra-directive",
            "job_extra_directives",
            multiple=True,
            help="an extra directive line, without its prefix (repeatable)",
        ),
        click.option(
            "--prologue",
            "job_script_prologue",
            multiple=True,
            help="a shell line run before the worker starts, e.g. 'module load x' (repeatable)",
        ),
        click.option(
            "--epilogue",
            "job_script_epilogue",
            multiple=True,
            help="a shell line run after the workers end (repeatable)",
        ),
        click.option(
            "--job-directive-skip",
            "job_directives_skip",
            multiple=True,
            help="leave out our directive lines that contain this text, e.g. --mem (repeatable)",
        ),
        click.option(
            "--env",
            "environment",
            multiple=True,
            help="NAME=VALUE exported in the job; $VAR and ${VAR} in VALUE are the job's, "
            "on its node (quote them from your shell); the rest is literal (repeatable)",
        ),
        click.option(
            "--log-directory",
            help="where the job's stdout and stderr go; relative to where you type the command, "
            "made if missing",
        ),
        click.option(
            "--local-directory",
            help="the workers' fast node-local storage, e.g. '$TMPDIR' (quoted: the node's)",
        ),
        click.option(
            "--worker-extra-args",
            help="more arguments of dask worker, e.g. '--resources GPU=1'",
        ),
        click.option(
            "--worker-class",
            help="the workers' class: a subclass of distributed.Worker, or dask_cuda.CUDAWorker "
            "(a worker a GPU) [distributed's; dask-cuda's for one GPU a worker where the node has it]",
        ),
        click.option("--shebang", help="the job script's first line, e.g. '#!/bin/bash -l'"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def given_options(options: dict[str, Any]) -> dict[str, Any]:
    """The spec options the user gave (left-out ones are None or empty). A log directory
    is made absolute here, where the user typed it: the scheduler that may parse it runs elsewhere."""
    given = {k: v for k, v in options.items() if k in JobSpec.option_names() and v not in (None, (), "")}
    if "log_directory" in given:
        given["log_directory"] = absolute_path(given["log_directory"])
    return given


system_option = click.option(
    "--system",
    help=f"batch system: {', '.join(SYSTEMS)} [dask-hpc config: dask-hpc.system, a site profile; else local]",
)


def configured(
    system: str | None, options: dict[str, Any], **own: Any
) -> tuple[Configuration, dict[str, Any]]:
    """The configuration for what was given (``own``: our own settings by config key, such as
    ``interface``), and the job options: the configured ones, then the given ones."""
    given = given_options(options)
    configuration = resolve({"system": system, **own, **flags(given)})
    # The given ones first, in the order typed (the scheduler's note lists them so), then the rest.
    merged = {**given, **{k: v for k, v in configuration.spec_options().items() if k not in given}}
    if "log_directory" in merged:
        merged["log_directory"] = absolute_path(str(merged["log_directory"]))
    return configuration, merged


name_option = click.option(
    "--name",
    "--session",  # the same: `demo --session NAME` and `bench network --session NAME` say so
    "name",
    default=DEFAULT_NAME,
    show_default=True,
    help="the session's name (--session NAME is the same)",
)

login_host_option = click.option(
    "--login-host",
    metavar="[USER@]HOST",
    help="the host to tunnel through, as you would ssh to it from your laptop "
    "[dask config dask-hpc.login-host, else this host]",
)
