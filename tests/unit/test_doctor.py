"""`netfabric doctor`'s checks, pure: facts in, the first failing step out."""

from __future__ import annotations

import dataclasses

import msgspec

from netfabric.agent.doctor import HostFacts, PathFacts, check_host, check_path, dropping_rules
from netfabric.model import Endpoint

DB = Endpoint(id="e2", network_id="n1", sandbox="db", node_id="node2",
              mac="02:42:0a:00:00:03", ipv4="10.0.0.3", vtep="198.51.100.2")
OK = PathFacts(source="web", target="db", source_networks={"n1": "ov"},
               target_endpoints=(DB,), network_names={"n1": "ov", "n2": "other"},
               dns_answer=("10.0.0.3",), this_node="node1", fdb=("198.51.100.2",),
               neighbour=("02:42:0a:00:00:03",), overlay_mtu=1450, underlay_mtu=1500,
               members={"node2": "alive"})


def first_fail(f: PathFacts) -> str | None:
    return next((s.name for s in check_path(f).steps if s.status == "fail"), None)


def test_healthy() -> None:
    report = check_path(OK)
    assert report.ok and [s.name for s in report.steps] == [
        "network", "dns", "local-link", "fdb", "neighbour", "mtu", "nftables", "underlay",
        "peer-agent"]


def test_each_break_is_named() -> None:
    r = msgspec.structs.replace
    assert first_fail(r(OK, target_endpoints=(dataclasses.replace(DB, network_id="n2"),))) \
        == "network"
    assert first_fail(r(OK, target_endpoints=())) == "network"
    assert first_fail(r(OK, target_endpoints=(), members={"node2": "dead"})) == "peer-agent"
    assert first_fail(r(OK, dns_answer=None)) == "dns"
    assert first_fail(r(OK, dns_answer=("10.0.0.9",))) == "dns"
    assert first_fail(r(OK, local_link=False, local_link_detail="missing veth")) == "local-link"
    assert first_fail(r(OK, fdb=())) == "fdb"
    assert first_fail(r(OK, fdb=("198.51.100.9",))) == "fdb"
    assert first_fail(r(OK, neighbour=("02:42:de:ad:be:ef",))) == "neighbour"
    assert first_fail(r(OK, underlay_mtu=1400)) == "mtu"
    assert first_fail(r(OK, underlay_probe=False)) == "underlay"
    assert first_fail(r(OK, nft_drops=("nft delete rule inet t o handle 2: udp dport 4789",),
                        underlay_probe=False)) == "nftables"
    assert check_path(r(OK, underlay_probe=True)).ok
    assert first_fail(r(OK, members={"node2": "suspect"})) == "peer-agent"
    # Skipped steps after a break are not failures, and the report is not ok.
    rep = check_path(r(OK, target_endpoints=()))
    assert not rep.ok and {s.status for s in rep.steps[1:]} == {"skip"}


def test_host_report() -> None:
    ok = check_host(HostFacts(drift={"ov": ()}, missing_names={"ov": ()}))
    assert ok.ok
    bad = check_host(HostFacts(drift={"ov": ("missing fdb 02:42:0a:00:00:03 dst x",)},
                               missing_names={"ov": ("db",)}))
    assert [s.status for s in bad.steps] == ["fail", "fail"]
    assert bad.steps[0].fix == "netfabric doctor --repair"


def test_dropping_rules_from_nft_json() -> None:
    def rule(handle: int, match: dict[str, object], verdict: str) -> dict[str, object]:
        return {"rule": {"family": "inet", "table": "t", "chain": "o", "handle": handle,
                         "expr": [{"match": match}, {verdict: None}]}}
    udp = {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
           "right": 4789}
    dst = {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
           "right": "198.51.100.2"}
    other = {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
             "right": 22}
    doc = {"nftables": [{"metainfo": {}}, rule(2, udp, "drop"), rule(3, dst, "reject"),
                        rule(4, other, "drop"), rule(5, udp, "accept")]}
    got = dropping_rules(doc, port=4789, addrs={"198.51.100.2"})
    assert got == ("nft delete rule inet t o handle 2: udp dport 4789",
                   "nft delete rule inet t o handle 3: ip daddr 198.51.100.2")
    assert dropping_rules({}, port=4789, addrs=set()) == ()
