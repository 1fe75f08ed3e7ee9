"""Replicated tables (the networkdb model): entries, tombstones, network attachments.

An entry is keyed by (table, network, key) and holds a value, an owner node, the owner's
incarnation when it wrote it, and the owner's Lamport time. Merge is last-writer-wins on
``(ltime, owner)``; deletions are tombstones, reaped after ``reap_interval``.

Rules that close the networkdb bugs:

- one Lamport clock per node for entries *and* attachments, advanced past every time it
  sees; a local write always takes ``max(clock, existing entry's time) + 1``, so it moves
  past any tombstone, and a re-creation after leave/rejoin is never shadowed;
- a node that left a network at time L drops only the entries of that node older than L:
  a delayed "left" never deletes a newer re-creation, and an old "left" record never
  rejects a newer entry;
- the owner's death removes its entries without tombstones, so they are accepted again
  when the owner comes back (its entries then carry a higher owner incarnation); the
  caller rejects entries stamped with an incarnation the owner died at;
- entries of a network are stored only on nodes attached to it (per-network scoping).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from netfabric.gossip.events import EntryCreated, EntryDeleted, EntryUpdated, Event
from netfabric.gossip.messages import Attachment, EntryEvent, EntryState, NetworkEvent
from netfabric.gossip.sampling import RandomSet

__all__ = ["Entry", "Tables"]

_INF = math.inf


@dataclass(slots=True)
class Entry:
    value: bytes
    owner: str
    owner_incarnation: int
    ltime: int
    state: EntryState
    reap_at: float = _INF


@dataclass(slots=True)
class _Att:
    ltime: int
    attachment: Attachment
    since: float


EntryKey = tuple[str, str]  # (table, key) within a network


class Tables:
    """All table state of one node."""

    __slots__ = ("_att", "_by_owner", "_nets", "clock", "me", "net_nodes", "reap_interval")

    def __init__(self, me: str, *, reap_interval: float) -> None:
        self.me = me
        self.clock = 0
        self.reap_interval = reap_interval
        self._nets: dict[str, dict[EntryKey, Entry]] = {}
        """Entries per network this node is attached to."""
        self._by_owner: dict[str, set[tuple[str, str, str]]] = {}
        self._att: dict[str, dict[str, _Att]] = {}
        self.net_nodes: dict[str, RandomSet] = {}
        """Other nodes attached to each network."""

    # -- clock ------------------------------------------------------------------------
    def witness(self, ltime: int) -> None:
        if ltime > self.clock:
            self.clock = ltime

    def tick(self, floor: int = 0) -> int:
        self.clock = max(self.clock, floor) + 1
        return self.clock

    # -- queries ----------------------------------------------------------------------
    def networks(self) -> list[str]:
        return sorted(self._nets)

    def attached(self, network: str) -> bool:
        return network in self._nets

    def entries(self, table: str, network: str) -> dict[str, bytes]:
        """Live entries of one table in one network (empty if not attached)."""
        return {k: e.value for (t, k), e in self._nets.get(network, {}).items()
                if t == table and e.state == EntryState.LIVE}

    def entry(self, table: str, network: str, key: str) -> Entry | None:
        return self._nets.get(network, {}).get((table, key))

    def items(self) -> Iterator[tuple[EntryKey, Entry]]:
        """Every entry of every attached network, tombstones included."""
        for entries in self._nets.values():
            yield from entries.items()

    def count(self) -> int:
        return sum(len(d) for d in self._nets.values())

    def node_networks(self, node: str) -> list[str]:
        return sorted(n for n, a in self._att.get(node, {}).items()
                      if a.attachment == Attachment.JOINED)

    # -- attachments ------------------------------------------------------------------
    def join_network(self, network: str, now: float) -> NetworkEvent:
        self._nets.setdefault(network, {})
        ev = NetworkEvent(self.me, network, self.tick(), Attachment.JOINED)
        self._att.setdefault(self.me, {})[network] = _Att(ev.ltime, ev.attachment, now)
        return ev

    def leave_network(self, network: str, now: float) -> tuple[NetworkEvent, list[Event]]:
        """Detach: drop every entry of the network here; peers drop ours older than L."""
        ev = NetworkEvent(self.me, network, self.tick(), Attachment.LEFT)
        self._att.setdefault(self.me, {})[network] = _Att(ev.ltime, ev.attachment, now)
        gone = self._nets.pop(network, {})
        events: list[Event] = []
        for (table, key), e in gone.items():
            self._by_owner.get(e.owner, set()).discard((network, table, key))
            if e.state == EntryState.LIVE:
                events.append(EntryDeleted(table, network, key, e.value, e.owner))
        return ev, events

    def apply_network(self, ev: NetworkEvent, now: float) -> tuple[str, list[Event]]:
        """Merge a remote attachment record: ("new" | "stale" | "reassert", events)."""
        if ev.ltime > self.clock:
            self.clock = ev.ltime
        atts = self._att.get(ev.node)
        if atts is not None:
            cur = atts.get(ev.network)
            if cur is not None and cur.ltime >= ev.ltime:
                return "stale", []
        if ev.node == self.me:
            mine = self._att.get(self.me, {}).get(ev.network)
            if mine is not None and mine.ltime >= ev.ltime:
                return "stale", []
            return "reassert", []  # someone holds a record of us newer than ours: re-say
        atts = self._att.setdefault(ev.node, {})
        cur = atts.get(ev.network)
        if cur is not None and cur.ltime >= ev.ltime:
            return "stale", []
        atts[ev.network] = _Att(ev.ltime, ev.attachment, now)
        nodes = self._nodes_of(ev.network)
        if ev.attachment == Attachment.JOINED:
            nodes.add(ev.node)
            return "new", []
        nodes.discard(ev.node)
        return "new", self._drop_owner_in(ev.node, ev.network, before=ev.ltime)

    def bulk_join(self, records: Iterable[tuple[str, str, int]], now: float) -> None:
        """Record (node, network, ltime) attachments without merge rules (a warm start)."""
        for node, network, ltime in records:
            if node == self.me:
                continue
            self.witness(ltime)
            self._att.setdefault(node, {})[network] = _Att(ltime, Attachment.JOINED, now)
            self._nodes_of(network).add(node)

    def _nodes_of(self, network: str) -> RandomSet:
        nodes = self.net_nodes.get(network)
        if nodes is None:
            nodes = self.net_nodes[network] = RandomSet()
        return nodes

    def set_my_attachment(self, ev: NetworkEvent, now: float) -> None:
        """Re-say our attachment at a newer time (a peer held a newer one in our name)."""
        self._att.setdefault(self.me, {})[ev.network] = _Att(ev.ltime, ev.attachment, now)

    def my_attachment(self, network: str) -> NetworkEvent | None:
        a = self._att.get(self.me, {}).get(network)
        if a is None:
            return None
        return NetworkEvent(self.me, network, a.ltime, a.attachment)

    def attachments(self) -> Iterator[NetworkEvent]:
        for node, atts in self._att.items():
            for network, a in atts.items():
                yield NetworkEvent(node, network, a.ltime, a.attachment)

    # -- entries ----------------------------------------------------------------------
    def _index(self, owner: str, network: str, table: str, key: str) -> None:
        self._by_owner.setdefault(owner, set()).add((network, table, key))

    def _unindex(self, owner: str, network: str, table: str, key: str) -> None:
        s = self._by_owner.get(owner)
        if s is not None:
            s.discard((network, table, key))

    def write(self, table: str, network: str, key: str, value: bytes, *,
              state: EntryState, incarnation: int, now: float) -> tuple[EntryEvent, Event | None]:
        """A local create, update or delete; the caller checked we are attached."""
        entries = self._nets[network]
        cur = entries.get((table, key))
        ev = EntryEvent(table, network, key, value, self.me, incarnation,
                        self.tick(cur.ltime if cur else 0), state)
        return ev, self._store(ev, cur, now)

    def _store(self, ev: EntryEvent, cur: Entry | None, now: float) -> Event | None:
        entries = self._nets[ev.network]
        tk = (ev.table, ev.key)
        if cur is not None and cur.owner != ev.owner:
            self._unindex(cur.owner, ev.network, ev.table, ev.key)
        self._index(ev.owner, ev.network, ev.table, ev.key)
        live_before = cur is not None and cur.state == EntryState.LIVE
        if ev.state == EntryState.DELETED:
            entries[tk] = Entry(cur.value if cur else ev.value, ev.owner, ev.owner_incarnation,
                                ev.ltime, ev.state, now + self.reap_interval)
            if live_before:
                assert cur is not None
                return EntryDeleted(ev.table, ev.network, ev.key, cur.value, cur.owner)
            return None
        entries[tk] = Entry(ev.value, ev.owner, ev.owner_incarnation, ev.ltime, ev.state)
        if live_before:
            assert cur is not None
            if cur.value == ev.value and cur.owner == ev.owner:
                return None
            return EntryUpdated(ev.table, ev.network, ev.key, ev.value, ev.owner)
        return EntryCreated(ev.table, ev.network, ev.key, ev.value, ev.owner)

    def apply_entry(self, ev: EntryEvent, now: float) -> tuple[str, Event | None]:
        """Merge a remote entry: ("new" | "stale" | "reassert" | "unscoped", event)."""
        self.witness(ev.ltime)
        entries = self._nets.get(ev.network)
        if entries is None:
            return "unscoped", None
        cur = entries.get((ev.table, ev.key))
        if cur is not None and (cur.ltime, cur.owner) >= (ev.ltime, ev.owner):
            if (cur.ltime == ev.ltime and cur.owner == ev.owner
                    and ev.owner_incarnation > cur.owner_incarnation):
                cur.owner_incarnation = ev.owner_incarnation
            return "stale", None
        if ev.owner == self.me:
            return "reassert", None  # a newer write in our name than we know: re-say ours
        att = self._att.get(ev.owner, {}).get(ev.network)
        if att is not None and att.attachment == Attachment.LEFT and att.ltime > ev.ltime:
            return "stale", None  # written before its owner left the network
        return "new", self._store(ev, cur, now)

    def own_entries(self) -> list[EntryEvent]:
        out = []
        for network, table, key in sorted(self._by_owner.get(self.me, ())):
            e = self._nets[network][(table, key)]
            out.append(EntryEvent(table, network, key, e.value, self.me, e.owner_incarnation,
                                  e.ltime, e.state))
        return out

    def restamp_own(self, incarnation: int) -> None:
        """After a refutation, our entries carry our new incarnation."""
        for network, table, key in self._by_owner.get(self.me, ()):
            self._nets[network][(table, key)].owner_incarnation = incarnation

    def snapshot(self, networks: list[str], include: Callable[[str], bool]) -> Iterator[EntryEvent]:
        """Entries (tombstones included) of ``networks`` whose owner passes ``include``."""
        for network in networks:
            for (table, key), e in self._nets.get(network, {}).items():
                if include(e.owner):
                    yield EntryEvent(table, network, key, e.value, e.owner,
                                     e.owner_incarnation, e.ltime, e.state)

    def _drop_owner_in(self, owner: str, network: str, *, before: float) -> list[Event]:
        events: list[Event] = []
        entries = self._nets.get(network)
        s = self._by_owner.get(owner)
        if entries is None or not s:
            return events
        for net, table, key in [x for x in s if x[0] == network]:
            e = entries.get((table, key))
            if e is None or e.ltime >= before:
                continue
            del entries[(table, key)]
            s.discard((net, table, key))
            if e.state == EntryState.LIVE:
                events.append(EntryDeleted(table, network, key, e.value, owner))
        return events

    def remove_owner(self, owner: str) -> list[Event]:
        """The owner died or left: drop all its entries (no tombstones)."""
        events: list[Event] = []
        for network, table, key in sorted(self._by_owner.pop(owner, ())):
            e = self._nets.get(network, {}).pop((table, key), None)
            if e is not None and e.state == EntryState.LIVE:
                events.append(EntryDeleted(table, network, key, e.value, owner))
        return events

    def forget_node(self, node: str) -> None:
        """A member was forgotten: drop its attachment records."""
        for network in self._att.pop(node, {}):
            nodes = self.net_nodes.get(network)
            if nodes is not None:
                nodes.discard(node)

    def reap(self, now: float) -> int:
        """Drop expired tombstones and "left" records; returns how many went."""
        n = 0
        for network, entries in self._nets.items():
            doomed = [tk for tk, e in entries.items() if e.reap_at <= now]
            for tk in doomed:
                e = entries.pop(tk)
                self._unindex(e.owner, network, *tk)
            n += len(doomed)
        for atts in self._att.values():
            old = [nid for nid, a in atts.items() if a.attachment == Attachment.LEFT
                   and now - a.since > self.reap_interval]
            for nid in old:
                del atts[nid]
            n += len(old)
        return n
