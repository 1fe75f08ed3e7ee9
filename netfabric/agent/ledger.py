"""The one writer of the agent's local state.

Every change to what this node remembers is a method here, and each one is durable before
it returns; the services read ``ledger.state`` and :meth:`Ledger.networks` and never assign
into them. Two places hold it:

- the networks (with their options and subnets) are rows of the store, through the
  :class:`~netfabric.agent.ports.NetworkTable` seam, read once at start and cached here;
- the rest (identity, cluster, nodes, sandboxes) is :class:`~netfabric.agent.state.LocalState`,
  one JSON document (a crash leaves the old or the new one).

On a cluster whose managers share etcd, the node registry and the role secrets are the
cluster's (:class:`~netfabric.agent.ports.ClusterRecords`, attached with
:meth:`Ledger.attach_records`): each change goes there first (refused whole when etcd is
unavailable), then to the state file, which keeps this manager's copy; another manager's
changes come back through :meth:`Ledger.sync_records`.

A change touching both writes the network row first, so a crash in between leaves at most
a network nobody uses yet. A state file from before networks moved to the store still lists
them: they are moved into the store when the ledger opens (rows first, then the file
rewritten without them, so a crash in between moves them again).
"""

from __future__ import annotations

import time
from dataclasses import replace

from netfabric.agent.ports import ClusterRecords, NetworkTable
from netfabric.agent.state import (
    ClusterRecord,
    EndpointRecord,
    LocalState,
    NodeRecord,
    SandboxRecord,
    to_network,
)
from netfabric.api.types import Availability, Role
from netfabric.errors import NetfabricError
from netfabric.model import Network, Scope

__all__ = ["Ledger", "managers_of"]

MISS_RELOAD_S = 1.0
"""At most one re-read of the network rows a second for networks asked for and unknown."""


def managers_of(nodes: list[NodeRecord] | tuple[NodeRecord, ...]) -> list[str]:
    """The cluster endpoints of the managers among ``nodes``, in a stable order."""
    return sorted(n.manager_addr for n in nodes if n.role is Role.MANAGER and n.manager_addr)


