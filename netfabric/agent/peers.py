"""Peer sync: the gossip endpoint table, programmed into the kernel and DNS.

A remote endpoint appearing or leaving on an overlay schedules one sync of that network; a
burst of events coalesces into one sync in flight per network, run again if more came. A
remote endpoint's name is published only once the sync that programs its FDB and neighbour
entries is done, so a name never resolves to an address that cannot be reached yet.

A network is synced while this host has an endpoint on it: a sandbox of the agent's state,
or an endpoint a front end plumbed itself and announced with :meth:`PeerSync.hold` (the
Docker plugin's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from netfabric.agent.context import AgentContext
from netfabric.agent.ports import MeshEvent, MeshEventKind
from netfabric.errors import NetfabricError
from netfabric.model import Endpoint, Network, Scope

__all__ = ["PeerSync"]

log = logging.getLogger(__name__)


class PeerSync:
    """Keeps each overlay's remote endpoints programmed; subscribe :meth:`on_mesh_event`."""

    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        # remote endpoints whose names wait for their FDB/neighbour entries (network -> id -> ep)
        self._pending_names: dict[str, dict[str, Endpoint]] = {}
        self._programmed: dict[str, frozenset[Endpoint]] = {}
        # endpoints front ends plumbed themselves: network id -> (network, endpoint ids)
        self._held: dict[str, tuple[Network, set[str]]] = {}
        self.on_programmed: list[Callable[[], None]] = []
        """Called after a sync changed what is programmed (services wait for it)."""

    def reachable(self, network_id: str) -> frozenset[str]:
        """IPv4 addresses of the remote endpoints of a network programmed here (FDB and
        neighbour entries in place): only those may be load-balanced to."""
        return frozenset(ep.ipv4 for ep in self._programmed.get(network_id, ()) if ep.ipv4)

    def hold(self, network: Network, endpoint_id: str) -> None:
        """A front end's endpoint on ``network`` is here: keep the network synced."""
        _, ids = self._held.setdefault(network.id, (network, set()))
        ids.add(endpoint_id)

    def unhold(self, network_id: str, endpoint_id: str) -> None:
        held = self._held.get(network_id)
        if held is not None:
            held[1].discard(endpoint_id)
            if not held[1]:
                del self._held[network_id]

    def holds(self, network_id: str) -> bool:
        """Whether a front end still has an endpoint on ``network_id`` here."""
        return network_id in self._held

    def _synced_network(self, network_id: str) -> Network | None:
        """The network to sync, if this host has an endpoint on it."""
        ledger = self._ctx.ledger
        if ledger.local_endpoints(network_id):
            return ledger.network(network_id)
        held = self._held.get(network_id)
        if held is not None:
            return ledger.network(network_id) or held[0]
        return None

    async def on_mesh_event(self, event: MeshEvent) -> None:
        ep = event.endpoint
        if event.node_id == self._ctx.node_id:
            return
        if event.kind is MeshEventKind.ENDPOINT_SET and ep is not None:
            if ep.ipv4 or ep.ipv6:
                self._pending_names.setdefault(ep.network_id, {})[ep.id] = ep
            self.schedule(ep.network_id)
        elif event.kind is MeshEventKind.ENDPOINT_GONE and ep is not None:
            self._pending_names.get(ep.network_id, {}).pop(ep.id, None)
            self._ctx.names.remove_endpoint(ep.network_id, ep.sandbox, owner=ep.id)
            self.schedule(ep.network_id)

    def schedule(self, network_id: str) -> None:
        """Coalesce bursts: one peer sync per network in flight, run again if more came."""
        self._dirty.add(network_id)
        task = self._tasks.get(network_id)
        if task is None or task.done():
            self._tasks[network_id] = asyncio.get_running_loop().create_task(
                self._job(network_id))

    async def _job(self, network_id: str) -> None:
        while network_id in self._dirty:
            self._dirty.discard(network_id)
            # names seen before this sync starts are the ones it programs
            pending = self._pending_names.pop(network_id, {})
            net = self._synced_network(network_id)
            if net is not None:
                try:
                    await self.sync(net)
                except NetfabricError as exc:
                    log.warning("peer sync of network %s failed: %s", net.name, exc)
            current = set(self._ctx.mesh.endpoints(network_id)) if pending else set()
            for ep in pending.values():
                if ep not in current:  # gone or replaced while the sync ran
                    continue
                self._ctx.names.set_endpoint(ep.network_id, ep.sandbox, aliases=ep.aliases,
                                             ipv4=ep.ipv4, ipv6=ep.ipv6, owner=ep.id)

    async def sync(self, net: Network) -> None:
        """Program the remote endpoints of ``net``; skipped when they did not change (the
        driver keeps the last set, and a reconverge costs a netlink dump)."""
        ctx = self._ctx
        if not ctx.mesh.started or net.scope != Scope.SWARM:
            return
        peers = sorted((e for e in ctx.mesh.endpoints(net.id) if e.node_id != ctx.node_id),
                       key=lambda e: e.id)
        key = frozenset(peers)
        if self._programmed.get(net.id) == key:
            return
        await ctx.thread(ctx.kernel.set_peers, net, peers)
        self._programmed[net.id] = key
        for hook in self.on_programmed:
            hook()

    async def drain(self) -> None:
        """Wait until no sync is in flight or scheduled."""
        while any(not t.done() for t in self._tasks.values()):
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def forget_cluster(self, networks: Sequence[Network]) -> None:
        """This node left its cluster: drop what the old membership's peers put here on
        ``networks`` (its cluster networks): syncs in flight, the remote endpoints' names
        and their kernel (FDB/neighbour) entries. A new cluster starts from nothing."""
        ids = {net.id for net in networks}
        for network_id in ids:
            task = self._tasks.pop(network_id, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._dirty.discard(network_id)
            self._pending_names.pop(network_id, None)
        for net in networks:
            for ep in self._programmed.pop(net.id, frozenset()):
                self._ctx.names.remove_endpoint(net.id, ep.sandbox, owner=ep.id)
            try:
                await self._ctx.thread(self._ctx.kernel.set_peers, net, [])
            except NetfabricError as exc:
                log.warning("peers of network %s not removed: %s", net.name, exc)
