"""Which network interface the scheduler (or an MPI rank) listens on, and why.

On a cluster the nodes usually share several networks (Ethernet for management,
InfiniBand or Slingshot for data). A user may name one (``--interface ib0``);
otherwise we take the interface holding the address that this node's host name
resolves to, since that is the address the other nodes reach it by. A host name
that resolves to loopback (``127.0.0.1 node7`` in /etc/hosts) says nothing about
the network: loopback is taken only when every node the jobs may run on is this
host (:class:`Peers`), else the interface of the default route, else the first
other interface with an IPv4 address. distributed's own default (the route to
8.8.8.8) is wrong on compute nodes without Internet.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from dask_hpc.errors import InterfaceError, UnreachableInterfaceError

if TYPE_CHECKING:
    from dask_hpc.systems import BatchSystem

__all__ = [
    "InterfaceChoice",
    "Peers",
    "choose_interface",
    "default_route_interface",
    "elsewhere",
    "hosts_peers",
    "interfaces",
    "job_peers",
    "system_peers",
]

ROUTE_TABLE = Path("/proc/net/route")


@dataclass(frozen=True)
class InterfaceChoice:
    name: str
    address: str
    why: str


@dataclass(frozen=True)
class Peers:
    """Who must reach the address we listen on: processes on this host only, or maybe
    processes on other hosts too; ``why`` says how we know, for ``dask-hpc status``."""

    this_host_only: bool
    why: str


def elsewhere() -> Peers:
    """The safe assumption when nothing better is known: the peers may be on other hosts."""
    return Peers(False, "the other processes may run on other hosts")


def interfaces() -> dict[str, list[str]]:
    """IPv4 addresses of this node's interfaces, by interface name."""
    return {
        name: [a.address for a in addrs if a.family == socket.AF_INET]
        for name, addrs in psutil.net_if_addrs().items()
    }


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def hosts_peers(
    what: str,
    hosts: Sequence[str] | None,
    *,
    known: Mapping[str, list[str]] | None = None,
    resolve: Callable[[str], str] = socket.gethostbyname,
) -> Peers:
    """Whether every one of ``hosts`` (names or addresses; None: unknown) is this host: it
    resolves to a loopback address or to one that an interface here holds. ``what`` names
    them in the reason, e.g. "the nodes of slurm"."""
    if not hosts:
        return Peers(False, f"{what} are unknown here, so they may be other hosts")
    held = {a for addresses in (interfaces() if known is None else known).values() for a in addresses}
    addresses = []
    for host in hosts:
        try:
            address = resolve(host)
        except OSError:
            return Peers(False, f"{what} include {host}, which does not resolve here: maybe another host")
        if not (is_loopback(address) or address in held):
            return Peers(False, f"{what} include {host} ({address}), another host")
        addresses.append(host if host == address else f"{host} {address}")
    shown = ", ".join(list(dict.fromkeys(addresses))[:4]) + (", ..." if len(set(addresses)) > 4 else "")
    return Peers(True, f"every one of {what} ({shown}) is this host")


def system_peers(system: BatchSystem) -> Peers:
    """Whether every node that ``system``'s jobs may run on is this host (``local``: always)."""
    return hosts_peers(f"the nodes of {system.name}", system.node_hosts())


def job_peers(env: Mapping[str, str] | None = None) -> Peers:
    """For the ranks of an MPI job: all on this host if its launcher says so (Open MPI's
    mpirun, MPICH's hydra, srun), else if every node of the batch system it runs in is this
    host, else maybe elsewhere. Reads no other rank: a collective step would need every rank."""
    env = os.environ if env is None else env
    for size, local, launcher in (
        ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "Open MPI"),
        ("PMI_SIZE", "MPI_LOCALNRANKS", "MPICH"),
    ):
        if env.get(size) and env.get(size) == env.get(local):
            return Peers(True, f"{launcher} says all {env[size]} ranks run on this host")
    if env.get("SLURM_STEP_NUM_NODES") == "1":
        return Peers(True, "srun says all ranks run on this node")
    from dask_hpc.systems import get_system
    from dask_hpc.systems.base import ENV_SYSTEM

    name = env.get(ENV_SYSTEM) or ("slurm" if env.get("SLURM_JOB_ID") else None)
    if name is None:
        return Peers(False, "the ranks may run on other hosts (the launcher does not say)")
    return system_peers(get_system(name))


def default_route_interface(table: str | None = None) -> str | None:
    """The interface of the IPv4 default route (lowest metric), from /proc/net/route's text;
    None when there is none. Read only: no packet is sent to find it."""
    if table is None:
        try:
            table = ROUTE_TABLE.read_text()
        except OSError:
            return None
    best: tuple[int, str] | None = None
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        name, destination, flags, metric, mask = fields[0], fields[1], fields[3], fields[6], fields[7]
        try:
            up = int(flags, 16) & 0x1
            default = int(destination, 16) == 0 and int(mask, 16) == 0
            rank = int(metric)
        except ValueError:
            continue
        if up and default and (best is None or rank < best[0]):
            best = (rank, name)
    return None if best is None else best[1]


def choose_interface(
    name: str | None,
    peers: Callable[[], Peers] = elsewhere,
    *,
    known: dict[str, list[str]] | None = None,
    hostname: str | None = None,
    routes: str | None = None,
) -> InterfaceChoice:
    """The interface to listen on: ``name`` if given (it must exist), else chosen as above.

    ``peers`` is asked only when loopback is in question (it may run a batch system command).
    ``routes`` is /proc/net/route's text (read when None)."""
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
        address: str | None = socket.gethostbyname(here)
    except OSError:
        address = None
    holder = next((n for n, addresses in known.items() if address in addresses), None)
    if address and holder and not is_loopback(address):
        return InterfaceChoice(holder, address, f"holds {address}, the address of host name {here}")
    who = peers()
    loopback = bool(address) and is_loopback(address or "")
    if who.this_host_only:
        # Linux's lo holds all of 127.0.0.0/8, also Debian's 127.0.1.1 that psutil does not list.
        lo = next((n for n, a in sorted(known.items()) if any(map(is_loopback, a))), "lo")
        lo_address = address if address and loopback else (known.get(lo) or ["127.0.0.1"])[0]
        return InterfaceChoice(lo, lo_address, f"{who.why}: loopback will do")
    if loopback:
        problem = f"host name {here} resolves to {address} (loopback), which other nodes cannot reach"
    else:
        problem = f"host name {here} does not resolve to an address here"
    problem += f" ({who.why})"
    routed = default_route_interface(routes)
    routed_addresses = [a for a in known.get(routed or "", []) if not is_loopback(a)]
    if routed and routed_addresses:
        return InterfaceChoice(routed, routed_addresses[0], f"{problem}; {routed} holds the default route")
    for candidate, addresses in sorted(known.items()):
        for a in addresses:
            if not is_loopback(a):
                return InterfaceChoice(
                    candidate, a, f"{problem}; {candidate} is the first interface with another address"
                )
    raise UnreachableInterfaceError(here, who.why)
