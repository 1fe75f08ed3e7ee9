"""AddressRouter: which IPAM gives an endpoint's address, and releases a manager missed."""

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from netfabric.agent.addresses import AddressRouter
from netfabric.agent.fakes import FakeBook, FakeLayers
from netfabric.agent.ports import Allocation
from netfabric.agent.state import NodeRecord
from netfabric.api.types import Role
from netfabric.errors import AddressHosted, MalformedAnswer, NetfabricError, PoolExhausted
from netfabric.model import Driver, Network, Scope, SubnetSpec


def _overlay(cidr: str) -> Network:
    return Network(id="ov1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM,
                   subnets=(SubnetSpec(cidr=cidr, gateway=cidr.rsplit(".", 1)[0] + ".1"),))


def test_local_network_addresses_come_from_this_nodes_book(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx = layers.context(str(tmp_path))
    router = AddressRouter(ctx, blocks=layers.blocks_factory)
    net = Network(id="b1", name="b", driver=Driver.BRIDGE, scope=Scope.LOCAL)
    layers.book.create_network(net, subnet="10.5.0.0/24", gateway=None, ip_range=None)

    async def go() -> None:
        got = await router.allocate(net, None)
        assert (got.ipv4, got.prefixlen, got.gateway) == ("10.5.0.2", 24, "10.5.0.1")
        assert layers.book.held["b1"] == {"10.5.0.2": ctx.node_id}
        await router.release(net, got.ipv4)
        assert layers.book.held["b1"] == {}
    asyncio.run(go())
    assert layers.links.calls == [] and layers.blocks is None


def test_a_worker_takes_big_subnets_from_blocks_and_small_ones_from_the_manager(
        tmp_path: Path) -> None:
    layers = FakeLayers()
    layers.links.answers["allocate"] = {"ipv4": "10.6.0.5", "prefixlen": 26,
                                        "gateway": "10.6.0.1"}
    router = AddressRouter(layers.context(str(tmp_path), role=Role.WORKER),
                           blocks=layers.blocks_factory)

    async def go() -> None:
        big = await router.allocate(_overlay("10.7.0.0/24"), None)
        assert big.ipv4 == "10.77.0.2"          # from FakeBlocks
        small = await router.allocate(_overlay("10.6.0.0/26"), "10.6.0.5")
        assert small.ipv4 == "10.6.0.5"
    asyncio.run(go())
    assert [c[0] for c in layers.links.calls] == ["allocate"]
    assert layers.links.calls[0][1]["ip"] == "10.6.0.5"


def test_a_malformed_allocation_from_the_manager_is_a_malformed_answer(tmp_path: Path) -> None:
    layers = FakeLayers()
    layers.links.answers["allocate"] = {"prefixlen": 24}
    router = AddressRouter(layers.context(str(tmp_path), role=Role.WORKER))
    with pytest.raises(MalformedAnswer, match=r"malformed allocate answer.*`ipv4`"):
        asyncio.run(router.allocate(_overlay("10.6.0.0/26"), None))


def test_exhaustion_names_the_network_and_its_subnet(tmp_path: Path) -> None:
    layers = FakeLayers()
    router = AddressRouter(layers.context(str(tmp_path)))
    net = Network(id="b1", name="tiny", driver=Driver.BRIDGE, scope=Scope.LOCAL)
    net = replace(net, subnets=layers.book.create_network(net, subnet="10.5.0.0/30",
                                                          gateway=None, ip_range=None))

    async def go() -> None:
        await router.allocate(net, None)
        await router.allocate(net, None)
    with pytest.raises(PoolExhausted, match=r"network tiny \(subnet 10.5.0.0/30\)"):
        asyncio.run(go())


def test_a_release_the_manager_misses_is_kept_and_given_back_later(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx = layers.context(str(tmp_path), role=Role.WORKER)
    router = AddressRouter(ctx, retry_interval=0.01)
    net = _overlay("10.6.0.0/26")
    given: list[dict[str, Any]] = []
    layers.links.answers["release"] = given.append

    async def go() -> None:
        layers.links.unreachable = True
        await router.release(net, "10.6.0.7")
        assert ctx.ledger.state.pending_releases == [("ov1", "10.6.0.7")]
        await asyncio.sleep(0.05)
        assert given == []                     # still unreachable: kept
        layers.links.unreachable = False
        for _ in range(100):
            if not ctx.ledger.state.pending_releases:
                break
            await asyncio.sleep(0.01)
        await router.close()
    asyncio.run(go())
    assert ctx.ledger.state.pending_releases == []
    assert [g["ip"] for g in given] == ["10.6.0.7"]


class _HostedBook(FakeBook):
    """10.6.0.50 lies in a block leased to host h3: given only once h3 has lent it."""

    def allocate(self, network_id: str, *, node_id: str, ip: str | None,
                 lent_by: str | None = None) -> Allocation:
        if ip == "10.6.0.50" and lent_by != "h3":
            raise AddressHosted("10.6.0.50 lies in block 10.6.0.0/26 leased to host 'h3'")
        return super().allocate(network_id, node_id=node_id, ip=ip, lent_by=lent_by)

    def block_owner(self, network_id: str, ip: str) -> str | None:
        return "h3" if ip == "10.6.0.50" and ip not in self.held.get(network_id, {}) else None


def test_a_fixed_address_in_another_hosts_block_is_lent_by_its_owner(tmp_path: Path) -> None:
    """Issue 19 item 1, the manager's side: lend, hold, give back, and a silent owner."""
    layers = FakeLayers()
    layers.book = _HostedBook()
    ctx = layers.context(str(tmp_path), role=Role.MANAGER)
    ctx.ledger.put_node(NodeRecord(id="h3", hostname="node3", address="198.51.100.3",
                                   gossip_port=7946, role=Role.WORKER))
    router = AddressRouter(ctx)
    net = _overlay("10.6.0.0/24")
    layers.book.create_network(net, subnet="10.6.0.0/24", gateway=None, ip_range=None)
    layers.links.answers["lend_address"] = True

    async def go() -> None:
        got = await router.manager_allocate(net.id, "h1", "10.6.0.50")
        assert got.ipv4 == "10.6.0.50"
        await router.manager_release(net.id, "10.6.0.50", "h1")
        for _ in range(100):   # the owner is told in the background
            if len(layers.links.calls) == 2:
                break
            await asyncio.sleep(0.01)
        layers.links.unreachable = True
        with pytest.raises(AddressHosted, match="node3, which must lend it but does not"):
            await router.manager_allocate(net.id, "h1", "10.6.0.50")
        await router.close()
    asyncio.run(go())
    calls = [(verb, args["ip"], to) for verb, args, to, _ in layers.links.calls]
    assert calls == [("lend_address", "10.6.0.50", ("198.51.100.3:2377",)),
                     ("unlend_address", "10.6.0.50", ("198.51.100.3:2377",)),
                     ("lend_address", "10.6.0.50", ("198.51.100.3:2377",))]


def test_a_worker_lends_from_its_blocks_and_asks_the_manager_for_hosted_ones(
        tmp_path: Path) -> None:
    layers = FakeLayers()
    layers.links.answers["allocate"] = {"ipv4": "10.7.0.50", "prefixlen": 24,
                                        "gateway": "10.7.0.1"}
    router = AddressRouter(layers.context(str(tmp_path), role=Role.WORKER),
                           blocks=layers.blocks_factory)

    async def go() -> None:
        assert await router.node_verb("lend_address", {"network_id": "ov1",
                                                       "ip": "10.77.0.9"}) is True
        assert await router.node_verb("unlend_address", {"network_id": "ov1",
                                                         "ip": "10.77.0.9"}) is True
        with pytest.raises(NetfabricError):
            await router.node_verb("lend_address", {"network_id": "ov1"})
        assert layers.blocks is not None

        def hosted(network_id: str, *, ip: str | None, ipv6: bool) -> Allocation:
            raise AddressHosted("leased to host 'h3'")
        layers.blocks.allocate = hosted  # type: ignore[method-assign]
        got = await router.allocate(_overlay("10.7.0.0/24"), "10.7.0.50")
        assert got.ipv4 == "10.7.0.50"
    asyncio.run(go())
    assert [c[0] for c in layers.links.calls] == ["allocate"]