class Ledger:
    """Reads of :attr:`state` are free; writes go through the methods below."""

    def __init__(self, state: LocalState, data_dir: str, table: NetworkTable) -> None:
        self.state = state
        self._data_dir = data_dir
        self._table = table
        if state.networks:   # a state file of before networks moved to the store
            for rec in state.networks.values():
                table.save_network(to_network(rec))
            state.networks.clear()
            self._save()
        self._networks = {n.id: n for n in table.load_networks()}
        self._records: ClusterRecords | None = None
        self._reloaded = 0.0
        self.generation = 0
        """Counts this node's own changes to the networks it knows (a re-read done off the
        lock applies only if none came meanwhile)."""

    def _save(self) -> None:
        self.state.save(self._data_dir)

    # -- cluster ------------------------------------------------------------------------------

    @property
    def records(self) -> ClusterRecords | None:
        """The cluster's shared records (a cluster on etcd), or None."""
        return self._records

    def attach_records(self, records: ClusterRecords | None) -> None:
        self._records = records

    def set_cluster(self, cluster: ClusterRecord, nodes: list[NodeRecord]) -> None:
        """This node is now in ``cluster``, which has ``nodes``; on shared records, this
        node's own row (and an init's role secrets) are written there first."""
        if self._records is not None:
            for n in nodes:
                if n.id == self.state.node_id:
                    self._records.save_node(n)
            if cluster.role_secrets:
                self._records.save_roles(dict(cluster.role_secrets))
            cluster.managers = managers_of(nodes) or cluster.managers
        self.state.cluster = cluster
        self.state.nodes = {n.id: n for n in nodes}
        self._save()

    def set_managers(self, managers: list[str]) -> None:
        """The cluster's manager addresses as this node now knows them."""
        assert self.state.cluster is not None
        self.state.cluster.managers = list(managers)
        self._save()

    def set_role_secret(self, role: str, secret: str) -> None:
        assert self.state.cluster is not None
        if self._records is not None:
            self._records.save_roles({**self.state.cluster.role_secrets, role: secret})
        self.state.cluster.role_secrets[role] = secret
        self._save()

    def put_node(self, node: NodeRecord) -> None:
        if self._records is not None:
            self._records.save_node(node)
        self.state.nodes[node.id] = node
        self._sync_managers()
        self._save()

    def drop_node(self, node_id: str) -> NodeRecord | None:
        if self._records is not None:
            self._records.drop_node(node_id)
        node = self.state.nodes.pop(node_id, None)
        if node is not None:
            self._sync_managers()
            self._save()
        return node

    def set_availability(self, node_id: str, availability: Availability) -> None:
        self.put_node(replace(self.state.nodes[node_id], availability=availability))

    def set_membership(self, cluster: ClusterRecord) -> None:
        """This node's own role, store or endpoint changed (promote, demote)."""
        self.state.cluster = cluster
        self._sync_managers()
        self._save()

    def sync_records(self, nodes: list[NodeRecord], roles: dict[str, str]) -> bool:
        """The shared records as another manager left them; True if anything changed."""
        cluster = self.state.cluster
        fresh = {n.id: n for n in nodes}
        changed = fresh != self.state.nodes
        if cluster is not None and roles and cluster.role is Role.MANAGER and \
                roles != cluster.role_secrets:
            cluster.role_secrets = dict(roles)
            changed = True
        if changed:
            self.state.nodes = fresh
            self._sync_managers()
            self._save()
        return changed

    def _sync_managers(self) -> None:
        cluster = self.state.cluster
        if cluster is not None and self._records is not None:
            cluster.managers = managers_of(list(self.state.nodes.values())) or cluster.managers

    def clear_cluster(self) -> list[str]:
        """This node left its cluster: forget it, its nodes and its cluster networks.
        Returns the ids of the networks forgotten."""
        gone = [n.id for n in self._networks.values() if n.scope == Scope.SWARM]
        for network_id in gone:
            self.drop_network(network_id)
        self.state.cluster = None
        self.state.nodes.clear()
        self._records = None
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
        return self._networks.get(network_id)

    def networks(self) -> list[Network]:
        return list(self._networks.values())

    def put_network(self, network: Network) -> None:
        self.generation += 1
        self._table.save_network(network)
        self._networks[network.id] = network

    def cache_network(self, network: Network) -> None:
        """A network whose row the address book has just written (with its subnets)."""
        self.generation += 1
        self._networks[network.id] = network

    def forget_network(self, network_id: str) -> None:
        """A network whose row the address book has just dropped (with its subnets)."""
        self.generation += 1
        self._networks.pop(network_id, None)

    def remember_network(self, network: Network) -> None:
        """Keep a cluster network new to this worker (so it restarts without a manager)."""
        if network.id not in self._networks:
            self.put_network(network)

    def reload_networks(self, rows: list[Network] | None = None) -> None:
        """Read the network rows again (or take ``rows``, read off the lock): for a table
        other writers share (several managers on one distributed store), after they
        changed it."""
        if rows is None:
            rows = self._table.load_networks()
        self._networks = {n.id: n for n in rows}
        self._reloaded = time.monotonic()

    def network_missed(self) -> bool:
        """A network asked for is not known: on shared records, read the rows again (at
        most once a second, and never an error: the cache is the answer when etcd is
        not). True if they were read."""
        if self._records is None or time.monotonic() - self._reloaded < MISS_RELOAD_S:
            return False
        try:
            self.reload_networks()
        except NetfabricError:
            self._reloaded = time.monotonic()
            return False
        return True

    def drop_network(self, network_id: str) -> None:
        self.generation += 1
        if network_id in self._networks:
            self._table.drop_network(network_id)
            del self._networks[network_id]

    # -- sandboxes and endpoints --------------------------------------------------------------

    def local_endpoints(self, network_id: str) -> list[tuple[SandboxRecord, EndpointRecord]]:
        """The endpoints of this host's sandboxes on one network."""
        return [(sb, ep) for sb in self.state.sandboxes.values() for ep in sb.endpoints
                if ep.network_id == network_id]

    def add_endpoint(self, sb: SandboxRecord, ep: EndpointRecord, network: Network) -> None:
        """``ep`` joins ``sb`` (which is recorded if new); ``network`` is kept if new."""
        self.remember_network(network)
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
