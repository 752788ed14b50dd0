"""Which network interface the scheduler listens on, and why.

On a cluster the nodes usually share several networks (Ethernet for management,
InfiniBand or Slingshot for data). A user may name one (``--interface ib0``);
otherwise we take the interface holding the address that this node's host name
resolves to, since that is the address the other nodes reach it by. distributed's
own default (the route to 8.8.8.8) is wrong on compute nodes without Internet.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import psutil

from .errors import InterfaceError

__all__ = ["InterfaceChoice", "choose_interface", "interfaces"]


@dataclass(frozen=True)
class InterfaceChoice:
    name: str
    address: str
    why: str


def interfaces() -> dict[str, list[str]]:
    """IPv4 addresses of this node's interfaces, by interface name."""
    return {
        name: [a.address for a in addrs if a.family == socket.AF_INET]
        for name, addrs in psutil.net_if_addrs().items()
    }


def choose_interface(
    name: str | None,
    *,
    known: dict[str, list[str]] | None = None,
    hostname: str | None = None,
) -> InterfaceChoice:
    """The interface to listen on: ``name`` if given (it must exist), else chosen as above."""
    known = interfaces() if known is None else known
    here = hostname or socket.gethostname()
    if name:
        addresses = known.get(name)
        if addresses is None:
            raise InterfaceError(name, known, here)
        if not addresses:
            raise InterfaceError(name, [n for n, a in known.items() if a], f"{here} with an IPv4 address")
        return InterfaceChoice(name, addresses[0], "given with --interface")
    try:
        address = socket.gethostbyname(here)
    except OSError:
        address = None
    if address:
        for candidate, addresses in known.items():
            if address in addresses:
                return InterfaceChoice(
                    candidate, address, f"holds {address}, the address of host name {here}"
                )
    for candidate, addresses in sorted(known.items()):
        for a in addresses:
            if not a.startswith("127."):
                return InterfaceChoice(
                    candidate, a, f"host name {here} does not resolve to an address here; first non-loopback"
                )
    return InterfaceChoice("lo", "127.0.0.1", "no other interface has an IPv4 address")
