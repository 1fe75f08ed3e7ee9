"""PeerSync: gossip's remote endpoints programmed into the kernel, then named in DNS."""

import asyncio
from pathlib import Path

from netfabric.agent.context import AgentContext
from netfabric.agent.fakes import FakeLayers
from netfabric.agent.peers import PeerSync
from netfabric.agent.ports import MeshEvent, MeshEventKind
from netfabric.agent.state import EndpointRecord, SandboxRecord
from netfabric.api.types import Role
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec

NET = Network(id="ov1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM,
              subnets=(SubnetSpec(cidr="10.8.0.0/24", gateway="10.8.0.1"),))


def _remote(i: int, node: str = "peer") -> Endpoint:
    return Endpoint(id=f"r{i}", network_id=NET.id, sandbox=f"web{i}", node_id=node,
                    mac=f"02:00:00:00:00:{i:02x}", ipv4=f"10.8.0.{10 + i}", prefixlen=24,
                    vtep="198.51.100.2")


def _setup(tmp_path: Path) -> tuple[FakeLayers, AgentContext, PeerSync]:
    layers = FakeLayers()
    ctx = layers.context(str(tmp_path), role=Role.MANAGER)
    peers = PeerSync(ctx)
    layers.mesh.subscribe(peers.on_mesh_event)
    return layers, ctx, peers


def _local_endpoint(ctx: AgentContext) -> None:
    sb = SandboxRecord(id="s", name="me", netns="ns", netns_path="/run/netns/ns",
                       external=False, created=0.0)
    ctx.ledger.add_endpoint(sb, EndpointRecord(
        id="e", network_id=NET.id, network=NET.name, ifname="eth0", mac="m",
        ipv4="10.8.0.2", prefixlen=24, gateway=None), NET)


async def _arrive(layers: FakeLayers, *eps: Endpoint) -> None:
    for ep in eps:
        layers.mesh.remote[ep.id] = ep
        await layers.mesh.emit(MeshEvent(MeshEventKind.ENDPOINT_SET, ep.node_id, ep))


def test_a_burst_of_events_is_coalesced_and_names_follow_the_sync(tmp_path: Path) -> None:
    layers, ctx, peers = _setup(tmp_path)
    _local_endpoint(ctx)

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        await _arrive(layers, *[_remote(i) for i in range(10)])
        # scheduled, not run yet: no name resolves before its FDB entry exists
        assert layers.names.records == {}
        await peers.drain()
        await peers.close()
    asyncio.run(go())
    assert layers.kernel.set_peers_calls == [NET.id]        # one sync for ten events
    assert {e.id for e in layers.kernel.peers[NET.id]} == {f"r{i}" for i in range(10)}
    assert (NET.id, "web3") in layers.names.records


def test_events_during_a_sync_make_one_more_sync_never_two_at_once(tmp_path: Path) -> None:
    layers, ctx, peers = _setup(tmp_path)
    _local_endpoint(ctx)
    layers.kernel.set_peers_delay = 0.1

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        await _arrive(layers, _remote(1))
        await asyncio.sleep(0.03)               # the first sync is in the kernel now
        await _arrive(layers, *[_remote(i) for i in range(2, 8)])
        await peers.drain()
    asyncio.run(go())
    assert layers.kernel.set_peers_overlap == 1
    assert layers.kernel.set_peers_calls == [NET.id, NET.id]
    assert len(layers.kernel.peers[NET.id]) == 7


def test_unchanged_peers_are_not_programmed_again(tmp_path: Path) -> None:
    layers, ctx, peers = _setup(tmp_path)

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        layers.mesh.remote["r1"] = _remote(1)
        await peers.sync(NET)
        await peers.sync(NET)
        layers.mesh.remote["r2"] = _remote(2)
        await peers.sync(NET)
    asyncio.run(go())
    assert layers.kernel.set_peers_calls == [NET.id, NET.id]


def test_a_network_without_local_endpoints_is_not_synced_unless_held(tmp_path: Path) -> None:
    layers, ctx, peers = _setup(tmp_path)

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        await _arrive(layers, _remote(1))
        await peers.drain()
        assert layers.kernel.set_peers_calls == []
        assert (NET.id, "web1") in layers.names.records   # named all the same
        peers.hold(NET, "docker-ep")                        # a front end's endpoint
        await _arrive(layers, _remote(2))
        await peers.drain()
        assert layers.kernel.set_peers_calls == [NET.id]
        peers.unhold(NET.id, "docker-ep")
        await _arrive(layers, _remote(3))
        await peers.drain()
        await peers.close()
    asyncio.run(go())
    assert layers.kernel.set_peers_calls == [NET.id]


def test_a_gone_endpoint_loses_its_name_and_own_events_are_ignored(tmp_path: Path) -> None:
    layers, ctx, peers = _setup(tmp_path)
    _local_endpoint(ctx)

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        await _arrive(layers, _remote(1))
        await peers.drain()
        assert (NET.id, "web1") in layers.names.records
        gone = layers.mesh.remote.pop("r1")
        await layers.mesh.emit(MeshEvent(MeshEventKind.ENDPOINT_GONE, gone.node_id, gone))
        mine = _remote(5, node=ctx.node_id)
        await _arrive(layers, mine)
        await peers.drain()
        await peers.close()
    asyncio.run(go())
    assert layers.names.records == {}
    assert layers.kernel.peers[NET.id] == []


def test_nothing_is_programmed_before_gossip_runs(tmp_path: Path) -> None:
    layers, _ctx, peers = _setup(tmp_path)
    layers.mesh.remote["r1"] = _remote(1)
    asyncio.run(peers.sync(NET))
    assert layers.kernel.set_peers_calls == []


def test_leaving_the_cluster_drops_the_old_peers_names_and_entries(tmp_path: Path) -> None:
    """Issue 19 item 7: what the old membership's peers put here goes with it."""
    layers, ctx, peers = _setup(tmp_path)
    _local_endpoint(ctx)

    async def go() -> None:
        await ctx.mesh.start(secret="s", seeds=[])
        await _arrive(layers, _remote(1), _remote(2))
        await peers.drain()
        assert (NET.id, "web1") in layers.names.records
        await peers.forget_cluster([NET])
        await peers.close()
    asyncio.run(go())
    assert layers.kernel.peers[NET.id] == []
    assert not [k for k in layers.names.records if k[0] == NET.id]
