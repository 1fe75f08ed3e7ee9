"""The drivers' pure parts: names, desired state, the nft ruleset."""

from __future__ import annotations

import socket

import pytest

from netfabric.dataplane import nft
from netfabric.dataplane.resources import Addr, Bridge, Fdb, Neigh, Netns, NftTable, Route, Veth
from netfabric.drivers import bridge, overlay
from netfabric.drivers.common import LocalEndpoint, mac_for, network_mtu, short_id
from netfabric.errors import InvalidArgument
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec

NET = Network(id="0123456789abcdef", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM,
              subnets=(SubnetSpec("10.0.0.0/24", "10.0.0.1"),
                       SubnetSpec("fd00:1::/64", "fd00:1::1")), vni=4097)
CFG = overlay.OverlayConfig("nfabc123-h1", "198.51.100.1")


def ep(i: int, vtep: str = "198.51.100.2", **kw: object) -> Endpoint:
    fields: dict[str, object] = dict(id=f"e{i:015d}", network_id=NET.id, sandbox=f"c{i}",
                                     node_id="h", mac=f"02:42:0a:00:00:{i:02x}",
                                     ipv4=f"10.0.0.{i}", vtep=vtep)
    fields.update(kw)
    return Endpoint(**fields)  # type: ignore[arg-type]


def test_names_fit_in_ifnamsiz_and_are_stable() -> None:
    for ident in ("x", "a" * 64, "weird/id with spaces", "0123456789abcdef" * 4):
        for name in (overlay.host_veth_name(ident), bridge.host_veth_name(ident),
                     bridge.bridge_name(ident), overlay.vxlan_name(16777215)):
            assert 1 <= len(name) <= 15 and "/" not in name and " " not in name
    assert short_id("abc", 8) == short_id("abc", 8) != short_id("abd", 8)
    assert overlay.overlay_netns("nfabc123-h1", 42) == "nfabc123-h1-ov42"


def test_mac_defaults_to_dockers_form_and_bad_macs_are_refused() -> None:
    assert mac_for(ep(2, mac="")) == "02:42:0a:00:00:02"
    assert mac_for(ep(2, mac="02:AA:BB:CC:DD:EE")) == "02:aa:bb:cc:dd:ee"
    for bad in ("01:00:5e:00:00:01", "zz:00:00:00:00:00", "02:42"):
        with pytest.raises(InvalidArgument):
            mac_for(ep(2, mac=bad))


def test_mtu_option() -> None:
    assert network_mtu(NET) is None
    assert network_mtu(Network(**{**_asdict(NET), "options": (("mtu", "1400"),)})) == 1400
    with pytest.raises(InvalidArgument):
        network_mtu(Network(**{**_asdict(NET), "options": (("mtu", "big"),)}))
    with pytest.raises(InvalidArgument):
        network_mtu(Network(**{**_asdict(NET), "mtu": 100}))


def _asdict(n: Network) -> dict[str, object]:
    return {f: getattr(n, f) for f in n.__dataclass_fields__}


def test_overlay_desired_state() -> None:
    local = LocalEndpoint(ep(2, vtep=CFG.advertise_addr, ipv6="fd00:1::2"), "nfabc123-c2",
                          "eth0", overlay.host_veth_name("e2"))
    peers = [ep(2, vtep=CFG.advertise_addr), ep(3), ep(4, vtep="198.51.100.3", ipv6="fd00:1::4")]
    want = overlay.desired_network(CFG, NET, [local], peers, 1450)
    ns = "nfabc123-h1-ov4097"
    assert want[0] == Netns(ns)
    assert Bridge(ns, "br0", 1450) in want
    assert Addr(ns, "br0", "10.0.0.1/24") in want and Addr(ns, "br0", "fd00:1::1/64") in want
    vx = [r for r in want if isinstance(r, overlay.Vxlan)]
    assert len(vx) == 1 and (vx[0].vni, vx[0].local, vx[0].port) == (4097, "198.51.100.1", 4789)
    assert Veth(ns, local.host_ifname, "br0", 1450, "nfabc123-c2", "eth0",
                "02:42:0a:00:00:02") in want
    assert Addr("nfabc123-c2", "eth0", "10.0.0.2/24") in want
    assert Addr("nfabc123-c2", "eth0", "fd00:1::2/64") in want
    assert Route("nfabc123-c2", socket.AF_INET, "default", "10.0.0.1", "eth0") in want
    # Our own endpoint is never a peer; every remote one gets FDB + neighbour entries.
    fdb = {(r.mac, r.dst) for r in want if isinstance(r, Fdb)}
    assert fdb == {("02:42:0a:00:00:03", "198.51.100.2"), ("02:42:0a:00:00:04", "198.51.100.3")}
    neigh = {(r.ip, r.mac) for r in want if isinstance(r, Neigh)}
    assert neigh == {("10.0.0.3", "02:42:0a:00:00:03"), ("10.0.0.4", "02:42:0a:00:00:04"),
                     ("fd00:1::4", "02:42:0a:00:00:04")}
    assert overlay.desired_network(CFG, NET, [], peers, 1450) == []


