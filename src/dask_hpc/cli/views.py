"""How the session commands look: rich renderables built from plain data."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dask_hpc.keeper.protocol import JobReport, SubmitTrouble
from dask_hpc.session.lifecycle import Started
from dask_hpc.session.report import SessionStatus
from dask_hpc.spec import format_walltime
from dask_hpc.systems import JobState, JobStatus
from dask_hpc.web.tunnel import Tunnel

__all__ = ["sessions_table", "started_lines", "status_view", "waiting_line"]

#: Ended jobs shown by ``status`` without --all.
RECENT_ENDED = 5


def waiting_line(status: JobStatus, elapsed: float) -> Text:
    reason = f" ({status.reason})" if status.reason else ""
    node = f" on {status.node}" if status.node else ""
    return Text(
        f"scheduler job {status.job_id}: {status.state.value}{reason}{node}, {elapsed:.1f} s",
        style="cyan",
    )


def started_lines(started: Started, tunnel: Tunnel | None = None) -> Text:
    name = started.session.name
    interface = started.interface
    lines = [
        f"session {name}: scheduler job {started.job_id} answered after {started.seconds:.1f} s",
        f"  scheduler  {started.address}",
        f"  dashboard  {started.dashboard or '(not available)'}",
        f"  interface  {interface.name} ({interface.why})",
        f"  security   {_security(started.security)}",
        f"  connect    dask_hpc.connect({name!r})",
        f"             or Client(scheduler_file='{started.session.scheduler_file}',"
        + ("" if started.security == "tls" else ")"),
        *(
            [f"                       security=dask_hpc.client_security({name!r}))"]
            if started.security == "tls"
            else []
        ),
        f"  next       dask-hpc add N{'' if name == 'default' else f' --name {name}'}",
    ]
    web = started.web
    if web and web.jupyter_port:
        lines.insert(3, f"  jupyter    http://{web.host}:{web.jupyter_port}/lab (on the node; token below)")
    if tunnel:
        lines += ["", "On your laptop, paste the tunnel line, then open the pages:", *tunnel.lines()]
    return Text("\n".join(lines))


def _security(mode: str) -> str:
    if mode == "tls":
        return "TLS with the session's own certificate (only you can connect)"
    return "INSECURE: no TLS, anyone who reaches the scheduler can run code as you"


def _left(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return "over" if seconds <= 0 else format_walltime(int(seconds))


def _replacement(job: JobReport) -> str:
    """What happens to a kept job: its replacement, or when it will get one."""
    if job.replaced_by:
        return f"by {job.replaced_by}"
    if job.replace_in is not None:
        return "submitting" if job.replace_in <= 0 else f"planned in {_left(job.replace_in)}"
    if job.keep and job.ended is None:
        return "kept"
    return ""


def status_view(report: SessionStatus, *, show_all: bool = False) -> Group:
    s, keeper = report.scheduler, report.keeper
    head = [f"session {report.name} ({report.system}), state dir {report.directory}"]
    here = "in a Python process (BatchCluster(scheduler='local'))"
    if keeper is not None:
        node = f" on {s.node}" if s.node else ""
        where = here if s.in_process else f"job {s.job_id} {s.state or 'running'}{node}"
        head.append(
            f"scheduler: {where}, {s.address}"
            + (f", walltime left {_left(s.walltime_left)}" if s.walltime_left is not None else "")
        )
        head.append(f"dashboard: {s.dashboard or '(not available)'}")
        web = report.web or {}
        if web.get("jupyter_port"):
            head.append(
                f"jupyter: http://{web['host']}:{web['jupyter_port']}/lab "
                f"(dask-hpc tunnel{'' if report.name == 'default' else ' ' + report.name} "
                "prints the line and the URL with its token)"
            )
        i = keeper.interface
        head.append(f"interface: {i.name} {i.address} ({i.why})")
        head.append(f"security: {_security(report.security)}")
        head.append(f"worker jobs are submitted from {keeper.submit_from}")
        a = keeper.adapt
        most = "no upper bound" if a is None or a.maximum_jobs is None else a.maximum_jobs
        adapting = "adapt: off" if not a else f"adapt: {a.minimum_jobs} to {most} jobs"
        if keeper.capped:
            adapting += f"; held back by the site's cap: {keeper.capped}"
        head.append(adapting)
        for name, b in sorted(keeper.pool_adapt.items()):
            top = "no upper bound" if b.maximum_jobs is None else b.maximum_jobs
            line = f"adapt of pool {name}: {b.minimum_jobs} to {top} jobs, by the tasks that ask for it"
            capped = keeper.pool_capped.get(name)
            head.append(line + (f"; held back by the site's cap: {capped}" if capped else ""))
        trouble = keeper.submit_trouble
        if trouble:
            head.append(_trouble(trouble))
        refusal = keeper.last_refusal
        if refusal and not trouble:
            ago = format_walltime(int(max(0.0, time.time() - refusal.at)))
            head.append(f"last failed submission ({refusal.by}, {ago} ago): {refusal.words}")
    elif report.down and s.in_process:
        head.append(f"scheduler: down (it ran {here}, which closed it)")
    elif report.down and s.job_id is None:
        head.append("scheduler: down (its job was never submitted: up failed)")
    elif report.down:
        head.append(f"scheduler: down (job {s.job_id} {s.state})")
    else:
        reason = f" ({s.reason})" if s.reason else ""
        head.append(
            f"scheduler: NOT ANSWERING; its job {s.job_id} is {s.state}{reason}; "
            f"clean up with dask-hpc down --name {report.name}"
        )
    jobs = report.jobs
    live = [j for j in jobs if j.ended is None and not j.removed]
    ending = [j for j in jobs if j.ended is None and j.removed]
    ended = [j for j in jobs if j.ended is not None]
    shown = live + ending + (ended if show_all else ended[-RECENT_ENDED:])
    table = Table(title=None)
    # A pool column where the session has pools (issue 23): each job's, "-" for the session's own.
    pools = any(_pool(j) for j in shown)
    columns = ("job", *(["pool"] if pools else []), "state", "node", "walltime left", "workers")
    for column in (*columns, "replacement", "reason / exit"):
        table.add_column(column)
    for group in _array_groups(shown):
        j = group[0]
        state = j.state.value + ((" (removed)" if j.ended else " (ending)") if j.removed else "")
        detail = j.reason or ("" if j.exit_code is None else f"exit {j.exit_code}")
        pool = [_pool(j) or "-"] if pools else []
        if len(group) == 1:
            table.add_row(
                j.job_id,
                *pool,
                state,
                j.node or "",
                _left(j.walltime_left),
                str(j.workers),
                _replacement(j),
                detail,
            )
            continue
        # The tasks of one array in one state, for one reason: one row (status --json: each).
        nodes = sorted({g.node for g in group if g.node})
        lefts = [g.walltime_left for g in group if g.walltime_left is not None]
        table.add_row(
            f"{j.job_id} … {group[-1].job_id} ({len(group)} tasks)",
            *pool,
            state,
            nodes[0] if len(nodes) == 1 else (f"{len(nodes)} nodes" if nodes else ""),
            _left(min(lefts)) if lefts else _left(None),
            str(sum(g.workers for g in group)),
            "",
            detail,
        )
    pending = sum(1 for j in live if j.state is JobState.PENDING)
    running = sum(1 for j in live if j.state is JobState.RUNNING)
    from dask.utils import format_bytes

    hidden = not show_all and len(ended) > RECENT_ENDED
    workers, threads, memory = (keeper.workers, keeper.threads, keeper.memory) if keeper else (0, 0, 0)
    totals = (
        f"{len(live)} live worker jobs ({running} running, {pending} pending), "
        f"{len(ending)} ending, {len(ended)} ended"
        + (f" (last {RECENT_ENDED} shown; --all for every one)" if hidden else "")
        + f"; {workers} workers, {threads} threads, {format_bytes(memory)}"
    )
    if keeper and keeper.other_workers:
        totals += f" ({keeper.other_workers} workers not from this session's jobs)"
    if keeper and keeper.recomputed:
        totals += f"; {keeper.recomputed} tasks computed again (their results were lost)"
    return Group(Text("\n".join(head)), table, Text(totals))


def _pool(job: JobReport) -> str | None:
    return (job.spec or {}).get("pool")


def _array_groups(jobs: list[JobReport]) -> list[list[JobReport]]:
    """Runs of jobs in ``jobs`` that are tasks of one array with the same state, reason and
    removal, and no replacement (which is said per job); every other job alone."""
    groups: list[list[JobReport]] = []
    for j in jobs:
        last = groups[-1][-1] if groups else None
        alike = (
            last is not None
            and j.array is not None
            and (last.array, last.state, last.reason, last.removed, last.exit_code)
            == (j.array, j.state, j.reason, j.removed, j.exit_code)
            and not (
                j.replaced_by or last.replaced_by or j.replace_in is not None or last.replace_in is not None
            )
        )
        if alike:
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups


def _trouble(t: SubmitTrouble) -> str:
    """Why adapt and replacements hold back: the last failure, in the batch system's words."""
    then = (
        "STOPPED: automatic submissions (adapt, replacements) wait for you; fix it, then run "
        "dask-hpc adapt (or scale) again"
        if t.stopped
        else f"the next automatic submission in {t.retry_in or 0:.0f} s"
    )
    return f"submissions: {t.failures} failed in a row, the last: {t.words}; {then}"


def sessions_table(rows: list[dict[str, Any]]) -> Table | Text:
    if not rows:
        return Text("no sessions; start one with dask-hpc up")
    table = Table()
    for column in ("session", "system", "state", "scheduler"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], r["system"], r["state"], r.get("address") or "")
    return table
