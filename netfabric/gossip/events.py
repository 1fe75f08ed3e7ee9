"""What a gossip node reports to its user: frozen values, drained with ``next_event()``.

Table events are reported for local writes too, so a consumer builds its whole view
(FDB, neighbours, DNS) from one stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from netfabric.gossip.messages import Addr

__all__ = [
    "EntryCreated",
    "EntryDeleted",
    "EntryUpdated",
    "Event",
    "MemberAlive",
    "MemberDead",
    "MemberJoined",
    "MemberLeft",
    "MemberSuspect",
    "NetworkJoined",
    "NetworkLeft",
]


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """A new member, or one back from the dead with a higher incarnation."""

    node: str
    addr: Addr
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberSuspect:
    node: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberAlive:
    """A suspected member refuted the suspicion."""

    node: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberDead:
    """Declared dead; its table entries were dropped (EntryDeleted events precede)."""

    node: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """Left gracefully; its table entries were dropped."""

    node: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class NetworkJoined:
    node: str
    network: str


@dataclass(frozen=True, slots=True)
class NetworkLeft:
    node: str
    network: str


@dataclass(frozen=True, slots=True)
class EntryCreated:
    table: str
    network: str
    key: str
    value: bytes
    owner: str


@dataclass(frozen=True, slots=True)
class EntryUpdated:
    table: str
    network: str
    key: str
    value: bytes
    owner: str


@dataclass(frozen=True, slots=True)
class EntryDeleted:
    """``value`` is the last value the entry had."""

    table: str
    network: str
    key: str
    value: bytes
    owner: str


Event = (MemberJoined | MemberSuspect | MemberAlive | MemberDead | MemberLeft | NetworkJoined
         | NetworkLeft | EntryCreated | EntryUpdated | EntryDeleted)
