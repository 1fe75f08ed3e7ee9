"""The overlay driver on the real kernel: simulated hosts, real VXLAN, real pings."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netfabric.drivers.overlay import OverlayDriver, vxlan_name
from netfabric.lab.topology import Host, Topology, list_netns
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from tests.conftest import HostsFactory
from tests.kernel.ops import reconcile_ops


def overlay_net(vni: int, *, subnet: str = "10.20.0.0/24", gw: str = "10.20.0.1",
                options: tuple[tuple[str, str], ...] = ()) -> Network:
    return Network(id=f"net{vni:010d}", name=f"ov{vni}", driver=Driver.OVERLAY,
                   scope=Scope.SWARM, subnets=(SubnetSpec(subnet, gw),), vni=vni,
                   options=options)


def endpoint(net: Network, n: int, host: Host, *, ip: str | None = None,
             mac: str | None = None, vtep: str | None = None) -> Endpoint:
    octet = n + 1
    base = net.subnets[0].cidr.rsplit(".", 1)[0]
    return Endpoint(id=f"ep{net.vni}x{n:08d}", network_id=net.id, sandbox=f"c{n}",
                    node_id=host.name, mac=mac or f"02:42:0a:{net.vni % 256:02x}:00:{octet:02x}",
                    ipv4=ip or f"{base}.{octet}", vtep=vtep or host.address)


class Fabric:
    """Hosts with one overlay driver each, and helpers to make sandboxes and ping."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.drivers = {h.name: OverlayDriver(host_netns=h.netns, advertise_addr=h.address)
                        for h in topo.hosts}

    def sandbox(self, name: str) -> str:
        ns = f"{self.topo.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        return ns

    def attach(self, host: Host, net: Network, ep: Endpoint, *, sandbox: str | None = None
               ) -> str:
        sb = sandbox or self.sandbox(f"{ep.sandbox}{net.vni}")
        self.drivers[host.name].attach(net, ep, sandbox_netns=sb)
        return sb

    def publish(self, net: Network, eps: list[Endpoint]) -> None:
        """What gossip will do: every host learns every endpoint of the network."""
        for d in self.drivers.values():
            d.set_peers(net.id, eps)

    def close(self) -> None:
        for d in self.drivers.values():
            d.close()


def ping(sandbox: str, ip: str, *, count: int = 1) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", sandbox, "ping", "-c", str(count), "-i",
                           "0.2", "-W", "1", ip], capture_output=True, text=True, timeout=15)
    return proc.returncode == 0


