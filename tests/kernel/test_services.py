"""The service datapath on the real kernel: VIP spread, backend changes, reject with no
target, published ports with masquerade, UDP conntrack cleanup, and deltas that leave the
same kernel state as a full rewrite."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric.dataplane.services import CliNft, ServiceDatapath
from netfabric.lab.topology import Host, Topology, wait_for
from netfabric.services import LoadBalancer, Proto, Target, index, render_full
from tests.conftest import HostsFactory
from tests.kernel.http_client import HTTP_CLIENT

VIP = "10.99.0.10"
ALL_VIP = "10.99.0.11"
UDP_PORT = 5300

_UDP_SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    name = sys.argv[2].encode()
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(name, peer)
""")

_UDP_CLIENT = textwrap.dedent("""
    import socket, sys, time
    addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 40999))
    s.settimeout(1.0)
    out = []
    for _ in range(n):
        s.sendto(b"?", (addr, port))
        try:
            out.append(s.recvfrom(2048)[0].decode())
        except OSError:
            out.append("timeout")
    print(" ".join(out))
""")


class Lab:
    """h1 is the client; h2..hN serve HTTP on port 80 (their name as body) and UDP."""

    def __init__(self, topo: Topology, tmp: Path) -> None:
        self.topo = topo
        self.procs: list[subprocess.Popen[bytes]] = []
        self.client = topo.hosts[0]
        self.servers = topo.hosts[1:]
        for h in self.servers:
            root = tmp / h.name
            root.mkdir()
            (root / "index.html").write_text(h.name + "\n")
            self._spawn(h, ["busybox", "httpd", "-f", "-p", "80", "-h", str(root)])
            self._spawn(h, [sys.executable, "-c", _UDP_SERVER, str(UDP_PORT), h.name])
        # The client routes the VIP subnet onto the underlay, as a sandbox routes its
        # overlay subnet: the VIP must be routable for the output hook to see the packet.
        for h in topo.hosts:
            topo.exec(h, ["ip", "route", "add", "10.99.0.0/24", "dev", "eth0"], check=True)
        for h in self.servers:
            assert wait_for(lambda h=h: self.http(self.client, h.address, 80, 1)
                            == {h.name: 1}, timeout=10)

    def _spawn(self, host: Host, argv: list[str]) -> None:
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", host.netns, *argv],
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def http(self, host: Host, addr: str, port: int, n: int) -> dict[str, int]:
        out = self.topo.exec(host, [sys.executable, "-c", HTTP_CLIENT, addr, str(port),
                                    str(n)], check=True, timeout=120).stdout
        return dict(json.loads(out.replace("'", '"')))

    def udp(self, host: Host, addr: str, port: int, n: int) -> list[str]:
        out = self.topo.exec(host, [sys.executable, "-c", _UDP_CLIENT, addr, str(port),
                                    str(n)], check=True, timeout=60).stdout
        return out.split()

    def close(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


@pytest.fixture
def lab(hosts: HostsFactory, tmp_path: Path) -> Iterator[Lab]:
    made = Lab(hosts(4), tmp_path)
    try:
        yield made
    finally:
        made.close()


def web(lab: Lab, servers: list[Host], **kw: object) -> LoadBalancer:
    return LoadBalancer("web/tcp/80", Proto.TCP, 80,
                        tuple(Target(h.address, 80) for h in servers),
                        vips=(VIP,), **kw)  # type: ignore[arg-type]


def test_vip_spreads_follows_changes_and_rejects_without_targets(lab: Lab) -> None:
    dp = ServiceDatapath(lab.client.netns)
    try:
        dp.sync([web(lab, lab.servers)])
        seen = lab.http(lab.client, VIP, 80, 300)
        assert set(seen) == {h.name for h in lab.servers}, seen
        for h in lab.servers:  # binomial(300, 1/3): sd 8.2; 40 is ~5 sd
            assert 60 <= seen[h.name] <= 140, seen
        # One backend leaves: no new connection goes to it, and the change was a delta.
        gone = lab.servers[-1]
        delta = dp.sync([web(lab, lab.servers[:-1])])
        assert dp.delta_syncs == 1 and dp.full_syncs == 1
        assert "delete chain" in delta.script and "service-ips" not in delta.script
        seen = lab.http(lab.client, VIP, 80, 60)
        assert gone.name not in seen and sum(seen.values()) == 60, seen
        # No target: refused at once (TCP reset), not left to time out.
        dp.sync([web(lab, [])])
        assert lab.http(lab.client, VIP, 80, 3) == {"ConnectionRefusedError": 3}
        dp.sync([web(lab, [gone])])
        assert lab.http(lab.client, VIP, 80, 5) == {gone.name: 5}
        # A VIP of all ports (swarm's kind) beside it: any port, any protocol, spread; the
        # port-specific load balancer on the same address still wins for its port.
        every = LoadBalancer("all/any", None, None, tuple(Target(h.address)
                                                          for h in lab.servers),
                             vips=(VIP, ALL_VIP))
        dp.sync([web(lab, [gone]), every])
        seen = lab.http(lab.client, ALL_VIP, 80, 60)
        assert set(seen) == {h.name for h in lab.servers}, seen
        assert lab.http(lab.client, VIP, 80, 5) == {gone.name: 5}
        assert set(lab.udp(lab.client, ALL_VIP, UDP_PORT, 2)) <= {h.name for h in lab.servers}
    finally:
        dp.close()
    assert "netfabric-svc" not in lab.topo.exec(lab.client, ["nft", "list", "tables"]).stdout


def test_published_port_masquerades_to_targets_on_other_hosts(lab: Lab) -> None:
    mesh_host, targets = lab.servers[0], lab.servers[1:]
    lb = LoadBalancer("web/tcp/8080", Proto.TCP, 8080,
                      tuple(Target(h.address, 80) for h in targets),
                      published=True, masquerade=True)
    dp = ServiceDatapath(mesh_host.netns)
    try:
        dp.sync([lb])
        # From outside, from the mesh host itself, and from a target (hairpin).
        for client in (lab.client, mesh_host, targets[0]):
            seen = lab.http(client, mesh_host.address, 8080, 40)
            assert set(seen) <= {h.name for h in targets} and sum(seen.values()) == 40, seen
        # Loopback is not published.
        assert "ConnectionRefusedError" in lab.http(mesh_host, "127.0.0.1", 8080, 1)
        # Without masquerade the reply from another host bypasses the NAT: nothing works.
        # (This is why the routing mesh source-NATs; shown once so the test can fail.)
        dp.sync([LoadBalancer(lb.key, lb.proto, lb.port, lb.targets, published=True)])
        assert lab.http(lab.client, mesh_host.address, 8080, 2).get(targets[0].name, 0) == 0
    finally:
        dp.close()


def test_udp_conntrack_entries_of_a_removed_target_are_deleted(lab: Lab) -> None:
    lb = LoadBalancer("dns/udp/53", Proto.UDP, 53,
                      tuple(Target(h.address, UDP_PORT) for h in lab.servers), vips=(VIP,))
    dp = ServiceDatapath(lab.client.netns)
    try:
        dp.sync([lb])
        first = lab.udp(lab.client, VIP, 53, 3)
        assert len(set(first)) == 1 and first[0] in {h.name for h in lab.servers}, first
        pinned = first[0]
        rest = tuple(t for t, h in zip(lb.targets, lab.servers, strict=True)
                     if h.name != pinned)
        dp.sync([LoadBalancer(lb.key, lb.proto, lb.port, rest, vips=(VIP,))])
        after = lab.udp(lab.client, VIP, 53, 3)
        assert pinned not in after and "timeout" not in after, after
    finally:
        dp.close()


def _normalized(host_netns: str, table: str) -> dict[str, object]:
    """The table as JSON, with chains keyed by name and map elements sorted: two tables
    built in different orders compare equal when they hold the same rules."""
    out = subprocess.run(["ip", "netns", "exec", host_netns, "nft", "-j", "list", "table",
                          "ip", table], capture_output=True, text=True, check=True).stdout
    chains: dict[str, list[str]] = {}
    maps: dict[str, list[str]] = {}
    for obj in json.loads(out)["nftables"]:
        if "chain" in obj:
            chains.setdefault(obj["chain"]["name"], [])
        elif "rule" in obj:
            chains.setdefault(obj["rule"]["chain"], []).append(
                json.dumps(obj["rule"]["expr"], sort_keys=True))
        elif "map" in obj:
            maps[obj["map"]["name"]] = sorted(json.dumps(e, sort_keys=True)
                                              for e in obj["map"].get("elem", []))
    return {"chains": chains, "maps": maps}


def test_deltas_leave_the_state_a_full_rewrite_makes(hosts: HostsFactory) -> None:
    topo = hosts(2)
    rng = random.Random(14)
    incremental = ServiceDatapath(topo.hosts[0].netns, table="svtest")
    full = ServiceDatapath(topo.hosts[1].netns, table="svtest", runner=CliNft(
        topo.hosts[1].netns))

    def random_lb(i: int) -> LoadBalancer:
        addrs = {f"10.1.{rng.randrange(4)}.{rng.randrange(1, 9)}"
                 for _ in range(rng.randrange(4))}
        if rng.random() < 0.2:  # every port of a VIP
            return LoadBalancer(f"s{i}/all", None, None,
                                tuple(Target(a) for a in sorted(addrs)), vips=(f"10.2.0.{i}",))
        proto = rng.choice(list(Proto))
        targets = tuple(sorted({Target(a, rng.choice((80, 8080))) for a in addrs},
                               key=lambda t: (t.ip, t.port or 0)))
        published = rng.random() < 0.3
        vips = () if published and rng.random() < 0.5 else (f"10.2.0.{i}",)
        return LoadBalancer(f"s{i}/{proto}/{i + 1000}", proto, i + 1000, targets, vips=vips,
                            published=published, masquerade=rng.random() < 0.5)

    try:
        state = {i: random_lb(i) for i in range(40)}
        incremental.sync(state.values())
        for _ in range(25):
            for i in rng.sample(range(60), 5):
                if i in state and rng.random() < 0.3:
                    del state[i]
                else:
                    state[i] = random_lb(i)
            incremental.sync(state.values())
            full.close()
            full.sync(state.values())
            assert _normalized(topo.hosts[0].netns, "svtest") == _normalized(
                topo.hosts[1].netns, "svtest")
        assert incremental.full_syncs == 1 and incremental.delta_syncs == 25
        # Drift (the table deleted by hand): the next delta fails and a full rewrite repairs.
        topo.exec(topo.hosts[0], ["nft", "delete", "table", "ip", "svtest"], check=True)
        state[0] = random_lb(0)
        state[1] = random_lb(1)
        incremental.sync(state.values())
        assert incremental.full_syncs == 2
        full.close()
        full.sync(state.values())
        assert _normalized(topo.hosts[0].netns, "svtest") == _normalized(
            topo.hosts[1].netns, "svtest")
        assert render_full("svtest", index(state.values()))
    finally:
        incremental.close()
        full.close()
