"""ServiceRegistry over fakes: the tables (as gossip holds them) into one node's load
balancers; a remote backend is balanced to only once its FDB/neighbour entries exist."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path

from netfabric.agent.addresses import AddressRouter
from netfabric.agent.endpoints import Endpoints
from netfabric.agent.fakes import FakeLayers
from netfabric.agent.networks import NetworkRegistry
from netfabric.agent.peers import PeerSync
from netfabric.agent.ports import MeshEvent, MeshEventKind
from netfabric.agent.services import (
    BACKENDS,
    SERVICES,
    ServiceRegistry,
    encode_backend,
    encode_service,
)
from netfabric.agent.state import EndpointRecord, SandboxRecord
from netfabric.api.types import Role
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.services import Backend, LoadBalancer, NodeView, Service, ServiceFabric
from netfabric.services.definitions import MARKS, digest

NET = Network(id="ov1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM,
              subnets=(SubnetSpec(cidr="10.8.0.0/24", gateway="10.8.0.1"),))


class Tables:
    def __init__(self) -> None:
        self.synced: dict[str | None, tuple[LoadBalancer, ...]] = {}

    def factory(self, netns: str | None, table: str) -> Tables.Datapath:
        return Tables.Datapath(self, netns)

    class Datapath:
        def __init__(self, owner: Tables, netns: str | None) -> None:
            self.owner, self.netns = owner, netns

        def sync(self, lbs: Iterable[LoadBalancer]) -> object:
            self.owner.synced[self.netns] = tuple(lbs)
            return None

        def close(self, *, remove: bool = True) -> None:
            self.owner.synced.pop(self.netns, None)


def _registry(layers: FakeLayers, path: Path, role: Role
              ) -> tuple[ServiceRegistry, Tables, PeerSync]:
    """A node's service registry over fakes, subscribed to the mesh; its tables and peers."""
    ctx = layers.context(str(path), role=role)
    addresses = AddressRouter(ctx)
    networks = NetworkRegistry(ctx, addresses)
    peers = PeerSync(ctx)
    endpoints = Endpoints(ctx, networks, addresses, peers)
    tables = Tables()
    fabric = ServiceFabric(NodeView(ctx.node_id, {}, "nfst-h1"), datapath=tables.factory)
    services = ServiceRegistry(ctx, networks, addresses, endpoints, peers, fabric=fabric)
    layers.mesh.subscribe(services.on_mesh_event)
    return services, tables, peers


def test_remote_backends_join_the_vip_once_programmed(tmp_path: Path) -> None:
    layers = FakeLayers()
    services, tables, peers = _registry(layers, tmp_path, Role.WORKER)
    ctx = services._ctx
    layers.mesh.subscribe(peers.on_mesh_event)
    sb = SandboxRecord(id="s", name="client", netns="nfst-h1-c1", netns_path="/run/netns/x",
                       external=False, created=0.0)
    ctx.ledger.add_endpoint(sb, EndpointRecord(
        id="e", network_id=NET.id, network=NET.name, ifname="eth0", mac="m",
        ipv4="10.8.0.2", prefixlen=24, gateway=None), NET)
    remote = Endpoint(id="r1", network_id=NET.id, sandbox="web1", node_id="peer",
                      mac="02:42:0a:08:00:0b", ipv4="10.8.0.11", prefixlen=24,
                      vtep="198.51.100.2")

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        layers.mesh.set_record(SERVICES, "web", encode_service(
            Service("web", (NET.id,), vips=((NET.id, "10.8.0.250"),))))
        layers.mesh.set_record(BACKENDS, "web/web1", encode_backend(
            Backend("web", "web1", "peer", ((NET.id, "10.8.0.11"),))))
        await layers.mesh.emit(MeshEvent(MeshEventKind.RECORD_SET, "peer", table=BACKENDS,
                                         key="web/web1"))
        await services.sync()
        # The backend is known, its endpoint not programmed yet: the VIP rejects.
        (lb,) = tables.synced["nfst-h1-c1"]
        assert lb.vips == ("10.8.0.250",) and lb.targets == ()
        # Its endpoint arrives and is programmed: the VIP balances to it.
        layers.mesh.remote[remote.id] = remote
        await layers.mesh.emit(MeshEvent(MeshEventKind.ENDPOINT_SET, "peer", remote))
        await peers.drain()
        await services.sync()
        (lb,) = tables.synced["nfst-h1-c1"]
        assert [t.ip for t in lb.targets] == ["10.8.0.11"]
        # The backend goes (its node removed it, or died): out of the VIP.
        layers.mesh.delete_record(BACKENDS, "web/web1")
        await services.sync()
        assert tables.synced["nfst-h1-c1"][0].targets == ()
        await peers.close()
        await services.close()
    asyncio.run(go())
    assert tables.synced == {}   # closing removed every table




