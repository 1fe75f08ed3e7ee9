"""Endpoints: run, connect, disconnect, rm, all or nothing; recovery after a restart."""

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from netfabric.agent.addresses import AddressRouter
from netfabric.agent.context import AgentContext
from netfabric.agent.endpoints import Endpoints
from netfabric.agent.fakes import FakeLayers
from netfabric.agent.networks import NetworkRegistry
from netfabric.agent.peers import PeerSync
from netfabric.api.types import Role, to_wire
from netfabric.errors import AlreadyExists, DataplaneError, InvalidArgument, NotFound
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec


def _endpoints(tmp_path: Path, layers: FakeLayers, role: Role = Role.STANDALONE
               ) -> tuple[AgentContext, Endpoints]:
    ctx, eps, _ = _with_peers(tmp_path, layers, role)
    return ctx, eps


def _with_peers(tmp_path: Path, layers: FakeLayers, role: Role = Role.STANDALONE
                ) -> tuple[AgentContext, Endpoints, PeerSync]:
    ctx = layers.context(str(tmp_path), role=role)
    addresses = AddressRouter(ctx, blocks=layers.blocks_factory)
    networks = NetworkRegistry(ctx, addresses)
    asyncio.run(networks.restore())
    peers = PeerSync(ctx)
    return ctx, Endpoints(ctx, networks, addresses, peers), peers


