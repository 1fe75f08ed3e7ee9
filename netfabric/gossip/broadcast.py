"""The transmit-limited broadcast queue (memberlist's TransmitLimitedQueue, fixed).

Each broadcast is sent at most ``retransmit_limit(N)`` times. A newer broadcast about
the same key (a member, a network attachment, a table key) replaces the older one.

Order of selection, which is what the networkdb bugs were about:

1. this node's own broadcasts before relayed ones, so a busy relay never starves them;
2. fewest transmissions first, so new news spreads before old news is repeated;
3. lowest Lamport time first, then arrival order: nothing waits behind newer traffic.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["BroadcastQueue", "Origin"]


class Origin(enum.IntEnum):
    OWN = 0
    RELAYED = 1


@dataclass(slots=True)
class _Item:
    key: Hashable
    raw: bytes
    origin: Origin
    ltime: int
    seq: int
    transmits: int = 0

    def rank(self) -> tuple[int, int, int, int]:
        return (self.origin, self.transmits, self.ltime, self.seq)


class BroadcastQueue:
    """Pending broadcasts of one scope (the cluster, or one network)."""

    __slots__ = ("_items", "_seq")

    def __init__(self) -> None:
        self._items: dict[Hashable, _Item] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, key: Hashable, raw: bytes, *, origin: Origin, ltime: int = 0) -> None:
        """Add a broadcast; it invalidates any older one with the same key."""
        self._seq += 1
        self._items[key] = _Item(key, raw, origin, ltime, self._seq)

    def discard(self, key: Hashable) -> None:
        self._items.pop(key, None)

    def take(self, budget: int, limit: int, per_item: int = 0) -> list[bytes]:
        """Broadcasts that fit in ``budget`` bytes (each costs ``len + per_item``), counted
        as transmitted once; those that reached ``limit`` transmissions leave the queue."""
        items = self._items
        if not items:
            return []
        ordered = sorted(items.values(), key=_Item.rank) if len(items) > 1 else list(
            items.values())
        out: list[bytes] = []
        for item in ordered:
            cost = len(item.raw) + per_item
            if cost > budget:
                if budget < 16:
                    break
                continue
            budget -= cost
            out.append(item.raw)
            item.transmits += 1
            if item.transmits >= limit:
                del items[item.key]
        return out

    def keys(self) -> list[Hashable]:
        return list(self._items)
