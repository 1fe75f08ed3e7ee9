"""Ledger: the one writer of the agent's state; every mutation is on disk when it returns."""

from pathlib import Path

from netfabric.agent.fakes import FakeBook
from netfabric.agent.ledger import Ledger
from netfabric.agent.state import (
    ClusterRecord,
    EndpointRecord,
    LocalState,
    NodeRecord,
    SandboxRecord,
)
from netfabric.api.types import Availability, Role
from netfabric.model import Driver, Network, Scope, SubnetSpec


def _reload(path: Path) -> LocalState:
    return LocalState.load(str(path), hostname="node1")


def _net(nid: str, scope: Scope = Scope.LOCAL) -> Network:
    return Network(id=nid, name=f"net-{nid}", driver=Driver.BRIDGE if scope == Scope.LOCAL
                   else Driver.OVERLAY, scope=scope,
                   subnets=(SubnetSpec(cidr="10.1.0.0/24", gateway="10.1.0.1"),))


def test_every_mutation_is_durable_when_it_returns(tmp_path: Path) -> None:
    table = FakeBook()
    ledger = Ledger(LocalState(node_id="me", hostname="node1"), str(tmp_path), table)
    ledger.set_cluster(ClusterRecord(cluster_id="c", secret="s", role=Role.MANAGER,
                                     managers=["198.51.100.1:2377"],
                                     role_secrets={"worker": "w"}), [])
    ledger.put_node(NodeRecord(id="n2", hostname="node2", address="198.51.100.2",
                               gossip_port=7946, role=Role.WORKER))
    ledger.set_availability("n2", Availability.DRAIN)
    ledger.set_role_secret("worker", "w2")
    ledger.put_network(_net("a"))
    sb = SandboxRecord(id="s1", name="web", netns="ns", netns_path="/run/netns/ns",
                       external=False, created=1.0)
    ep = EndpointRecord(id="e1", network_id="b", network="net-b", ifname="eth0", mac="m",
                        ipv4="10.1.0.2", prefixlen=24, gateway="10.1.0.1")
    ledger.add_endpoint(sb, ep, _net("b", Scope.SWARM))
    assert [e.id for e in _reload(tmp_path).sandboxes["web"].endpoints] == ["e1"]
    ledger.add_pending_release("b", "10.1.0.9")
    disk = _reload(tmp_path)
    assert disk.cluster is not None and disk.cluster.role_secrets == {"worker": "w2"}
    assert disk.nodes["n2"].availability is Availability.DRAIN
    assert set(table.rows) == {"a", "b"}   # b recorded with its first endpoint
    assert disk.networks == {}              # networks live in the store
    assert [e.id for e in disk.sandboxes["web"].endpoints] == ["e1"]
    assert disk.pending_releases == [("b", "10.1.0.9")]

    ledger.remove_endpoint(sb, ep)
    ledger.pop_pending_release()
    assert ledger.drop_node("n2") is not None
    assert ledger.drop_node("n2") is None
    disk = _reload(tmp_path)
    assert disk.sandboxes["web"].endpoints == [] and disk.pending_releases == []
    assert "n2" not in disk.nodes

    ledger.drop_sandbox(sb)
    ledger.drop_network("a")
    disk = _reload(tmp_path)
    assert disk.sandboxes == {} and set(table.rows) == {"b"}


def test_clear_cluster_forgets_the_cluster_its_nodes_and_only_cluster_networks(
        tmp_path: Path) -> None:
    table = FakeBook()
    ledger = Ledger(LocalState(node_id="me", hostname="node1"), str(tmp_path), table)
    ledger.set_cluster(ClusterRecord(cluster_id="c", secret="s", role=Role.WORKER,
                                     managers=["m:2377"]),
                       [NodeRecord(id="me", hostname="node1", address="a", gossip_port=1,
                                   role=Role.WORKER)])
    ledger.put_network(_net("local"))
    ledger.put_network(_net("ov", Scope.SWARM))
    assert ledger.clear_cluster() == ["ov"]
    disk = _reload(tmp_path)
    assert disk.cluster is None and disk.nodes == {} and set(table.rows) == {"local"}


def test_remember_network_keeps_the_first_copy(tmp_path: Path) -> None:
    table = FakeBook()
    ledger = Ledger(LocalState(node_id="me", hostname="node1"), str(tmp_path), table)
    ledger.remember_network(_net("x"))
    ledger.remember_network(Network(id="x", name="renamed", driver=Driver.BRIDGE,
                                    scope=Scope.LOCAL))
    net = ledger.network("x")
    assert net is not None and net.name == "net-x"
    assert table.rows["x"].name == "net-x"


def test_reload_networks_sees_what_another_writer_put_in_the_table(tmp_path: Path) -> None:
    table = FakeBook()
    ledger = Ledger(LocalState(node_id="me", hostname="node1"), str(tmp_path), table)
    table.save_network(_net("other"))     # another manager, same distributed store
    assert ledger.network("other") is None
    ledger.reload_networks()
    assert ledger.network("other") == _net("other")
