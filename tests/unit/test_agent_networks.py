"""NetworkRegistry: create, find, list, remove; a worker's copies of cluster networks."""

import asyncio
from pathlib import Path

import pytest

from netfabric.agent.addresses import AddressRouter
from netfabric.agent.context import AgentContext
from netfabric.agent.fakes import FakeLayers
from netfabric.agent.networks import NetworkRegistry
from netfabric.api.types import Role, to_wire
from netfabric.errors import (
    AlreadyExists,
    InUse,
    InvalidArgument,
    MalformedAnswer,
    NotAManager,
    NotFound,
    NotInCluster,
)
from netfabric.model import Driver, Network, Scope, SubnetSpec


def _registry(tmp_path: Path, layers: FakeLayers, role: Role = Role.STANDALONE
              ) -> NetworkRegistry:
    return _both(tmp_path, layers, role)[1]


def _both(tmp_path: Path, layers: FakeLayers, role: Role = Role.STANDALONE
          ) -> tuple[AgentContext, NetworkRegistry]:
    ctx = layers.context(str(tmp_path), role=role)
    return ctx, NetworkRegistry(ctx, AddressRouter(ctx, blocks=layers.blocks_factory))


def test_a_bridge_network_is_made_in_the_kernel_and_kept(tmp_path: Path) -> None:
    layers = FakeLayers()
    reg = _registry(tmp_path, layers)
    info = asyncio.run(reg.create("front", subnet="10.3.0.0/24", options={"mtu": "1400"}))
    assert info.subnets == ("10.3.0.0/24",) and info.mtu == 1400 and info.attachable
    assert [n.name for n in layers.kernel.networks.values()] == ["front"]
    assert reg.find("front").id == info.id == reg.find(info.id[:6]).id
    with pytest.raises(AlreadyExists):
        asyncio.run(reg.create("front"))


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"driver": "macvlan"}, InvalidArgument),
    ({"options": {"mtu": "9"}}, InvalidArgument),
    ({"options": {"colour": "blue"}}, InvalidArgument),
    ({"ip_range": "10.0.0.0/25"}, InvalidArgument),
    ({"gateway": "10.0.0.1"}, InvalidArgument),
    ({"driver": "overlay"}, NotInCluster),
])
def test_bad_requests_are_refused_before_anything_is_made(
        tmp_path: Path, kwargs: dict[str, object], error: type[Exception]) -> None:
    layers = FakeLayers()
    reg = _registry(tmp_path, layers)
    with pytest.raises(error):
        asyncio.run(reg.create("n", **kwargs))  # type: ignore[arg-type]
    assert layers.book.subnets == {} and layers.kernel.networks == {}


def test_a_worker_cannot_create_an_overlay(tmp_path: Path) -> None:
    with pytest.raises(NotAManager):
        asyncio.run(_registry(tmp_path, FakeLayers(), Role.WORKER).create(
            "ov", driver="overlay"))


def test_a_kernel_failure_gives_the_subnet_back(tmp_path: Path) -> None:
    layers = FakeLayers()
    reg = _registry(tmp_path, layers)

    def boom(network: Network) -> None:
        raise OSError("no bridge for you")
    layers.kernel.ensure_network = boom  # type: ignore[method-assign]
    with pytest.raises(OSError):
        asyncio.run(reg.create("n"))
    assert layers.book.subnets == {}
    with pytest.raises(NotFound):
        reg.find("n")


def test_a_network_in_use_is_not_removed(tmp_path: Path) -> None:
    layers = FakeLayers()
    reg = _registry(tmp_path, layers)
    info = asyncio.run(reg.create("n"))
    layers.book.allocate(info.id, node_id="x", ip=None)
    with pytest.raises(InUse, match="1 endpoint address"):
        asyncio.run(reg.remove("n"))
    layers.book.held[info.id].clear()
    asyncio.run(reg.remove("n"))
    assert layers.kernel.networks == {} and layers.book.subnets == {}
    with pytest.raises(InvalidArgument, match="pre-defined"):
        asyncio.run(reg.restore())
        asyncio.run(reg.remove("bridge"))


def test_restore_makes_the_default_bridge_once(tmp_path: Path) -> None:
    layers = FakeLayers()
    reg = _registry(tmp_path, layers)
    asyncio.run(reg.restore())
    asyncio.run(reg.restore())
    assert [n.name for n in layers.kernel.networks.values()] == ["bridge"]


def test_a_worker_fetches_cluster_networks_and_drops_removed_copies(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, reg = _both(tmp_path, layers, Role.WORKER)
    remote = Network(id="ov1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM,
                     subnets=(SubnetSpec(cidr="10.9.0.0/24", gateway="10.9.0.1"),),
                     vni=4097, attachable=True)
    layers.links.answers["get_network"] = to_wire(remote)
    assert asyncio.run(reg.resolve("ov")) == remote
    ctx.ledger.put_network(remote)   # a copy from an earlier use
    layers.links.answers["get_network"] = NotFound("network ov not found")
    with pytest.raises(NotFound):
        asyncio.run(reg.resolve("ov"))
    assert ctx.ledger.network("ov1") is None
    layers.links.answers["get_network"] = {"id": "x"}
    with pytest.raises(MalformedAnswer, match="malformed get_network answer"):
        asyncio.run(reg.resolve("ov"))


def test_a_worker_keeps_its_copy_while_the_manager_is_down(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx, reg = _both(tmp_path, layers, Role.WORKER)
    copy = Network(id="ov1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM)
    layers.links.unreachable = True
    ctx.ledger.put_network(copy)
    assert asyncio.run(reg.resolve("ov")) == copy
    assert asyncio.run(reg.networks()) == []   # a worker lists it only with endpoints
