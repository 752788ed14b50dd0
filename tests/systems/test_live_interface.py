"""On the real SLURM and Grid Engine here, every node is this host: loopback is chosen.

Their nodes are virtual (SLURM's NodeAddr=127.0.0.1; Grid Engine's one exec host is
this one), so the live tests' schedulers keep to loopback, and status says why.
"""

from __future__ import annotations

import pytest

from dask_hpc.network import choose_interface, system_peers
from dask_hpc.systems import get_system

from ..conftest import bring_up, systems


@pytest.mark.parametrize("name", systems("slurm", "sge"))
def test_every_node_of_the_live_system_is_this_host(name: str, request: pytest.FixtureRequest) -> None:
    bring_up(name, request)
    system = get_system(name)
    hosts = system.node_hosts()
    assert hosts, f"{name} listed no nodes"
    peers = system_peers(system)
    assert peers.this_host_only, peers
    choice = choose_interface(None, lambda: peers)
    assert choice.address.startswith("127."), choice
    assert choice.why.startswith(f"every one of the nodes of {name} (") and "is this host" in choice.why
    print(f"{name}: nodes {hosts}; {choice}")
