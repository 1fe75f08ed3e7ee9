"""ServiceFabric on three hosts joined by real overlays (an app network and the ingress
network): a VIP from a client sandbox, the routing mesh on every node's underlay address
(also the node with no task), host-mode publish only where a task runs, and a task taken
out before it stops."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netfabric.drivers.overlay import OverlayDriver
from netfabric.lab.topology import Host, Topology, wait_for
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.services import (
    Backend,
    NodeView,
    PortConfig,
    PublishMode,
    Service,
    ServiceFabric,
)
from tests.conftest import HostsFactory
from tests.kernel.http_client import HTTP_CLIENT

INGRESS_IF = "nfingress0"


def overlay(vni: int, name: str, base: str) -> Network:
    return Network(id=f"{name}{vni:08d}", name=name, driver=Driver.OVERLAY, scope=Scope.SWARM,
                   subnets=(SubnetSpec(f"{base}.0/24", f"{base}.1"),), vni=vni)


@dataclass
class Cluster:
    topo: Topology
    tmp: Path
    app: Network = field(default_factory=lambda: overlay(4601, "app", "10.46.1"))
    ingress: Network = field(default_factory=lambda: overlay(4602, "ingress", "10.46.2"))
    drivers: dict[str, OverlayDriver] = field(default_factory=dict)
    fabrics: dict[str, ServiceFabric] = field(default_factory=dict)
    endpoints: dict[str, list[Endpoint]] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    octet: int = 10

    def start(self) -> None:
        for h in self.topo.hosts:
            self.drivers[h.name] = OverlayDriver(host_netns=h.netns, advertise_addr=h.address)
            # The node's leg on the ingress network, in its host netns.
            ep = self._ep(self.ingress, h, f"ingress-{h.name}")
            self.drivers[h.name].attach(self.ingress, ep, sandbox_netns=h.netns,
                                        ifname=INGRESS_IF)
            self.topo.exec(h, ["ip", "addr", "add", f"{ep.ipv4}/24", "dev", INGRESS_IF],
                           check=True)
            self.topo.exec(h, ["ip", "link", "set", INGRESS_IF, "up"], check=True)
            self.fabrics[h.name] = ServiceFabric(NodeView(h.name, {}, h.netns, self.ingress.id))
        self._publish()

    def _ep(self, net: Network, host: Host, sandbox: str) -> Endpoint:
        self.octet += 1
        base = net.subnets[0].cidr.rsplit(".", 1)[0]
        ep = Endpoint(id=f"{net.name}{self.octet:06d}", network_id=net.id, sandbox=sandbox,
                      node_id=host.name, mac=f"02:42:0a:2e:{net.vni % 256:02x}:{self.octet:02x}",
                      ipv4=f"{base}.{self.octet}", prefixlen=24, vtep=host.address)
        self.endpoints.setdefault(net.id, []).append(ep)
        return ep

    def _publish(self) -> None:
        for d in self.drivers.values():
            for net in (self.app, self.ingress):
                d.set_peers(net.id, self.endpoints.get(net.id, []))

    def sandbox(self, host: Host, name: str, nets: list[Network]) -> tuple[str, list[str]]:
        ns = f"{self.topo.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        # A sandbox's lo is up (a container's is): a refusal made locally comes back on it.
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        ips = []
        for i, net in enumerate(nets):
            ep = self._ep(net, host, name)
            self.drivers[host.name].attach(net, ep, sandbox_netns=ns, ifname=f"eth{i}")
            ips.append(str(ep.ipv4))
        self._publish()
        return ns, ips

    def task(self, host: Host, name: str) -> Backend:
        ns, (app_ip, ingress_ip) = self.sandbox(host, name, [self.app, self.ingress])
        root = self.tmp / name
        root.mkdir()
        (root / "index.html").write_text(name + "\n")
        for port in ("80", "1433"):
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", port, "-h",
                 str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.fabric(host).set_sandbox(ns, [self.app.id, self.ingress.id])
        return Backend("web", name, host.name, ((self.app.id, app_ip),
                                                (self.ingress.id, ingress_ip)))

    def fabric(self, host: Host) -> ServiceFabric:
        return self.fabrics[host.name]

    def everywhere(self, fn_name: str, *args: object) -> None:
        """What gossip and the manager's store will do: every node learns the same."""
        for f in self.fabrics.values():
            getattr(f, fn_name)(*args)
            f.apply()

    def get(self, ns: str, addr: str, port: int, n: int) -> dict[str, int]:
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", HTTP_CLIENT, addr,
                              str(port), str(n)], capture_output=True, text=True, timeout=120,
                             check=True).stdout
        return dict(json.loads(out.replace("'", '"')))

    def close(self) -> None:
        for f in self.fabrics.values():
            f.close()
        for p in self.procs:
            p.kill()
            p.wait()
        for d in self.drivers.values():
            d.close()


