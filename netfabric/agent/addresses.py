"""Address routing: which IPAM hands out an endpoint's address, and giving it back.

A local network's addresses come from this node's :class:`~netfabric.agent.ports.AddressBook`
(on a manager, the cluster's). A worker takes addresses on a cluster network from blocks it
leases from the manager (:class:`~netfabric.agent.ports.BlockBook`) when the subnet has room
for several blocks, else from the manager one by one. An address a worker cannot give back
to an unreachable manager is kept in the state and retried until a manager takes it.

A fixed address (``run --ip``) is given wherever it lies in the subnet, as Docker does. When
it lies in a block leased to another host, the manager's IPAM hands it out only once that
host (the only one that knows which addresses of its block are used) has lent it: the
manager calls the owner's cluster endpoint (``lend_address``), the owner marks it
unavailable in its own store and never hands it out, nor after a restart; the manager then
holds it for the asking node. When it is released the manager tells the owner
(``unlend_address``, best effort: an owner that does not hear it just never uses it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from netfabric.agent.context import AgentContext, check_ip
from netfabric.agent.ports import Allocation, BlockBook, ManagerCall
from netfabric.agent.rpc import ALLOCATE, LEND_ADDRESS, NODE_CALLS, UNLEND_ADDRESS, LendArgs
from netfabric.api.types import Role
from netfabric.errors import (
    AddressHosted,
    AgentUnreachable,
    NetfabricError,
    NotFound,
    PoolExhausted,
)
from netfabric.model import Network, Scope

__all__ = ["BLOCKS_MIN_PREFIX", "RETRY_INTERVAL", "AddressRouter"]

log = logging.getLogger(__name__)

BLOCKS_MIN_PREFIX = 24
"""Cluster subnets this size or larger are allocated from per-host blocks on workers."""
RETRY_INTERVAL = 2.0
"""Seconds between tries to give addresses back to an unreachable manager."""


def _exhausted(net: Network, exc: PoolExhausted) -> PoolExhausted:
    cidrs = ", ".join(s.cidr for s in net.subnets) or "no subnet"
    err = PoolExhausted(f"no available IPv4 address on network {net.name} (subnet {cidrs}): "
                        "every address is in use")
    err.__cause__ = exc
    return err



def outside_ip_range(net: Network, ip: str) -> bool:
    """``ip`` lies in a subnet of ``net`` but outside that subnet's ``--ip-range``."""
    addr = ipaddress.ip_address(ip)
    for s in net.subnets:
        if s.ip_range is None:
            continue
        cidr = ipaddress.ip_network(s.cidr)
        if addr.version == cidr.version and addr in cidr and \
                addr not in ipaddress.ip_network(s.ip_range):
            return True
    return False

