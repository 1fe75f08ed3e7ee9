"""The gossip node, sans-IO: SWIM probes, Lifeguard suspicion, piggybacked dissemination,
push/pull anti-entropy and networkdb-style tables, driven by bytes, a clock and an RNG.

Interface (the aioquic shape)::

    core.receive(data, addr, now)            # one datagram in
    core.datagrams_to_send(now)              # [(addr, bytes)] out
    core.streams_to_send(now)                # [(addr, request bytes)] push/pull to open
    core.receive_stream(data, addr, now)     # a whole stream in; request -> reply bytes
    core.next_deadline() / handle_timer(now)
    core.next_event()                        # membership and table events

The state machines live in their own modules (membership, suspicion, broadcast, tables,
codec, keyring); this module wires them: which message triggers which transition, what
is broadcast, which timer runs. Nothing here reads a clock, a socket or global randomness.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

from netfabric.errors import AuthError, DecodeError, InvalidArgument, NotFound
from netfabric.gossip.broadcast import BroadcastQueue, Origin
from netfabric.gossip.codec import (
    FRAME_END,
    FRAME_ENTRIES,
    FRAME_HEADER,
    FRAME_MEMBERS,
    FRAME_NETWORKS,
    FrameReader,
    compound,
    decode_datagram,
    decode_frame,
    encode_frame,
    encode_message,
    frame_prefix,
)
from netfabric.gossip.config import (
    GossipConfig,
    push_pull_scale,
    retransmit_limit,
    suspicion_timeouts,
)
from netfabric.gossip.events import (
    Event,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
    NetworkJoined,
    NetworkLeft,
)
from netfabric.gossip.keyring import SEAL_OVERHEAD, Keyring
from netfabric.gossip.membership import Change, Membership
from netfabric.gossip.messages import (
    Ack,
    Addr,
    Alive,
    Attachment,
    Dead,
    EntryEvent,
    EntryState,
    MemberRecord,
    MemberState,
    Message,
    Nack,
    NetworkEvent,
    NotMe,
    Ping,
    PingReq,
    StreamHeader,
    StreamKind,
    Suspect,
)
from netfabric.gossip.suspicion import Suspicion
from netfabric.gossip.tables import Tables

__all__ = ["Counters", "GossipCore", "MemberInfo"]

_K_INDIRECT, _K_SUSPECT, _K_RELAY_NACK, _K_RELAY_END, _K_RESAY = 1, 2, 3, 4, 5
_CHUNK = 400  # records per stream frame before the byte check


@dataclass(slots=True)
class Counters:
    """Monotonic counters, for metrics and for the tests that prove drops are counted."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    auth_failed: int = 0
    decode_failed: int = 0
    streams_in: int = 0
    streams_out: int = 0
    stream_bytes_in: int = 0
    stream_bytes_out: int = 0
    stream_failed: int = 0
    streams_in_sync: int = 0
    probes: int = 0
    probe_retries: int = 0
    probe_failures: int = 0
    refutations: int = 0
    stale_corrected: int = 0
    entries_rejected: int = 0
    entries_unscoped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class MemberInfo:
    node: str
    addr: Addr
    incarnation: int
    state: MemberState


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    acked: bool = False
    nacks: int = 0
    expected_nacks: int = 0
    attempt: int = 0


@dataclass(slots=True)
class _Relay:
    orig_seq: int
    reply_to: Addr
    acked: bool = False


