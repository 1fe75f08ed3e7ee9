"""The kernel adapter: idempotent verbs, and use from inside a host netns."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netfabric.dataplane.kernel import Kernel, Scope
from netfabric.dataplane.resources import (
    Addr,
    Bridge,
    Create,
    Delete,
    Fdb,
    Neigh,
    Netns,
    Phase,
    Vxlan,
)
from netfabric.drivers.overlay import OverlayDriver
from netfabric.errors import DataplaneError
from netfabric.lab.topology import list_netns
from netfabric.model import Driver, Endpoint, Network, SubnetSpec
from netfabric.model import Scope as NetScope
from tests.conftest import HostsFactory

REPO = Path(__file__).resolve().parents[2]


def test_verbs_are_idempotent(hosts: HostsFactory) -> None:
    topo = hosts(1)
    (h1,) = topo.hosts
    ns = f"{h1.netns}-ov9"
    with Kernel(host_netns=h1.netns) as k:
        made = [Netns(ns), Bridge(ns, "br0", 1450), Addr(ns, "br0", "10.9.0.1/24"),
                Vxlan(ns, "nfvx9", 9, h1.address, 4789, 1450, "br0"),
                Fdb(ns, "nfvx9", "02:42:0a:09:00:05", "198.51.100.7"),
                Neigh(ns, "nfvx9", "10.9.0.5", "02:42:0a:09:00:05")]
        for _ in range(2):  # EEXIST is success
            assert k.apply(Create(r) for r in made) == len(made)
        scope = Scope(ns, report_netns=True)
        assert set(k.observe([scope])) == set(made)
        for _ in range(2):  # ENOENT is success
            assert k.apply(Delete(r) for r in reversed(made)) == len(made)
        assert ns not in list_netns()
        assert k.observe([scope]) == ()
        # A vxlan never lingers in the host netns after its netns is gone.
        assert k.observe([Scope(None, links=frozenset(), prefixes=("nfvx",),
                                phases=frozenset({Phase.VXLAN}))]) == ()
        # Errors are DataplaneErrors naming the op, not tracebacks from netlink.
        with pytest.raises(DataplaneError, match="br9"):
            k.apply([Create(Addr(None, "br9", "10.9.0.1/24"))])


def test_the_event_loop_thread_never_changes_netns(hosts: HostsFactory) -> None:
    topo = hosts(1)
    (h1,) = topo.hosts
    own = os.readlink("/proc/thread-self/ns/net")
    net = Network(id="0" * 12, name="x", driver=Driver.OVERLAY, scope=NetScope.SWARM,
                  subnets=(SubnetSpec("10.30.0.0/24", "10.30.0.1"),), vni=77)
    sb = f"{topo.prefix}-loop"
    subprocess.run(["ip", "netns", "add", sb], check=True)
    seen: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with OverlayDriver(host_netns=h1.netns, advertise_addr=h1.address) as d:
            ep = Endpoint("e1", net.id, "loop", "h1", "02:42:0a:1e:00:02", "10.30.0.2")
            await loop.run_in_executor(None, lambda: d.attach(net, ep, sandbox_netns=sb))
            seen.append(os.readlink("/proc/thread-self/ns/net"))
            await loop.run_in_executor(None, d.detach, net.id, ep.id)

    asyncio.run(main())
    assert seen == [own] and os.readlink("/proc/thread-self/ns/net") == own
    assert f"{h1.netns}-ov77" not in list_netns()


AGENT = """
import sys
from netfabric.drivers.overlay import OverlayDriver
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
prefix, addr, peer_addr, sandbox = sys.argv[1:]
net = Network(id="n" * 12, name="o", driver=Driver.OVERLAY, scope=Scope.SWARM,
              subnets=(SubnetSpec("10.31.0.0/24", "10.31.0.1"),), vni=31)
me = Endpoint("a1", net.id, "a", "h1", "02:42:0a:1f:00:02", "10.31.0.2", vtep=addr)
peer = Endpoint("b1", net.id, "b", "h2", "02:42:0a:1f:00:03", "10.31.0.3", vtep=peer_addr)
with OverlayDriver(host_netns=None, prefix=prefix, advertise_addr=addr) as d:
    d.attach(net, me, sandbox_netns=sandbox)
    d.set_peers(net.id, [me, peer])
    print(d.netns_of(net.id))
"""


def test_a_driver_inside_its_host_netns(hosts: HostsFactory, tmp_path: Path) -> None:
    """The agent's case: the process runs inside the host netns and names none."""
    topo = hosts(2)
    h1, h2 = topo.hosts
    sa, sb = f"{topo.prefix}-in1", f"{topo.prefix}-in2"
    for sb_name in (sa, sb):
        subprocess.run(["ip", "netns", "add", sb_name], check=True)
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT))
    # nsenter --net, not ip netns exec: the latter gives the process a private mount
    # namespace, where the netns it creates would die with it.
    proc = subprocess.run(["nsenter", f"--net={h1.netns_path()}", sys.executable, str(script),
                           h1.netns, h1.address, h2.address, sa],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{h1.netns}-ov31"
    net = Network(id="n" * 12, name="o", driver=Driver.OVERLAY, scope=NetScope.SWARM,
                  subnets=(SubnetSpec("10.31.0.0/24", "10.31.0.1"),), vni=31)
    me = Endpoint("b1", net.id, "b", "h2", "02:42:0a:1f:00:03", "10.31.0.3", vtep=h2.address)
    peer = Endpoint("a1", net.id, "a", "h1", "02:42:0a:1f:00:02", "10.31.0.2", vtep=h1.address)
    with OverlayDriver(host_netns=h2.netns, advertise_addr=h2.address) as d:
        d.attach(net, me, sandbox_netns=sb)
        d.set_peers(net.id, [me, peer])
        ping = subprocess.run(["ip", "netns", "exec", sb, "ping", "-c1", "-W2", "10.31.0.2"],
                              capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout
        d.detach(net.id, me.id)
    # Nothing of the overlay was made in the root netns.
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "nfvx31" not in root_links