class AddressRouter:
    """Allocates and releases endpoint addresses from the right IPAM."""

    def __init__(self, ctx: AgentContext, *,
                 blocks: Callable[[ManagerCall], BlockBook] | None = None,
                 retry_interval: float = RETRY_INTERVAL) -> None:
        self._ctx = ctx
        self._blocks_factory = blocks
        self._blocks: BlockBook | None = None
        self._retry_task: asyncio.Task[None] | None = None
        self._retry_interval = retry_interval
        self._unlends: set[asyncio.Task[None]] = set()

    def block_book(self, net: Network) -> BlockBook | None:
        """A worker's block allocator, for cluster networks with room for several blocks
        (>= a /24: four /26 blocks); smaller subnets stay with the manager, so that one host
        never holds a whole tiny subnet."""
        if self._blocks_factory is None or net.scope != Scope.SWARM or \
                self._ctx.role is not Role.WORKER:
            return None
        v4 = [s for s in net.subnets if ":" not in s.cidr]
        if not v4 or ipaddress.ip_network(v4[0].cidr).prefixlen > BLOCKS_MIN_PREFIX:
            return None
        if self._blocks is None:
            self._blocks = self._blocks_factory(self._ctx.call_manager)
        return self._blocks

    async def allocate(self, net: Network, ip: str | None) -> Allocation:
        ctx = self._ctx
        # a fixed address outside the ip-range is in no host's block: the manager holds it
        blocks = None if ip is not None and outside_ip_range(net, ip) else self.block_book(net)
        if blocks is not None:
            try:
                return await ctx.thread(blocks.allocate, net.id, ip=ip, ipv6=net.ipv6)
            except PoolExhausted as exc:
                raise _exhausted(net, exc) from exc
            except AddressHosted:
                if ip is None:
                    raise
                # in another host's block: the manager gets it lent and holds it for us
        if net.scope == Scope.SWARM and ctx.role is Role.WORKER:
            raw = await ctx.call_manager("allocate", {"network_id": net.id,
                                                      "node_id": ctx.node_id, "ip": ip})
            return ALLOCATE.parse_result(raw, peer="the manager")
        try:
            return await self.manager_allocate(net.id, ctx.node_id, ip)
        except PoolExhausted as exc:
            raise _exhausted(net, exc) from exc

    async def manager_allocate(self, network_id: str, node_id: str, ip: str | None
                               ) -> Allocation:
        """An address from this node's IPAM (on a manager, the cluster's) for ``node_id``;
        a fixed ``ip`` in a block leased to another host is lent by that host first."""
        ctx = self._ctx
        try:
            return await ctx.thread(ctx.book.allocate, network_id, node_id=node_id, ip=ip)
        except AddressHosted:
            if ip is None:
                raise
            owner = await ctx.thread(ctx.book.block_owner, network_id, ip)
            if owner is None or owner == node_id:
                raise
        await self._lend(owner, network_id, ip)
        return await ctx.thread(ctx.book.allocate, network_id, node_id=node_id, ip=ip,
                                lent_by=owner)

    async def _lend(self, owner: str, network_id: str, ip: str) -> None:
        ctx = self._ctx
        node = ctx.ledger.state.nodes.get(owner)
        name = node.hostname if node is not None else owner[:12]
        try:
            await ctx.call_node(owner, LEND_ADDRESS.name, {"network_id": network_id, "ip": ip})
        except (AgentUnreachable, NotFound) as exc:
            raise AddressHosted(f"{ip} lies in an address block leased to host {name}, "
                                f"which must lend it but does not answer: {exc}") from exc

    async def manager_release(self, network_id: str, ip: str, node_id: str) -> None:
        """Give an address back to this node's IPAM; if it lies in a block leased to a host
        (a lent address), that host may use it again: told in the background."""
        ctx = self._ctx
        await ctx.thread(ctx.book.release, network_id, ip, node_id=node_id)
        owner = await ctx.thread(ctx.book.block_owner, network_id, ip)
        if owner is not None and owner != ctx.node_id:
            task = asyncio.get_running_loop().create_task(self._unlend(owner, network_id, ip))
            self._unlends.add(task)
            task.add_done_callback(self._unlends.discard)

    async def _unlend(self, owner: str, network_id: str, ip: str) -> None:
        try:
            await self._ctx.call_node(owner, UNLEND_ADDRESS.name,
                                      {"network_id": network_id, "ip": ip})
        except NetfabricError as exc:   # it keeps the address unused: harmless
            log.info("host %s was not told that %s is free again: %s", owner[:12], ip, exc)

    async def node_verb(self, verb: str, raw: Any) -> Any:
        """The manager asks this host to lend an address of its blocks, or takes it back
        (arguments checked against :data:`~netfabric.agent.rpc.NODE_CALLS`)."""
        spec = NODE_CALLS.get(verb)
        if spec is None:
            raise NotFound(f"unknown node verb {verb!r}")
        args = spec.parse(raw)
        assert isinstance(args, LendArgs)
        ctx = self._ctx
        network_id, ip = args.network_id, check_ip(args.ip, "address")
        if self._blocks is None and self._blocks_factory is not None and \
                ctx.role is Role.WORKER:
            self._blocks = self._blocks_factory(ctx.call_manager)
        blocks = self._blocks
        if blocks is None:
            return False
        fn = blocks.lend if spec is LEND_ADDRESS else blocks.unlend
        return await ctx.thread(fn, network_id, ip)

    async def release(self, net: Network, ip: str | None) -> None:
        if ip is None:
            return
        ctx = self._ctx
        blocks = self.block_book(net)
        if blocks is not None and await ctx.thread(blocks.release, net.id, ip):
            return
        if net.scope == Scope.SWARM and ctx.role is Role.WORKER:
            try:
                await ctx.call_manager("release", {"network_id": net.id,
                                                   "node_id": ctx.node_id, "ip": ip})
            except AgentUnreachable:
                # Never lost: kept in the state and given back once a manager answers.
                ctx.ledger.add_pending_release(net.id, ip)
                self.resume()
        else:
            await self.manager_release(net.id, ip, ctx.node_id)

    async def network_left(self, net: Network) -> None:
        """The last local endpoint of a cluster network is gone: its empty blocks go back."""
        blocks = self.block_book(net)
        if blocks is not None:
            await self._ctx.thread(blocks.return_empty, net.id)

    async def forget(self, net: Network) -> None:
        """A cluster network was removed: drop what this host's blocks know of it."""
        blocks = self.block_book(net)
        if blocks is not None:
            await self._ctx.thread(blocks.forget_network, net.id)

    async def forget_all(self, network_ids: list[str]) -> None:
        """This node left its cluster (the manager reclaims its blocks at leave)."""
        if self._blocks is not None:
            for network_id in network_ids:
                await self._ctx.thread(self._blocks.forget_network, network_id)

    def resume(self) -> None:
        """Retry the pending releases in the background, if there are any."""
        if not self._ctx.ledger.state.pending_releases:
            return
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.get_running_loop().create_task(self._retry_releases())

    async def _retry_releases(self) -> None:
        """Give back the addresses a manager could not take while it was unreachable."""
        state = self._ctx.ledger.state
        while state.pending_releases and state.cluster is not None:
            network_id, ip = state.pending_releases[0]
            try:
                await self._ctx.call_manager("release", {"network_id": network_id,
                                                         "node_id": state.node_id, "ip": ip})
            except AgentUnreachable:
                await asyncio.sleep(self._retry_interval)
                continue
            except NetfabricError as exc:   # the network is gone: nothing to give back
                log.info("pending release of %s in %s dropped: %s", ip, network_id, exc)
            self._ctx.ledger.pop_pending_release()

    async def close(self) -> None:
        for task in list(self._unlends):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
        if self._blocks is not None:
            await self._ctx.thread(self._blocks.close)
