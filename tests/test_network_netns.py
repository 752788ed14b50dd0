"""The interface choice on a node whose host name maps to 127.0.0.1, in network namespaces.

Two namespaces made here, joined by a veth pair with private addresses: "node" (lo, the
veth, a default route through it, and an /etc/hosts that maps its host name to
127.0.0.1, the way `ip netns exec` puts /etc/netns/NAME/hosts in place) and "peer".
The node chooses its interface with nothing injected, starts a real scheduler on it,
and the peer connects to it. No traffic goes to this machine's own addresses.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .components import in_ci

# Root, namespaces and a scheduler: like the laptop tests, not in the fast tier.
pytestmark = pytest.mark.laptop

SUFFIX = str(os.getpid() % 100000)
NODE, PEER = f"dask-hpc-if-node-{SUFFIX}", f"dask-hpc-if-peer-{SUFFIX}"
NODE_IF, PEER_IF = f"dhn{SUFFIX}", f"dhp{SUFFIX}"  # at most 15 characters
NODE_ADDR, PEER_ADDR = "10.213.0.1", "10.213.0.2"
HOST_NAME = "node7"

NODE_SCRIPT = """
import asyncio, json, socket, sys
from dask_hpc.network import choose_interface
from distributed import Scheduler

async def main():
    choice = choose_interface(None)  # nothing says the other nodes are this host
    print(json.dumps({"host": socket.gethostname(), "name": choice.name,
                      "address": choice.address, "why": choice.why}), flush=True)
    async with Scheduler(protocol="tcp", host=choice.address, port=0, dashboard=False) as s:
        print(json.dumps({"scheduler": s.address}), flush=True)
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, sys.stdin.read), 60)

asyncio.run(main())
"""

PEER_SCRIPT = """
import sys
from distributed import Client
with Client(sys.argv[1], timeout=30) as client:
    print(client.scheduler_info()["address"])
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[None]:
    why = None if os.geteuid() == 0 else "needs root"
    why = why or (None if shutil.which("ip") and shutil.which("unshare") else "needs ip and unshare")
    if why:
        if in_ci():
            pytest.fail(f"network namespaces: {why}", pytrace=False)
        pytest.skip(f"network namespaces: {why}")
    hosts = Path("/etc/netns") / NODE / "hosts"
    made_netns = not hosts.parent.parent.exists()  # /etc/netns: removed again if we made it
    try:
        hosts.parent.mkdir(parents=True)
        hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOST_NAME}\n")
        for ns in (NODE, PEER):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        veth = ("type", "veth", "peer", "name", PEER_IF, "netns", PEER)
        sh("ip", "link", "add", NODE_IF, "netns", NODE, *veth)
        for ns, dev, addr in ((NODE, NODE_IF, NODE_ADDR), (PEER, PEER_IF, PEER_ADDR)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", NODE, "route", "add", "default", "via", PEER_ADDR)
        yield
    finally:
        for ns in (NODE, PEER):  # deleting a namespace takes its end of the veth pair with it
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(hosts.parent.parent if made_netns else hosts.parent, ignore_errors=True)


def read_json_line(proc: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                result: dict[str, str] = json.loads(line)
                return result
    proc.kill()
    pytest.fail(f"the node's scheduler said nothing in time: {proc.communicate(timeout=10)}")


@pytest.mark.timeout(120)
def test_a_node_whose_host_name_is_loopback_listens_where_its_peer_reaches_it(namespaces: None) -> None:
    node = subprocess.Popen(
        ["ip", "netns", "exec", NODE, "unshare", "--uts", "sh", "-c", f'hostname {HOST_NAME} && exec "$@"',
         "-", sys.executable, "-c", NODE_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        choice = read_json_line(node, deadline)
        assert choice["host"] == HOST_NAME
        assert (choice["name"], choice["address"]) == (NODE_IF, NODE_ADDR), choice
        assert f"host name {HOST_NAME} resolves to 127.0.0.1 (loopback)" in choice["why"]
        assert f"{NODE_IF} holds the default route" in choice["why"]
        address = read_json_line(node, deadline)["scheduler"]
        assert address.startswith(f"tcp://{NODE_ADDR}:")
        peer = subprocess.run(
            ["ip", "netns", "exec", PEER, sys.executable, "-c", PEER_SCRIPT, address],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert peer.returncode == 0, peer.stderr[-2000:]
        assert peer.stdout.strip() == address
    finally:
        try:
            node.communicate(input="", timeout=30)  # stdin closed: the scheduler ends
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
