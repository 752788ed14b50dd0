"""JupyterLab beside the scheduler, reached from a "laptop" through the printed SSH line.

Real parts only: the session is started with the real CLI (on local, and on
the real SLURM, where the scheduler's node is a virtual SLURM node); the
laptop is a network namespace that reaches nothing but the login node's sshd
(scripts/local-laptop); the tunnel is the line ``dask-hpc tunnel`` prints,
run by OpenSSH with the test's port, key and host-key options added; the
browser is Debian's headless Chromium. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .conftest import HPC, bring_up, systems

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
LAPTOP_DIR = Path("/var/tmp/dask-hpc-laptop")  # scripts/local-laptop's default
NAMESPACE = "dask-hpc-laptop"
TUNNEL_USER = "dask-hpc-tunnel"
SSHD_PORT = "2222"


def on_laptop(argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", NAMESPACE, *argv]


def with_test_options(printed: list[str]) -> list[str]:
    """The printed ssh line, plus what this test's sshd needs (the user adds their own, if any)."""
    assert printed[:2] == ["ssh", "-N"], printed
    return [
        "ssh",
        "-p",
        SSHD_PORT,
        "-i",
        str(LAPTOP_DIR / "id_ed25519"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ExitOnForwardFailure=yes",
        *printed[1:],
    ]


@pytest.fixture
def ports_taken() -> Iterator[Callable[[], list[int]]]:
    """Occupy 8787 and 8888 on the node's address, as another user's JupyterLab would."""
    with ExitStack() as stack:

        def take() -> list[int]:
            taken = []
            for port in (8787, 8888):
                sock = stack.enter_context(socket.socket())
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # already taken by something else: just as good
                sock.listen()
                taken.append(port)
            return taken

        yield take


@pytest.mark.timeout(600)
@pytest.mark.parametrize("system", systems("local", "slurm"))
def test_jupyter_and_dashboard_through_the_printed_tunnel_in_chromium(
    system: str,
    hpc_for: Callable[[str], HPC],
    request: pytest.FixtureRequest,
    laptop_up: None,
    ports_taken: Callable[[], list[int]],
) -> None:
    bring_up(system, request)
    hpc = hpc_for(system)
    login = f"{TUNNEL_USER}@{(LAPTOP_DIR / 'address').read_text().strip()}"
    name = f"web-{system}"
    if system == "local":
        ports_taken()  # the usual ports are busy on this node: others must be chosen and printed
    up = hpc.up(name, "--jupyter", "--login-host", login, "--workers", "1", "--wait", "120", timeout=300)
    said = up.stdout + up.stderr
    assert "tunnel     ssh -N -L" in said, said

    printed = hpc("tunnel", name).stdout.splitlines()
    command = printed[0].split()
    urls = dict(line.split(": ", 1) for line in printed[1:])
    assert command[-1] == login
    pages = hpc.status(name)["web"]
    assert f"-L {pages['dashboard_port']}:127.0.0.1:{pages['dashboard_port']}" in printed[0]
    assert f"-L {pages['jupyter_port']}:127.0.0.1:{pages['jupyter_port']}" in printed[0]
    if system == "local":
        assert pages["dashboard_port"] != 8787 and pages["jupyter_port"] != 8888, pages
    assert urls["jupyter"] == f"http://localhost:{pages['jupyter_port']}/lab?token={pages['token']}"

    shots = ARTIFACTS / f"jupyter-tunnel-{system}"
    tunnel = subprocess.Popen(on_laptop(with_test_options(command)), stderr=subprocess.PIPE, text=True)
    try:
        laptop = subprocess.run(
            on_laptop(
                [
                    sys.executable,
                    str(Path(__file__).with_name("laptop.py")),
                    "--jupyter",
                    urls["jupyter"],
                    "--dashboard",
                    urls["dashboard"],
                    "--shots",
                    str(shots),
                ]
            ),
            capture_output=True,
            text=True,
            timeout=420,
        )
    finally:
        tunnel.terminate()
        _, ssh_errors = tunnel.communicate(timeout=10)
    assert laptop.returncode == 0, f"{laptop.stderr}\nssh: {ssh_errors}"
    seen = json.loads(laptop.stdout.splitlines()[-1])

    assert seen["status_without_token"] == 403, seen  # JupyterLab wants its token
    assert seen["status_with_token"] == 200, seen
    # A notebook's kernel reaches the session with connect() and with a plain Client(), over TLS.
    assert "connect 6" in seen["kernel"] and "plain 9" in seen["kernel"], seen["kernel"]
    assert seen["launcher_cards"] > 0, seen  # JupyterLab's launcher is shown
    assert "Dask" in seen["dashboard_title"] and seen["dashboard_roots"] > 0, seen
    # The dashboard link a notebook shows opens in the same browser (via jupyter-server-proxy).
    assert seen["notebook_link"].endswith(f"/proxy/127.0.0.1:{pages['dashboard_port']}/status"), seen
    assert seen["notebook_link_roots"] > 0, seen
    for png in ("jupyterlab.png", "dashboard.png", "dashboard-from-notebook-link.png"):
        assert (shots / png).stat().st_size > 10_000, png

    hpc("down", "--name", name)
    assert not hpc.session(name).web_file.exists()
