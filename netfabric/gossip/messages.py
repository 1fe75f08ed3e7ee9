"""The gossip wire messages, as frozen values (the codec turns them into bytes).

Datagrams carry probes (:class:`Ping`, :class:`PingReq`, :class:`Ack`, :class:`Nack`,
:class:`NotMe`) and piggybacked broadcasts (:class:`Alive`, :class:`Suspect`,
:class:`Dead`, :class:`NetworkEvent`, :class:`EntryEvent`). Push/pull streams carry a
:class:`StreamHeader` then chunks of :class:`MemberRecord`, :class:`NetworkEvent` and
:class:`EntryEvent`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "Ack",
    "Addr",
    "Alive",
    "Attachment",
    "Dead",
    "EntryEvent",
    "EntryState",
    "MemberRecord",
    "MemberState",
    "Message",
    "Nack",
    "NetworkEvent",
    "NotMe",
    "Ping",
    "PingReq",
    "StreamHeader",
    "StreamKind",
    "Suspect",
]

Addr = tuple[str, int]
"""(host, port) of a gossip node; opaque to the core."""


class MemberState(enum.IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class Attachment(enum.IntEnum):
    """A node's relation to a network."""

    LEFT = 0
    JOINED = 1


class EntryState(enum.IntEnum):
    LIVE = 0
    DELETED = 1


class StreamKind(enum.IntEnum):
    """Push/pull exchanges: a full REQUEST gets a full REPLY (joins, reconnects). A periodic
    DIGEST request carries only a hash of the shared state: an equal hash gets an empty
    REPLY; a different one gets a full REPLY_PULL, answered by a full PUSH."""

    REQUEST = 0
    REPLY = 1
    DIGEST = 2
    REPLY_PULL = 3
    PUSH = 4


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    target: str
    source: str
    source_addr: Addr


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to ping ``target`` and forward its ack to ``source``."""

    seq: int
    target: str
    target_addr: Addr
    source: str
    source_addr: Addr


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Nack:
    """An indirect-probe relay heard nothing from the target (Lifeguard)."""

    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class NotMe:
    """The node at this address is not the one pinged: a restarted agent, new id."""

    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Alive:
    node: str
    incarnation: int
    addr: Addr


@dataclass(frozen=True, slots=True)
class Suspect:
    node: str
    incarnation: int
    sender: str


@dataclass(frozen=True, slots=True)
class Dead:
    """``sender == node`` means a graceful leave."""

    node: str
    incarnation: int
    sender: str


@dataclass(frozen=True, slots=True)
class NetworkEvent:
    """``node`` joined or left ``network`` at Lamport time ``ltime`` (of that node)."""

    node: str
    network: str
    ltime: int
    attachment: Attachment


@dataclass(frozen=True, slots=True)
class EntryEvent:
    """One table entry (or its tombstone), as its owner last wrote it."""

    table: str
    network: str
    key: str
    value: bytes
    owner: str
    owner_incarnation: int
    ltime: int
    state: EntryState


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member as a push/pull stream lists it."""

    node: str
    addr: Addr
    incarnation: int
    state: MemberState


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """First frame of a push/pull stream: who sends, and its networks (for scoping)."""

    kind: StreamKind
    sender: str
    sender_addr: Addr
    networks: tuple[str, ...]
    digest: bytes = b""


Message = Ping | PingReq | Ack | Nack | NotMe | Alive | Suspect | Dead | NetworkEvent | EntryEvent
