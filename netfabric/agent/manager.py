"""The manager's side of the cluster endpoint: one handler per verb a node may call.

Every verb but ``join`` arrives authenticated by the cluster secret (the daemon checks the
MAC before this runs). ``join`` is answered only to a valid token's offer.
"""

from __future__ import annotations

from typing import Any

from netfabric.agent import handshake
from netfabric.agent.addresses import AddressRouter
from netfabric.agent.cluster import SECOND_MANAGER_NEEDS_ETCD
from netfabric.agent.context import AgentContext, check_ip, check_name
from netfabric.agent.networks import NetworkRegistry
from netfabric.agent.rpc import (
    CLUSTER_VERBS,
    AllocateArgs,
    JoinAnswer,
    LeaseBlockArgs,
    LeaveArgs,
    NameArgs,
    ReleaseArgs,
    ReleaseBlockArgs,
    split_addr,
)
from netfabric.agent.state import ClusterRecord, NodeRecord
from netfabric.api.types import Role, to_wire
from netfabric.errors import ClusterError, IPAMError, NotFound

__all__ = ["ManagerRpc"]


class ManagerRpc:
    """Answers the cluster verbs: join, get_network, allocate, release, lease_block,
    release_block, leave."""

    def __init__(self, ctx: AgentContext, networks: NetworkRegistry,
                 addresses: AddressRouter) -> None:
        self._ctx = ctx
        self._networks = networks
        self._addresses = addresses

    async def handle(self, verb: str, args: Any) -> Any:
        """One authenticated (except ``join``) call from a node to this manager; an IPAM
        refusal names networks and hosts by name (the asking node may not know the IDs)."""
        try:
            return await self._handle(verb, args)
        except IPAMError as exc:
            named = self._ctx.ledger.name_ids(str(exc))
            if named == str(exc):
                raise
            raise type(exc)(named) from exc

    async def _handle(self, verb: str, raw: Any) -> Any:
        """The call's arguments checked against the verb's Struct in :data:`CLUSTER_VERBS`,
        then served."""
        ctx = self._ctx
        cluster = ctx.require_manager()
        spec = CLUSTER_VERBS.get(verb)
        if spec is None:
            raise NotFound(f"unknown cluster verb {verb!r}")
        match spec.parse(raw):
            case handshake.JoinOffer() as offer:
                return to_wire(await self._accept_join(cluster, offer))
            case NameArgs(name=name):
                return to_wire(self._networks.find(name))
            case AllocateArgs() as a:
                net = self._networks.by_id(a.network_id)
                return to_wire(await self._addresses.manager_allocate(
                    net.id, a.node_id, check_ip(a.ip, "address")))
            case ReleaseArgs() as r:
                net = self._networks.by_id(r.network_id)
                await self._addresses.manager_release(net.id, r.ip, r.node_id)
            case LeaseBlockArgs() as lb:
                net = self._networks.by_id(lb.network_id)
                return to_wire(await ctx.thread(ctx.book.lease_block, net.id, lb.host_id,
                                                address=check_ip(lb.ip, "address"),
                                                family=lb.family))
            case ReleaseBlockArgs() as rb:
                net = self._networks.by_id(rb.network_id)
                await ctx.thread(ctx.book.release_block, net.id, rb.host_id, rb.block)
            case LeaveArgs(node_id=node_id):
                async with ctx.lock:
                    node = ctx.ledger.drop_node(node_id)
                    if node is not None:
                        await ctx.thread(ctx.book.release_node, node.id)
        return None

    async def _accept_join(self, cluster: ClusterRecord,
                           offer: handshake.JoinOffer) -> JoinAnswer:
        ctx = self._ctx
        role, role_secret = handshake.accept_offer(offer, cluster_secret=cluster.secret,
                                                   role_secrets=cluster.role_secrets)
        if role == Role.MANAGER and not cluster.store:
            # A second manager needs the store replicated (etcd behind the Store protocol);
            # two SQLite stores would allocate independently.
            raise ClusterError(SECOND_MANAGER_NEEDS_ETCD)
        check_name(offer.hostname, "host")
        check_ip(offer.address, "node address")
        async with ctx.lock:
            for n in list(ctx.ledger.state.nodes.values()):
                if n.id != offer.node_id and n.address == offer.address and \
                        n.gossip_port == offer.gossip_port:
                    # the same host re-joined with a new identity: its old blocks are free
                    ctx.ledger.drop_node(n.id)
                    await ctx.thread(ctx.book.release_node, n.id)
            # a new manager serves on its address and this cluster's port (it writes its
            # own row again once it serves)
            manager_addr = f"{offer.address}:{split_addr(cluster.listen)[1]}" \
                if role == Role.MANAGER else ""
            ctx.ledger.put_node(NodeRecord(
                id=offer.node_id, hostname=offer.hostname, address=offer.address,
                gossip_port=offer.gossip_port, role=Role(role), manager_addr=manager_addr))
        return JoinAnswer(
            sealed=handshake.seal_secret(cluster.secret, role_secret=role_secret,
                                         nonce=offer.nonce),
            role=Role(role), cluster_id=cluster.cluster_id, managers=list(cluster.managers),
            nodes=list(ctx.ledger.state.nodes.values()),
            store=cluster.store if role == Role.MANAGER else "")
