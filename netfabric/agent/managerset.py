"""A manager's part in a cluster of several managers sharing etcd.

Every manager serves every cluster verb from the same rows; what each must also do:

- keep the cluster's records (node registry, role secrets) attached to its
  :class:`~netfabric.agent.ledger.Ledger`, so its changes go to etcd first;
- follow the others' changes at once: a watch of the cluster's prefix marks what changed
  (networks, subnets, nodes, secrets, leases) and one sync task re-reads it (a periodic
  re-read covers a watch that broke with its etcd member);
- hold its liveness lease and take the leader lease when it is free
  (:mod:`netfabric.agent.leadership`), and, as leader, run the jobs that need one actor:
  the address blocks of hosts no longer in the registry go back to the pool, and the
  leader-change listeners run (the task runner plans on the leader only).

A one-manager cluster on the embedded SQLite store has none of this: it is its own leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from netfabric.agent.context import AgentContext
from netfabric.agent.leadership import (
    LEADER_LEASE,
    LEASE_TTL,
    ManagerStatus,
    liveness_lease,
    manager_status,
    orphans,
)
from netfabric.agent.ports import ClusterRecords, Lease, RecordsFactory
from netfabric.api.types import Role
from netfabric.errors import NetfabricError
from netfabric.model import Scope
from netfabric.store.etcd import RESYNC

__all__ = ["RESYNC_INTERVAL", "ManagerSet"]

log = logging.getLogger(__name__)

RESYNC_INTERVAL = 2.0
"""Seconds between full re-reads of the shared records (the watch makes them faster)."""
RECLAIM_INTERVAL = 5.0
"""Seconds between the leader's passes over hosts that lease blocks but left the registry."""
_NETWORK_KINDS = frozenset({"n", "s"})


