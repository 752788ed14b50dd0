"""Which interface the scheduler listens on, and the error for a wrong name."""

from __future__ import annotations

import pytest

from dask_hpc.errors import InterfaceError
from dask_hpc.network import (
    Peers,
    choose_interface,
    default_route_interface,
    hosts_peers,
    interfaces,
    job_peers,
)
from dask_hpc.systems import get_system

KNOWN = {"lo": ["127.0.0.1"], "eth0": ["10.1.0.5"], "ib0": ["10.2.0.5"], "docker0": []}
ROUTE_HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
NO_DEFAULT_ROUTE = ROUTE_HEADER + "eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
#: /proc/net/route: a default route through ib0 (metric 100) and one through eth0 (metric 50).
TWO_DEFAULT_ROUTES = (
    ROUTE_HEADER
    + "ib0\t00000000\t0100020A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    + "eth0\t00000000\t0100010A\t0003\t0\t0\t50\t00000000\t0\t0\t0\n"
)


def test_named_interface() -> None:
    choice = choose_interface("ib0", known=KNOWN, hostname="node7")
    assert (choice.name, choice.address) == ("ib0", "10.2.0.5")
    assert "--interface" in choice.why


def test_wrong_name_lists_the_real_ones() -> None:
    with pytest.raises(InterfaceError) as info:
        choose_interface("ib1", known=KNOWN, hostname="node7")
    assert str(info.value) == "no network interface 'ib1' on node7; its interfaces: docker0, eth0, ib0, lo"


def test_interface_without_an_address() -> None:
    with pytest.raises(InterfaceError, match="docker0"):
        choose_interface("docker0", known=KNOWN, hostname="node7")


def test_automatic_choice_follows_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostbyname", lambda host: {"node7": "10.2.0.5"}[host])
    choice = choose_interface(None, known=KNOWN, hostname="node7")
    assert choice.name == "ib0" and "host name node7" in choice.why


def test_automatic_choice_when_the_host_name_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(host: str) -> str:
        raise OSError("unknown host")

    monkeypatch.setattr("socket.gethostbyname", fail)
    choice = choose_interface(None, known=KNOWN, hostname="node7", routes=NO_DEFAULT_ROUTE)
    assert choice.name == "eth0" and "does not resolve" in choice.why


def test_this_machine_has_loopback() -> None:
    assert "127.0.0.1" in interfaces()["lo"]


# ---- a host name that resolves to loopback (issue 18, item 5) -----------------------------


def on_loopback(monkeypatch: pytest.MonkeyPatch, address: str = "127.0.0.1") -> None:
    """/etc/hosts maps the host name (node7) to a loopback address."""
    monkeypatch.setattr("socket.gethostbyname", lambda host: address)


def other_hosts() -> Peers:
    return Peers(False, "the nodes of slurm include node8 (10.1.0.8), another host")


def this_host() -> Peers:
    return Peers(True, "every one of the nodes of slurm (127.0.0.1) is this host")


