"""The DnsServer used in-process, as the agent uses it: sockets only in project netns.

The test process sits in the root netns, so forwarding sockets are opened in topology host
h1 through ``ServerConfig.forward_netns`` (a thread parked there), and the sandbox sockets
in the sandbox netns; nothing of ours touches the root netns. dnsmasq on h2 is upstream.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import time

import pytest

from netfabric.dns.forwarder import Upstream
from netfabric.dns.records import Records
from netfabric.dns.server import DnsServer, ServerConfig, ServingMode
from netfabric.errors import DataplaneError, NotFound
from tests.conftest import HostsFactory


def _dig(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "dig", "@127.0.0.11", "+time=2",
                           "+tries=1", *args], capture_output=True, text=True, timeout=20,
                          check=False).stdout


@pytest.mark.parametrize("mode", list(ServingMode))
def test_in_process_server_serves_and_forwards_from_host_netns(
        hosts: HostsFactory, mode: ServingMode) -> None:
    topo = hosts(2)
    h1, h2 = topo.host("h1"), topo.host("h2")
    sandbox = f"{topo.prefix}-sb"
    subprocess.run(["ip", "netns", "add", sandbox], check=True)
    dnsmasq = subprocess.Popen(
        ["ip", "netns", "exec", h2.netns, "dnsmasq", "--keep-in-foreground",
         "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
         f"--listen-address={h2.address}", "--pid-file", "--port=53",
         "--host-record=up.example.test,10.99.0.7"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "10.99.0.7" not in subprocess.run(
                ["ip", "netns", "exec", h1.netns, "dig", f"@{h2.address}", "+short",
                 "+time=1", "+tries=1", "up.example.test"],
                capture_output=True, text=True, check=False).stdout:
            assert time.monotonic() < deadline, "dnsmasq did not come up"
            time.sleep(0.1)

        async def scenario() -> None:
            records = Records()
            server = DnsServer(records, rng=random.Random(3), config=ServerConfig(
                upstreams=(Upstream(h2.address),), forward_netns=h1.netns, mode=mode))
            try:
                records.set_endpoint("net1", "app", aliases=["frontend"], ipv4="10.66.0.2")
                await server.add_sandbox(sandbox, ["net1"])
                assert server.sandboxes() == {sandbox: frozenset({"net1"})}
                own = await asyncio.to_thread(_dig, sandbox, "+short", "frontend")
                assert own.split() == ["10.66.0.2"]
                fwd = await asyncio.to_thread(_dig, sandbox, "+short", "up.example.test")
                assert fwd.split() == ["10.99.0.7"]
                tcp = await asyncio.to_thread(_dig, sandbox, "+short", "+tcp", "up.example.test")
                assert tcp.split() == ["10.99.0.7"]
                assert server.forwarder.stats.answered == 2
                with pytest.raises(NotFound):
                    await server.remove_sandbox(f"{topo.prefix}-other")
                with pytest.raises(DataplaneError):
                    await server.add_sandbox(f"{topo.prefix}-missing", ["net1"])
            finally:
                await server.close()
            assert server.sandboxes() == {}
            assert not os.path.exists(f"/etc/netns/{sandbox}")

        asyncio.run(scenario())
    finally:
        dnsmasq.kill()
        dnsmasq.wait()
