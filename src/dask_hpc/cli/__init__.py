"""The ``dask-hpc`` command: parse, call, print. Errors become one or two lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dask_hpc.cli.options import configured, spec_options, system_option
from dask_hpc.errors import ConfigError, DaskHPCError, closest
from dask_hpc.keeper.scripts import worker_command
from dask_hpc.spec import JobSpec
from dask_hpc.state.session import Session
from dask_hpc.systems import get_system


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dask-hpc", prog_name="dask-hpc")
def cli() -> None:
    """Dask on supercomputers: MPI launch and interactive sessions on batch systems."""


@cli.command()
@system_option
@spec_options
@click.option(
    "--scheduler-file",
    help="where workers find the scheduler [the default session's scheduler file]",
)
def script(system: str | None, scheduler_file: str | None, **options: Any) -> None:
    """Print the worker job script that would be submitted, without submitting it."""
    configuration, job_options = configured(system, options)
    batch = get_system(configuration.system, configuration.system_settings())
    spec = JobSpec.from_options(job_options, walltime_fields=batch.walltime_fields)
    path = Path(scheduler_file).expanduser() if scheduler_file else Session().scheduler_file
    click.echo(batch.render(spec, worker_command(spec, path)), nl=False)
    # What up would say of it, on stderr: the script on stdout stays a script.
    from dask_hpc.session.lifecycle import replaced_note

    for note in filter(None, [replaced_note(batch, spec), *batch.notes(spec)]):
        click.echo(note, err=True)


@cli.command()
@system_option
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 1000), help="worker jobs")
@click.option(
    "--files",
    default=365,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="days of synthetic SST to write, one NetCDF file each",
)
@click.option("--data", metavar="DIR|GLOB", help="your own NetCDF files instead, e.g. '/glade/data/sst_*.nc'")
@click.option("--var", "variable", help="the variable to analyse [the first one with a time dimension]")
@click.option(
    "--level",
    type=float,
    help="for a variable with levels (plev, depth, ...): the one to show, by its coordinate "
    "value, nearest [the first]",
)
@click.option("--session", "session_name", help="use this live session instead of starting one")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dask-hpc-demo"),
    show_default=True,
    help="where the figure, demo.json and the synthetic files go (a folder the nodes share)",
)
@click.option("--keep", is_flag=True, help="leave the session running, with the anomalies published")
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(1),
    help="seconds to wait for the scheduler and the workers",
)
@spec_options
def demo(
    system: str | None,
    workers: int,
    files: int,
    data: str | None,
    variable: str | None,
    level: float | None,
    session_name: str | None,
    output: Path,
    keep: bool,
    timeout: float,
    **options: Any,
) -> None:
    """An xarray workflow on a session: open many NetCDF files in parallel, persist, monthly
    climatology and anomalies, publish them, draw a figure; time every step."""
    from dask_hpc.cli.demo_view import RichSteps
    from dask_hpc.demo.run import run_demo

    configuration, job_options = configured(system, options)
    run_demo(
        system=configuration.system,
        system_settings=configuration.system_settings(),
        workers=workers,
        files=files,
        data=data,
        variable=variable,
        level=level,
        session_name=session_name,
        options=job_options,
        output=output,
        keep=keep,
        timeout=timeout,
        view=RichSteps(),
    )


from dask_hpc.cli import session as _session  # noqa: E402  (registers the session commands)
from dask_hpc.cli.bench import bench  # noqa: E402
from dask_hpc.cli.config import config  # noqa: E402
from dask_hpc.cli.mpi import mpi  # noqa: E402

_session.register(cli)
cli.add_command(mpi)
cli.add_command(bench)
cli.add_command(config)


def main(argv: list[str] | None = None, prog_name: str = "dask-hpc") -> None:
    """Entry point: run the CLI, turn our errors into one clear message and exit status."""
    try:
        cli.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.NoSuchOption as exc:
        known = sorted(
            o for p in (exc.ctx.command.params if exc.ctx else []) for o in p.opts if o.startswith("--")
        )
        word = closest(
            exc.option_name.lstrip("-").replace("-", "_"), [o[2:].replace("-", "_") for o in known]
        )
        hint = f" (did you mean --{word.replace('_', '-')}?)" if word else ""
        click.echo(
            f"error: no such option {exc.option_name}{hint}; known options: {', '.join(known)}", err=True
        )
        sys.exit(2)
    except click.UsageError as exc:
        # One line, as for every other bad input (click's own form is four).
        where = exc.ctx.command_path if exc.ctx else "dask-hpc"
        said = exc.format_message().rstrip(".")
        if said.startswith("Got unexpected extra argument") and exc.ctx and "name" in exc.ctx.params:
            said += " (a session's name goes after --name: --name NAME)"
        click.echo(f"error: {said}; see {where} --help", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except ConfigError as exc:  # bad input, as a bad flag: exit 2
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except DaskHPCError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


@click.command(
    "hpc",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
    help="Dask on supercomputers: the dask-hpc commands (dask hpc --help lists them).",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dask_cli(args: tuple[str, ...]) -> None:
    """``dask hpc ...``: dask's CLI hands everything after ``hpc`` to :func:`main`, so that
    errors are the same one line as under ``dask-hpc``."""
    main(list(args), prog_name="dask hpc")
