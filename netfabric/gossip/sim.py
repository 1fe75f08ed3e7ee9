"""A discrete-event simulator for gossip cores: virtual clock, seeded loss, latency and
partitions, many nodes in one process.

It drives the real :class:`~netfabric.gossip.core.GossipCore` through its public sans-IO
interface: every datagram is encoded, sealed with AES-GCM, delivered (or lost), opened and
decoded, exactly as over UDP; push/pull streams are delivered whole, as over TCP (no loss,
but cut by partitions and crashes). Only the wire is simulated.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from netfabric.gossip.codec import compound, decode_datagram, encode_message
from netfabric.gossip.config import GossipConfig
from netfabric.gossip.core import GossipCore
from netfabric.gossip.events import Event
from netfabric.gossip.keyring import Keyring, derive_key
from netfabric.gossip.messages import Addr, Message

__all__ = ["SimNode", "Simulator"]

_DGRAM, _STREAM, _REPLY, _TIMER, _CALL = 0, 1, 2, 3, 4
_INF = float("inf")


@dataclass(slots=True)
class SimNode:
    index: int
    addr: Addr
    core: GossipCore
    crashed: bool = False
    group: int = 0
    bytes_sent: int = 0
    events: list[tuple[float, Event]] = field(default_factory=list)


class Simulator:
    """N gossip cores on a simulated network. Node ``i`` listens at ``("sim<i>", 7946)``."""

    def __init__(self, n: int, *, config: GossipConfig | None = None, loss: float = 0.0,
                 latency: tuple[float, float] = (0.0005, 0.003), seed: int = 0,
                 secret: bytes = b"simulated cluster", warm: bool = True,
                 networks: Iterable[str] = ("net0",), record_events: bool = True) -> None:
        self.config = config or GossipConfig.lan()
        self.loss = loss
        self.latency = latency
        self.rng = random.Random(seed)
        self.now = 0.0
        self.key = derive_key(secret)
        self.record_events = record_events
        self.on_event: Callable[[int, Event, float], None] | None = None
        self.nodes: list[SimNode] = []
        self._by_addr: dict[Addr, int] = {}
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._next_timer: list[float] = []
        self._blocked: set[tuple[int, int]] = set()
        self.delivered = 0
        self.dropped = 0
        self.mangle: Callable[[int, int, list[Message]], list[Message]] | None = None
        """Test hook: rewrite (or empty, to drop) the messages of each datagram src->dst."""
        self._keyring = Keyring(self.key)
        networks = list(networks)
        for i in range(n):
            self._make(i, f"n{i}")
        if warm:
            roster = [(s.core.node_id, s.addr, 0) for s in self.nodes]
            atts = [(s.core.node_id, net, 1) for s in self.nodes for net in networks]
            for s in self.nodes:
                s.core.bootstrap(roster, atts, own_networks=networks)
                self._after(s)
        else:
            for s in self.nodes:
                self._after(s)

    # ------------------------------------------------------------------ building
    def _make(self, i: int, node_id: str, *, incarnation: int = 0) -> SimNode:
        addr = (f"sim{i}", 7946)
        core = GossipCore(self.config, node_id=node_id, addr=addr, keyring=Keyring(self.key),
                          rng=random.Random(self.rng.getrandbits(64)), now=self.now,
                          incarnation=incarnation)
        node = SimNode(i, addr, core)
        if i < len(self.nodes):
            self.nodes[i] = node
            self._next_timer[i] = _INF
        else:
            self.nodes.append(node)
            self._next_timer.append(_INF)
        self._by_addr[addr] = i
        return node

    def add_node(self, node_id: str, *, seeds: Iterable[int] = (0,),
                 networks: Iterable[str] = ()) -> SimNode:
        """A new node that attaches to ``networks`` and joins through ``seeds``."""
        node = self._make(len(self.nodes), node_id)
        for network in networks:
            node.core.join_network(network, self.now)
        node.core.join([self.nodes[s].addr for s in seeds], self.now)
        self._after(node)
        return node

    def restart(self, i: int, node_id: str, *, seeds: Iterable[int] = (0,)) -> SimNode:
        """Replace node ``i`` by a fresh agent with another id at the same address."""
        node = self._make(i, node_id)
        node.core.join([self.nodes[s].addr for s in seeds], self.now)
        self._after(node)
        return node

    def core(self, i: int) -> GossipCore:
        return self.nodes[i].core

    # ------------------------------------------------------------------ faults
    def crash(self, i: int) -> None:
        """The node stops dead: no more packets in or out, no timers."""
        self.nodes[i].crashed = True

    def partition(self, *groups: Iterable[int]) -> None:
        """Only nodes in the same group talk; nodes in no group form group 0."""
        for s in self.nodes:
            s.group = 0
        for g, members in enumerate(groups, start=1):
            for i in members:
                self.nodes[i].group = g

    def heal(self) -> None:
        for s in self.nodes:
            s.group = 0

    def block(self, a: int, b: int) -> None:
        """Drop everything from ``a`` to ``b`` (one direction)."""
        self._blocked.add((a, b))

    def unblock_all(self) -> None:
        self._blocked.clear()

    def _reachable(self, src: SimNode, dst: SimNode) -> bool:
        return (not dst.crashed and src.group == dst.group
                and (not self._blocked or (src.index, dst.index) not in self._blocked))

    # ------------------------------------------------------------------ running
    def _push(self, when: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, payload))

    def call(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``when`` (scenario steps)."""
        self._push(when, _CALL, fn)

    def do(self, i: int, fn: Callable[[GossipCore], object]) -> None:
        """Run ``fn(core)`` on node ``i`` now and deliver what it produces."""
        node = self.nodes[i]
        fn(node.core)
        self._after(node)

    def _after(self, node: SimNode) -> None:
        core = node.core
        now = self.now
        if node.crashed:
            core.datagrams_to_send(now)
            core.streams_to_send(now)
            return
        out = core.datagrams_to_send(now)
        if out:
            lo, hi = self.latency
            rng = self.rng
            loss = self.loss
            by_addr = self._by_addr
            nodes = self.nodes
            for addr, data in out:
                node.bytes_sent += len(data)
                j = by_addr.get(addr)
                if j is None:
                    continue
                dst = nodes[j]
                if (loss and rng.random() < loss) or not self._reachable(node, dst):
                    self.dropped += 1
                    continue
                if self.mangle is not None:
                    data = self._mangled(node.index, j, data)
                    if not data:
                        self.dropped += 1
                        continue
                self._push(now + lo + (hi - lo) * rng.random(), _DGRAM,
                           (j, node.addr, data, dst.core))
        for addr, data in core.streams_to_send(now):
            j = self._by_addr.get(addr)
            if j is not None and self._reachable(node, self.nodes[j]):
                node.bytes_sent += len(data)  # a TCP connect that fails sends nothing
                self._push(now + 2 * self.latency[1], _STREAM,
                           (j, node.index, data, self.nodes[j].core))
        ev = core.next_event()
        while ev is not None:
            if self.record_events:
                node.events.append((now, ev))
            if self.on_event is not None:
                self.on_event(node.index, ev, now)
            ev = core.next_event()
        t = core.next_deadline()
        if t < self._next_timer[node.index]:
            self._next_timer[node.index] = t
            self._push(t, _TIMER, (node.index, core))

    def _mangled(self, src: int, dst: int, data: bytes) -> bytes:
        assert self.mangle is not None
        msgs = decode_datagram(self._keyring.open(data))
        kept = self.mangle(src, dst, msgs)
        if kept == msgs:
            return data
        return self._seal(kept) if kept else b""

    def _seal(self, msgs: list[Message]) -> bytes:
        return self._keyring.seal(compound([encode_message(m) for m in msgs]))

    def inject(self, dst: int, msgs: list[Message], *, src: int = 0) -> None:
        """Deliver messages to node ``dst`` now, as if ``src`` had sent them."""
        node = self.nodes[dst]
        node.core.receive(self._seal(msgs), self.nodes[src].addr, self.now)
        self._after(node)

    def run_until(self, t_end: float) -> None:
        heap = self._heap
        nodes = self.nodes
        pop = heapq.heappop
        while heap and heap[0][0] <= t_end:
            when, _, kind, payload = pop(heap)
            self.now = when
            if kind == _TIMER:
                i, core = payload
                node = nodes[i]
                if node.core is not core or node.crashed or self._next_timer[i] != when:
                    continue
                self._next_timer[i] = _INF
                core.handle_timer(when)
                self._after(node)
            elif kind == _DGRAM:
                j, src, data, core = payload
                node = nodes[j]
                if node.crashed or node.core is not core:
                    continue
                self.delivered += 1
                core.receive(data, src, when)
                self._after(node)
            elif kind == _STREAM:
                j, i, data, core = payload
                node, src = nodes[j], nodes[i]
                if node.crashed or node.core is not core:
                    continue
                reply = core.receive_stream(data, src.addr, when)
                self._after(node)
                if reply is not None:
                    node.bytes_sent += len(reply)
                    if self._reachable(node, src):
                        self._push(when + 2 * self.latency[1], _REPLY,
                                   (i, node.addr, reply, src.core))
            elif kind == _REPLY:
                i, addr, data, core = payload
                node = nodes[i]
                if node.crashed or node.core is not core:
                    continue
                core.receive_stream(data, addr, when)
                self._after(node)
            else:
                payload()
        self.now = t_end

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    # ------------------------------------------------------------------ views
    def live(self) -> list[SimNode]:
        return [s for s in self.nodes if not s.crashed]

    def converged(self, predicate: Callable[[GossipCore], bool]) -> bool:
        return all(predicate(s.core) for s in self.live())
