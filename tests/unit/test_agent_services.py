"""ServiceRegistry over fakes: the tables (as gossip holds them) into one node's load
balancers; a remote backend is balanced to only once its FDB/neighbour entries exist."""

from __future__ import annotations

import asyncio
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


def test_remote_backends_join_the_vip_once_programmed(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx = layers.context(str(tmp_path), role=Role.WORKER)
    addresses = AddressRouter(ctx)
    networks = NetworkRegistry(ctx, addresses)
    peers = PeerSync(ctx)
    endpoints = Endpoints(ctx, networks, addresses, peers)
    tables = Tables()
    fabric = ServiceFabric(NodeView(ctx.node_id, {}, "nfst-h1"), datapath=tables.factory)
    services = ServiceRegistry(ctx, networks, addresses, endpoints, peers, fabric=fabric)
    layers.mesh.subscribe(peers.on_mesh_event)
    layers.mesh.subscribe(services.on_mesh_event)
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