def test_host_name_on_loopback_is_not_taken_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing says the other nodes are this host: loopback would be unreachable."""
    on_loopback(monkeypatch)
    choice = choose_interface(None, known=KNOWN, hostname="node7")
    assert choice.name != "lo" and not choice.address.startswith("127."), choice


def test_host_name_on_loopback_takes_the_default_route(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loopback(monkeypatch)
    choice = choose_interface(None, other_hosts, known=KNOWN, hostname="node7", routes=TWO_DEFAULT_ROUTES)
    assert (choice.name, choice.address) == ("eth0", "10.1.0.5")
    assert choice.why == (
        "host name node7 resolves to 127.0.0.1 (loopback), which other nodes cannot reach "
        "(the nodes of slurm include node8 (10.1.0.8), another host); eth0 holds the default route"
    )


def test_debian_127_0_1_1_is_loopback_too(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loopback(monkeypatch, "127.0.1.1")  # Debian's own default; no interface lists it
    choice = choose_interface(None, other_hosts, known=KNOWN, hostname="node7", routes=TWO_DEFAULT_ROUTES)
    assert choice.name == "eth0" and "127.0.1.1 (loopback)" in choice.why


def test_without_a_default_route_the_first_other_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loopback(monkeypatch)
    choice = choose_interface(None, other_hosts, known=KNOWN, hostname="node7", routes=NO_DEFAULT_ROUTE)
    assert (choice.name, choice.address) == ("eth0", "10.1.0.5")
    assert "eth0 is the first interface with another address" in choice.why


def test_loopback_when_every_node_is_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loopback(monkeypatch)
    choice = choose_interface(None, this_host, known=KNOWN, hostname="node7", routes=TWO_DEFAULT_ROUTES)
    assert (choice.name, choice.address) == ("lo", "127.0.0.1")
    assert choice.why == "every one of the nodes of slurm (127.0.0.1) is this host: loopback will do"


def test_local_is_always_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loopback(monkeypatch)
    peers = hosts_peers("the nodes of local", get_system("local").node_hosts(), known=KNOWN)
    choice = choose_interface(None, lambda: peers, known=KNOWN, hostname="node7")
    assert (choice.name, choice.address) == ("lo", "127.0.0.1")
    assert "the nodes of local (localhost 127.0.0.1) is this host" in choice.why


def test_only_loopback_while_other_nodes_must_connect_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    on_loopback(monkeypatch)
    with pytest.raises(InterfaceError) as info:
        choose_interface(None, other_hosts, known={"lo": ["127.0.0.1"]}, hostname="node7", routes="")
    message = str(info.value)
    assert "\n" not in message and "--interface NAME" in message and "node8" in message


def test_a_named_interface_wins_and_nobody_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    def never() -> Peers:
        raise AssertionError("peers asked although --interface was given")

    on_loopback(monkeypatch)
    assert choose_interface("lo", never, known=KNOWN, hostname="node7").address == "127.0.0.1"
    assert choose_interface("ib0", never, known=KNOWN, hostname="node7").address == "10.2.0.5"


def test_a_routable_host_name_is_taken_without_asking_who_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    def never() -> Peers:
        raise AssertionError("peers asked although the host name is routable")

    monkeypatch.setattr("socket.gethostbyname", lambda host: "10.2.0.5")
    assert choose_interface(None, never, known=KNOWN, hostname="node7").name == "ib0"


def test_default_route_lowest_metric() -> None:
    assert default_route_interface(TWO_DEFAULT_ROUTES) == "eth0"
    assert default_route_interface(NO_DEFAULT_ROUTE) is None
    assert default_route_interface("") is None


ADDRESSES = {"localhost": "127.0.0.1", "vm": "127.0.0.1", "node8": "10.1.0.8", "here": "10.1.0.5"}


def resolve(host: str) -> str:
    try:
        return ADDRESSES[host]
    except KeyError:
        raise OSError(f"unknown host {host}") from None


def test_nodes_that_are_all_this_host() -> None:
    peers = hosts_peers("the nodes of sge", ("localhost", "vm", "here"), known=KNOWN, resolve=resolve)
    assert peers.this_host_only and "here 10.1.0.5" in peers.why  # an address held here is here too


@pytest.mark.parametrize(
    ("hosts", "said"),
    [
        (("localhost", "node8"), "include node8 (10.1.0.8), another host"),
        (("localhost", "node9"), "include node9, which does not resolve here"),
        (None, "are unknown here, so they may be other hosts"),
        ((), "are unknown here"),
    ],
)
def test_nodes_that_may_be_other_hosts(hosts: tuple[str, ...] | None, said: str) -> None:
    peers = hosts_peers("the nodes of sge", hosts, known=KNOWN, resolve=resolve)
    assert not peers.this_host_only and said in peers.why


def test_where_systems_run_their_jobs() -> None:
    slurm, sge = get_system("slurm"), get_system("sge")
    assert slurm.nodes_argv() == ["sinfo", "--noheader", "--Node", "--format=%o"]
    assert slurm.parse_nodes("127.0.0.1\n127.0.0.1\n127.0.0.1\n") == ("127.0.0.1",)
    assert sge.nodes_argv() == ["qconf", "-sel"]
    assert sge.parse_nodes("localhost\nnode8\n") == ("localhost", "node8")
    for name in ("pbs", "lsf", "htcondor"):  # not asked: their nodes are unknown (maybe other hosts)
        assert get_system(name).node_hosts() is None


def test_nodes_unknown_when_the_system_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert get_system("slurm").node_hosts() is None


@pytest.mark.parametrize(
    ("env", "here"),
    [
        ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}, True),
        ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, False),
        ({"PMI_SIZE": "3", "MPI_LOCALNRANKS": "3"}, True),
        ({"SLURM_STEP_NUM_NODES": "1", "SLURM_JOB_ID": "7"}, True),
        ({"DASK_HPC_SYSTEM": "local"}, True),
        ({"DASK_HPC_SYSTEM": "pbs"}, False),
        ({}, False),
    ],
)
def test_mpi_ranks_on_this_host(env: dict[str, str], here: bool) -> None:
    assert job_peers(env).this_host_only is here
