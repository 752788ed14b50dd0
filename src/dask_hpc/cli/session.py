"""Session commands: up, add, remove, adapt, status, logs, down, list, forget."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.live import Live

from dask_hpc.cli import views
from dask_hpc.cli.console import make_console
from dask_hpc.cli.options import (
    configured,
    given_options,
    login_host_option,
    name_option,
    spec_options,
    system_option,
)
from dask_hpc.errors import DaskHPCError, SessionError
from dask_hpc.keeper import protocol
from dask_hpc.session import lifecycle
from dask_hpc.spec import make_log_directory
from dask_hpc.state.session import Session
from dask_hpc.systems import JobState, JobStatus, get_system

__all__ = ["register"]


#: Progress, notes, warnings: on stderr. What a command brought (up's addresses, the jobs
#: submitted or ended): on stdout, for a script to read (``dask-hpc up > session.txt``).
console = make_console(stderr=True)
said = make_console()
#: status's exit status when the session's scheduler does not answer.
NOT_ANSWERING = 3


@click.command()
@name_option
@system_option
@spec_options
@click.option("--scheduler-walltime", help="walltime of the scheduler's job [the workers' walltime]")
@click.option("--scheduler-memory", help="memory of the scheduler's job [2GiB]")
@click.option(
    "--scheduler-directive",
    "scheduler_directives",
    multiple=True,
    help="an extra directive for the scheduler's job only; it takes no --job-extra-directive (repeatable)",
)
@click.option(
    "--interface",
    help="network interface the nodes share, e.g. ib0 [dask-hpc config, else chosen automatically]",
)
@click.option(
    "--submit-from",
    type=click.Choice(["auto", "scheduler", "client"]),
    help="who submits worker jobs: the scheduler's node if it can (auto), or this one (client) "
    "[dask-hpc config, else auto]",
)
@click.option(
    "--refresh",
    type=click.FloatRange(0.5),
    default=5.0,
    show_default=True,
    help="seconds between the keeper's queries of the batch system",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=600.0,
    show_default=True,
    help="seconds to wait for the scheduler; then its job is cancelled",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 10_000),
    default=0,
    help="worker jobs to submit at once, beside the scheduler's: they start while it does",
)
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0),
    help="with --workers: also wait up to this many seconds for their workers",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="no TLS: anyone who can reach the scheduler can run code as you (not recommended)",
)
@click.option("--jupyter", is_flag=True, help="start JupyterLab beside the scheduler, on its node")
@login_host_option
def up(
    name: str,
    system: str | None,
    scheduler_walltime: str | None,
    scheduler_memory: str | None,
    scheduler_directives: tuple[str, ...],
    interface: str | None,
    submit_from: str | None,
    refresh: float,
    timeout: float,
    workers: int,
    wait_seconds: float | None,
    insecure: bool,
    jupyter: bool,
    login_host: str | None,
    **options: Any,
) -> None:
    """Start a session: submit the scheduler's job and wait until the scheduler answers."""
    configuration, job_options = configured(
        system, options, interface=interface, **{"submit-from": submit_from, "login-host": login_host}
    )
    interface = configuration.get("interface")
    submit_from = configuration.get("submit-from", "auto")
    login_host = configuration.get("login-host")
    session = Session(name)
    batch = get_system(configuration.system, configuration.system_settings())
    spec, scheduler_spec = lifecycle.session_specs(
        name,
        job_options,
        walltime_fields=batch.walltime_fields,
        scheduler_walltime=scheduler_walltime,
        scheduler_memory=scheduler_memory,
        scheduler_directives=scheduler_directives,
        logs=session.logs,
    )
    batch.render(spec, [])  # refuse options this system cannot take before submitting anything
    batch.render(scheduler_spec, [])
    if spec.log_directory:
        make_log_directory(spec.log_directory)  # refused in one line if it cannot be made
    if insecure:
        console.print(
            "[bold yellow]warning: --insecure: no TLS; anyone who can reach this session's scheduler "
            "can run code as you[/]"
        )
    with Live(console=console, transient=True, refresh_per_second=8) as live:

        def progress(status: JobStatus, elapsed: float) -> None:
            live.update(views.waiting_line(status, elapsed))

        started = lifecycle.up(
            session,
            batch,
            spec,
            scheduler_spec,
            interface=interface,
            submit_from=submit_from,
            refresh=refresh,
            timeout=timeout,
            workers=workers,
            insecure=insecure,
            jupyter=jupyter,
            login_host=login_host,
            progress=progress,
        )
    # What the jobs took of the options, once they run: a failed start stays one line.
    notes = [lifecycle.scheduler_note(job_options, scheduler_spec, own_walltime=bool(scheduler_walltime))]
    notes.append(lifecycle.replaced_note(batch, spec) or "")
    notes += batch.notes(spec)
    for note in filter(None, notes):
        console.print(note, soft_wrap=True, markup=False)
    web = started.web
    line = lifecycle.tunnel_line(session, pages=web) if web and web.dashboard_port else None
    said.print(views.started_lines(started, line))
    if workers and wait_seconds is not None:
        ids = [j.job_id for j in lifecycle.status(session).jobs]
        _wait_for_jobs(session, ids, wait_seconds)


