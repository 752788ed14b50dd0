"""The SSH tunnel line: how a laptop reaches the dashboard and JupyterLab on a compute node.

Compute nodes are reachable from the login node only. The scheduler's job (or
rank 0 under MPI) writes where its web pages are (``web.json``: node address,
ports, JupyterLab's token); from that and the login host, :func:`tunnel` builds
the line to paste on the laptop and the URLs to open there. Each forwarded port
keeps its number on the laptop, so the dashboard links shown in notebooks
(``http://localhost:<port>/status``) work as they are.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dask_hpc.errors import SessionError

__all__ = ["Tunnel", "WebPages", "login_host", "site_login_host", "submit_host", "this_host", "tunnel"]

#: Where the batch systems say which host a job was submitted from (the login node).
SUBMIT_HOST_VARIABLES = ("SLURM_SUBMIT_HOST", "PBS_O_HOST", "SGE_O_HOST", "LSB_SUB_HOST")


@dataclass(frozen=True)
class WebPages:
    """Where a cluster's web pages are, on the scheduler's node (its ``web.json``)."""

    host: str
    dashboard_port: int | None = None
    jupyter_port: int | None = None
    token: str | None = None
    jupyter_error: str | None = None  # why JupyterLab, asked for, is not there

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebPages:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)

    @classmethod
    def read(cls, path: Path) -> WebPages | None:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Tunnel:
    """The line to paste on the laptop, and what to open there afterwards."""

    command: str
    dashboard_url: str | None
    jupyter_url: str | None

    def lines(self) -> list[str]:
        """For ``up``'s summary: the line, then the URLs."""
        urls = [u for u in (self.dashboard_url, self.jupyter_url) if u]
        return [f"  tunnel     {self.command}"] + [
            f"  {'open' if i == 0 else '':<10} {url}" for i, url in enumerate(urls)
        ]


def tunnel(pages: WebPages, login: str) -> Tunnel:
    """``ssh -N -L <port>:<node>:<port> ... [user@]login`` for the pages' ports.

    ``login`` is ``[user@]host`` as the user would type it for ssh.
    """
    forwards = [p for p in (pages.dashboard_port, pages.jupyter_port) if p]
    if not forwards:
        raise SessionError("neither the dashboard nor JupyterLab is running: there is nothing to tunnel to")
    node = f"[{pages.host}]" if ":" in pages.host else pages.host  # IPv6 in ssh -L needs brackets
    command = " ".join(["ssh", "-N", *(f"-L {p}:{node}:{p}" for p in forwards), login])
    dashboard = f"http://localhost:{pages.dashboard_port}/status" if pages.dashboard_port else None
    jupyter = None
    if pages.jupyter_port:
        token = f"?token={pages.token}" if pages.token else ""
        jupyter = f"http://localhost:{pages.jupyter_port}/lab{token}"
    return Tunnel(command, dashboard, jupyter)


def login_host(given: str | None, recorded: str | None, site: str | None) -> str:
    """The ``[user@]host`` to tunnel through: given on the command line, else the site's
    configuration (dask config ``dask-hpc.login-host``), else where the session was started."""
    for candidate in (given, site, recorded):
        if candidate:
            return candidate
    return this_host()


def this_host() -> str:
    """This host's full name; its short name where the full one is just ``localhost``."""
    fqdn = socket.getfqdn()
    return socket.gethostname() if fqdn.startswith("localhost") else fqdn


def submit_host() -> str | None:
    """The host this batch job was submitted from, as the batch system tells it (None outside a job)."""
    for variable in SUBMIT_HOST_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    return None


def site_login_host() -> str | None:
    """The site's login host from dask's configuration (e.g. /etc/dask/dask-hpc.yaml), if set."""
    import dask

    value = dask.config.get("dask-hpc.login-host", default=None)
    return str(value) if value else None
