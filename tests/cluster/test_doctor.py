"""`netfabric doctor SOURCE TARGET` on the real kernel (issue 17): each broken step is named
(different networks, a deleted FDB entry, a stale neighbour entry, an underlay MTU too small,
a dead peer agent) and a healthy path is all ok, exit 0 only then.

One lab: node1 runs `da` on overlay obd1; node2 runs `db` on obd1 and `dc` on obd2."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from netfabric import Client
from netfabric.agent.daemon import DEFAULT_NETNS_PREFIX
from netfabric.drivers.overlay import overlay_netns, vxlan_name
from netfabric.lab.cluster import Lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path_factory.mktemp("obdoc"))) as lab:
        addr = lab.agent("node1").address
        init = lab.run("node1", ["netfabric", "init", "--advertise-addr", addr])
        assert init.returncode == 0, init.stderr
        token = init.stdout.split("--token ")[1].split()[0]
        assert lab.run("node2", ["netfabric", "join", "--token", token, addr]).returncode == 0
        for net in ("obd1", "obd2"):
            made = lab.run("node1", ["netfabric", "network", "create", "-d", "overlay",
                                     "--attachable", net])
            assert made.returncode == 0, made.stderr
        for host, name, net in (("node1", "da", "obd1"), ("node2", "db", "obd1"),
                                ("node2", "dc", "obd2")):
            run = lab.run(host, ["netfabric", "run", "-d", "--name", name, "--network", net])
            assert run.returncode == 0, run.stderr
        yield lab


def doctor(lab: Lab, target: str) -> tuple[int, list[dict[str, str]]]:
    proc = lab.run("node1", ["netfabric", "doctor", "da", target, "--format", "json"])
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)["steps"]


def broken(steps: list[dict[str, str]]) -> str | None:
    return next((s["name"] for s in steps if s["status"] == "fail"), None)


def until_ok(lab: Lab, target: str = "db", timeout: float = 20.0) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        code, steps = doctor(lab, target)
        if code == 0:
            assert broken(steps) is None and all(s["status"] == "ok" for s in steps), steps
            return steps
        if time.monotonic() > deadline:
            raise AssertionError(f"the path never became healthy: {steps}")
        time.sleep(0.3)


def _overlay(lab: Lab) -> tuple[str, str, dict[str, str]]:
    """node1's overlay netns and vxlan for obd1, and db as gossip says it is."""
    node1 = lab.agent("node1")
    vni = Client(node1.url).inspect_network("obd1").vni
    assert vni is not None
    db = Client(lab.agent("node2").url).inspect_container("db").networks[0]
    return (overlay_netns(DEFAULT_NETNS_PREFIX, vni), vxlan_name(vni),
            {"ip": db.ipv4 or "", "mac": db.mac, "vtep": lab.agent("node2").address})


def test_healthy_path_is_all_ok(lab: Lab) -> None:
    steps = until_ok(lab)
    assert [s["name"] for s in steps] == ["network", "dns", "local-link", "fdb", "neighbour",
                                          "mtu", "nftables", "underlay", "peer-agent"]
    assert "answered" in next(s["detail"] for s in steps if s["name"] == "underlay"), steps
    text = lab.run("node1", ["netfabric", "doctor", "da", "db"])
    assert text.returncode == 0 and "all ok" in text.stdout, text.stdout
    # By address too.
    _, _, db = _overlay(lab)
    assert doctor(lab, db["ip"])[0] == 0


def test_host_doctor_healthy(lab: Lab) -> None:
    until_ok(lab)
    host = lab.run("node1", ["netfabric", "doctor"])
    assert host.returncode == 0 and "kernel:obd1" in host.stdout, host.stdout


def test_different_networks(lab: Lab) -> None:
    code, steps = doctor(lab, "dc")
    assert code == 1 and broken(steps) == "network", steps
    text = lab.run("node1", ["netfabric", "doctor", "da", "dc"])
    assert text.returncode == 1 and "broken at: network" in text.stdout, text.stdout