@click.command()
@click.argument("n", type=click.IntRange(1, 10_000))
@name_option
@spec_options
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0),
    help="wait up to this many seconds until the new jobs' workers have connected",
)
@click.option(
    "--keep",
    is_flag=True,
    help="replace each job before its walltime ends (its data moves to the replacement), "
    "and when it dies, until removed",
)
def add(name: str, n: int, wait_seconds: float | None, keep: bool, **options: Any) -> None:
    """Add N worker jobs (one node each by default) to the session."""
    session = Session(name)
    ids = lifecycle.add(session, n, given_options(options), keep=keep)
    kept = " (kept: replaced ahead of their walltime)" if keep else ""
    said.print(f"submitted {len(ids)} worker job{'s' if len(ids) != 1 else ''}: {', '.join(ids)}{kept}")
    if wait_seconds is not None:
        _wait_for_jobs(session, ids, wait_seconds)


def _wait_for_jobs(session: Session, ids: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    t0 = time.monotonic()
    _, scheduler = lifecycle.open_live(session)
    while True:
        report = scheduler.ask(protocol.Status())  # the keeper's view: no batch-system call
        jobs = {j.job_id: j for j in report.jobs if j.job_id in ids}
        connected = sum(1 for j in jobs.values() if j.workers >= j.processes)
        ended = [j for j in jobs.values() if j.ended is not None]
        if connected == len(ids):
            said.print(f"all {len(ids)} jobs' workers connected after {time.monotonic() - t0:.1f} s")
            return
        if ended:
            j = ended[0]
            raise SessionError(
                f"worker job {j.job_id} ended before its workers connected: {j.state.value}; "
                f"see dask-hpc logs {j.job_id} --name {session.name}"
            )
        if time.monotonic() > deadline:
            raise SessionError(
                f"{connected} of {len(ids)} jobs' workers connected after {seconds:g} s; "
                f"see dask-hpc status --name {session.name}"
            )
        time.sleep(0.2)


@click.command()
@click.argument("n", type=click.IntRange(1), required=False)
@name_option
@click.option("--job", "job_ids", multiple=True, help="a worker job to remove (repeatable)")
@click.option("--pool", help="remove N jobs of this pool (without it: of the session's own jobs)")
def remove(name: str, n: int | None, job_ids: tuple[str, ...], pool: str | None) -> None:
    """Retire the workers of N jobs (or of --job ID) gracefully, then end those jobs."""
    if (n is None) == (not job_ids):
        raise click.UsageError("give either N (how many jobs) or --job ID, not both and not neither")
    if pool is not None and job_ids:
        raise click.UsageError("give --pool with N, not with --job (a job id names its pool)")
    ids = lifecycle.remove(Session(name), n, list(job_ids) or None, pool)
    fewer = (
        f" (asked for {n}: only {len(ids)} {'was' if len(ids) == 1 else 'were'} live)"
        if n and len(ids) < n
        else ""
    )
    said.print(f"removed {len(ids)} worker job{'s' if len(ids) != 1 else ''}: {', '.join(ids) or '-'}{fewer}")


@click.command()
@name_option
@click.option("--min", "minimum", type=click.IntRange(0), help="fewest worker jobs [0]")
@click.option("--max", "maximum", type=click.IntRange(0), help="most worker jobs")
@click.option("--off", is_flag=True, help="stop adapting; jobs stay as they are")
@spec_options
def adapt(name: str, minimum: int | None, maximum: int | None, off: bool, **options: Any) -> None:
    """Let the scheduler scale the session between --min and --max worker jobs by itself."""
    if off and (minimum is not None or maximum is not None):
        raise click.UsageError("give --off alone, or --min/--max")
    if not off and maximum is None:
        raise click.UsageError("give --max (and optionally --min), or --off")
    if not off and minimum is not None and maximum is not None and maximum < minimum:
        raise click.UsageError(f"--max {maximum} is below --min {minimum}")
    answer = lifecycle.adapt(Session(name), minimum, maximum, off=off, options=given_options(options))
    bounds = answer.bounds
    pool = options.get("pool")
    whose = f"pool {pool}'s" if pool else "the session's"
    if bounds is None:
        said.print(f"adapt of {whose} jobs off: they stay as they are")
    else:
        said.print(
            f"adapting {whose} worker jobs between {bounds.minimum_jobs} and {bounds.maximum_jobs}, "
            "decided inside the scheduler" + (f" by the tasks that ask for pool-{pool}" if pool else "")
        )
    if answer.warning:
        console.print(f"[yellow]warning: {answer.warning}[/]")


@click.command()
@name_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--all", "show_all", is_flag=True, help="list ended jobs too")
def status(name: str, as_json: bool, show_all: bool) -> None:
    """The session's scheduler and worker jobs: states, nodes, walltime left, workers.

    Exits 0 when the scheduler answers, 3 when it does not (its job pending, the session
    ended, or the scheduler lost), after printing the same report: scripts can wait on it
    (as systemctl status's 3 for a unit not running)."""
    report = lifecycle.status(Session(name))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        make_console().print(views.status_view(report, show_all=show_all))
    if not report.scheduler.answering:
        sys.exit(NOT_ANSWERING)


@click.command()
@click.argument("job", required=False)
@name_option
@click.option("--follow", "-f", is_flag=True, help="keep printing until the job ends (or Ctrl-C)")
def logs(job: str | None, name: str, follow: bool) -> None:
    """Print a job's stdout and stderr: JOB is a worker job id, or 'scheduler' (the default)."""
    session = Session(name)
    job_id, out, err = lifecycle.log_paths(session, job)
    if not follow:
        for path in (out, err):
            click.echo(f"==> {path} <==")
            click.echo(path.read_text(errors="replace") if path.exists() else "(not written yet)")
        return
    _follow(session, job_id, [out, err])


def _follow(session: Session, job_id: str, paths: list[Path]) -> None:
    system = get_system(session.read_config().system)
    offsets = dict.fromkeys(paths, 0)
    finished_at: float | None = None
    last_query = 0.0
    while True:
        for path in paths:
            if path.exists():
                with path.open("rb") as f:
                    f.seek(offsets[path])
                    chunk = f.read()
                offsets[path] += len(chunk)
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
        now = time.monotonic()
        if finished_at is None and now - last_query > 2:
            last_query = now
            if system.query([job_id])[job_id].state not in (JobState.PENDING, JobState.RUNNING):
                finished_at = now
        if finished_at is not None and now - finished_at > 1:  # one last read after the end
            return
        time.sleep(0.2)


@click.command()
@name_option
def down(name: str) -> None:
    """End the session: its worker jobs, then its scheduler. Logs are kept."""
    session = Session(name)
    result = lifecycle.down(session)
    n = len(result["job_ids"])
    said.print(
        f"session {name}: ended {n} worker job{'s' if n != 1 else ''}"
        + (f"; scheduler job {result['scheduler']}" if result["scheduler"] else "")
        + f"; logs kept in {session.logs}"
    )
    if result["warning"]:
        console.print(f"[yellow]warning: {result['warning']}[/]")


@click.command()
@click.argument("session_name", metavar="[NAME]", required=False)
@name_option
@login_host_option
@click.option(
    "--scheduler-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="for a cluster of dask-hpc mpi --scheduler-file F instead of a session",
)
def tunnel(session_name: str | None, name: str, login_host: str | None, scheduler_file: Path | None) -> None:
    """Print the SSH line that brings the session's dashboard and JupyterLab to your laptop."""
    if scheduler_file:
        line = lifecycle.mpi_tunnel_line(scheduler_file, login_host)
    else:
        line = lifecycle.tunnel_line(Session(session_name or name), login_host)
    click.echo(line.command)
    for label, url in (("dashboard", line.dashboard_url), ("jupyter", line.jupyter_url)):
        if url:
            click.echo(f"{label}: {url}")


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_(as_json: bool) -> None:
    """The sessions and whether their schedulers answer."""
    rows = lifecycle.sessions_overview()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        make_console().print(views.sessions_table(rows))


@click.command()
@name_option
@click.option("--ended", is_flag=True, help="forget every session that down has ended")
@click.pass_context
def forget(ctx: click.Context, name: str, ended: bool) -> None:
    """Remove an ended session's directory (settings, job scripts, logs): list shows it no more."""
    if ended and ctx.get_parameter_source("name") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("give --name NAME or --ended, not both")
    names = lifecycle.ended_sessions() if ended else [name]
    if not names:
        said.print("no ended session to forget")
    for each in names:
        try:
            removed = lifecycle.forget(Session(each))
        except DaskHPCError as exc:  # still ending; its batch system not here to ask (CommandError)
            if not ended:
                raise
            console.print(f"kept: {exc}")  # the others are forgotten all the same
            continue
        said.print(f"session {each}: forgotten; removed {removed}")


def register(group: click.Group) -> None:
    for command in (up, add, remove, adapt, status, logs, down, tunnel, list_, forget):
        group.add_command(command)
