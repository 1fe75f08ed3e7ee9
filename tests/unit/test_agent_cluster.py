"""ClusterService and ManagerRpc: init, join over the manager's verbs, tokens, nodes, leave."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from netfabric.agent.core import AgentCore
from netfabric.agent.fakes import FakeLayers
from netfabric.agent.tokens import make_token, new_cluster_secret, new_role_secret
from netfabric.api.types import Availability, NodeStatus, Role
from netfabric.errors import (
    ClusterError,
    InUse,
    InvalidArgument,
    InvalidToken,
    NotAManager,
    NotFound,
    NotInCluster,
)


def _pair(tmp_path: Path) -> tuple[FakeLayers, AgentCore, FakeLayers, AgentCore]:
    """A manager and a would-be worker whose calls reach the manager's handler."""
    (tmp_path / "m").mkdir()
    (tmp_path / "w").mkdir()
    ml, wl = FakeLayers(), FakeLayers()
    manager = ml.core(str(tmp_path / "m"), advertise_addr="198.51.100.1", node_id="m" * 26)
    worker = wl.core(str(tmp_path / "w"), advertise_addr="198.51.100.2", hostname="node2",
                     node_id="w" * 26)
    for verb in ("join", "allocate", "release", "get_network", "leave"):
        wl.links.answers[verb] = (lambda v: lambda args: manager.handle_cluster(v, args))(verb)
    return ml, manager, wl, worker


def test_init_makes_a_manager_that_serves_its_endpoint_and_gossips(tmp_path: Path) -> None:
    layers = FakeLayers()
    core = layers.core(str(tmp_path))
    opened: list[str] = []

    async def opener(listen: str) -> None:
        opened.append(listen)
    core.set_cluster_endpoint(opener)

    async def go() -> None:
        await core.start()
        token = await core.init("198.51.100.1")
        assert token.role is Role.WORKER and token.address == "198.51.100.1:2377"
        with pytest.raises(ClusterError, match="already part of a swarm"):
            await core.init("198.51.100.1")
        rotated = await core.join_token("worker", rotate=True)
        assert rotated.token != token.token
        await core.close()
    asyncio.run(go())
    assert opened == ["198.51.100.1:2377"]
    assert layers.mesh.started_with is not None
    assert layers.mesh.started_with[1] == ("198.51.100.1:7946",)


def test_a_worker_joins_with_a_token_and_leaves(tmp_path: Path) -> None:
    ml, manager, wl, worker = _pair(tmp_path)

    async def go() -> None:
        await manager.start()
        await worker.start()
        token = await manager.init("198.51.100.1")
        info = await worker.join(token.token, "198.51.100.1:2377")
        assert info.role is Role.WORKER and info.cluster_id
        assert wl.mesh.started_with is not None
        assert wl.mesh.started_with[1] == ("198.51.100.1:7946",)
        rows = await manager.nodes()
        assert [(r.hostname, r.role) for r in rows] == [("node1", Role.MANAGER),
                                                       ("node2", Role.WORKER)]
        assert rows[1].status is NodeStatus.DOWN   # not alive in gossip
        ml.mesh.alive["w" * 26] = True
        drained = await manager.update_node("node2", availability="drain")
        assert (drained.availability, drained.status) == (Availability.DRAIN,
                                                          NodeStatus.READY)
        with pytest.raises(NotAManager):
            await worker.nodes()
        await worker.leave()
        assert [r.hostname for r in await manager.nodes()] == ["node1"]
        assert wl.mesh.left and worker.role is Role.STANDALONE
        with pytest.raises(ClusterError, match="participating as a manager"):
            await manager.leave()
    asyncio.run(go())
    assert ml.book.released_nodes == ["w" * 26]


def test_a_manager_token_and_a_forged_token_are_refused(tmp_path: Path) -> None:
    _, manager, _, worker = _pair(tmp_path)

    async def go() -> None:
        await manager.init("198.51.100.1")
        with pytest.raises(ClusterError, match=r"a second manager needs --store etcd://"):
            await manager.join_token("manager")
        cluster = manager.state.cluster
        assert cluster is not None   # a manager token minted all the same is refused too
        mtoken = make_token(cluster.secret, cluster.role_secrets["manager"])
        with pytest.raises(ClusterError, match=r"a second manager needs --store etcd://"):
            await worker.join(mtoken, "198.51.100.1")
        forged = make_token(new_cluster_secret(), new_role_secret())   # another cluster's
        with pytest.raises(InvalidToken):
            await worker.join(forged, "198.51.100.1")
        assert worker.role is Role.STANDALONE
    asyncio.run(go())