def test_second_interface_and_internal_networks_get_no_default_route() -> None:
    local = LocalEndpoint(ep(2), "c", "eth1", "vex")
    assert not any(isinstance(r, Route) for r in overlay.endpoint_side(CFG, NET, local, 1450))
    internal = Network(**{**_asdict(NET), "internal": True})
    local0 = LocalEndpoint(ep(2), "c", "eth0", "vex")
    assert not any(isinstance(r, Route)
                   for r in overlay.endpoint_side(CFG, internal, local0, 1450))


def test_overlay_needs_a_vni() -> None:
    with pytest.raises(InvalidArgument):
        overlay.infra(CFG, Network(**{**_asdict(NET), "vni": None}), 1450)
    with pytest.raises(InvalidArgument):
        overlay.infra(CFG, Network(**{**_asdict(NET), "vni": 1 << 24}), 1450)


BR1 = Network(id="aaaaaaaa1111", name="b1", driver=Driver.BRIDGE, scope=Scope.LOCAL,
              subnets=(SubnetSpec("172.18.0.0/16", "172.18.0.1"),))
BR2 = Network(id="bbbbbbbb2222", name="b2", driver=Driver.BRIDGE, scope=Scope.LOCAL,
              subnets=(SubnetSpec("172.19.0.0/16", "172.19.0.1"),), internal=True)


def test_nft_ruleset_isolates_masquerades_and_closes_internal() -> None:
    body = bridge.render_nft([BR2, BR1])
    assert body == bridge.render_nft([BR1, BR2])
    assert 'iifname "nfb-aaaaaaaa" oifname "nfb-*" oifname != "nfb-aaaaaaaa" drop' in body
    assert 'ip saddr 172.18.0.0/16 oifname != "nfb-aaaaaaaa" masquerade' in body
    assert "172.19.0.0" not in body
    assert 'iifname "nfb-bbbbbbbb" oifname != "nfb-bbbbbbbb" drop' in body
    assert nft.count_rules(body) == 5
    assert nft.digest(body) != nft.digest(bridge.render_nft([BR1]))


def test_bridge_desired_state() -> None:
    local = LocalEndpoint(Endpoint("e1", BR1.id, "c1", "h", "02:42:ac:12:00:02", "172.18.0.2",
                                   prefixlen=16), "nfx-c1", "eth0", bridge.host_veth_name("e1"))
    want = bridge.desired_bridges([BR1, BR2], {BR1.id: [local]})
    assert Bridge(None, "nfb-aaaaaaaa", 1500) in want
    assert Addr(None, "nfb-aaaaaaaa", "172.18.0.1/16") in want
    assert Route("nfx-c1", socket.AF_INET, "default", "172.18.0.1", "eth0") in want
    assert sum(isinstance(r, NftTable) for r in want) == 1
    assert bridge.desired_bridges([], {}) == []


def test_changed_ips_are_the_new_ones_and_those_with_a_new_mac() -> None:
    from netfabric.drivers.overlay import _changed_ips

    old = [ep(3), ep(4, ipv6="fd00:1::4")]
    new = [ep(3, mac="02:42:0a:00:00:99", vtep="198.51.100.3"),
           ep(4, ipv6="fd00:1::4"), ep(5)]
    assert _changed_ips(old, new) == {"10.0.0.3", "10.0.0.5"}
    assert _changed_ips(new, new) == set()
    assert _changed_ips(new, old) == {"10.0.0.3"}   # gone (10.0.0.5): nothing to ask


def test_raw_netlink_attributes_round_trip() -> None:
    from netfabric.dataplane import rawnl

    blob = rawnl._attr(3, b"eth0\0") + rawnl._attr(4, (1450).to_bytes(4, "little"))
    assert len(blob) % 4 == 0
    parsed = rawnl._attrs(blob)
    assert parsed[3] == b"eth0\0" and rawnl._u32(parsed[4]) == 1450
    assert rawnl._attrs(b"\x02\x00") == {}  # truncated input parses to nothing, no crash