def test_deleted_fdb_entry(lab: Lab) -> None:
    until_ok(lab)
    ns, vx, db = _overlay(lab)
    gone = lab.run("node1", ["ip", "netns", "exec", ns, "bridge", "fdb", "del", db["mac"],
                             "dev", vx, "dst", db["vtep"], "self"])
    assert gone.returncode == 0, gone.stderr
    try:
        code, steps = doctor(lab, "db")
        assert code == 1 and broken(steps) == "fdb", steps
        assert "no FDB entry" in next(s["detail"] for s in steps if s["name"] == "fdb")
        # The whole host against the cluster's view: the same entry, then repaired.
        host = lab.run("node1", ["netfabric", "doctor", "--format", "json"])
        assert host.returncode == 1, host.stdout
        kernel = next(s for s in json.loads(host.stdout)["steps"] if s["name"] == "kernel:obd1")
        assert kernel["status"] == "fail" and f"missing fdb {db['mac']}" in kernel["detail"]
        fixed = lab.run("node1", ["netfabric", "doctor", "--repair"])
        assert fixed.returncode == 0 and "all ok" in fixed.stdout, fixed.stdout
        assert doctor(lab, "db")[0] == 0
    finally:
        lab.run("node1", ["ip", "netns", "exec", ns, "bridge", "fdb", "append", db["mac"],
                          "dev", vx, "dst", db["vtep"], "self", "permanent"])
    until_ok(lab)


def test_stale_neighbour_entry(lab: Lab) -> None:
    until_ok(lab)
    ns, vx, db = _overlay(lab)
    moved = lab.run("node1", ["ip", "netns", "exec", ns, "ip", "neigh", "replace", db["ip"],
                              "lladdr", "02:42:de:ad:be:ef", "dev", vx, "nud", "permanent"])
    assert moved.returncode == 0, moved.stderr
    try:
        code, steps = doctor(lab, "db")
        assert code == 1 and broken(steps) == "neighbour", steps
        assert "stale" in next(s["detail"] for s in steps if s["name"] == "neighbour")
    finally:
        lab.run("node1", ["ip", "netns", "exec", ns, "ip", "neigh", "replace", db["ip"],
                          "lladdr", db["mac"], "dev", vx, "nud", "permanent"])
    until_ok(lab)


def test_underlay_mtu_too_small(lab: Lab) -> None:
    until_ok(lab)
    node1 = lab.agent("node1")
    low = lab.run("node1", ["ip", "link", "set", "eth0", "mtu", "1400"])
    assert low.returncode == 0, low.stderr
    try:
        code, steps = doctor(lab, "db")
        assert code == 1 and broken(steps) == "mtu", steps
        assert "1400" in next(s["detail"] for s in steps if s["name"] == "mtu")
    finally:
        lab.run("node1", ["ip", "link", "set", "eth0", "mtu", str(lab.mtu)])
    del node1
    until_ok(lab)


def test_udp_4789_dropped_on_the_peer(lab: Lab) -> None:
    until_ok(lab)
    table = ["nft", "add", "table", "inet", "obdoctor"]
    chain = ["nft", "add", "chain", "inet", "obdoctor", "input",
             "{ type filter hook input priority -10 ; }"]
    rule = ["nft", "add", "rule", "inet", "obdoctor", "input", "udp", "dport", "4789", "drop"]
    for argv in (table, chain, rule):
        made = lab.run("node2", argv)
        assert made.returncode == 0, made.stderr
    try:
        code, steps = doctor(lab, "db")
        assert code == 1 and broken(steps) == "underlay", steps
        assert "4789" in next(s["fix"] for s in steps if s["name"] == "underlay")
    finally:
        lab.run("node2", ["nft", "delete", "table", "inet", "obdoctor"])
    until_ok(lab)


def test_nftables_rule_here_drops_it(lab: Lab) -> None:
    until_ok(lab)
    vtep = lab.agent("node2").address
    for argv in (["nft", "add", "table", "inet", "obdoctor"],
                 ["nft", "add", "chain", "inet", "obdoctor", "output",
                  "{ type filter hook output priority 0 ; }"],
                 ["nft", "add", "rule", "inet", "obdoctor", "output", "ip", "daddr", vtep,
                  "udp", "dport", "4789", "drop"]):
        made = lab.run("node1", argv)
        assert made.returncode == 0, made.stderr
    try:
        code, steps = doctor(lab, "db")
        assert code == 1 and broken(steps) == "nftables", steps
        assert "nft delete rule inet obdoctor output handle" in next(
            s["fix"] for s in steps if s["name"] == "nftables")
    finally:
        lab.run("node1", ["nft", "delete", "table", "inet", "obdoctor"])
    until_ok(lab)


def test_dead_peer_agent(lab: Lab) -> None:
    until_ok(lab)
    node2 = lab.agent("node2")
    lab.stop_agent(node2)
    try:
        deadline = time.monotonic() + 30
        while True:
            code, steps = doctor(lab, "db")
            if broken(steps) == "peer-agent":
                break
            assert time.monotonic() < deadline, steps
            time.sleep(0.3)
        assert code == 1
        fail = next(s for s in steps if s["name"] == "peer-agent")
        assert node2.address in fail["detail"] or "dead" in fail["detail"], fail
    finally:
        lab.start_agent(node2)
        lab.wait_ready(node2)
    until_ok(lab, timeout=40)
