"""``python -m dask_hpc.scheduler_job STATE_DIR``: what a session's scheduler job runs.

A distributed Scheduler with the keeper inside, listening on the chosen
interface, writing the session's scheduler file. If it cannot start, it writes
one line to the state dir's ``scheduler.error`` for ``dask-hpc up`` to show.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dask_hpc.errors import DaskHPCError
from dask_hpc.files import write_private
from dask_hpc.launch import DASHBOARD_PORT, add_dashboard, dashboard_port, start_scheduler
from dask_hpc.network import choose_interface, system_peers
from dask_hpc.security import tls_files
from dask_hpc.state.session import Session
from dask_hpc.systems import get_system
from dask_hpc.web.jupyter import web_pages
from dask_hpc.web.tunnel import WebPages

__all__ = ["main", "serve"]


async def serve(session: Session) -> None:
    from dask_hpc.keeper.plugin import Keeper

    config = session.read_config()
    choice = choose_interface(config.interface, lambda: system_peers(get_system(config.system)))
    keeper = Keeper(session, config, choice)
    security = None if config.insecure else tls_files(session.directory).security()
    scheduler = await start_scheduler(
        security=security,
        host=choice.address,
        port=0,  # shared nodes: a fixed port may be taken; workers read the file
        # distributed moves to a free port, with a warning, when 8787 is taken
        dashboard_address=f"{choice.address}:{DASHBOARD_PORT}",
        scheduler_file=str(session.scheduler_file),
        plugins=[keeper],
    )
    async with scheduler:  # closed on the way out, however it goes
        print(  # noqa: T201
            f"dask-hpc: scheduler {scheduler.address} on {choice.name} ({choice.why})",
            file=sys.stderr,
            flush=True,
        )
        # Where the dashboard will be, at once (`up` returns now); JupyterLab's port follows.
        write_private(session.web_file, WebPages(choice.address, dashboard_port(scheduler)).to_dict())
        await add_dashboard(scheduler)
        pages, lab = await web_pages(
            choice.address,
            scheduler.address,
            dashboard_port(scheduler),
            None if config.insecure else tls_files(session.directory),
            jupyter=config.jupyter,
            root_dir=config.jupyter_dir or os.getcwd(),
            python=config.python,
            session=(session.name, session.root),
        )
        write_private(session.web_file, pages.to_dict())
        try:
            await scheduler.finished()
        finally:
            if lab is not None:
                await asyncio.to_thread(lab.stop)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dask_hpc.scheduler_job STATE_DIR", file=sys.stderr)  # noqa: T201
        return 2
    os.umask(0o077)  # the scheduler file and ledger are the user's only
    session = Session.at(Path(args[0]))
    try:
        asyncio.run(serve(session))
    except DaskHPCError as exc:
        session.error_file.write_text(f"{exc}\n")
        print(f"dask-hpc: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except Exception as exc:
        session.error_file.write_text(f"the scheduler failed: {type(exc).__name__}: {exc}\n")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