def test_a_host_rejoining_under_a_new_identity_frees_the_old_one(tmp_path: Path) -> None:
    ml, manager, _, _ = _pair(tmp_path)
    calls: list[Any] = []

    async def go() -> None:
        await manager.init("198.51.100.1")
        for node_id in ("a" * 26, "b" * 26):
            (tmp_path / node_id).mkdir()
            wl = FakeLayers()
            wl.links.answers["join"] = lambda args: manager.handle_cluster("join", args)
            w = wl.core(str(tmp_path / node_id), advertise_addr="198.51.100.2",
                        hostname="node2", node_id=node_id)
            await w.join((await manager.join_token("worker")).token, "198.51.100.1")
            calls.append([n.id for n in await manager.nodes()])
    asyncio.run(go())
    assert calls[-1] == ["m" * 26, "b" * 26]
    assert ml.book.released_nodes == ["a" * 26]


def test_leaving_with_containers_on_cluster_networks_needs_force(tmp_path: Path) -> None:
    ml, manager, _wl, worker = _pair(tmp_path)

    async def go() -> None:
        await manager.start()
        await worker.start()
        await manager.init("198.51.100.1")
        await manager.create_network("ov", driver="overlay", attachable=True)
        await worker.join((await manager.join_token("worker")).token, "198.51.100.1")
        await worker.run("web", network="ov")
        with pytest.raises(InUse, match="web on ov"):
            await worker.leave()
        await worker.leave(force=True)
        assert [c.networks for c in await worker.containers()] == [()]
        assert ml.book.held[(await manager.inspect_network("ov")).id] == {}
    asyncio.run(go())


def test_unknown_cluster_verbs_and_non_managers(tmp_path: Path) -> None:
    _, manager, _, worker = _pair(tmp_path)

    async def go() -> None:
        with pytest.raises(NotInCluster):
            await worker.handle_cluster("allocate", {})
        await manager.init("198.51.100.1")
        with pytest.raises(NotFound, match="unknown cluster verb"):
            await manager.handle_cluster("reboot", {})
        with pytest.raises(NotFound):
            await manager.handle_cluster("allocate", {"network_id": "nope", "node_id": "n2"})
        with pytest.raises(InvalidArgument, match="allocate: missing argument 'node_id'"):
            await manager.handle_cluster("allocate", {"network_id": "nope"})
    asyncio.run(go())


def test_node_rm_forgets_a_dead_worker_and_gives_back_its_blocks(tmp_path: Path) -> None:
    ml, manager, _, worker = _pair(tmp_path)

    async def go() -> None:
        await manager.start()
        await worker.start()
        token = await manager.init("198.51.100.1")
        await worker.join(token.token, "198.51.100.1:2377")
        ml.mesh.alive["w" * 26] = True
        with pytest.raises(ClusterError, match="node2 is not down and can't be removed"):
            await manager.remove_node("node2")
        with pytest.raises(ClusterError, match="this node"):
            await manager.remove_node("node1")
        with pytest.raises(NotFound):
            await manager.remove_node("node9")
        with pytest.raises(NotAManager):
            await worker.remove_node("node1")
        assert ml.book.released_nodes == []
        ml.mesh.alive["w" * 26] = False   # gone for good
        await manager.remove_node("node2")
        assert [r.hostname for r in await manager.nodes()] == ["node1"]
        assert ml.book.released_nodes == ["w" * 26]
        with pytest.raises(NotFound):
            await manager.remove_node("node2")
    asyncio.run(go())


def test_node_rm_force_removes_a_node_that_is_up(tmp_path: Path) -> None:
    ml, manager, _, worker = _pair(tmp_path)

    async def go() -> None:
        await manager.start()
        await worker.start()
        token = await manager.init("198.51.100.1")
        await worker.join(token.token, "198.51.100.1:2377")
        ml.mesh.alive["w" * 26] = True
        await manager.remove_node("w" * 26, force=True)
        assert [r.hostname for r in await manager.nodes()] == ["node1"]
    asyncio.run(go())
    assert ml.book.released_nodes == ["w" * 26]
