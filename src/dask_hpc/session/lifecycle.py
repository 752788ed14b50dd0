"""What the commands and BatchCluster do to a session: up, add, remove, scale, adapt, status, logs, down.

Each function returns data; printing is the CLI's business. Whatever changes a
live session's worker jobs is asked of its keeper (inside the scheduler), which
owns the ledger. Only when the scheduler no longer answers do these functions
read the ledger and talk to the batch system themselves, to report and clean up.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib
import importlib.util
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dask_hpc.errors import (
    CapError,
    DaskHPCError,
    ProtocolError,
    SchedulerUnreachableError,
    SessionError,
    SpecError,
    UnknownSessionError,
)
from dask_hpc.keeper import protocol
from dask_hpc.keeper.decisions import (
    cap_message,
    cap_refusal,
    job_limit_message,
    running_cap_message,
    running_cap_refusal,
    session_holds,
)
from dask_hpc.keeper.scripts import scheduler_command, takes_arrays, worker_script
from dask_hpc.security import check_private, create_tls_files, tls_files
from dask_hpc.session.link import Link
from dask_hpc.session.report import SchedulerReport, SessionStatus
from dask_hpc.spec import JobSpec, format_walltime, make_log_directory
from dask_hpc.state.ledger import load_ledger
from dask_hpc.state.session import Session, SessionConfig, list_sessions
from dask_hpc.systems import BatchSystem, JobState, JobStatus, get_system
from dask_hpc.web.tunnel import Tunnel, WebPages, login_host, site_login_host, this_host, tunnel
from dask_hpc.worker.classes import check_worker_class

if TYPE_CHECKING:
    from distributed import Security

__all__ = [
    "Started",
    "adapt",
    "add",
    "down",
    "log_paths",
    "mpi_tunnel_line",
    "refuse_if_live",
    "remove",
    "replaced_note",
    "scheduler_note",
    "session_specs",
    "sessions_overview",
    "status",
    "tunnel_line",
    "up",
]

#: How often ``up`` looks for the scheduler file, and asks the batch system about the job.
FILE_POLL = 0.1
QUERY_POLL = 1.0

Progress = Callable[[JobStatus, float], None]


@dataclass(frozen=True)
class Started:
    """A session whose scheduler answers."""

    session: Session
    job_id: str
    link: Link
    dashboard: str | None
    interface: protocol.InterfaceReport
    security: str
    seconds: float
    web: WebPages | None = None

    @property
    def address(self) -> str:
        return self.link.address


#: What the scheduler's one-core job takes of the worker options: where it may run, who
#: pays, and what the software needs; not the workers' resources (cores, memory, directives).
SCHEDULER_TAKES = (
    "queue",
    "account",
    "job_script_prologue",
    "environment",
    "log_directory",
    "job_directives_skip",
    "shebang",  # a site's login shell (#!/bin/bash -l), which its modules need
)


def session_specs(
    name: str,
    options: dict[str, Any],
    *,
    scheduler_walltime: str | int | None = None,
    scheduler_memory: str | int | None = None,
    scheduler_directives: tuple[str, ...] | list[str] = (),
    logs: Path,
    walltime_fields: str = "MM:SS",
) -> tuple[JobSpec, JobSpec]:
    """(worker spec, scheduler spec) from one set of options.

    The scheduler job gets one core, its own memory, walltime (by default the
    workers') and directives (``scheduler_directives``); of the worker options it
    takes only :data:`SCHEDULER_TAKES`. ``walltime_fields``: how the system reads a
    walltime of two fields (``BatchSystem.walltime_fields``).
    """
    given = {k: v for k, v in options.items() if v not in (None, (), "")}
    given.setdefault("job_name", f"dask-worker-{name}")
    given.setdefault("log_directory", str(logs))
    spec = JobSpec.from_options(given, walltime_fields=walltime_fields)
    if spec.pool is not None:
        raise SpecError(
            "pool",
            spec.pool,
            "the session's own jobs are of no pool: give --pool to add, scale or remove (pool= in Python)",
        )
    scheduler = replace(
        JobSpec.from_options(
            walltime_fields=walltime_fields,
            memory=scheduler_memory or "2GiB",
            walltime=scheduler_walltime or spec.walltime,
            job_name=f"dask-scheduler-{name}",
            job_extra_directives=list(scheduler_directives),
        ),
        **{k: getattr(spec, k) for k in SCHEDULER_TAKES},
    )
    return spec, scheduler


def scheduler_note(options: dict[str, Any], scheduler: JobSpec, *, own_walltime: bool) -> str:
    """One line: which of the worker options the scheduler's job took, and which it left out."""
    given = [k for k, v in options.items() if v not in (None, (), "") and k != "job_name"]
    taken = ["walltime"] if not own_walltime and "walltime" in given else []
    taken += [k for k in given if k in SCHEDULER_TAKES]
    left = [k for k in given if k not in SCHEDULER_TAKES and k not in taken]
    flags = {
        "job_extra_directives": "job-extra-directive",
        "job_script_prologue": "prologue",
        "environment": "env",
    }

    def names(keys: list[str]) -> str:
        return ", ".join("--" + flags.get(k, k.replace("_", "-")) for k in keys)

    from dask.utils import format_bytes

    line = f"scheduler job: 1 core, {format_bytes(scheduler.memory)}, {format_walltime(scheduler.walltime)}"
    line += f"; took {names(taken) or 'no worker options'}"
    if left:
        line += f"; not {names(left)}"
        if "job_extra_directives" in left:
            line += " (it takes --scheduler-directive)"
    return line


def replaced_note(system: BatchSystem, spec: JobSpec) -> str | None:
    """One line: which of dask-hpc's directives the user's replaced (None if none did)."""
    replaced = system.replaced(spec)
    if not replaced:
        return None
    words = "; ".join(f"{ours} (by {by})" for ours, by in replaced.items())
    return f"worker jobs: your directives replace dask-hpc's {words}"


def up(
    session: Session,
    system: BatchSystem,
    spec: JobSpec,
    scheduler_spec: JobSpec,
    *,
    interface: str | None = None,
    submit_from: str = "auto",
    refresh: float = 5.0,
    timeout: float = 600.0,
    workers: int = 0,
    insecure: bool = False,
    jupyter: bool = False,
    login_host: str | None = None,
    progress: Progress | None = None,
) -> Started:
    """Submit the scheduler job and wait until its scheduler answers.

    ``workers`` worker jobs are submitted right after the scheduler's, from
    here, so that they start while the scheduler does; they wait for its
    address as long as ``up`` does, and are handed to the keeper once it answers.
    On any failure or interruption while waiting, every job is cancelled:
    nothing is left behind. Unless ``insecure``, the session gets a new CA and
    certificate first (security.py), and everything talks TLS. With ``jupyter``,
    JupyterLab starts beside the scheduler, and ``up`` waits for it too.
    """
    if jupyter and importlib.util.find_spec("jupyterlab") is None:
        raise SessionError("--jupyter needs JupyterLab: pip install 'dask-hpc[jupyter]'")
    if submit_from not in ("auto", "scheduler", "client"):
        raise SessionError(f"invalid submit_from {submit_from!r}: use auto, scheduler or client")
    # Asking the scheduler needs distributed (0.8 s to import): import it while its job starts.
    threading.Thread(target=importlib.import_module, args=("distributed.core",), daemon=True).start()
    for logs in (spec.log_directory, scheduler_spec.log_directory):
        if logs:
            make_log_directory(logs)  # batch systems do not make it: SLURM would fail the job
    refuse_if_live(session)
    if scheduler_spec.walltime < spec.walltime:
        # The workers would outlive their scheduler: their jobs would run on, idle, to their end.
        raise SpecError(
            "scheduler walltime",
            format_walltime(scheduler_spec.walltime),
            f"shorter than the workers' {format_walltime(spec.walltime)}, which would outlive their "
            f"scheduler; give --scheduler-walltime {format_walltime(spec.walltime)} or more "
            "(left out, it is the workers')",
        )
    with system.one_look():  # the site's settings asked once for both jobs' checks
        system.check_site(spec)
        system.check_site(scheduler_spec)
        check_worker_class(spec)
        _refuse_past_job_limits(system, spec, scheduler_spec)
    session.prepare()
    session.clear_scheduler_files()
    session.set_aside_ledger()
    tls = None if insecure else create_tls_files(session.directory, session.name)
    config = SessionConfig(
        name=session.name,
        system=system.name,
        spec=spec,
        scheduler_spec=scheduler_spec,
        interface=interface,
        submit_from=submit_from,
        refresh=refresh,
        insecure=insecure,
        jupyter=jupyter,
        jupyter_dir=os.getcwd(),
        login_host=login_host,
        up_host=this_host(),
        system_settings=system.settings(),
    )
    session.write_config(config)
    script = system.for_scheduler().render(
        scheduler_spec, scheduler_command(session.directory, python=config.python)
    )
    t0 = time.monotonic()
    try:
        job_id = system.submit(script, session.scripts)
    except BaseException:
        session.write_config(config.but(down=True))  # never started: down, not "starting or dead"
        raise
    config = config.but(scheduler_job_id=job_id)
    session.write_config(config)
    early: list[str] = []
    try:
        if workers:
            # Submitted before the scheduler is up: they may wait as long as it may take.
            early_spec = replace(spec, death_timeout=max(spec.death_timeout, int(timeout) + 60))
            batches = system.batches(workers, takes_arrays(early_spec, system))
            # The scheduler's job is in the queue: the caps count it.
            with system.one_look():
                _refuse_past_caps(system, workers, len(batches), early_spec, scheduler_spec, session.name)
            # One by one (an array at a time): those submitted before a failure are cancelled too.
            for tasks in batches:
                script = worker_script(
                    system,
                    early_spec,
                    session.scheduler_file,
                    python=config.python,
                    interface=interface,
                    tls=tls,
                    tasks=tasks,
                )
                if tasks == 1:
                    early.append(system.submit(script, session.scripts))
                else:
                    early += system.submit_array(script, session.scripts, tasks)
        started = _wait_for_scheduler(session, config, system, t0, timeout, progress)
        if jupyter:
            started = _wait_for_jupyter(started, system, t0, timeout)
        if early:
            started.link.ask(protocol.Register(early))
        return started
    except BaseException:
        system.cancel([job_id, *early])
        session.write_config(config.but(down=True))
        raise


def _refuse_past_caps(
    system: BatchSystem, n: int, submissions: int, spec: JobSpec, scheduler_spec: JobSpec, session: str
) -> None:
    """Raise CapError for ``n`` worker jobs, the first of a session whose scheduler's job is
    in the queue, that would pass one of the site's caps on the user's jobs, or could not
    all run at once beside the scheduler's job (the keeper checks its own the same way)."""
    caps = system.caps(spec)
    if not caps:
        return
    user = getpass.getuser()
    limits = system.job_limits(spec)
    nodes = [limit.most for limit in limits if limit.what == "node"]
    holds = session_holds([scheduler_spec])
    scoped_holds = {
        cap: session_holds([scheduler_spec] if system.in_scope(scheduler_spec, cap.scope) else [])
        for cap in caps
        if cap.running_only and cap.scope
    }
    way_out: dict[str, Any] = {
        "several_nodes": system.node_launch is not None,
        "session": session,
        "max_nodes": min(nodes, default=None),
        "up": True,  # the session does not start: the way out is up's
        # A way past a cap, or one the site's nodes would refuse, is no way out (as the keeper's).
        "fits": lambda way, count: (
            running_cap_refusal(caps, way, count, holds, scoped_holds) is None
            and job_limit_message(limits, way, system.name) is None
        ),
    }
    running = running_cap_refusal(caps, spec, n, holds, scoped_holds)
    if running is not None:
        raise CapError(running_cap_message(running[0], running[1], n, user, spec, **way_out))
    in_queue = system.user_jobs()
    scoped = system.scoped_counts(caps) if in_queue is not None else {}
    refusal = None if in_queue is None else cap_refusal(caps, in_queue, n, submissions, scoped)
    if refusal is not None and in_queue is not None:
        counted = scoped.get(refusal[0], in_queue)
        raise CapError(cap_message(refusal[0], refusal[1], n, counted, user, spec, **way_out))


def _refuse_past_job_limits(system: BatchSystem, spec: JobSpec, scheduler_spec: JobSpec) -> None:
    """Raise CapError for a worker or scheduler job past one of the site's limits on one job
    (SLURM's partition MaxTime), which would be refused or wait for ever."""
    # The workers' first: the scheduler's walltime is theirs unless given.
    for job, scheduler in ((spec, False), (scheduler_spec, True)):
        line = job_limit_message(system.job_limits(job), job, system.name, scheduler=scheduler)
        if line:
            raise CapError(line)


def _wait_for_scheduler(
    session: Session,
    config: SessionConfig,
    system: BatchSystem,
    t0: float,
    timeout: float,
    progress: Progress | None,
) -> Started:
    job_id = config.scheduler_job_id
    assert job_id is not None
    status = JobStatus(job_id, JobState.PENDING)
    next_query = 0.0
    while True:
        now = time.monotonic()
        error = session.scheduler_error()
        if error:
            raise SessionError(f"the scheduler job {job_id} could not start: {error}")
        scheduler = link(session, config)
        if scheduler:
            try:
                answer = scheduler.ask(protocol.Status(), timeout=5)
            except SchedulerUnreachableError:
                pass  # the file is written as the scheduler starts listening; try again
            else:
                return Started(
                    session,
                    job_id,
                    scheduler,
                    answer.dashboard,
                    answer.interface,
                    answer.security,
                    now - t0,
                    WebPages(answer.interface.address, answer.dashboard_port),
                )
        if now >= next_query:
            status = system.query([job_id])[job_id]
            next_query = now + QUERY_POLL
            if status.state.finished:
                raise SessionError(
                    f"the scheduler job {job_id} ended before its scheduler answered: {status.state.value}"
                    f"{f' ({status.reason})' if status.reason else ''}; "
                    f"see dask-hpc logs --name {session.name}"
                )
        if progress:
            progress(status, now - t0)
        if now - t0 > timeout:
            raise SessionError(
                f"the scheduler job {job_id} did not answer within {timeout:g} s "
                f"(last state: {status.state.value}{f', {status.reason}' if status.reason else ''}); "
                "it was cancelled; raise --timeout or choose a less busy queue"
            )
        time.sleep(FILE_POLL)


def _wait_for_jupyter(started: Started, system: BatchSystem, t0: float, timeout: float) -> Started:
    """Wait until the scheduler job says where its JupyterLab answers (or why it does not)."""
    session, job_id = started.session, started.job_id
    next_query = 0.0
    while True:
        now = time.monotonic()
        pages = WebPages.read(session.web_file)
        if pages and pages.jupyter_error:
            raise SessionError(
                f"JupyterLab did not start in the scheduler job {job_id}: {pages.jupyter_error}"
            )
        if pages and pages.jupyter_port:
            return replace(started, web=pages, seconds=now - t0)
        if now >= next_query:
            state = system.query([job_id])[job_id].state
            next_query = now + QUERY_POLL
            if state.finished:
                raise SessionError(
                    f"the scheduler job {job_id} ended while JupyterLab started: {state.value}; "
                    f"see dask-hpc logs --name {session.name}"
                )
        if now - t0 > timeout:
            raise SessionError(f"JupyterLab did not answer within {timeout:g} s; the session was ended")
        time.sleep(FILE_POLL)


def refuse_if_live(session: Session) -> None:
    if not session.exists():
        return
    config = session.read_config()
    if config.down or config.scheduler_job_id is None:
        return
    state = scheduler_job_status(config).state
    if state in (JobState.PENDING, JobState.RUNNING):
        raise SessionError(
            f"session {session.name!r} is live (scheduler job {config.scheduler_job_id} {state.value}); "
            f"use it, end it first with: dask-hpc down --name {session.name}, or give another "
            "name (--name, name=)"
        )


def scheduler_job_status(config: SessionConfig) -> JobStatus:
    assert config.scheduler_job_id is not None
    return get_system(config.system).query([config.scheduler_job_id])[config.scheduler_job_id]


def link(session: Session, config: SessionConfig) -> Link | None:
    """How to reach the session's scheduler, if it has written its address."""
    address = session.scheduler_address()
    if address is None:
        return None
    return Link(address, session_security(session, config))


def session_security(session: Session, config: SessionConfig) -> Security | None:
    """The session's TLS settings for clients; None if it was started with --insecure."""
    if config.insecure:
        return None
    check_private(session.directory)  # the session's keys live below it
    return tls_files(session.directory).security()


def open_live(session: Session) -> tuple[SessionConfig, Link]:
    """The session's settings and its scheduler; a clear error if it does not answer."""
    config = session.read_config()
    scheduler = link(session, config)
    why = ""
    if config.down:
        why = "it was ended with dask-hpc down"
    elif scheduler is None:
        why = "its scheduler has not written its address yet"
    else:
        try:
            scheduler.identity(timeout=5)
            return config, scheduler
        except SchedulerUnreachableError:
            pass
        if config.scheduler_job_id:
            s = scheduler_job_status(config)
            why = f"its scheduler job {s.job_id} is {s.state.value}{f' ({s.reason})' if s.reason else ''}"
    if config.down:  # nothing of it runs: nothing to clean up
        raise SchedulerUnreachableError(
            f"session {session.name!r} has no scheduler answering: {why}; "
            f"start it again with dask-hpc up --name {session.name}"
        )
    raise SchedulerUnreachableError(
        f"session {session.name!r} has no scheduler answering: {why}; "
        f"clean up with dask-hpc down --name {session.name}, then start again with dask-hpc up"
    )


def add(session: Session, n: int, options: dict[str, Any] | None = None, *, keep: bool = False) -> list[str]:
    """Submit ``n`` worker jobs; return their ids. With ``keep``, the keeper replaces each
    ahead of its walltime's end, and when it dies."""
    config, scheduler = open_live(session)
    options = {k: v for k, v in (options or {}).items() if v not in (None, (), "")}
    if options.get("log_directory"):
        options["log_directory"] = make_log_directory(options["log_directory"])
    answer = scheduler.ask(protocol.Add(n, options, keep), timeout=120 + n)
    return _submitted(session, config, scheduler, answer, options)


def _submitted(
    session: Session,
    config: SessionConfig,
    scheduler: Link,
    answer: protocol.Jobs | protocol.SubmitHere,
    options: dict[str, Any],
) -> list[str]:
    """The ids of the jobs an answer to Add or Scale submitted; where the scheduler's node
    cannot submit, they are submitted from here and handed over to the keeper."""
    if isinstance(answer, protocol.Jobs):
        return list(answer.job_ids)
    system = get_system(config.system, config.system_settings)
    ids: list[str] = []
    try:
        for tasks, script in answer.arrays:
            ids += system.submit_array(script, session.scripts, int(tasks))
        for _ in range(answer.n - sum(int(tasks) for tasks, _ in answer.arrays)):
            ids.append(system.submit(answer.script, session.scripts))
    finally:
        if ids:
            scheduler.ask(protocol.Register(ids, options))
    return ids


def remove(
    session: Session, n: int | None = None, job_ids: list[str] | None = None, pool: str | None = None
) -> list[str]:
    """Retire the workers of ``n`` jobs (of ``pool``'s; None: the session's own), or of
    ``job_ids``, then end those jobs."""
    _, scheduler = open_live(session)
    return list(scheduler.ask(protocol.Remove(n, job_ids, pool), timeout=600).job_ids)


def scale(session: Session, jobs: int, options: dict[str, Any] | None = None) -> list[str]:
    """Make the session's live worker jobs ``jobs``; the ids of the jobs submitted or ended."""
    config, scheduler = open_live(session)
    options = options or {}
    answer = scheduler.ask(protocol.Scale(jobs, options), timeout=600)
    return _submitted(session, config, scheduler, answer, options)


def adapt(
    session: Session,
    minimum_jobs: int | None = None,
    maximum_jobs: int | None = None,
    *,
    off: bool = False,
    options: dict[str, Any] | None = None,
    interval: float | None = None,
    wait_count: int | None = None,
) -> protocol.Adapting:
    """Adapt's bounds (None: off), and ``warning`` when its first submissions were partly refused.

    The keeper takes adapt's first step before it answers, so that a refusal is in the
    answer (a SessionError with the batch system's words; adapt is then off).
    """
    _, scheduler = open_live(session)
    options = {k: v for k, v in (options or {}).items() if v not in (None, (), "")}
    if options.get("log_directory"):
        options["log_directory"] = make_log_directory(options["log_directory"])
    return scheduler.ask(
        protocol.Adapt(minimum_jobs, maximum_jobs, off, options, interval, wait_count),
        timeout=600,  # the first step submits up to the minimum before answering
    )


def status(session: Session) -> SessionStatus:
    """Everything about the session, from its keeper, or from the ledger and batch system
    when the scheduler does not answer."""
    config = session.read_config()
    system = get_system(config.system)
    job_id = config.scheduler_job_id
    job = system.query([job_id])[job_id] if job_id else None
    scheduler = SchedulerReport(
        config.scheduler_job_id,
        job.state.value if job else None,
        job.reason if job else None,
        job.node if job else None,
        in_process=config.scheduler_here,
    )
    base = SessionStatus(
        session.name,
        config.system,
        str(session.directory),
        config.down,
        "insecure" if config.insecure else "tls",
        scheduler,
    )
    keeper = link(session, config)
    answer = None
    if keeper and not config.down:
        try:
            answer = keeper.ask(protocol.Status(), timeout=10)
        except (SchedulerUnreachableError, ProtocolError):  # a keeper of another version: as if gone
            answer = None
    if answer is not None:
        pages = WebPages.read(session.web_file)
        return replace(
            base,
            scheduler=replace(
                scheduler,
                answering=True,
                address=answer.address,
                dashboard=answer.dashboard,
                walltime_left=answer.scheduler_walltime_left,
            ),
            jobs=answer.jobs,
            keeper=answer,
            web=pages.to_dict() if pages else None,
        )
    # No scheduler: the ledger, with states asked of the batch system in one call.
    records = load_ledger(session.ledger_file)
    live = [j for j, r in records.items() if r.live]
    statuses = system.query(live) if live else {}
    now = time.time()
    jobs = []
    for job_id, record in records.items():
        updated = record.update(statuses[job_id], now) if job_id in statuses else record
        left = updated.walltime_left(now)
        jobs.append(protocol.JobReport.from_dict({**updated.to_dict(), "walltime_left": left}))
    return replace(base, jobs=jobs)


def tunnel_line(session: Session, login: str | None = None, pages: WebPages | None = None) -> Tunnel:
    """The SSH line (and URLs) that reach the session's dashboard and JupyterLab from a laptop.

    ``login`` ([user@]host) wins over the one given to ``up``, then the site's
    (dask config ``dask-hpc.login-host``), then the host ``up`` ran on.
    """
    config = session.read_config()
    if pages is None:
        if config.down:
            raise SessionError(f"session {session.name!r} is down; start it again with dask-hpc up")
        pages = WebPages.read(session.web_file)
        if pages is None:
            raise SessionError(
                f"session {session.name!r}: its scheduler has not said where its web pages are "
                f"(not started yet, or dead); see dask-hpc status --name {session.name}"
            )
    return tunnel(pages, login_host(login or config.login_host, config.up_host, site_login_host()))


def mpi_tunnel_line(scheduler_file: Path, login: str | None = None) -> Tunnel:
    """The tunnel line of a ``dask-hpc mpi --scheduler-file F`` cluster (its ``web.json`` is beside F)."""
    web = scheduler_file.absolute().parent / "web.json"
    pages = WebPages.read(web)
    if pages is None:
        raise SessionError(
            f"no {web}: is dask-hpc mpi running with --scheduler-file {scheduler_file} (and a dashboard)?"
        )
    return tunnel(pages, login_host(login, None, site_login_host()))


def log_paths(session: Session, job: str | None = None) -> tuple[str, Path, Path]:
    """(job id, stdout file, stderr file) of the scheduler job (the default) or a worker job."""
    config = session.read_config()
    system = get_system(config.system)
    if job in (None, "scheduler"):
        if config.scheduler_job_id is None:
            raise SessionError(f"session {session.name!r} has no scheduler job yet")
        job_id, job_name, directory = (
            config.scheduler_job_id,
            system.job_name(config.scheduler_spec),
            config.scheduler_spec.log_directory,
        )
    else:
        records = load_ledger(session.ledger_file)
        record = records.get(job)
        if record is None:
            known = ", ".join(["scheduler", *records]) if records else "scheduler"
            raise SessionError(f"no job {job!r} in session {session.name!r}; its jobs: {known}")
        job_id, job_name, directory = record.job_id, record.job_name, config.spec.log_directory
    base = Path(directory or session.logs)
    out, err = system.log_files(job_name, job_id)
    return job_id, base / out, base / err


#: Seconds down waits for cancelled worker jobs to leave the queue (local's grace is 5 s).
CANCEL_WAIT = 20.0


def _still_live(system: BatchSystem, job_ids: list[str], deadline: float) -> list[str]:
    """The jobs of ``job_ids`` still pending or running at ``deadline`` (polled every 0.25 s)."""
    live = list(job_ids)
    while live:
        try:
            states = system.query(live)
        except DaskHPCError:
            return live  # the batch system does not answer: these may still be ending
        live = [j for j in live if j in states and states[j].state in (JobState.PENDING, JobState.RUNNING)]
        if not live or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    return live


def down(session: Session, wait: float = 60.0) -> dict[str, Any]:
    """End every job of the session and its scheduler; logs and ledger stay."""
    config = session.read_config()
    system = get_system(config.system)
    ended: list[str] = []
    warning = None
    scheduler = link(session, config)
    answered = False
    if scheduler and not config.down:
        try:
            answer = scheduler.ask(protocol.Down(), timeout=120)
            ended, warning, answered = list(answer.job_ids), answer.warning, True
        except (SchedulerUnreachableError, ProtocolError):
            pass  # gone, or another version's keeper: the ledger and the batch system end it all
    if not answered:
        records = load_ledger(session.ledger_file)
        system.cancel([j for j, r in records.items() if r.live])  # removed ones too: they may still end
        ended = [j for j, r in records.items() if r.live and not r.removed]
    # Cancelling is asynchronous on every system (SIGTERM, then the batch system's grace):
    # wait, bounded, so that down returns once the worker jobs are gone, and say which are not.
    still = _still_live(system, ended, time.monotonic() + min(wait, CANCEL_WAIT))
    if still and not warning:
        warning = f"job{'s' if len(still) > 1 else ''} {', '.join(still)} still ending after cancel"
    session.write_config(config.but(down=True))
    scheduler_state = None
    if config.scheduler_job_id:
        job = config.scheduler_job_id
        deadline = time.monotonic() + (wait if answered else 0)
        state = system.query([job])[job].state
        while state in (JobState.PENDING, JobState.RUNNING) and time.monotonic() < deadline:
            time.sleep(0.25)
            state = system.query([job])[job].state
        if state in (JobState.PENDING, JobState.RUNNING):
            system.cancel([job])  # it did not stop by itself in time (or never answered)
            state = JobState.CANCELLED
        scheduler_state = state.value
    session.clear_scheduler_files()
    return {"job_ids": ended, "scheduler": scheduler_state, "warning": warning, "answered": answered}


def forget(session: Session) -> Path:
    """Remove the directory of an ended session: its settings, ledger, job scripts and logs,
    so that ``list`` no longer shows it. Returns the directory removed.

    Raises SessionError, removing nothing, for a session that ``down`` has not ended (its jobs
    may run and write there) or one with jobs still in the queue (ending after a cancel: the
    batch system is asked, one query); UnknownSessionError for a name there is no session of.
    """
    try:
        config = session.read_config()
    except UnknownSessionError:
        raise
    except SessionError as exc:
        raise SessionError(
            f"session {session.name!r} cannot be read ({exc}); nothing was removed: look at "
            f"{session.directory} and remove it by hand if it is yours"
        ) from None
    if not config.down:
        raise SessionError(
            f"session {session.name!r} has not ended: end it first with dask-hpc down --name "
            f"{session.name} (forget removes its directory, logs and all)"
        )
    by_hand = f"nothing was removed: look at {session.directory} and remove it by hand if it is yours"
    try:
        jobs = [j for j, r in load_ledger(session.ledger_file).items() if r.live]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a ledger cut short, or not ours
        raise SessionError(
            f"session {session.name!r}: its job ledger cannot be read ({exc}); {by_hand}"
        ) from None
    jobs += [config.scheduler_job_id] if config.scheduler_job_id else []
    statuses = get_system(config.system).query(jobs) if jobs else {}
    queued = [j for j, s in statuses.items() if s.state in (JobState.PENDING, JobState.RUNNING)]
    if queued:
        listing = get_system(config.system).list_jobs
        raise SessionError(
            f"session {session.name!r} still has job{'s' if len(queued) > 1 else ''} "
            f"{', '.join(queued)} in the queue, ending after down's cancel; nothing was removed: "
            "run forget again once they are gone" + (f" ({listing} shows them)" if listing else "")
        )
    try:
        shutil.rmtree(session.directory)
    except OSError as exc:  # NFS's .nfsXXXX of a file still open, a busy directory
        raise SessionError(
            f"session {session.name!r} could not all be removed ({exc}); what is left is in "
            f"{session.directory}: remove it by hand once nothing holds it"
        ) from None
    return session.directory


def ended_sessions(root: Path | None = None) -> list[str]:
    """The names of the sessions under ``root`` that ``down`` has ended (unreadable ones are
    left out: :func:`forget` says why for each named)."""
    names = []
    for name in list_sessions(root):
        with contextlib.suppress(SessionError):
            if Session(name, root).read_config().down:
                names.append(name)
    return names


def sessions_overview(root: Path | None = None) -> list[dict[str, Any]]:
    """Every session under ``root``: name, system, and whether its scheduler answers."""
    rows: list[dict[str, Any]] = []
    for name in list_sessions(root):
        session = Session(name, root)
        try:
            config = session.read_config()
        except SessionError as exc:
            rows.append({"name": name, "system": "?", "state": f"unreadable: {exc}"})
            continue
        state = "down"
        address = session.scheduler_address()
        if not config.down and address:
            try:
                scheduler = link(session, config)
                assert scheduler is not None
                scheduler.identity(timeout=3)
                state = "live"
            except SchedulerUnreachableError:
                state = "not answering"
            except SessionError as exc:  # e.g. its keys readable by others
                state = f"refused: {exc}"
        elif not config.down:
            state = "starting or dead"
        rows.append(
            {
                "name": name,
                "system": config.system,
                "state": state,
                "address": address if state == "live" else None,
            }
        )
    return rows
