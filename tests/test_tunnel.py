"""The tunnel line and JupyterLab's environment: pure functions."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from dask_hpc.errors import SessionError
from dask_hpc.security import tls_files
from dask_hpc.web.jupyter import dashboard_link, free_port, jupyter_command, kernel_environment
from dask_hpc.web.tunnel import WebPages, login_host, submit_host, this_host, tunnel


def test_tunnel_forwards_both_ports_keeping_their_numbers() -> None:
    line = tunnel(WebPages("10.1.2.3", 8787, 8888, "tok"), "alice@login.hpc.example.org")
    assert line.command == "ssh -N -L 8787:10.1.2.3:8787 -L 8888:10.1.2.3:8888 alice@login.hpc.example.org"
    assert line.dashboard_url == "http://localhost:8787/status"
    assert line.jupyter_url == "http://localhost:8888/lab?token=tok"


def test_tunnel_with_free_ports_chosen_on_the_node() -> None:
    line = tunnel(WebPages("10.1.2.3", 41001, 41002, "t"), "login")
    assert "-L 41001:10.1.2.3:41001" in line.command
    assert "-L 41002:10.1.2.3:41002" in line.command
    assert line.jupyter_url == "http://localhost:41002/lab?token=t"


def test_tunnel_dashboard_only() -> None:
    line = tunnel(WebPages("node7", 8787), "login")
    assert line.command == "ssh -N -L 8787:node7:8787 login"
    assert line.jupyter_url is None
    assert len(line.lines()) == 2


def test_tunnel_ipv6_node_in_brackets() -> None:
    assert "-L 8787:[fd00::7]:8787" in tunnel(WebPages("fd00::7", 8787), "login").command


def test_tunnel_refuses_when_nothing_runs() -> None:
    with pytest.raises(SessionError, match="nothing to tunnel"):
        tunnel(WebPages("node7"), "login")


def test_login_host_order() -> None:
    assert login_host("given", "recorded", "site") == "given"
    assert login_host(None, "recorded", "site") == "site"
    assert login_host(None, "recorded", None) == "recorded"
    assert login_host(None, None, None) == this_host()


def test_site_login_host_from_dask_config() -> None:
    import dask

    from dask_hpc.web.tunnel import site_login_host

    with dask.config.set({"dask-hpc.login-host": "me@login.site.org"}):
        assert site_login_host() == "me@login.site.org"
    assert site_login_host() is None


def test_submit_host_from_the_batch_system(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("SLURM_SUBMIT_HOST", "PBS_O_HOST", "SGE_O_HOST", "LSB_SUB_HOST"):
        monkeypatch.delenv(variable, raising=False)
    assert submit_host() is None
    monkeypatch.setenv("SGE_O_HOST", "login2")
    assert submit_host() == "login2"


def test_web_pages_round_trip(tmp_path: Path) -> None:
    pages = WebPages("10.0.0.1", 8787, 8888, "t")
    (tmp_path / "web.json").write_text(json.dumps(pages.to_dict()))
    assert WebPages.read(tmp_path / "web.json") == pages
    assert WebPages.read(tmp_path / "missing.json") is None


def test_kernel_environment_for_a_session(tmp_path: Path) -> None:
    env = kernel_environment("tls://10.0.0.1:4000", tls_files(tmp_path), session=("s1", tmp_path))
    assert env["DASK_SCHEDULER_ADDRESS"] == "tls://10.0.0.1:4000"
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == str(tmp_path / "tls" / "ca.pem")
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] == str(tmp_path / "tls" / "session.key")
    assert env["DASK_HPC_SESSION"] == "s1"
    assert env["DASK_HPC_SESSIONS"] == str(tmp_path)


def test_kernel_environment_insecure_mpi(tmp_path: Path) -> None:
    env = kernel_environment("tcp://10.0.0.1:4000", None, scheduler_file=tmp_path / "s.json")
    assert not any("TLS" in k for k in env)
    assert env["DASK_HPC_SCHEDULER_FILE"] == str(tmp_path / "s.json")


def test_dashboard_link() -> None:
    assert dashboard_link("10.0.0.1", 8787, proxied=False) == "http://localhost:8787/status"
    assert dashboard_link("10.0.0.1", 8787, proxied=True) == "/proxy/10.0.0.1:8787/status"


def test_jupyter_command_binds_the_node_address_with_a_token() -> None:
    argv = jupyter_command("python", "10.0.0.1", 8888, "tok", "/home/u", proxy_host="10.0.0.1")
    assert "--ServerApp.ip=10.0.0.1" in argv
    assert "--ServerApp.port_retries=0" in argv
    assert "--IdentityProvider.token=tok" in argv
    assert "--ServerProxy.host_allowlist=['10.0.0.1']" in argv
    assert "--allow-root" not in argv


def test_free_port_moves_when_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port = free_port("127.0.0.1", busy)
        assert port != busy and port > 0