def test_run_plumbs_addresses_names_and_serves_dns(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, eps = _endpoints(tmp_path, layers)
    info = asyncio.run(eps.run("web", aliases=["www"]))
    ep = info.networks[0]
    assert (ep.network, ep.ipv4, ep.gateway) == ("bridge", "10.99.1.2", "10.99.1.1")
    assert layers.kernel.netns == {info.netns}
    assert layers.kernel.attached[ep.endpoint_id] == (f"/run/netns/{info.netns}", "eth0")
    assert layers.names.records[(ep.network_id, "web")] == ("10.99.1.2", ep.endpoint_id)
    assert layers.names.aliases[(ep.network_id, "web")] == ("www",)
    assert layers.names.served[info.netns] == frozenset({ep.network_id})
    assert info.netns.startswith("nfst-h1-c")
    with pytest.raises(AlreadyExists, match="already in use"):
        asyncio.run(eps.run("web"))
    assert ctx.ledger.state.sandboxes["web"].id == info.id


def test_a_failed_run_leaves_nothing(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, eps = _endpoints(tmp_path, layers)
    layers.kernel.fail_attach = DataplaneError("veth refused")
    with pytest.raises(DataplaneError):
        asyncio.run(eps.run("web"))
    assert ctx.ledger.state.sandboxes == {}
    assert layers.kernel.netns == set() and layers.kernel.attached == {}
    assert all(not held for held in layers.book.held.values())
    assert layers.names.records == {} and layers.names.served == {}


def test_connect_disconnect_and_rm(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, eps = _endpoints(tmp_path, layers)
    asyncio.run(eps.run("web"))
    back = asyncio.run(NetworkRegistry(ctx, AddressRouter(ctx)).create("back"))
    ep = asyncio.run(eps.connect("back", "web", ip="10.99.2.9"))
    assert (ep.ipv4, layers.kernel.attached[ep.endpoint_id][1]) == ("10.99.2.9", "eth1")
    with pytest.raises(AlreadyExists):
        asyncio.run(eps.connect("back", "web"))
    asyncio.run(eps.disconnect("back", "web"))
    assert ep.endpoint_id not in layers.kernel.attached
    assert layers.book.held[back.id] == {}
    assert (back.id, "web") not in layers.names.records
    with pytest.raises(NotFound, match="not connected"):
        asyncio.run(eps.disconnect("back", "web"))
    asyncio.run(eps.remove("web"))
    assert ctx.ledger.state.sandboxes == {} and layers.kernel.netns == set()
    with pytest.raises(NotFound, match="No such container"):
        asyncio.run(eps.remove("web"))


def test_bad_names_and_addresses_are_refused(tmp_path: Path) -> None:
    _, eps = _endpoints(tmp_path, FakeLayers())
    for kwargs in ({"aliases": ["-x"]}, {"ip": "10.0.0.300"}):
        with pytest.raises(InvalidArgument):
            asyncio.run(eps.run("web", **kwargs))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        asyncio.run(eps.run("bad name"))


def test_a_workers_last_endpoint_on_an_overlay_returns_blocks_and_leaves_gossip(
        tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, eps = _endpoints(tmp_path, layers, Role.WORKER)
    ov = Network(id="ov1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM,
                 subnets=(SubnetSpec(cidr="10.9.0.0/24", gateway="10.9.0.1"),), vni=4097,
                 attachable=True)
    ctx.ledger.put_network(ov)
    layers.links.answers["get_network"] = to_wire(ov)

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        await eps.run("web", network="ov1")
        assert layers.mesh.joined == {"ov1"}
        published = list(layers.mesh.published.values())
        assert [e.sandbox for e in published] == ["web"]
        await eps.remove("web")
    asyncio.run(go())
    assert layers.blocks is not None and layers.blocks.returned == ["ov1"]
    assert layers.mesh.joined == set() and layers.mesh.published == {}


def test_recovery_replumbs_and_drops_sandboxes_whose_netns_is_gone(tmp_path: Path) -> None:
    layers = FakeLayers()
    _, eps = _endpoints(tmp_path, layers)
    ns = tmp_path / "ns"
    ns.write_text("")
    asyncio.run(eps.run("kept"))
    asyncio.run(eps.run("adopted", netns_path=str(ns)))
    layers.kernel.attached.clear()
    layers.names.records.clear()
    layers.kernel.netns.add("nfst-h1-cdeadbeef")   # a run a crash cut short
    os.unlink(ns)
    again = FakeLayers(kernel=layers.kernel, book=layers.book)
    ctx2, eps2 = _endpoints(tmp_path, again)
    asyncio.run(eps2.recover())
    asyncio.run(eps2.remove_leaked())
    assert set(ctx2.ledger.state.sandboxes) == {"kept"}
    assert "nfst-h1-cdeadbeef" not in layers.kernel.netns
    assert len(layers.kernel.attached) == 1
    assert [k[1] for k in again.names.records] == ["kept"]
    assert sum(len(h) for h in layers.book.held.values()) == 1   # adopted's address freed


def test_front_end_endpoints_are_plumbed_published_and_synced(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, eps, peers = _with_peers(tmp_path, layers, Role.MANAGER)
    ov = Network(id="ov1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM, vni=4097)
    ep = Endpoint(id="d" * 64, network_id="ov1", sandbox="d" * 12, node_id=ctx.node_id,
                  mac="02:00:00:00:00:01", ipv4="10.9.0.4", prefixlen=24, vtep=ctx.address)

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        await eps.attach_external(ov, ep, netns_path="/run/netns/nfst-h1", ifname="nfd1",
                                  gateway=None)
        assert layers.kernel.set_peers_calls == ["ov1"]
        peers.schedule("ov1")          # a remote endpoint came: the held network is synced
        await peers.drain()
        assert layers.kernel.set_peers_calls == ["ov1"]   # unchanged: nothing to do
        layers.mesh.remote["r1"] = replace(ep, id="r1", node_id="peer", ipv4="10.9.0.5")
        peers.schedule("ov1")
        await peers.drain()
        assert layers.kernel.set_peers_calls == ["ov1", "ov1"]
        eps.publish(ov, ep)
        named = replace(ep, sandbox="web")
        eps.publish(ov, named, replaces=ep)
        assert set(layers.names.records) == {("ov1", "web")}
        assert layers.mesh.published[ep.id].sandbox == "web"
        eps.withdraw(ov, named)
        await eps.detach_external(ov, named, netns_path="/run/netns/nfst-h1", ifname="nfd1")
    asyncio.run(go())
    assert layers.names.records == {} and layers.mesh.published == {}
    assert layers.kernel.attached == {}
    assert ctx.ledger.network("ov1") == ov   # remembered for a restart without a manager
    layers.mesh.remote["r2"] = replace(ep, id="r2", node_id="peer", ipv4="10.9.0.6")

    async def after() -> None:
        peers.schedule("ov1")
        await peers.drain()
    asyncio.run(after())
    assert layers.kernel.set_peers_calls == ["ov1", "ov1"]   # detached: no longer synced


def test_rm_keeps_a_sandbox_the_kernel_would_not_let_go_unless_forced(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, eps = _endpoints(tmp_path, layers)
    info = asyncio.run(eps.run("web"))
    layers.kernel.fail_detach = DataplaneError("busy")
    with pytest.raises(DataplaneError):
        asyncio.run(eps.remove("web"))
    assert [e.endpoint_id for e in asyncio.run(eps.inspect("web")).networks] == \
        [info.networks[0].endpoint_id]
    assert sum(len(h) for h in layers.book.held.values()) == 1
    asyncio.run(eps.remove("web", force=True))
    assert ctx.ledger.state.sandboxes == {} and layers.kernel.netns == set()
    assert sum(len(h) for h in layers.book.held.values()) == 0


def test_disconnect_keeps_an_endpoint_the_kernel_would_not_let_go_unless_forced(
        tmp_path: Path) -> None:
    layers = FakeLayers()
    _, eps = _endpoints(tmp_path, layers)
    asyncio.run(eps.run("web"))
    layers.kernel.fail_detach = DataplaneError("busy")
    with pytest.raises(DataplaneError):
        asyncio.run(eps.disconnect("bridge", "web"))
    assert len(asyncio.run(eps.inspect("web")).networks) == 1
    asyncio.run(eps.disconnect("bridge", "web", force=True))
    assert asyncio.run(eps.inspect("web")).networks == ()
    assert sum(len(h) for h in layers.book.held.values()) == 0
