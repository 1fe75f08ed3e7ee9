"""The bridge driver on the real kernel: isolation, masquerade, internal networks."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from netfabric.drivers.bridge import NFT_TABLE, BridgeDriver, bridge_name
from netfabric.errors import InUse
from netfabric.lab.topology import Topology
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from tests.conftest import HostsFactory
from tests.kernel.ops import reconcile_ops


def bridge_net(n: int, *, internal: bool = False, v6: bool = False) -> Network:
    subnets = [SubnetSpec(f"172.{17 + n}.0.0/16", f"172.{17 + n}.0.1")]
    if v6:
        subnets.append(SubnetSpec(f"fd00:{n}::/64", f"fd00:{n}::1"))
    return Network(id=f"{n:02d}bridge{n:06d}", name=f"b{n}", driver=Driver.BRIDGE,
                   scope=Scope.LOCAL, subnets=tuple(subnets), internal=internal, ipv6=v6)


def ep(net: Network, i: int) -> Endpoint:
    base = net.subnets[0].cidr.split(".0.0/")[0]
    v6 = None
    if len(net.subnets) > 1:
        v6 = net.subnets[1].cidr.replace("::/64", f"::{i}")
    return Endpoint(id=f"{net.id}e{i}", network_id=net.id, sandbox=f"s{i}", node_id="h1",
                    mac=f"02:42:ac:{int(base.split('.')[1]):02x}:00:{i:02x}",
                    ipv4=f"{base}.0.{i}", ipv6=v6, prefixlen=16)


def sh(argv: list[str], *, check: bool = True) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def ping(sandbox: str, ip: str) -> bool:
    argv = ["ip", "netns", "exec", sandbox, "ping", "-c1", "-W1", ip]
    return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


class Lab:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.h1 = topo.hosts[0]
        self.driver = BridgeDriver(host_netns=self.h1.netns)

    def attach(self, net: Network, e: Endpoint) -> str:
        sb = f"{self.topo.prefix}-{net.name}{e.sandbox}"
        sh(["ip", "netns", "add", sb])
        self.driver.attach(net, e, sandbox_netns=sb)
        return sb


@pytest.fixture
def lab(hosts: HostsFactory) -> Iterator[Lab]:
    topo = hosts(2)  # h2 plays "outside": it has no route back to any bridge subnet
    made = Lab(topo)
    try:
        yield made
    finally:
        made.driver.close()


def test_isolation_same_bridge_masquerade_and_internal(lab: Lab) -> None:
    a, b, c = bridge_net(1, v6=True), bridge_net(2), bridge_net(3, internal=True)
    outside = lab.topo.hosts[1].address
    a1, a2 = lab.attach(a, ep(a, 2)), lab.attach(a, ep(a, 3))
    b1 = lab.attach(b, ep(b, 2))
    c1 = lab.attach(c, ep(c, 2))
    # Same bridge: reachable, over IPv4 and IPv6.
    assert ping(a1, "172.18.0.3")
    assert ping(a1, "fd00:1::3") and ping(a2, "172.18.0.2")
    # Different bridges: dropped both ways.
    assert not ping(a1, "172.19.0.2")
    assert not ping(b1, "172.18.0.2")
    # Egress is masqueraded: the outside host answers the host's underlay address.
    assert ping(a1, outside) and ping(b1, outside)
    conntrack = sh(["ip", "netns", "exec", lab.h1.netns, "nft", "list", "table", "inet",
                    NFT_TABLE])
    assert "masquerade" in conntrack
    # Internal: the gateway answers, nothing leaves, and no default route is set.
    assert ping(c1, "172.20.0.1")
    assert not ping(c1, outside)
    assert "default" not in sh(["ip", "-n", c1, "route"])
    assert not ping(c1, "172.18.0.2")
    assert "default via 172.18.0.1 dev eth0" in sh(["ip", "-n", a1, "route"])
    assert "default via fd00:1::1 dev eth0" in sh(["ip", "-6", "-n", a1, "route"])
    assert lab.driver.reconcile() == 0  # what attach made is exactly what reconcile wants


def test_reconcile_repairs_and_teardown_leaves_nothing(lab: Lab) -> None:
    a = bridge_net(4)
    e = ep(a, 2)
    s = lab.attach(a, e)
    s2 = lab.attach(a, ep(a, 3))
    assert lab.driver.reconcile() == 0
    ns = lab.h1.netns
    sh(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", NFT_TABLE])
    sh(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"])
    veth = lab.driver.attach(a, e, sandbox_netns=s).host_ifname   # attach is idempotent
    sh(["ip", "-n", ns, "link", "del", veth])
    # Exactly the table and e's veth with what lived on its inner end; nothing rebuilt.
    assert reconcile_ops(lab.driver) == sorted([
        ("create", "link", None, veth),
        ("create", "addr", s, "eth0", "172.21.0.2/16"),
        ("create", "route", s, socket.AF_INET, "default"),
        ("create", "nft", None, "inet", NFT_TABLE)], key=repr)
    assert ping(s, "172.21.0.3") and ping(s2, "172.21.0.2")
    assert ping(s, lab.topo.hosts[1].address)
    assert lab.driver.reconcile() == 0
    with pytest.raises(InUse):
        lab.driver.delete_network(a.id)
    lab.driver.detach(a.id, e.id)
    lab.driver.detach(a.id, e.id)  # idempotent
    lab.driver.detach(a.id, ep(a, 3).id)
    lab.driver.delete_network(a.id)
    links = sh(["ip", "-n", ns, "-o", "link"])
    assert bridge_name(a.id) not in links and "nfbv" not in links
    listing = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"],
                             capture_output=True, text=True).stdout
    assert NFT_TABLE not in listing


@pytest.fixture(autouse=True)
def _root_netns_untouched() -> Iterator[None]:
    """Nothing of ours ever lands in the root netns (links or nft tables)."""
    before = sh(["ip", "-o", "link"])
    yield
    after = sh(["ip", "-o", "link"])
    assert [w for w in after.split() if w.startswith(("nfb", "nfbv"))] == [
        w for w in before.split() if w.startswith(("nfb", "nfbv"))]
    assert "netfabric" not in sh(["nft", "list", "tables"])
