"""The one place dask-hpc starts a distributed Scheduler, for its three users: a session's
scheduler job (:mod:`dask_hpc.scheduler_job`), ``BatchCluster(scheduler="local")``
(:mod:`dask_hpc.session.cluster`) and the scheduler's rank of an MPI job (:mod:`dask_hpc.mpi.roles`).

What they share: the protocol follows the security (tls with it, tcp without), the
dashboard is attached only after the scheduler listens (distributed imports bokeh first,
0.8 s here, which workers and clients need not wait for), and a session's web pages
are the read-only ones (:data:`HTTP_ROUTES`).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Scheduler, Security

logger = logging.getLogger(__name__)

__all__ = ["DASHBOARD_PORT", "HTTP_ROUTES", "add_dashboard", "dashboard_port", "start_scheduler"]

DASHBOARD_PORT = 8787

#: The scheduler's web pages: read-only ones only. distributed's optional
#: ``http.scheduler.api`` (retire workers by POST) is left out, and so is its
#: proxy to worker pages (our workers have none; it would relay to any host:port).
HTTP_ROUTES = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.statics",
]


async def start_scheduler(
    *,
    security: Security | None,
    protocol: str | list[str] | None = None,
    routes: list[str] | None = HTTP_ROUTES,
    scheduler_cls: type[Scheduler] | None = None,
    **options: Any,
) -> Scheduler:
    """A started Scheduler, without its dashboard yet (:func:`add_dashboard`).

    ``protocol``: tls with ``security``, tcp without, unless given (MPI's ``mpi``, or a
    list for several listeners). ``routes``: its web pages (None: distributed's own, as
    an MPI job has always had). ``scheduler_cls``: a subclass of distributed's (dask-jobqueue's
    keyword). ``options`` go to ``Scheduler`` (host, port,
    scheduler_file, plugins, dashboard_address, ...). Raises what distributed raises
    when it cannot start (a port taken, an address that is not ours).
    """
    import dask
    from distributed import Scheduler

    _quiet_probes()
    config = {} if routes is None else {"distributed.scheduler.http.routes": routes}
    with dask.config.set(config):
        scheduler = (scheduler_cls or Scheduler)(
            security=security,
            # distributed takes a list too (a listener each), though its annotation says str
            protocol=protocol or ("tls" if security is not None else "tcp"),  # type: ignore[arg-type]
            dashboard=False,
            **options,
        )
        await scheduler
    return scheduler


class _NoProbes(logging.Filter):
    """dask-hpc's commands connect once to see that the scheduler listens (a refused
    connection fails fast: session/link.py) and close before distributed's own handshake;
    distributed logs each such connection, and the scheduler's log would fill with them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).endswith("closed before handshake completed")


def _quiet_probes() -> None:
    tcp = logging.getLogger("distributed.comm.tcp")
    if not any(isinstance(f, _NoProbes) for f in tcp.filters):
        tcp.addFilter(_NoProbes())


async def add_dashboard(scheduler: Scheduler) -> None:
    """Attach the bokeh dashboard to a running scheduler's web server, in a thread: the
    scheduler works without it, and says why when it cannot have it."""
    try:
        dashboard = await asyncio.to_thread(importlib.import_module, "distributed.dashboard.scheduler")
        dashboard.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix="")
    except Exception as exc:  # the scheduler works without its dashboard; say why it is missing
        logger.warning("no dashboard: %s: %s", type(exc).__name__, exc)


def dashboard_port(scheduler: Scheduler) -> int | None:
    """The port the scheduler's dashboard listens on; None without one."""
    server = scheduler.services.get("dashboard")
    return None if server is None else int(server.port)
