"""The one writer of the agent's local state.

Every change to :class:`~netfabric.agent.state.LocalState` is a method here, and each one is
durable before it returns; the services read ``ledger.state`` and never assign into it. So
"what does this node remember" has one answer, and a crash between two calls leaves either
the old or the new document (see :mod:`netfabric.agent.state`).
"""

from __future__ import annotations

from netfabric.agent.state import (
    ClusterRecord,
    EndpointRecord,
    LocalState,
    NodeRecord,
    SandboxRecord,
    to_network,
    to_record,
)
from netfabric.api.types import Availability
from netfabric.model import Network, Scope

__all__ = ["Ledger"]


class Ledger:
    """Reads of :attr:`state` are free; writes go through the methods below."""

    def __init__(self, state: LocalState, data_dir: str) -> None:
        self.state = state
        self._data_dir = data_dir

    def _save(self) -> None:
        self.state.save(self._data_dir)

    # -- cluster ------------------------------------------------------------------------------

    def set_cluster(self, cluster: ClusterRecord, nodes: list[NodeRecord]) -> None:
        """This node is now in ``cluster``, which has ``nodes``."""
        self.state.cluster = cluster
        self.state.nodes = {n.id: n for n in nodes}
        self._save()

    def set_role_secret(self, role: str, secret: str) -> None:
        assert self.state.cluster is not None
        self.state.cluster.role_secrets[role] = secret
        self._save()

    def put_node(self, node: NodeRecord) -> None:
        self.state.nodes[node.id] = node
        self._save()

    def drop_node(self, node_id: str) -> NodeRecord | None:
        node = self.state.nodes.pop(node_id, None)
        if node is not None:
            self._save()
        return node

    def set_availability(self, node_id: str, availability: Availability) -> None:
        self.state.nodes[node_id].availability = availability
        self._save()

    def clear_cluster(self) -> list[str]:
        """This node left its cluster: forget it, its nodes and its cluster networks.
        Returns the ids of the networks forgotten."""
        self.state.cluster = None
        self.state.nodes.clear()
        gone = [rec.id for rec in self.state.networks.values() if rec.scope == Scope.SWARM]
        for network_id in gone:
            del self.state.networks[network_id]
        self._save()
        return gone

    # -- networks -----------------------------------------------------------------------------

    def name_ids(self, text: str) -> str:
        """``text`` with every network and node ID this host knows written as its name
        (``network 'b54e...'`` -> ``network 'ov1'``): what an error tells a user."""
        for net in self.networks():
            text = text.replace(net.id, net.name)
        for node in self.state.nodes.values():
            text = text.replace(node.id, node.hostname).replace(node.id[:12], node.hostname)
        if self.state.node_id:
            text = text.replace(self.state.node_id, self.state.hostname)
        return text

    def network(self, network_id: str) -> Network | None:
        rec = self.state.networks.get(network_id)
        return None if rec is None else to_network(rec)

    def networks(self) -> list[Network]:
        return [to_network(rec) for rec in self.state.networks.values()]

    def has_network(self, network_id: str) -> bool:
        return network_id in self.state.networks

    def put_network(self, network: Network) -> None:
        self.state.networks[network.id] = to_record(network)
        self._save()

    def remember_network(self, network: Network) -> None:
        """Keep a cluster network new to this worker (so it restarts without a manager)."""
        if network.id not in self.state.networks:
            self.put_network(network)

    def drop_network(self, network_id: str) -> None:
        if self.state.networks.pop(network_id, None) is not None:
            self._save()

    # -- sandboxes and endpoints --------------------------------------------------------------

    def local_endpoints(self, network_id: str) -> list[tuple[SandboxRecord, EndpointRecord]]:
        """The endpoints of this host's sandboxes on one network."""
        return [(sb, ep) for sb in self.state.sandboxes.values() for ep in sb.endpoints
                if ep.network_id == network_id]

    def add_endpoint(self, sb: SandboxRecord, ep: EndpointRecord, network: Network) -> None:
        """``ep`` joins ``sb`` (which is recorded if new); ``network`` is kept if new."""
        if network.id not in self.state.networks:
            self.state.networks[network.id] = to_record(network)
        sb.endpoints.append(ep)
        self.state.sandboxes[sb.name] = sb
        self._save()

    def remove_endpoint(self, sb: SandboxRecord, ep: EndpointRecord) -> None:
        if ep in sb.endpoints:
            sb.endpoints.remove(ep)
        self._save()

    def drop_sandbox(self, sb: SandboxRecord) -> None:
        if self.state.sandboxes.get(sb.name) is sb:
            del self.state.sandboxes[sb.name]
            self._save()

    # -- addresses a worker still owes its manager ---------------------------------------------

    def add_pending_release(self, network_id: str, ip: str) -> None:
        self.state.pending_releases.append((network_id, ip))
        self._save()

    def pop_pending_release(self) -> None:
        self.state.pending_releases.pop(0)
        self._save()
