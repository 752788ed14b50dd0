"""TLS by default: only the session's owner (who holds its certificate) gets in."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from dask_hpc.security import create_tls_files, tls_files

from ..refusal import refused
from .conftest import HPC, bring_up, poll, systems

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(params=systems("local", "slurm"))
def hpc(request: pytest.FixtureRequest, hpc_for: Callable[[str], HPC]) -> HPC:
    bring_up(request.param, request)
    return hpc_for(request.param)


def test_only_the_sessions_certificate_gets_in(hpc: HPC, tmp_path: Path) -> None:

    import dask_hpc

    name = f"tls-{hpc.system}"
    hpc.up(name)
    hpc("add", "1", "--name", name, "--wait", "90")
    report = hpc.status(name)
    assert report["security"] == "tls"
    address = report["scheduler"]["address"]
    assert address.startswith("tls://")
    assert "TLS with the session's own certificate" in hpc("status", "--name", name).stdout

    # The owner, through connect(), computes.
    with dask_hpc.connect(name) as client:
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6

    # No certificate, a certificate of its own making, another session's: all refused.
    assert refused(address, "none")
    assert refused(address.replace("tls://", "tcp://"), "none")
    assert refused(address, "temporary")
    (tmp_path / "other").mkdir(mode=0o700)
    create_tls_files(tmp_path / "other", "other")
    assert refused(address, str(tmp_path / "other"))

    # A worker without the certificate cannot join.
    session = hpc.session(name)
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny", "--death-timeout", "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(5)
        assert hpc.status(name)["workers"] == 1
    finally:
        worker.kill()
        worker.wait(timeout=30)
    assert session.directory.is_dir()


def http_code(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dashboard_is_read_only(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    hpc.up("web")
    dashboard = hpc.status("web")["scheduler"]["dashboard"]
    base = dashboard.rsplit("/", 1)[0]
    poll("the dashboard", lambda: http_code(dashboard) == 200, timeout=30)
    assert http_code(base + "/health") == 200
    # distributed's optional API (retire workers by POST) and its proxy to other hosts are not served.
    assert http_code(base + "/api/v1/retire_workers", data=b"{}") == 404
    assert http_code(base + "/api/v1") == 404
    assert http_code(base + "/proxy/22/127.0.0.1/") == 404


def test_state_dir_and_every_file_in_it_are_private(hpc: HPC) -> None:
    name = f"private-{hpc.system}"
    hpc.up(name)
    hpc("add", "1", "--name", name, "--wait", "90")
    directory = hpc.session(name).directory
    # Wait for the logs and the ledger to be written, then look at everything.
    poll("the ledger to be written", lambda: (directory / "jobs.json").exists(), timeout=30)
    hpc("down", "--name", name)
    loose = []
    for path in [directory, *directory.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if path.is_file() and path.parent.name == "scripts":
            wanted = 0o700  # job scripts are executable by their owner
        if mode & 0o077 or (path.is_dir() and mode != 0o700):
            loose.append(f"{path.relative_to(directory)}: {mode:04o} (want {wanted:04o})")
    assert not loose, loose
    assert {p.name for p in (directory / "tls").iterdir()} == {"ca.pem", "session.pem", "session.key"}


@pytest.mark.parametrize("target", ["directory", "tls", "key"])
def test_loose_permissions_are_refused(target: str, hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    name = f"loose-{target}"
    hpc.up(name)
    session = hpc.session(name)
    files = tls_files(session.directory)
    path = {"directory": session.directory, "tls": files.directory, "key": files.key}[target]
    path.chmod(0o755 if path.is_dir() else 0o644)
    for command in (["add", "1"], ["status"]):
        done = hpc(*command, "--name", name, check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1
        assert f"{path} has mode 0{'755' if path.is_dir() else '644'}" in lines[0]
        assert f"fix with: chmod {'700' if path.is_dir() else '600'} {path}" in lines[0]
    path.chmod(0o700 if path.is_dir() else 0o600)
    assert hpc.status(name)["scheduler"]["answering"] is True


def test_insecure_is_a_choice_with_a_warning(hpc_for: Callable[[str], HPC]) -> None:
    hpc = hpc_for("local")
    out = hpc.up("open", "--insecure")
    assert "warning: --insecure" in out.stderr
    report = hpc.status("open")
    assert report["security"] == "insecure"
    assert report["scheduler"]["address"].startswith("tcp://")
    assert "INSECURE" in hpc("status", "--name", "open").stdout
    hpc("add", "1", "--name", "open", "--wait", "90")
    assert hpc.status("open")["workers"] == 1