@pytest.fixture
def cluster(hosts: HostsFactory, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(hosts(3), tmp_path)
    try:
        made.start()
        yield made
    finally:
        made.close()


def test_vip_mesh_host_mode_and_leaving_before_stop(cluster: Cluster) -> None:
    h1, h2, h3 = cluster.topo.hosts
    svc = Service("web", (cluster.app.id,), vips=((cluster.app.id, "10.46.1.2"),),
                  ports=(PortConfig(80, 8080),
                         PortConfig(1433, 9433, mode=PublishMode.HOST)))
    cluster.everywhere("set_service", svc)
    tasks = [cluster.task(h2, "web1"), cluster.task(h2, "web2"), cluster.task(h3, "web3")]
    client, _ = cluster.sandbox(h1, "client", [cluster.app])
    cluster.fabric(h1).set_sandbox(client, [cluster.app.id])
    for t in tasks:
        cluster.everywhere("set_backend", t)
    names = {t.id for t in tasks}
    assert wait_for(lambda: cluster.get(client, "10.46.1.2", 80, 1).keys() <= names)

    # VIP from a client sandbox on the app network: spread over the three tasks.
    seen = cluster.get(client, "10.46.1.2", 80, 150)
    assert set(seen) == names and min(seen.values()) >= 20, seen
    # The routing mesh: every node's underlay address answers, h1 with no task too.
    for h in (h1, h2, h3):
        seen = cluster.get(h1.netns if h is not h1 else h2.netns, h.address, 8080, 30)
        assert set(seen) <= names and sum(seen.values()) == 30, (h.name, seen)
    # Host mode: only where a task runs, and only to the local tasks.
    assert cluster.get(h3.netns, h2.address, 9433, 20).keys() <= {"web1", "web2"}
    assert cluster.get(h1.netns, h3.address, 9433, 5) == {"web3": 5}
    assert cluster.get(h2.netns, h1.address, 9433, 2) == {"ConnectionRefusedError": 2}

    # web3 leaves before its task stops: no new connection reaches it, on any path.
    leaving = Backend("web", "web3", h3.name, tasks[2].addresses, active=False)
    cluster.everywhere("set_backend", leaving)
    for ns, addr, port in ((client, "10.46.1.2", 80), (h1.netns, h2.address, 8080),
                           (h2.netns, h1.address, 8080)):
        seen = cluster.get(ns, addr, port, 40)
        assert set(seen) <= {"web1", "web2"} and sum(seen.values()) == 40, seen
    # Its node keeps nothing published in host mode once it has no active task.
    assert cluster.get(h1.netns, h3.address, 9433, 2) == {"ConnectionRefusedError": 2}
    # A dead node: its backends go from every VIP.
    for f in cluster.fabrics.values():
        f.remove_node(h2.name)
        f.apply()
    assert cluster.get(client, "10.46.1.2", 80, 3) == {"ConnectionRefusedError": 3}