def sh(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def fabric(hosts: HostsFactory) -> Iterator[Callable[..., Fabric]]:
    made: list[Fabric] = []

    def build(n: int, *, mtu: int = 1500) -> Fabric:
        f = Fabric(hosts(n, mtu=mtu))
        made.append(f)
        return f

    yield build
    for f in made:
        f.close()


def assert_no_overlay_left(f: Fabric) -> None:
    """Nothing of the overlay stays: no network netns, no vxlan in any host netns."""
    assert [n for n in list_netns() if n.startswith(f.topo.prefix) and "-ov" in n] == []
    for h in f.topo.hosts:
        assert "nfvx" not in sh(["ip", "-n", h.netns, "-o", "link", "show"])


def test_three_hosts_ping_each_other(fabric: Callable[..., Fabric]) -> None:
    f = fabric(3)
    net = overlay_net(4097)
    eps = [endpoint(net, i, h) for i, h in enumerate(f.topo.hosts, start=1)]
    sbs = [f.attach(h, net, ep) for h, ep in zip(f.topo.hosts, eps, strict=True)]
    f.publish(net, eps)
    for sb, me in zip(sbs, eps, strict=True):
        for ep in eps:
            if ep is not me:
                assert ping(sb, str(ep.ipv4)), f"{sb} -> {ep.ipv4}"
        assert ping(sb, "10.20.0.1")  # the gateway on br0 of the sandbox's own host
    # The devices are what DESIGN.md says.
    h1 = f.topo.hosts[0]
    ov = f.drivers[h1.name].netns_of(net.id)
    assert ov == f"{h1.netns}-ov4097"
    detail = sh(["ip", "-n", ov, "-d", "link", "show", vxlan_name(4097)])
    assert "vxlan id 4097" in detail and f"local {h1.address}" in detail
    assert "dstport 4789" in detail and "nolearning" in detail and "proxy" in detail
    assert "mtu 1450" in detail
    assert "mtu 1450" in sh(["ip", "-n", sbs[0], "link", "show", "eth0"])
    assert "default via 10.20.0.1 dev eth0" in sh(["ip", "-n", sbs[0], "route"])
    # Reconcile on a converged host does nothing.
    assert all(d.reconcile() == 0 for d in f.drivers.values())
    for h, ep in zip(f.topo.hosts, eps, strict=True):
        f.drivers[h.name].detach(net.id, ep.id)
    assert_no_overlay_left(f)


def test_two_overlays_with_one_subnet_are_isolated(fabric: Callable[..., Fabric]) -> None:
    f = fabric(2)
    h1, h2 = f.topo.hosts
    a, b = overlay_net(101), overlay_net(102)
    a1, a2 = endpoint(a, 1, h1), endpoint(a, 2, h2)
    b1 = endpoint(b, 3, h1)
    b2 = endpoint(b, 4, h2)
    sa1, _ = f.attach(h1, a, a1), f.attach(h2, a, a2)
    sb1, _ = f.attach(h1, b, b1), f.attach(h2, b, b2)
    f.publish(a, [a1, a2])
    f.publish(b, [b1, b2])
    assert ping(sa1, "10.20.0.3") and ping(sb1, "10.20.0.5")
    assert not ping(sa1, "10.20.0.5")
    assert not ping(sb1, "10.20.0.3")


def test_removal_and_moves_update_every_peer(fabric: Callable[..., Fabric]) -> None:
    f = fabric(3)
    h1, h2, h3 = f.topo.hosts
    net = overlay_net(200)
    e1, e2 = endpoint(net, 1, h1), endpoint(net, 2, h2)
    s1 = f.attach(h1, net, e1)
    f.attach(h2, net, e2)
    f.publish(net, [e1, e2])
    assert ping(s1, str(e2.ipv4))
    ov1 = f.drivers[h1.name].netns_of(net.id)
    assert ov1 is not None
    vx = vxlan_name(200)
    assert e2.mac in sh(["bridge", "-n", ov1, "fdb", "show", "dev", vx])

    # The IP moves to h3 with a new MAC: h1 follows at once, the old MAC goes.
    f.drivers[h2.name].detach(net.id, e2.id)
    assert f.drivers[h2.name].netns_of(net.id) is None
    assert f"{h2.netns}-ov200" not in list_netns()
    moved = endpoint(net, 2, h3, mac="02:42:0a:c8:00:99")
    f.attach(h3, net, moved, sandbox=f.sandbox("moved"))
    f.publish(net, [e1, moved])
    fdb = sh(["bridge", "-n", ov1, "fdb", "show", "dev", vx])
    neigh = sh(["ip", "-n", ov1, "neigh", "show", "dev", vx])
    assert e2.mac not in fdb and e2.mac not in neigh
    assert f"02:42:0a:c8:00:99 dst {h3.address}" in fdb
    assert f"{moved.ipv4} lladdr 02:42:0a:c8:00:99 PERMANENT" in neigh
    # h1's sandbox had cached the old MAC; the driver made it ask again, so no timer runs
    # out before the moved IP answers.
    assert e2.mac not in sh(["ip", "-n", s1, "neigh", "show", "dev", "eth0"])
    assert ping(s1, str(moved.ipv4))

    # Removal: the entries of the removed endpoint disappear on its peers.
    f.drivers[h3.name].detach(net.id, moved.id)
    f.publish(net, [e1])
    assert "02:42:0a:c8:00:99" not in sh(["bridge", "-n", ov1, "fdb", "show", "dev", vx])
    assert str(moved.ipv4) not in sh(["ip", "-n", ov1, "neigh", "show", "dev", vx])
    f.drivers[h1.name].detach(net.id, e1.id)
    f.publish(net, [])
    assert_no_overlay_left(f)


def test_reconcile_repairs_tampering(fabric: Callable[..., Fabric]) -> None:
    f = fabric(2)
    h1, h2 = f.topo.hosts
    net = overlay_net(300)
    e1, e2 = endpoint(net, 1, h1), endpoint(net, 2, h2)
    s1, s2 = f.attach(h1, net, e1), f.attach(h2, net, e2)
    f.publish(net, [e1, e2])
    assert ping(s1, str(e2.ipv4))
    ov1, ov2 = f"{h1.netns}-ov300", f"{h2.netns}-ov300"
    vx = vxlan_name(300)
    veth2 = f.drivers[h2.name].attach(net, e2, sandbox_netns=s2).host_ifname
    sh(["ip", "-n", ov2, "link", "del", veth2])
    sh(["bridge", "-n", ov1, "fdb", "del", e2.mac, "dev", vx, "dst", h2.address, "self"])
    sh(["ip", "-n", ov1, "neigh", "del", str(e2.ipv4), "dev", vx])
    sh(["ip", "-n", s1, "addr", "flush", "dev", "eth0"])
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
    if bridge_nf:  # br_netfilter loaded: br0's frames skip the netns' iptables hooks
        assert sh(["ip", "netns", "exec", ov1, "sysctl", "-n",
                   "net.bridge.bridge-nf-call-iptables"]).strip() == "0"
        sh(["ip", "netns", "exec", ov1, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
    assert not ping(s1, str(e2.ipv4))
    # Exactly what was tampered with on h1 (the route went with the flushed address); a
    # reconcile that rebuilt the overlay would show deletes and link creates here.
    want1 = [("create", "addr", s1, "eth0", f"{e1.ipv4}/24"),
             ("create", "route", s1, socket.AF_INET, "default"),
             ("create", "fdb", ov1, vx, e2.mac),
             ("create", "neigh", ov1, vx, str(e2.ipv4))]
    if bridge_nf:
        want1.append(("update", "sysctl", ov1, "net/bridge/bridge-nf-call-iptables"))
    assert reconcile_ops(f.drivers[h1.name]) == sorted(want1, key=repr)
    if bridge_nf:
        assert sh(["ip", "netns", "exec", ov1, "sysctl", "-n",
                   "net.bridge.bridge-nf-call-iptables"]).strip() == "0"
    assert reconcile_ops(f.drivers[h2.name]) == sorted([
        ("create", "link", ov2, veth2),
        ("create", "addr", s2, "eth0", f"{e2.ipv4}/24"),
        ("create", "route", s2, socket.AF_INET, "default")], key=repr)
    assert ping(s1, str(e2.ipv4))
    assert f.drivers[h1.name].reconcile() == 0 and f.drivers[h2.name].reconcile() == 0


def test_the_wire_is_rfc7348_vxlan_from_the_advertise_address(
        fabric: Callable[..., Fabric], tmp_path: Path) -> None:
    from scapy.all import IP, UDP, Ether, rdpcap
    from scapy.layers.vxlan import VXLAN

    f = fabric(2)
    h1, h2 = f.topo.hosts
    # h1 has two addresses; its peers expect the second one.
    second = "198.51.100.201"
    sh(["ip", "-n", h1.netns, "addr", "add", f"{second}/24", "dev", "eth0"])
    f.drivers[h1.name].close()
    f.drivers[h1.name] = OverlayDriver(host_netns=h1.netns, advertise_addr=second)
    net = overlay_net(5001)
    e1 = endpoint(net, 1, h1, vtep=second)
    e2 = endpoint(net, 2, h2)
    s1 = f.attach(h1, net, e1)
    f.attach(h2, net, e2)
    f.publish(net, [e1, e2])
    pcap = tmp_path / "underlay.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", h2.netns, "tcpdump", "-i", "eth0", "-n",
                             "--immediate-mode", "-U", "-w", str(pcap), "udp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert dump.stderr is not None
        assert "listening" in dump.stderr.readline()
        assert ping(s1, str(e2.ipv4), count=3)
        time.sleep(0.2)
    finally:
        dump.terminate()
        dump.communicate(timeout=10)
    captured = rdpcap(str(pcap))
    packets = [p for p in captured if p.haslayer(VXLAN)]
    assert packets, f"no VXLAN packet on the underlay: {[p.summary() for p in captured]}"
    seen = set()
    for p in packets:
        assert p[UDP].dport == 4789
        assert p[VXLAN].vni == 5001
        assert p[VXLAN].flags & 0x08  # the I flag: a valid VNI (RFC 7348 §5)
        inner = p[VXLAN].payload
        assert isinstance(inner, Ether)
        seen.add((p[IP].src, p[IP].dst, inner.src, inner.dst, inner[IP].src, inner[IP].dst))
    assert (second, h2.address, e1.mac, e2.mac, e1.ipv4, e2.ipv4) in seen
    assert (h2.address, second, e2.mac, e1.mac, e2.ipv4, e1.ipv4) in seen
    assert not any(src == h1.address for src, *_ in seen)


def test_mtu_follows_the_underlay_or_the_option(fabric: Callable[..., Fabric]) -> None:
    f = fabric(2, mtu=9000)
    h1, h2 = f.topo.hosts
    auto, fixed = overlay_net(601), overlay_net(602, options=(("mtu", "1400"),))
    e1 = endpoint(auto, 1, h1)
    f.drivers[h1.name].set_peers(auto.id, [e1, endpoint(auto, 2, h2)])
    a = f.drivers[h1.name].attach(auto, e1, sandbox_netns=f.sandbox("m1"))
    b = f.drivers[h1.name].attach(fixed, endpoint(fixed, 1, h1), sandbox_netns=f.sandbox("m2"))
    assert (a.mtu, b.mtu) == (8950, 1400)
    assert "mtu 8950" in sh(["ip", "-n", a.sandbox, "link", "show", "eth0"])
    assert "mtu 1400" in sh(["ip", "-n", b.sandbox, "link", "show", "eth0"])


def test_a_failed_attach_leaves_nothing(fabric: Callable[..., Fabric]) -> None:
    from netfabric.errors import DataplaneError

    f = fabric(1)
    (h1,) = f.topo.hosts
    net = overlay_net(700)
    sb = f.sandbox("busy")
    sh(["ip", "-n", sb, "link", "add", "eth0", "type", "veth", "peer", "name", "other"])
    with pytest.raises(DataplaneError):
        f.drivers[h1.name].attach(net, endpoint(net, 1, h1), sandbox_netns=sb)
    assert_no_overlay_left(f)
    assert f.drivers[h1.name].netns_of(net.id) is None
    # Same on the fast path, with the network already up: only the failed veth goes.
    good = endpoint(net, 2, h1)
    f.attach(h1, net, good)
    ov = f.drivers[h1.name].netns_of(net.id)
    assert ov is not None
    before = sh(["ip", "-n", ov, "-o", "link"]).count("\n")
    with pytest.raises(DataplaneError):
        f.drivers[h1.name].attach(net, endpoint(net, 3, h1), sandbox_netns=sb)
    assert sh(["ip", "-n", ov, "-o", "link"]).count("\n") == before
    f.drivers[h1.name].detach(net.id, good.id)
    assert_no_overlay_left(f)


@pytest.fixture(autouse=True)
def _root_netns_untouched() -> Iterator[None]:
    """Nothing of ours ever lands in the root netns (links or nft tables)."""
    before = sh(["ip", "-o", "link"])
    yield
    after = sh(["ip", "-o", "link"])
    assert [w for w in after.split() if w.startswith(("nfvx", "ve"))] == [
        w for w in before.split() if w.startswith(("nfvx", "ve"))]
    assert "netfabric" not in sh(["nft", "list", "tables"])


def test_a_parked_veth_is_handed_to_the_runtime(fabric: Callable[..., Fabric]) -> None:
    """Docker's Join: the inner end waits in the host netns; dockerd moves, renames and
    addresses it; reconcile leaves it alone; detach removes it."""
    f = fabric(2)
    h1, h2 = f.topo.hosts
    net = overlay_net(800)
    e1, e2 = endpoint(net, 1, h1), endpoint(net, 2, h2)
    got = f.drivers[h1.name].attach(net, e1, sandbox_netns=None, ifname="nfd0123456789")
    assert got.sandbox is None
    parked = sh(["ip", "-n", h1.netns, "link", "show", "nfd0123456789"])
    assert e1.mac in parked and "mtu 1450" in parked
    s2 = f.attach(h2, net, e2)
    f.publish(net, [e1, e2])
    # What dockerd does with it.
    container = f.sandbox("docker1")
    sh(["ip", "-n", h1.netns, "link", "set", "nfd0123456789", "netns", container])
    sh(["ip", "-n", container, "link", "set", "nfd0123456789", "name", "eth0"])
    sh(["ip", "-n", container, "addr", "add", f"{e1.ipv4}/24", "dev", "eth0"])
    sh(["ip", "-n", container, "link", "set", "eth0", "up"])
    assert f.drivers[h1.name].reconcile() == 0
    assert ping(s2, str(e1.ipv4))
    # Attach again (a plugin replaying its state after a restart) is a no-op too.
    f.drivers[h1.name].attach(net, e1, sandbox_netns=h1.netns, ifname="nfd0123456789")
    assert ping(s2, str(e1.ipv4))
    f.drivers[h1.name].detach(net.id, e1.id)
    assert "eth0" not in sh(["ip", "-n", container, "-o", "link"])


def test_ipv6_and_a_custom_vxlan_port(fabric: Callable[..., Fabric]) -> None:
    f = fabric(2)
    h1, h2 = f.topo.hosts
    for h in (h1, h2):
        f.drivers[h.name].close()
        f.drivers[h.name] = OverlayDriver(host_netns=h.netns, advertise_addr=h.address,
                                          vxlan_port=8472)
    net = Network(id="net6", name="v6", driver=Driver.OVERLAY, scope=Scope.SWARM,
                  subnets=(SubnetSpec("10.60.0.0/24", "10.60.0.1"),
                           SubnetSpec("fd00:60::/64", "fd00:60::1")), vni=960, ipv6=True)
    e1 = Endpoint("v6e1", net.id, "a", h1.name, "02:42:0a:3c:00:02", "10.60.0.2",
                  "fd00:60::2", vtep=h1.address)
    e2 = Endpoint("v6e2", net.id, "b", h2.name, "02:42:0a:3c:00:03", "10.60.0.3",
                  "fd00:60::3", vtep=h2.address)
    s1, s2 = f.attach(h1, net, e1), f.attach(h2, net, e2)
    f.publish(net, [e1, e2])
    assert ping(s1, "fd00:60::3") and ping(s2, "fd00:60::2") and ping(s1, "10.60.0.3")
    ov = f.drivers[h1.name].netns_of(net.id)
    assert ov is not None
    assert "dstport 8472" in sh(["ip", "-n", ov, "-d", "link", "show", vxlan_name(960)])
    assert "fd00:60::3 lladdr 02:42:0a:3c:00:03 PERMANENT" in sh(
        ["ip", "-n", ov, "-6", "neigh", "show", "dev", vxlan_name(960)])
    assert "default via fd00:60::1" in sh(["ip", "-n", s1, "-6", "route"])
    assert f.drivers[h1.name].reconcile() == 0