class ManagerSet:
    """Shared records, their watch, the leases and the leader's jobs of one manager."""

    def __init__(self, ctx: AgentContext, open_records: RecordsFactory, *,
                 ttl: int = LEASE_TTL, resync: float = RESYNC_INTERVAL) -> None:
        self._ctx = ctx
        self._open = open_records
        self._ttl = ttl
        self._resync = resync
        self._records: ClusterRecords | None = None
        self._stop_watch: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._elect = asyncio.Event()
        self._alive: Lease | None = None
        self._leader: Lease | None = None
        self._orphans: set[str] = set()
        self._last_reclaim = 0.0
        self.leases: dict[str, str] = {}
        """Who holds each lease, as last read (leader, managers' liveness)."""
        self._leases_known = False
        self._listeners: list[Callable[[], None]] = []
        self._on_demoted: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._demoting: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def records(self) -> ClusterRecords | None:
        return self._records

    def on_leader_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def on_demoted(self, demote: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """What to run when the registry says this manager is a worker now (demoted by
        another manager, maybe while it was down)."""
        self._on_demoted = demote

    async def attach(self, url: str, prefix: str, secret: str) -> ClusterRecords:
        """Open the cluster's records at ``url`` and make the ledger write through them."""
        records = await self._ctx.thread(self._open, url, prefix, secret)
        self._records = records
        self._ctx.ledger.attach_records(records)
        return records

    async def start(self) -> None:
        """Follow the records and hold the leases (a manager of a cluster on etcd)."""
        records = self._records
        if records is None or self._tasks:
            return
        loop = asyncio.get_running_loop()

        def changed(key: str, deleted: bool) -> None:   # on the watch's thread
            loop.call_soon_threadsafe(self._mark, key.partition("/")[0])

        try:
            self._stop_watch = await self._ctx.thread(records.watch, changed)
        except NetfabricError as exc:   # the periodic re-read still follows the others
            log.warning("cannot watch the cluster's store: %s", exc)
        self._tasks = [asyncio.create_task(self._sync_loop(), name="nf-manager-sync"),
                       asyncio.create_task(self._lease_loop(), name="nf-manager-leases")]
        self._mark("nodes")   # demoted while down? the registry says so

    async def stop(self, *, forget_self: bool = False) -> None:
        """Stop following; give the leases up (another manager leads at once); with
        ``forget_self`` (this manager leaves), drop its registry row too."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._stop_watch is not None:
            with contextlib.suppress(Exception):
                self._stop_watch()
            self._stop_watch = None
        records, self._records = self._records, None
        for lease in (self._leader, self._alive):
            if lease is not None:
                with contextlib.suppress(Exception):
                    await self._ctx.thread(lease.release)
        self._leader = self._alive = None
        self._ctx.leader_id = ""
        self.leases = {}
        self._leases_known = False
        if records is not None:
            if forget_self:
                with contextlib.suppress(Exception):
                    await self._ctx.thread(records.drop_node, self._ctx.node_id)
            with contextlib.suppress(Exception):
                await self._ctx.thread(records.close)
        if self._ctx.ledger.records is records:
            self._ctx.ledger.attach_records(None)

    # -- what node ls shows ----------------------------------------------------------------------

    async def leases_read(self) -> None:
        """Read the leases now if the lease loop has not yet since :meth:`start`: a manager
        just promoted or restarted would otherwise show every manager Unreachable."""
        records = self._records
        if self._leases_known or records is None:
            return
        with contextlib.suppress(NetfabricError):   # etcd unreachable: the loop says so
            self.leases = await self._ctx.thread(records.leases)
            self._leases_known = True

    def status(self, node_id: str, *, gossip_alive: bool | None) -> ManagerStatus:
        if node_id == self._ctx.node_id:
            gossip_alive = True
        return manager_status(node_id, leases=self.leases, gossip_alive=gossip_alive)

    # -- following the others --------------------------------------------------------------------

    def _mark(self, kind: str) -> None:
        if kind == RESYNC:   # the watch (re)opened: changes may have gone unseen
            self._dirty.update(("nodes", "cluster", "n", "s", "leases"))
        else:
            self._dirty.add(kind)
        self._wake.set()
        if kind in ("leases", RESYNC):
            self._elect.set()   # a lease went (or came): look again at once

    async def _sync_loop(self) -> None:
        failing = False
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._resync)
            except TimeoutError:
                self._dirty.update(("nodes", "n"))
            self._wake.clear()
            await asyncio.sleep(0.01)   # a burst of changes is one re-read
            dirty, self._dirty = self._dirty, set()
            try:
                await self.sync(dirty)
            except NetfabricError as exc:
                if not failing:   # once per outage, not every re-read
                    log.warning("cannot re-read the cluster's store: %s", exc)
                failing = True
                self._dirty |= dirty   # read again once it answers
            else:
                if failing:
                    log.info("the cluster's store answers again")
                failing = False

    async def sync(self, dirty: set[str]) -> None:
        """Re-read what changed: the registry and secrets, the networks and their IPAM."""
        ctx, records = self._ctx, self._records
        if records is None:
            return
        if dirty & {"nodes", "cluster"}:
            nodes = await ctx.thread(records.load_nodes)
            roles = await ctx.thread(records.load_roles)
            async with ctx.lock:
                ctx.ledger.sync_records(nodes, roles)
            me = ctx.ledger.state.nodes.get(ctx.node_id)
            if me is not None and me.role is Role.WORKER and ctx.role is Role.MANAGER and \
                    self._on_demoted is not None and \
                    (self._demoting is None or self._demoting.done()):
                self._demoting = asyncio.create_task(self._on_demoted())
        if dirty & _NETWORK_KINDS:
            if "s" in dirty:   # a subnet came or went; blocks need no re-read (CAS)
                await ctx.thread(ctx.book.reload)
            generation = ctx.ledger.generation
            rows = await ctx.thread(ctx.book.load_networks)   # etcd, off the lock
            async with ctx.lock:
                before = {n.id for n in ctx.ledger.networks() if n.scope == Scope.SWARM}
                if ctx.ledger.generation == generation:
                    ctx.ledger.reload_networks(rows)
                else:   # this node changed one meanwhile: read again, now
                    await ctx.thread(ctx.ledger.reload_networks)
                after = {n.id for n in ctx.ledger.networks() if n.scope == Scope.SWARM}
            for network_id in sorted(after - before):
                ctx.mesh.join_network(network_id)
            for network_id in sorted(before - after):
                if not ctx.ledger.local_endpoints(network_id):
                    ctx.mesh.leave_network(network_id)

    # -- leases and the leader's jobs ------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            was = self._ctx.leader_id
            try:
                await self._keep_leases()
                if self.is_leader:
                    await self._leader_jobs()
            except NetfabricError as exc:
                # cut off from etcd's quorum: lead nothing, claim nothing
                self._leader = self._alive = None
                self._ctx.leader_id = ""
                self.leases = {}
                self._leases_known = True   # known to be none: node ls need not ask again
                log.warning("cannot hold the manager leases: %s", exc)
            if self._ctx.leader_id != was:
                log.info("leader is now %s", self._ctx.leader_id or "unknown")
                for listener in self._listeners:
                    listener()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._elect.wait(), timeout=self._ttl / 3)
            self._elect.clear()

    @property
    def is_leader(self) -> bool:
        return self._leader is not None

    async def _keep_leases(self) -> None:
        ctx, records = self._ctx, self._records
        if records is None:
            return
        me = ctx.node_id
        if self._alive is not None and not await ctx.thread(self._alive.refresh):
            self._alive = None
        if self._alive is None:
            self._alive = await ctx.thread(records.hold, liveness_lease(me), me, self._ttl)
        if self._leader is not None and not await ctx.thread(self._leader.refresh):
            self._leader = None
        if self._leader is None:
            self._leader = await ctx.thread(records.hold, LEADER_LEASE, me, self._ttl)
        self.leases = await ctx.thread(records.leases)
        self._leases_known = True
        ctx.leader_id = self.leases.get(LEADER_LEASE, "")
        if ctx.leader_id != me:
            self._leader = None

    async def _leader_jobs(self) -> None:
        now = time.monotonic()
        if now - self._last_reclaim >= RECLAIM_INTERVAL:
            self._last_reclaim = now
            await self.reclaim_orphans()

    async def reclaim_orphans(self) -> None:
        """The leader's job: blocks leased to hosts that left the registry (a node removed
        while its manager died mid-way, a crash between the registry and the IPAM) go back
        to the pool, once two passes in a row found them so."""
        ctx = self._ctx
        owners = await ctx.thread(ctx.book.block_owners)
        reclaim, self._orphans = orphans(owners, ctx.ledger.state.nodes, self._orphans)
        for host in sorted(reclaim):
            async with ctx.lock:
                if host not in ctx.ledger.state.nodes:
                    log.info("leader: reclaiming the address blocks of %s (not in the "
                             "registry)", host[:12])
                    await ctx.thread(ctx.book.release_node, host)