class GossipCore:
    """One gossip node. All methods take ``now`` (seconds, any monotonic origin)."""

    def __init__(self, config: GossipConfig, *, node_id: str, addr: Addr, keyring: Keyring,
                 rng: random.Random, now: float, incarnation: int = 0) -> None:
        config.validate()
        if not node_id:
            raise InvalidArgument("a gossip node needs a non-empty id")
        self.cfg = config
        self.node_id = node_id
        self.addr = addr
        self.keyring = keyring
        self.rng = rng
        self.counters = Counters()
        self.members = Membership(node_id, addr, incarnation=incarnation, now=now)
        self.tables = Tables(node_id, reap_interval=config.reap_interval)
        self._global = BroadcastQueue()
        self._netq: dict[str, BroadcastQueue] = {}
        self._suspicions: dict[str, Suspicion] = {}
        self._timers: list[tuple[float, int, int, str]] = []
        self._tseq = 0
        self._events: deque[Event] = deque()
        self._out: list[tuple[Addr, bytes]] = []
        self._streams: list[tuple[Addr, bytes]] = []
        self._seq = 0
        self._health = 0
        self._probe: _Probe | None = None
        self._probe_list: list[str] = []
        self._probe_idx = 0
        self._relays: dict[int, _Relay] = {}
        self._budget = config.udp_buffer_size - SEAL_OVERHEAD - 5
        self._reap_period = min(config.reap_interval, config.dead_keep_time) / 4
        self._t_probe = now + rng.random() * config.probe_interval
        self._t_gossip = now + rng.random() * config.gossip_interval
        self._t_push = now + (rng.random() * config.push_pull_interval
                              if config.push_pull_interval > 0 else float("inf"))
        self._t_reconnect = now + rng.random() * config.reconnect_interval
        self._t_reap = now + self._reap_period
        self._handlers: dict[type, Callable[[Message, Addr, float], None]] = {
            Ping: self._on_ping, PingReq: self._on_ping_req, Ack: self._on_ack,  # type: ignore[dict-item]
            Nack: self._on_nack, NotMe: self._on_not_me, Alive: self._on_alive,  # type: ignore[dict-item]
            Suspect: self._on_suspect, Dead: self._on_dead,  # type: ignore[dict-item]
            NetworkEvent: self._on_network, EntryEvent: self._on_entry,  # type: ignore[dict-item]
        }

    # ---------------------------------------------------------------- public: queries
    @property
    def health(self) -> int:
        """Lifeguard local-health score: 0 is healthy; timers scale by ``health + 1``."""
        return self._health

    def members_info(self) -> list[MemberInfo]:
        return sorted((MemberInfo(m.node, m.addr, m.incarnation, m.state)
                       for m in self.members.members.values()), key=lambda i: i.node)

    def live_members(self) -> list[str]:
        """Ids of alive and suspect members, ourselves included."""
        return sorted([self.node_id, *self.members.live])

    def entries(self, table: str, network: str) -> dict[str, bytes]:
        return self.tables.entries(table, network)

    def networks(self) -> list[str]:
        return self.tables.networks()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[tuple[Addr, bytes]]:
        out, self._out = self._out, []
        return out

    def streams_to_send(self, now: float) -> list[tuple[Addr, bytes]]:
        """Push/pull requests to deliver over a stream; feed replies to receive_stream."""
        out, self._streams = self._streams, []
        return out

    def _pending(self) -> bool:
        return bool(self._global) or any(self._netq.values())

    def next_deadline(self) -> float:
        t = min(self._t_probe, self._t_push, self._t_reconnect, self._t_reap)
        if self._t_gossip < t and self._pending():
            t = self._t_gossip  # gossip rounds only wake us when there is news
        if self._timers and self._timers[0][0] < t:
            return self._timers[0][0]
        return t

    # ---------------------------------------------------------------- public: commands
    def join(self, seeds: Iterable[Addr], now: float) -> None:
        """Push/pull with each seed (the streams appear in streams_to_send)."""
        for seed in seeds:
            if tuple(seed) != self.addr:
                self._push_pull(tuple(seed), None)  # type: ignore[arg-type]

    def leave(self, now: float) -> None:
        """Announce a graceful leave; stop probing. Flush datagrams, then stop the node."""
        if self.members.leaving:
            return
        inc = self.members.leave(now)
        raw = encode_message(Dead(self.node_id, inc, self.node_id))
        self._global.queue(("m", self.node_id), raw, origin=Origin.OWN)
        for node in self.members.live.sample(self.rng, self.cfg.gossip_nodes + 2):
            m = self.members.get(node)
            assert m is not None
            self._emit(m.addr, [raw])

    def join_network(self, network: str, now: float) -> None:
        if self.tables.attached(network):
            return
        ev = self.tables.join_network(network, now)
        self._netq[network] = BroadcastQueue()
        self._queue_network(ev, Origin.OWN)
        self._events.append(NetworkJoined(self.node_id, network))
        # bulk sync with one member of the network, as networkdb does on join
        peers = self.tables.net_nodes.get(network)
        if peers:
            for node in peers.sample(self.rng, 1, self.members.is_live):
                m = self.members.get(node)
                assert m is not None
                self._push_pull(m.addr, node)

    def leave_network(self, network: str, now: float) -> None:
        if not self.tables.attached(network):
            return
        ev, events = self.tables.leave_network(network, now)
        self._netq.pop(network, None)
        self._queue_network(ev, Origin.OWN)
        self._events.extend(events)
        self._events.append(NetworkLeft(self.node_id, network))

    def set_entry(self, table: str, network: str, key: str, value: bytes, now: float) -> None:
        """Create or update an entry we own; NotFound if we have not joined ``network``."""
        self._write(table, network, key, bytes(value), EntryState.LIVE, now)

    def delete_entry(self, table: str, network: str, key: str, now: float) -> None:
        """Delete an entry we own (a tombstone); NotFound if there is none."""
        cur = self.tables.entry(table, network, key)
        if cur is None or cur.state != EntryState.LIVE:
            raise NotFound(f"no entry {table}/{network}/{key}")
        if cur.owner != self.node_id:
            raise InvalidArgument(f"entry {table}/{network}/{key} is owned by {cur.owner}")
        self._write(table, network, key, cur.value, EntryState.DELETED, now)

    def _write(self, table: str, network: str, key: str, value: bytes, state: EntryState,
               now: float) -> None:
        if not self.tables.attached(network):
            raise NotFound(f"not attached to network {network!r}")
        if not (isinstance(table, str) and isinstance(key, str)):
            raise InvalidArgument("table and key are strings")
        ev, event = self.tables.write(table, network, key, value, state=state,
                                      incarnation=self.members.incarnation, now=now)
        self._queue_entry(ev, Origin.OWN)
        if event is not None:
            self._events.append(event)

    # ---------------------------------------------------------------- datagrams in
    def receive(self, data: bytes, addr: Addr, now: float) -> None:
        """One datagram. Anything that fails to authenticate or decode is counted, dropped."""
        c = self.counters
        c.datagrams_in += 1
        c.bytes_in += len(data)
        try:
            msgs = decode_datagram(self.keyring.open(data))
        except AuthError:
            c.auth_failed += 1
            return
        except DecodeError:
            c.decode_failed += 1
            return
        if self.members.leaving:
            return
        handlers = self._handlers
        for msg in msgs:
            handlers[type(msg)](msg, addr, now)

    def _on_ping(self, msg: Ping, addr: Addr, now: float) -> None:
        if msg.target != self.node_id:
            self._emit(addr, [encode_message(NotMe(msg.seq, self.node_id))])
            return
        raws = [encode_message(Ack(msg.seq, self.node_id))]
        m = self.members.get(msg.source)
        if m is not None and not m.live:
            # it thinks it is alive, we think not: tell it, so it refutes at once
            raws.append(encode_message(Dead(m.node, m.incarnation, self.node_id)))
        self._send(addr, raws, msg.source)

    def _on_ping_req(self, msg: PingReq, addr: Addr, now: float) -> None:
        seq = self._next_seq()
        self._relays[seq] = _Relay(msg.seq, addr)
        self._send(msg.target_addr, [encode_message(Ping(seq, msg.target, self.node_id,
                                                         self.addr))], msg.target)
        self._timer(now + self.cfg.nack_ratio * self.cfg.probe_timeout, _K_RELAY_NACK, str(seq))
        self._timer(now + self.cfg.probe_interval, _K_RELAY_END, str(seq))

    def _on_ack(self, msg: Ack, addr: Addr, now: float) -> None:
        p = self._probe
        if p is not None and p.seq == msg.seq:
            p.acked = True
            return
        relay = self._relays.get(msg.seq)
        if relay is not None and not relay.acked:
            relay.acked = True
            self._emit(relay.reply_to, [encode_message(Ack(relay.orig_seq, msg.source))])

    def _on_nack(self, msg: Nack, addr: Addr, now: float) -> None:
        p = self._probe
        if p is not None and p.seq == msg.seq:
            p.nacks += 1

    def _on_not_me(self, msg: NotMe, addr: Addr, now: float) -> None:
        p = self._probe
        if p is None or p.seq != msg.seq or p.acked:
            return
        m = self.members.get(p.target)
        if m is not None and m.live and m.addr == addr:
            # another node holds the address now: the old id is gone (agent restart)
            self._probe = None
            self._on_dead(Dead(m.node, m.incarnation, self.node_id), addr, now)

    def _on_alive(self, msg: Alive, addr: Addr, now: float) -> None:
        ch = self.members.apply_alive(msg.node, msg.incarnation, msg.addr, now)
        if ch is Change.NONE:
            return
        if ch is Change.REFUTE:
            self._refute(msg.incarnation, buried=False)
            return
        self._global.queue(("m", msg.node), encode_message(msg), origin=Origin.RELAYED)
        if ch in (Change.JOINED, Change.REVIVED):
            self._events.append(MemberJoined(msg.node, msg.addr, msg.incarnation))
            self._add_probe_target(msg.node)
        if ch is Change.REVIVED and \
                self.rng.random() < self.cfg.gossip_nodes / self.members.size():
            # Its entries were dropped when it died, and ours on its side: swap them now
            # (networkdb's bulk sync on rejoin) instead of waiting for a periodic push/pull,
            # up to push_pull_interval after a healed partition. About gossip_nodes members
            # do it per revival, so a large heal stays O(N) streams.
            self._push_pull_node(msg.node)
        elif ch is Change.RECOVERED:
            self._suspicions.pop(msg.node, None)
            self._events.append(MemberAlive(msg.node, msg.incarnation))
        if msg.addr == self.addr:
            # it claims our address, which we hold: that id is a previous agent here
            self._on_dead(Dead(msg.node, msg.incarnation, self.node_id), addr, now)

    def _correct_stale(self, node: str, incarnation: int, addr: Addr, now: float) -> bool:
        """A suspicion or death of an incarnation the member has already refuted: ignore it
        (True) and send the newer alive straight back to whoever passed it on, once the
        refutation has had time to spread (half the minimum suspicion timeout).

        Why: at high loss an epidemic broadcast misses a few nodes, and a refutation is told
        only while it is new. A node that missed it but heard the older suspicion would
        suspect alone, with nobody left to tell it, and declare a live node dead when its
        lone timeout ran out. Every peer it relays the stale suspicion to corrects it.
        Why wait: while the suspicion and its refutation race through the cluster, about
        half the members relay the suspicion to members that already hold the refutation;
        answering each of those (~N/2 datagrams per refutation) only repeats what the
        refutation's own gossip is about to tell them. One that really missed it says the
        suspicion again every minimum timeout (:meth:`_resay_suspicion`), after the wait."""
        m = self.members.get(node)
        if m is None or incarnation >= m.incarnation:
            return False
        if m.state == MemberState.ALIVE and addr != self.addr and \
                now - m.since >= self._correct_after():
            self.counters.stale_corrected += 1
            self._emit(addr, [encode_message(Alive(m.node, m.incarnation, m.addr))])
        return True

    def _on_suspect(self, msg: Suspect, addr: Addr, now: float) -> None:
        if self._correct_stale(msg.node, msg.incarnation, addr, now):
            return
        ch = self.members.apply_suspect(msg.node, msg.incarnation, now)
        if ch is Change.NONE:
            return
        if ch is Change.REFUTE:
            self._refute(msg.incarnation, buried=False)
            return
        if ch is Change.SUSPECTED:
            self._start_suspicion(msg.node, msg.sender, now)
            self._events.append(MemberSuspect(msg.node, msg.incarnation))
        else:  # CONFIRMED
            s = self._suspicions.get(msg.node)
            if s is None:
                self._start_suspicion(msg.node, msg.sender, now)
            elif s.confirm(msg.sender):
                self._timer(s.deadline(), _K_SUSPECT, msg.node)
            else:
                return
        self._global.queue(("m", msg.node), encode_message(msg), origin=Origin.RELAYED)

    def _on_dead(self, msg: Dead, addr: Addr, now: float) -> None:
        if self._correct_stale(msg.node, msg.incarnation, addr, now):
            return
        ch = self.members.apply_dead(msg.node, msg.incarnation, msg.sender, now)
        if ch is Change.NONE:
            return
        if ch is Change.REFUTE:
            self._refute(msg.incarnation, buried=True)
            return
        self._suspicions.pop(msg.node, None)
        self._global.queue(("m", msg.node), encode_message(msg), origin=Origin.RELAYED)
        self._events.extend(self.tables.remove_owner(msg.node))
        self._events.append(MemberLeft(msg.node, msg.incarnation) if ch is Change.LEFT
                            else MemberDead(msg.node, msg.incarnation))

    def _on_network(self, msg: NetworkEvent, addr: Addr, now: float) -> None:
        result, events = self.tables.apply_network(msg, now)
        if result == "new":
            self._queue_network(msg, Origin.RELAYED)
            self._events.extend(events)
            self._events.append(NetworkJoined(msg.node, msg.network)
                                if msg.attachment == Attachment.JOINED
                                else NetworkLeft(msg.node, msg.network))
        elif result == "reassert":
            mine = self.tables.my_attachment(msg.network)
            if mine is not None:
                ev = NetworkEvent(self.node_id, msg.network, self.tables.tick(msg.ltime),
                                  mine.attachment)
                self.tables.set_my_attachment(ev, now)
                self._queue_network(ev, Origin.OWN)

    def _on_entry(self, msg: EntryEvent, addr: Addr, now: float) -> None:
        owner = self.members.get(msg.owner)
        if owner is not None and not owner.live and msg.owner_incarnation <= owner.incarnation:
            self.tables.witness(msg.ltime)
            self.counters.entries_rejected += 1  # written before its owner died or left
            return
        result, event = self.tables.apply_entry(msg, now)
        if result == "new":
            self._queue_entry(msg, Origin.RELAYED)
            if event is not None:
                self._events.append(event)
        elif result == "unscoped":
            self.counters.entries_unscoped += 1
        elif result == "reassert" and self.tables.attached(msg.network):
            cur = self.tables.entry(msg.table, msg.network, msg.key)
            live = cur is not None and cur.owner == self.node_id and \
                cur.state == EntryState.LIVE
            value = cur.value if cur is not None else b""
            self._write(msg.table, msg.network, msg.key, value,
                        EntryState.LIVE if live else EntryState.DELETED, now)

    # ---------------------------------------------------------------- broadcasts
    def _queue_network(self, ev: NetworkEvent, origin: Origin) -> None:
        self._global.queue(("n", ev.node, ev.network), encode_message(ev), origin=origin,
                           ltime=ev.ltime)

    def _queue_entry(self, ev: EntryEvent, origin: Origin) -> None:
        q = self._netq.get(ev.network)
        if q is not None:
            q.queue((ev.table, ev.key), encode_message(ev), origin=origin, ltime=ev.ltime)

    def _refute(self, incarnation: int, *, buried: bool) -> None:
        """Someone suspects us (or buried us: then our entries and attachments again)."""
        inc = self.members.refute(incarnation)
        self.counters.refutations += 1
        self._health = min(self._health + 1, self.cfg.awareness_max_multiplier - 1)
        self._global.queue(("m", self.node_id),
                           encode_message(Alive(self.node_id, inc, self.addr)),
                           origin=Origin.OWN)
        # peers that declared us dead dropped our entries without tombstones: re-say them,
        # stamped with the new incarnation so no death record rejects them
        self.tables.restamp_own(inc)
        if not buried:
            return
        for ev in self.tables.own_entries():
            self._queue_entry(ev, Origin.OWN)
        for network in self.tables.networks():
            att = self.tables.my_attachment(network)
            if att is not None:
                self._queue_network(att, Origin.OWN)

    def _correct_after(self) -> float:
        return suspicion_timeouts(self.cfg, self.members.size())[0] / 2

    def _limit(self, n: int) -> int:
        return retransmit_limit(self.cfg.retransmit_mult, n)

    def _fill(self, raws: list[bytes], node: str | None) -> None:
        """Piggyback pending broadcasts for ``node`` onto ``raws`` (within the budget)."""
        budget = self._budget - sum(map(len, raws))
        if budget < 24:
            return
        if self._global:
            got = self._global.take(budget, self._limit(self.members.size()))
            raws += got
            budget -= sum(map(len, got))
        if node is None:
            return
        for network, q in self._netq.items():
            if budget < 24:
                return
            if q:
                peers = self.tables.net_nodes.get(network)
                if peers is not None and node in peers:
                    got = q.take(budget, self._limit(len(peers) + 1))
                    raws += got
                    budget -= sum(map(len, got))

    def _send(self, addr: Addr, raws: list[bytes], node: str | None) -> None:
        self._fill(raws, node)
        self._emit(addr, raws)

    def _emit(self, addr: Addr, raws: list[bytes]) -> None:
        data = self.keyring.seal(compound(raws))
        self._out.append((addr, data))
        self.counters.datagrams_out += 1
        self.counters.bytes_out += len(data)

    # ---------------------------------------------------------------- timers
    def _timer(self, when: float, kind: int, key: str) -> None:
        self._tseq += 1
        heapq.heappush(self._timers, (when, self._tseq, kind, key))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now``."""
        if self.members.leaving:
            self._t_probe = self._t_push = self._t_reconnect = self._t_reap = float("inf")
            self._timers.clear()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(timers)
            self._fire(kind, key, now)
        if self._t_probe <= now:
            self._probe_tick(now)
        if self._t_gossip <= now:
            # stay on this node's own grid of rounds, skipping the idle ones
            step = self.cfg.gossip_interval
            self._t_gossip += step * (1 + int((now - self._t_gossip) / step))
            if self._pending():
                self._gossip(now)
        if self._t_push <= now:
            self._t_push = now + self.cfg.push_pull_interval * push_pull_scale(
                self.members.size())
            for node in self.members.live.sample(self.rng, 1):
                self._push_pull_node(node, mode=StreamKind.DIGEST)
        if self._t_reconnect <= now:
            self._t_reconnect = now + self.cfg.reconnect_interval
            dead = self.members.dead_members()
            # serf's rule: each node tries with probability dead/live, so the cluster as
            # a whole retries each dead member about once per interval
            if dead and self.rng.random() < len(dead) / self.members.size():
                for node in dead.sample(self.rng, 1):
                    self._push_pull_node(node)
        if self._t_reap <= now:
            self._t_reap = now + self._reap_period
            self.tables.reap(now)
            for node in self.members.expire(now, self.cfg.dead_keep_time):
                self.tables.forget_node(node)

    def _fire(self, kind: int, key: str, now: float) -> None:
        if kind == _K_SUSPECT:
            s = self._suspicions.get(key)
            m = self.members.get(key)
            if s is not None and s.deadline() <= now and m is not None and \
                    m.state == MemberState.SUSPECT:
                self._on_dead(Dead(key, m.incarnation, self.node_id), self.addr, now)
        elif kind == _K_INDIRECT:
            self._probe_indirect(int(key), now)
        elif kind == _K_RELAY_NACK:
            relay = self._relays.get(int(key))
            if relay is not None and not relay.acked:
                self._emit(relay.reply_to, [encode_message(Nack(relay.orig_seq,
                                                                self.node_id))])
        elif kind == _K_RELAY_END:
            self._relays.pop(int(key), None)
        elif kind == _K_RESAY:
            self._resay_suspicion(key, now)

    def _resay_suspicion(self, node: str, now: float) -> None:
        """Gossip a lasting suspicion again (the suspector's own message, so it counts as no
        new confirmation). A node that missed a refutation has nobody else to tell it: the
        refutation was told only while new. Peers that hold the newer incarnation answer
        the re-said suspicion with it (:meth:`_correct_stale`)."""
        s = self._suspicions.get(node)
        m = self.members.get(node)
        if s is None or m is None or m.state != MemberState.SUSPECT or now < s.next_resay():
            return  # refuted, dead, or a timer of an earlier suspicion
        s.resays += 1
        self._global.queue(("m", node), encode_message(Suspect(node, m.incarnation,
                                                               s.suspector)),
                           origin=Origin.RELAYED)
        if s.next_resay() < s.deadline():
            self._timer(s.next_resay(), _K_RESAY, node)

    def _start_suspicion(self, node: str, suspector: str, now: float) -> None:
        n = self.members.size()
        low, high = suspicion_timeouts(self.cfg, n)
        k = self.cfg.suspicion_confirmations if n - 2 >= self.cfg.suspicion_confirmations else 0
        s = Suspicion(suspector=suspector, k=k, min_timeout=low, max_timeout=high, start=now)
        self._suspicions[node] = s
        self._timer(s.deadline(), _K_SUSPECT, node)
        if s.next_resay() < s.deadline():
            self._timer(s.next_resay(), _K_RESAY, node)

    # ---------------------------------------------------------------- probing
    def _add_probe_target(self, node: str) -> None:
        lo = self._probe_idx
        self._probe_list.insert(self.rng.randint(lo, len(self._probe_list)), node)

    def _next_target(self) -> str | None:
        for _ in range(2):
            while self._probe_idx < len(self._probe_list):
                node = self._probe_list[self._probe_idx]
                self._probe_idx += 1
                if self.members.is_live(node):
                    return node
            self._probe_list = list(self.members.live)
            self.rng.shuffle(self._probe_list)
            self._probe_idx = 0
        return None

    def _probe_tick(self, now: float) -> None:
        scale = self._health + 1
        self._t_probe = now + self.cfg.probe_interval * scale
        retry = self._finish_probe(now)
        target = retry if retry is not None else self._next_target()
        if target is None:
            return
        m = self.members.get(target)
        assert m is not None
        seq = self._next_seq()
        self._probe = _Probe(target, seq, attempt=0 if retry is None else 1)
        self.counters.probes += 1
        if retry is not None:
            self.counters.probe_retries += 1
        self._send(m.addr, [encode_message(Ping(seq, target, self.node_id, self.addr))], target)
        self._timer(now + self.cfg.probe_timeout * scale, _K_INDIRECT, str(seq))

    def _probe_indirect(self, seq: int, now: float) -> None:
        p = self._probe
        if p is None or p.seq != seq or p.acked:
            return
        m = self.members.get(p.target)
        if m is None or not m.live:
            return
        relays = self.members.live.sample(
            self.rng, self.cfg.indirect_checks,
            lambda x: x != p.target and self.members.members[x].state == MemberState.ALIVE)
        raw = encode_message(PingReq(seq, p.target, m.addr, self.node_id, self.addr))
        for node in relays:
            self._emit(self.members.members[node].addr, [raw])
        p.expected_nacks = len(relays)

    def _finish_probe(self, now: float) -> str | None:
        """Close the probe of this interval. A member that answered neither the direct
        nor the indirect pings is probed once more, at once (the target of the returned
        id); only a second failed round makes a suspicion.

        Why: a failed round costs a few datagrams, a false suspicion costs every member
        ``retransmit_limit`` relays of the suspicion and of its refutation. At 10 % loss a
        round fails for a live member about once in 130 (direct ping or ack lost, and all
        three indirect paths); two independent rounds, once in 17,000. memberlist reaches
        the same end with a TCP ping beside the indirect probes; a second UDP round costs
        one probe interval of detection time and holds under loss that TCP suffers too."""
        p, self._probe = self._probe, None
        if p is None:
            return None
        top = self.cfg.awareness_max_multiplier - 1
        if p.acked:
            self._health = max(0, self._health - 1)
            return None
        m = self.members.get(p.target)
        if m is None or not m.live:
            return None
        self.counters.probe_failures += 1
        missing = p.expected_nacks - p.nacks if p.expected_nacks else 1
        self._health = min(top, self._health + max(0, missing))
        if p.attempt == 0 and m.state == MemberState.ALIVE:
            return p.target
        msg = Suspect(p.target, m.incarnation, self.node_id)
        if m.state == MemberState.ALIVE:
            # tell the target directly too: it refutes sooner than gossip would reach it
            self._emit(m.addr, [encode_message(msg)])
        self._on_suspect(msg, self.addr, now)
        return None

    # ---------------------------------------------------------------- gossip
    def _gossip(self, now: float) -> None:
        plan: dict[str, list[tuple[BroadcastQueue, int]]] = {}
        live = self.members.live
        if self._global:
            lim = self._limit(self.members.size())
            for node in live.sample(self.rng, self.cfg.gossip_nodes):
                plan.setdefault(node, []).append((self._global, lim))
        for network, q in self._netq.items():
            if not q:
                continue
            peers = self.tables.net_nodes.get(network)
            if not peers:
                continue
            lim = self._limit(len(peers) + 1)
            for node in peers.sample(self.rng, self.cfg.gossip_nodes, live.__contains__):
                plan.setdefault(node, []).append((q, lim))
        members = self.members.members
        for node, queues in plan.items():
            raws: list[bytes] = []
            budget = self._budget
            for q, lim in queues:
                got = q.take(budget, lim)
                raws += got
                budget -= sum(map(len, got))
            if raws:
                self._emit(members[node].addr, raws)

    # ---------------------------------------------------------------- push/pull
    def _push_pull_node(self, node: str, *, mode: StreamKind = StreamKind.REQUEST) -> None:
        m = self.members.get(node)
        if m is not None:
            self._push_pull(m.addr, node, mode=mode)

    def _push_pull(self, addr: Addr, node: str | None, *,
                   mode: StreamKind = StreamKind.REQUEST) -> None:
        theirs = set(self.tables.node_networks(node)) if node is not None else set()
        shared = [n for n in self.tables.networks() if n in theirs]
        if mode is StreamKind.DIGEST:
            data = self._encode_state(mode, shared, digest=self._digest(shared))
        else:
            data = self._encode_state(mode, shared)
        self._streams.append((addr, data))
        self.counters.streams_out += 1
        self.counters.stream_bytes_out += len(data)

    def _digest(self, networks: list[str]) -> bytes:
        """A hash of the state two nodes should agree on: live members and incarnations,
        live attachments, live entries of ``networks``. Equal digests skip the transfer."""
        me = self.node_id
        members = self.members.members
        is_live = self.members.is_live
        h = hashlib.blake2b(digest_size=16)
        h.update(repr(sorted([(me, self.members.incarnation)] + [
            (n, members[n].incarnation) for n in self.members.live])).encode())
        h.update(repr(sorted((a.node, a.network, a.ltime) for a in self.tables.attachments()
                             if a.attachment == Attachment.JOINED
                             and (a.node == me or is_live(a.node)))).encode())
        h.update(repr(sorted(
            (e.table, e.network, e.key, e.owner, e.ltime)
            for e in self.tables.snapshot(networks, lambda o: o == me or is_live(o))
            if e.state == EntryState.LIVE)).encode())
        return h.digest()

    def _encode_state(self, kind: StreamKind, networks: list[str], *,
                      digest: bytes = b"") -> bytes:
        """A stream: header, then (unless a digest request or an in-sync reply) all
        members, all attachments and the entries of ``networks``, in bounded frames."""
        out: list[bytes] = []
        frame_size = self.cfg.stream_frame_size

        def frame(ftype: int, body: object) -> None:
            sealed = self.keyring.seal(encode_frame(ftype, body))
            out.append(frame_prefix(sealed))
            out.append(sealed)

        frame(FRAME_HEADER, StreamHeader(kind, self.node_id, self.addr,
                                         tuple(self.tables.networks()), digest))
        if kind is StreamKind.DIGEST or (kind is StreamKind.REPLY and digest):
            frame(FRAME_END, None)
            return b"".join(out)
        records = [MemberRecord(m.node, m.addr, m.incarnation, m.state)
                   for m in self.members.members.values()]
        for chunk in _chunks(records):
            frame(FRAME_MEMBERS, chunk)
        for chunk in _chunks(list(self.tables.attachments())):
            frame(FRAME_NETWORKS, chunk)

        def include(owner: str) -> bool:
            return owner == self.node_id or self.members.is_live(owner)

        batch: list[EntryEvent] = []
        size = 0
        for ev in self.tables.snapshot(networks, include):
            batch.append(ev)
            size += len(ev.value) + len(ev.key) + len(ev.table) + len(ev.network) + \
                len(ev.owner) + 24
            if size >= frame_size - 1024 or len(batch) >= 4 * _CHUNK:
                frame(FRAME_ENTRIES, batch)
                batch, size = [], 0
        if batch:
            frame(FRAME_ENTRIES, batch)
        frame(FRAME_END, None)
        return b"".join(out)

    def receive_stream(self, data: bytes, addr: Addr, now: float) -> bytes | None:
        """A whole push/pull stream from ``addr``. For a request, returns the reply to
        send back; for a reply, None. Bad streams are counted and dropped (what merged
        before the bad frame stays merged: every record is valid on its own)."""
        c = self.counters
        c.streams_in += 1
        c.stream_bytes_in += len(data)
        if self.members.leaving:
            return None
        reader = FrameReader(max_stream_size=self.cfg.max_stream_size)
        header: StreamHeader | None = None
        ended = False
        try:
            for sealed in reader.feed(data):
                ftype, body = decode_frame(self.keyring.open(sealed))
                if header is None:
                    if not isinstance(body, StreamHeader):
                        raise DecodeError("a stream starts with its header")
                    header = body
                elif ftype == FRAME_END:
                    ended = True
                    break
                elif ftype == FRAME_MEMBERS:
                    self._merge_members(body, now)  # type: ignore[arg-type]
                elif ftype == FRAME_NETWORKS:
                    for ev in body:  # type: ignore[union-attr]
                        self._on_network(ev, addr, now)  # type: ignore[arg-type]
                elif ftype == FRAME_ENTRIES:
                    for ev in body:  # type: ignore[union-attr]
                        self._on_entry(ev, addr, now)  # type: ignore[arg-type]
                else:
                    raise DecodeError("a second stream header")
        except AuthError:
            c.auth_failed += 1
            c.stream_failed += 1
            return None
        except DecodeError:
            c.decode_failed += 1
            c.stream_failed += 1
            return None
        if header is None or not ended:
            c.stream_failed += 1
            return None
        mine = set(self.tables.networks())
        scope = [n for n in header.networks if n in mine]
        if header.kind is StreamKind.REQUEST:
            reply = self._encode_state(StreamKind.REPLY, scope)
        elif header.kind is StreamKind.DIGEST:
            digest = self._digest(scope)
            if digest == header.digest:
                c.streams_in_sync += 1
                reply = self._encode_state(StreamKind.REPLY, scope, digest=digest)
            else:
                reply = self._encode_state(StreamKind.REPLY_PULL, scope)
        else:
            if header.kind is StreamKind.REPLY_PULL:  # the peer differs: push ours back
                push = self._encode_state(StreamKind.PUSH, scope)
                self._streams.append((addr, push))
                c.streams_out += 1
                c.stream_bytes_out += len(push)
            return None
        c.stream_bytes_out += len(reply)
        return reply

    def _merge_members(self, records: Sequence[MemberRecord], now: float) -> None:
        me = self.node_id
        members = self.members.members
        for r in records:
            m = members.get(r.node)
            if m is not None and (r.incarnation < m.incarnation or (
                    r.incarnation == m.incarnation and (
                        r.state == m.state or r.state == MemberState.ALIVE))):
                continue  # nothing new: the common case, kept cheap
            if r.node == me:
                if r.state == MemberState.SUSPECT:
                    self._on_suspect(Suspect(me, r.incarnation, me), r.addr, now)
                elif r.state == MemberState.DEAD:
                    if r.incarnation >= self.members.incarnation:
                        self._refute(r.incarnation, buried=True)
                elif r.incarnation > self.members.incarnation:
                    self._refute(r.incarnation, buried=False)
                continue
            if r.state == MemberState.ALIVE:
                self._on_alive(Alive(r.node, r.incarnation, r.addr), r.addr, now)
            elif r.state == MemberState.LEFT:
                self._on_dead(Dead(r.node, r.incarnation, r.node), r.addr, now)
            elif r.state == MemberState.SUSPECT:
                if self.members.get(r.node) is None:
                    self._on_alive(Alive(r.node, r.incarnation, r.addr), r.addr, now)
                self._on_suspect(Suspect(r.node, r.incarnation, me), r.addr, now)
            elif self.members.is_live(r.node):
                # dead elsewhere: suspect it here, so it gets the chance to refute
                self._on_suspect(Suspect(r.node, r.incarnation, me), r.addr, now)

    # ---------------------------------------------------------------- warm start
    def bootstrap(self, roster: Iterable[tuple[str, Addr, int]],
                  networks: Iterable[tuple[str, str, int]] = (), *,
                  own_networks: Iterable[str] = ()) -> None:
        """Learn members (id, addr, incarnation) and attachments (node, network, ltime),
        and attach to ``own_networks``, without gossiping any of it: a warm start for the
        simulator, or a restore from a saved roster."""
        for network in own_networks:
            if not self.tables.attached(network):
                self.tables.join_network(network, 0.0)
                self._netq[network] = BroadcastQueue()
        self.members.bulk_alive(roster, 0.0)
        n = self.members.size()
        if self.cfg.push_pull_interval > 0:
            self._t_push = self._t_push + self.rng.random() * self.cfg.push_pull_interval * (
                push_pull_scale(n) - 1)
        self.tables.bulk_join(networks, 0.0)


def _chunks(items: Sequence[object]) -> Iterable[Sequence[object]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]
