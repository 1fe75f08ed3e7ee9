"""The manager's side of the cluster endpoint: one handler per verb a node may call.

Every verb but ``join`` arrives authenticated by the cluster secret (the daemon checks the
MAC before this runs). ``join`` is answered only to a valid token's offer.
"""

from __future__ import annotations

from typing import Any

from netfabric.agent import handshake
from netfabric.agent.addresses import AddressRouter
from netfabric.agent.context import AgentContext, check_ip, check_name
from netfabric.agent.networks import NetworkRegistry
from netfabric.agent.state import ClusterRecord, NodeRecord
from netfabric.api.types import Role, to_wire
from netfabric.errors import ClusterError, IPAMError, NotFound
from netfabric.ipam.addr import IPFamily

__all__ = ["ManagerRpc"]


class ManagerRpc:
    """Answers the cluster verbs: join, get_network, allocate, release, lease_block,
    release_block, leave."""

    def __init__(self, ctx: AgentContext, networks: NetworkRegistry,
                 addresses: AddressRouter) -> None:
        self._ctx = ctx
        self._networks = networks
        self._addresses = addresses

    async def handle(self, verb: str, args: dict[str, Any]) -> Any:
        """One authenticated (except ``join``) call from a node to this manager; an IPAM
        refusal names networks and hosts by name (the asking node may not know the IDs)."""
        try:
            return await self._handle(verb, args)
        except IPAMError as exc:
            named = self._ctx.ledger.name_ids(str(exc))
            if named == str(exc):
                raise
            raise type(exc)(named) from exc

    async def _handle(self, verb: str, args: dict[str, Any]) -> Any:
        ctx = self._ctx
        cluster = ctx.require_manager()
        if verb == "join":
            return await self._accept_join(cluster, handshake.JoinOffer.from_wire(args))
        if verb == "get_network":
            return to_wire(self._networks.find(str(args.get("name", ""))))
        if verb == "allocate":
            net = self._networks.by_id(str(args.get("network_id", "")))
            alloc = await self._addresses.manager_allocate(
                net.id, str(args.get("node_id", "")), check_ip(args.get("ip"), "address"))
            return to_wire(alloc)
        if verb == "release":
            net = self._networks.by_id(str(args.get("network_id", "")))
            await self._addresses.manager_release(net.id, str(args.get("ip", "")),
                                                  str(args.get("node_id", "")))
            return None
        if verb == "lease_block":
            net = self._networks.by_id(str(args.get("network_id", "")))
            fam = IPFamily(int(args.get("family", 4)))
            lease = await ctx.thread(ctx.book.lease_block, net.id, str(args.get("host_id", "")),
                                     address=check_ip(args.get("ip"), "address"), family=fam)
            return lease.to_dict()
        if verb == "release_block":
            net = self._networks.by_id(str(args.get("network_id", "")))
            await ctx.thread(ctx.book.release_block, net.id, str(args.get("host_id", "")),
                             str(args.get("block", "")))
            return None
        if verb == "leave":
            async with ctx.lock:
                node = ctx.ledger.drop_node(str(args.get("node_id", "")))
                if node is not None:
                    await ctx.thread(ctx.book.release_node, node.id)
            return None
        raise NotFound(f"unknown cluster verb {verb!r}")

    async def _accept_join(self, cluster: ClusterRecord, offer: handshake.JoinOffer) -> Any:
        ctx = self._ctx
        role, role_secret = handshake.accept_offer(offer, cluster_secret=cluster.secret,
                                                   role_secrets=cluster.role_secrets)
        if role == Role.MANAGER:
            # A second manager needs the store replicated (a distributed engine behind the
            # Store protocol); two SQLite stores would allocate independently.
            raise ClusterError(
                "this cluster keeps its state in the embedded single-manager store: a second "
                "manager is not supported; join this node as a worker")
        check_name(offer.hostname, "host")
        check_ip(offer.address, "node address")
        async with ctx.lock:
            for n in list(ctx.ledger.state.nodes.values()):
                if n.id != offer.node_id and n.address == offer.address and \
                        n.gossip_port == offer.gossip_port:
                    # the same host re-joined with a new identity: its old blocks are free
                    ctx.ledger.drop_node(n.id)
                    await ctx.thread(ctx.book.release_node, n.id)
            ctx.ledger.put_node(NodeRecord(
                id=offer.node_id, hostname=offer.hostname, address=offer.address,
                gossip_port=offer.gossip_port, role=Role(role)))
        return {"sealed": handshake.seal_secret(cluster.secret, role_secret=role_secret,
                                                nonce=offer.nonce),
                "role": role, "cluster_id": cluster.cluster_id, "managers": cluster.managers,
                "nodes": [to_wire(n) for n in ctx.ledger.state.nodes.values()]}
