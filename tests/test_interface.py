"""Which interface the scheduler listens on, and the error for a wrong name."""

from __future__ import annotations

import pytest

from dask_hpc.errors import InterfaceError
from dask_hpc.interface import choose_interface, interfaces

KNOWN = {"lo": ["127.0.0.1"], "eth0": ["10.1.0.5"], "ib0": ["10.2.0.5"], "docker0": []}


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
    choice = choose_interface(None, known=KNOWN, hostname="node7")
    assert choice.name == "eth0" and "does not resolve" in choice.why


def test_this_machine_has_loopback() -> None:
    assert "127.0.0.1" in interfaces()["lo"]