WEB = encode_service(Service("web", (NET.id,), vips=((NET.id, "10.8.0.250"),)))


def test_a_worker_keeps_a_dead_managers_services_across_its_own_restart(
        tmp_path: Path) -> None:
    """The manager dies: gossip drops its entries, the worker keeps the VIP (and keeps it
    after a restart of its own); a live node's deletion removes it at once."""
    layers = FakeLayers()

    async def go() -> None:
        services, _, _ = _registry(layers, tmp_path, Role.WORKER)
        await services._ctx.mesh.start(secret="s", seeds=[])
        layers.mesh.alive["mgr"] = True
        layers.mesh.set_record(SERVICES, "web", WEB)
        await services.sync()
        assert services.service("web").vips == ((NET.id, "10.8.0.250"),)
        layers.mesh.alive["mgr"] = False           # declared dead: its entries dropped
        layers.mesh.delete_record(SERVICES, "web")
        await layers.mesh.emit(MeshEvent(MeshEventKind.RECORD_GONE, "mgr", table=SERVICES,
                                         key="web"))
        await services.sync()
        assert services.service("web").vips == ((NET.id, "10.8.0.250"),)
        await services.close()
        # The worker restarts while no manager answers: the kept definition is read back.
        layers.mesh.listeners.clear()
        again, _, _ = _registry(layers, tmp_path, Role.WORKER)
        await again._ctx.mesh.start(secret="s", seeds=[])
        await again.sync()
        assert await _infos(again) == ["web"]
        # The manager is back and deletes it (a tombstone from a live node): gone.
        layers.mesh.alive["mgr"] = True
        await layers.mesh.emit(MeshEvent(MeshEventKind.RECORD_GONE, "mgr", table=SERVICES,
                                         key="web"))
        await again.sync()
        assert await _infos(again) == []
        await again.close()
    asyncio.run(go())


async def _infos(services: ServiceRegistry) -> list[str]:
    return sorted(services.records(SERVICES))


def test_a_manager_writes_the_store_republishes_it_and_upgrades_an_old_file(
        tmp_path: Path) -> None:
    """create_service writes the row with its VIP; a restarted manager (gossip empty)
    announces the Store again with its mark; a state file of before the Store moves in."""
    layers = FakeLayers()
    old = {"services": {"db": '{"name":"db","networks":[],"mode":"dnsrr","vips":[],'
                              '"ports":[]}'}, "backends": {}}
    (tmp_path / "services.json").write_text(json.dumps(old))

    async def go() -> None:
        services, _, _ = _registry(layers, tmp_path, Role.MANAGER)
        ctx = services._ctx
        await ctx.mesh.start(secret="s", seeds=[])
        ctx.ledger.put_network(NET)
        layers.book.create_network(NET, subnet="10.8.0.0/24", gateway=None, ip_range=None)
        await services.resume()
        assert set(layers.book.objects_rows["services"]) == {"db"}
        assert "services" not in json.loads((tmp_path / "services.json").read_text())
        info = await services.create_service("web", networks=["ov"])
        vip = info["vips"][0]["addr"]
        assert vip in layers.book.allocated(NET.id)
        assert set(layers.book.objects_rows["services"]) == {"db", "web"}
        # kill -9: gossip forgets everything; the restarted manager says it all again.
        layers.mesh.tables.clear()
        await services.republish()
        assert set(layers.mesh.records(SERVICES)) == {"db", "web"}
        assert layers.mesh.records(MARKS) == {
            ctx.node_id: digest({"services": layers.book.objects_rows["services"]})}
        # A stray entry (deleted in the Store meanwhile) is withdrawn.
        layers.mesh.set_record(SERVICES, "stray", WEB)
        await services.republish()
        assert set(layers.mesh.records(SERVICES)) == {"db", "web"}
        await services.remove_service("web")
        assert vip not in layers.book.allocated(NET.id)
        assert set(layers.book.objects_rows["services"]) == {"db"}
        assert set(layers.mesh.records(SERVICES)) == {"db"}
        await services.close()
    asyncio.run(go())
