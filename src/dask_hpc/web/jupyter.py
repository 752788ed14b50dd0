"""JupyterLab beside the scheduler: on the scheduler's node and address, behind a token.

Started by the session's scheduler job (``dask-hpc up --jupyter``) or by the
scheduler rank (``dask-hpc mpi --jupyter``), as a child process: the batch
system ends it with the job. Its kernels get the environment under which
``dask_hpc.connect()`` and a plain ``Client()`` reach the cluster, with its
TLS certificate, and dashboard links that open through the SSH tunnel (or
through jupyter-server-proxy, when installed).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dask_hpc._process import start_child
from dask_hpc.errors import SessionError
from dask_hpc.security import TLSFiles
from dask_hpc.state.session import SESSION_VARIABLE, SESSIONS_VARIABLE
from dask_hpc.web.tunnel import WebPages

__all__ = [
    "JUPYTER_PORT",
    "JupyterLab",
    "dashboard_link",
    "free_port",
    "jupyter_command",
    "kernel_environment",
    "web_pages",
]

#: JupyterLab's usual port; a free one is taken when it is in use on the node.
JUPYTER_PORT = 8888
#: How long JupyterLab may take to answer (4 s here; shared filesystems are slower).
START_TIMEOUT = 180.0


def free_port(host: str, preferred: int) -> int:
    """``preferred`` if it is free on ``host``, else a free port chosen by the system."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            # As the server will: a port left in TIME_WAIT by the last JupyterLab is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise SessionError(f"no free port on {host} for JupyterLab")


def proxy_installed() -> bool:
    return importlib.util.find_spec("jupyter_server_proxy") is not None


def dashboard_link(host: str, port: int, *, proxied: bool) -> str:
    """Where notebooks' dashboard links point: through jupyter-server-proxy (same origin as
    JupyterLab, so no tunnel needed for it) or the tunnel's forwarded port on the laptop."""
    if proxied:
        return f"/proxy/{host}:{port}/status"
    return f"http://localhost:{port}/status"


def kernel_environment(
    scheduler_address: str,
    tls: TLSFiles | None,
    *,
    session: tuple[str, Path] | None = None,
    scheduler_file: Path | None = None,
) -> dict[str, str]:
    """Environment for JupyterLab and its kernels.

    ``Client()`` reads the address and TLS files from dask's config (these
    variables); ``dask_hpc.connect()`` finds the session (name, root) or the
    scheduler file of ``dask-hpc mpi``.
    """
    env = {"DASK_SCHEDULER_ADDRESS": scheduler_address}
    if tls is not None:
        env.update(
            {
                "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
                "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(tls.ca),
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(tls.cert),
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(tls.key),
            }
        )
    if session is not None:
        env[SESSION_VARIABLE] = session[0]
        env[SESSIONS_VARIABLE] = str(session[1])
    if scheduler_file is not None:
        env["DASK_HPC_SCHEDULER_FILE"] = str(scheduler_file)  # cluster.MPI_SCHEDULER_FILE_VARIABLE
    return env


def jupyter_command(
    python: str,
    host: str,
    port: int,
    token: str,
    root_dir: str,
    *,
    proxy_host: str | None = None,
    as_root: bool = False,
) -> list[str]:
    argv = [
        python,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the tunnel line names this port: no silent move
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
    ]
    if proxy_host:  # the dashboard listens on the node's address, not on localhost
        argv.append(f"--ServerProxy.host_allowlist=['{proxy_host}']")
    if as_root:  # JupyterLab refuses root otherwise (containers, test machines)
        argv.append("--allow-root")
    return argv


class JupyterLab:
    """A running JupyterLab server, a child of this process."""

    def __init__(self, process: subprocess.Popen[bytes], host: str, port: int, token: str) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.token = token

    @classmethod
    async def start(
        cls,
        *,
        host: str,
        env: dict[str, str],
        root_dir: str,
        dashboard_port: int | None,
        python: str = sys.executable,
        timeout: float = START_TIMEOUT,
    ) -> JupyterLab:
        """Start JupyterLab on ``host`` and return once it answers.

        ``env`` (from :func:`kernel_environment`) is added to ours for the server and its kernels.
        """
        if importlib.util.find_spec("jupyterlab") is None:
            raise SessionError(f"JupyterLab is not installed for {python}: pip install 'dask-hpc[jupyter]'")
        port = free_port(host, JUPYTER_PORT)
        token = secrets.token_urlsafe(32)
        proxied = proxy_installed() and dashboard_port is not None
        if dashboard_port is not None:
            link = dashboard_link(host, dashboard_port, proxied=proxied)
            env = {**env, "DASK_DISTRIBUTED__DASHBOARD__LINK": link}
        argv = jupyter_command(
            python,
            host,
            port,
            token,
            root_dir,
            proxy_host=host if proxied else None,
            as_root=os.geteuid() == 0,
        )
        lab = cls(start_child(argv, env=env), host, port, token)
        try:
            await asyncio.to_thread(lab._wait, timeout)
        except BaseException:
            lab.stop()
            raise
        return lab

    def _wait(self, timeout: float) -> None:
        url = f"http://{self._netloc()}/api/status"
        request = urllib.request.Request(url, headers={"Authorization": f"token {self.token}"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise SessionError(f"JupyterLab exited with code {code} before answering; see the job's log")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise SessionError(f"JupyterLab did not answer on {url} within {timeout:g} s")

    def _netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self, grace: float = 10.0) -> None:
        """Stop JupyterLab (its kernels with it); kill it if it does not stop within ``grace``."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(grace)


async def web_pages(
    host: str,
    scheduler_address: str,
    dashboard_port: int | None,
    tls: TLSFiles | None,
    *,
    jupyter: bool,
    root_dir: str,
    python: str = sys.executable,
    session: tuple[str, Path] | None = None,
    scheduler_file: Path | None = None,
) -> tuple[WebPages, JupyterLab | None]:
    """Where the cluster's pages are; with ``jupyter``, JupyterLab started beside the scheduler.

    A JupyterLab that cannot start does not stop the scheduler: the reason is in
    the returned pages (``jupyter_error``), for ``up`` to show.
    """
    if not jupyter:
        return WebPages(host, dashboard_port), None
    env = kernel_environment(scheduler_address, tls, session=session, scheduler_file=scheduler_file)
    try:
        lab = await JupyterLab.start(
            host=host, env=env, root_dir=root_dir, dashboard_port=dashboard_port, python=python
        )
    except (SessionError, OSError) as exc:
        return WebPages(host, dashboard_port, jupyter_error=str(exc)), None
    return WebPages(host, dashboard_port, lab.port, lab.token), lab
