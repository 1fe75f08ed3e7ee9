"""Versioned msgpack codec for datagrams and push/pull stream frames.

A datagram plaintext is ``[VERSION, [message, ...]]``; each message is a msgpack array
whose first item is its type number. Messages are encoded once (the broadcast queue keeps
the bytes) and concatenated into compound datagrams without re-encoding.

A stream is a sequence of frames, each ``length(4, big endian) | sealed plaintext``, the
plaintext being ``[VERSION, frame type, body]``; the last frame is END. Frames are bounded
(``stream_frame_size``); the stream is not, beyond ``max_stream_size``.

Every decode error is a :class:`~netfabric.errors.DecodeError`; nothing else escapes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import msgpack

from netfabric.errors import DecodeError
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

__all__ = [
    "FRAME_END",
    "FRAME_ENTRIES",
    "FRAME_HEADER",
    "FRAME_MEMBERS",
    "FRAME_NETWORKS",
    "VERSION",
    "FrameReader",
    "compound",
    "compound_overhead",
    "decode_datagram",
    "decode_frame",
    "encode_frame",
    "encode_message",
    "frame_prefix",
]

VERSION = 1

T_PING, T_PING_REQ, T_ACK, T_NACK, T_NOT_ME = 1, 2, 3, 4, 5
T_ALIVE, T_SUSPECT, T_DEAD, T_NETWORK, T_ENTRY = 6, 7, 8, 9, 10

FRAME_HEADER, FRAME_MEMBERS, FRAME_NETWORKS, FRAME_ENTRIES, FRAME_END = 0, 1, 2, 3, 4

_LEN = struct.Struct(">I")
_MSTATES = tuple(MemberState)
_ATTS = tuple(Attachment)
_ESTATES = tuple(EntryState)


def _pack(obj: object) -> bytes:
    out = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def _tuple(msg: Message) -> tuple[Any, ...]:
    if isinstance(msg, EntryEvent):
        return (T_ENTRY, msg.table, msg.network, msg.key, msg.value, msg.owner,
                msg.owner_incarnation, msg.ltime, int(msg.state))
    if isinstance(msg, Ping):
        return (T_PING, msg.seq, msg.target, msg.source, *msg.source_addr)
    if isinstance(msg, Ack):
        return (T_ACK, msg.seq, msg.source)
    if isinstance(msg, Alive):
        return (T_ALIVE, msg.node, msg.incarnation, *msg.addr)
    if isinstance(msg, Suspect):
        return (T_SUSPECT, msg.node, msg.incarnation, msg.sender)
    if isinstance(msg, Dead):
        return (T_DEAD, msg.node, msg.incarnation, msg.sender)
    if isinstance(msg, NetworkEvent):
        return (T_NETWORK, msg.node, msg.network, msg.ltime, int(msg.attachment))
    if isinstance(msg, PingReq):
        return (T_PING_REQ, msg.seq, msg.target, *msg.target_addr, msg.source,
                *msg.source_addr)
    if isinstance(msg, Nack):
        return (T_NACK, msg.seq, msg.source)
    return (T_NOT_ME, msg.seq, msg.source)


def encode_message(msg: Message) -> bytes:
    """One message as msgpack bytes, ready to join a compound datagram."""
    return _pack(_tuple(msg))


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def compound_overhead(n: int) -> int:
    """Bytes a compound of ``n`` messages adds around them."""
    return 2 + len(_array_header(n))


def compound(raws: list[bytes]) -> bytes:
    """The datagram plaintext carrying already-encoded messages."""
    return b"\x92\x01" + _array_header(len(raws)) + b"".join(raws)


# -- decoding -----------------------------------------------------------------------------

def _s(x: object) -> str:
    if type(x) is not str:
        raise DecodeError("expected a string")
    return x


def _i(x: object) -> int:
    if type(x) is not int or x < 0:
        raise DecodeError("expected a non-negative integer")
    return x


def _addr(host: object, port: object) -> Addr:
    p = _i(port)
    if p > 65535:
        raise DecodeError("port out of range")
    return (_s(host), p)


def _n(items: list[Any], n: int) -> None:
    if len(items) != n:
        raise DecodeError("wrong field count")


def _message(m: object) -> Message:
    if type(m) is not list or not m:
        raise DecodeError("a message is an array")
    t = m[0]
    if t == T_PING:
        _n(m, 6)
        return Ping(_i(m[1]), _s(m[2]), _s(m[3]), _addr(m[4], m[5]))
    if t == T_ACK:
        _n(m, 3)
        return Ack(_i(m[1]), _s(m[2]))
    if t == T_ENTRY:
        return _entry(m)
    if t == T_ALIVE:
        _n(m, 5)
        return Alive(_s(m[1]), _i(m[2]), _addr(m[3], m[4]))
    if t == T_SUSPECT:
        _n(m, 4)
        return Suspect(_s(m[1]), _i(m[2]), _s(m[3]))
    if t == T_DEAD:
        _n(m, 4)
        return Dead(_s(m[1]), _i(m[2]), _s(m[3]))
    if t == T_NETWORK:
        return _network(m)
    if t == T_PING_REQ:
        _n(m, 8)
        return PingReq(_i(m[1]), _s(m[2]), _addr(m[3], m[4]), _s(m[5]), _addr(m[6], m[7]))
    if t == T_NACK:
        _n(m, 3)
        return Nack(_i(m[1]), _s(m[2]))
    if t == T_NOT_ME:
        _n(m, 3)
        return NotMe(_i(m[1]), _s(m[2]))
    raise DecodeError(f"unknown message type {t!r}")


def _entry(m: list[Any]) -> EntryEvent:
    _n(m, 9)
    value = m[4]
    if type(value) is not bytes:
        raise DecodeError("an entry value is bytes")
    state = m[8]
    if type(state) is not int or not 0 <= state <= 1:
        raise DecodeError("bad entry state")
    return EntryEvent(_s(m[1]), _s(m[2]), _s(m[3]), value, _s(m[5]), _i(m[6]), _i(m[7]),
                      _ESTATES[state])


def _network(m: list[Any]) -> NetworkEvent:
    if len(m) != 5:
        raise DecodeError("wrong field count")
    node, network, ltime, att = m[1], m[2], m[3], m[4]
    if (type(node) is not str or type(network) is not str or type(ltime) is not int
            or ltime < 0 or type(att) is not int or not 0 <= att <= 1):
        raise DecodeError("bad network event")
    return NetworkEvent(node, network, ltime, _ATTS[att])


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types; all mean "does not parse"
        raise DecodeError(f"not msgpack: {type(exc).__name__}") from exc


def decode_datagram(plaintext: bytes) -> list[Message]:
    """The messages of one datagram plaintext, or DecodeError."""
    obj = _unpack(plaintext)
    if type(obj) is not list or len(obj) != 2 or type(obj[1]) is not list:
        raise DecodeError("not a gossip datagram")
    if obj[0] != VERSION:
        raise DecodeError(f"unsupported version {obj[0]!r}")
    return [_message(m) for m in obj[1]]


# -- stream frames ------------------------------------------------------------------------

def frame_prefix(sealed: bytes) -> bytes:
    return _LEN.pack(len(sealed))


def encode_frame(kind: int, body: object) -> bytes:
    """A frame plaintext; seal it, then prefix its length."""
    if kind == FRAME_HEADER:
        assert isinstance(body, StreamHeader)
        body = (int(body.kind), body.sender, *body.sender_addr, list(body.networks),
                body.digest)
    elif kind == FRAME_MEMBERS:
        body = [(r.node, *r.addr, r.incarnation, int(r.state)) for r in body]  # type: ignore[attr-defined]
    elif kind in (FRAME_NETWORKS, FRAME_ENTRIES):
        body = [_tuple(e) for e in body]  # type: ignore[attr-defined]
    return _pack((VERSION, kind, body))


FrameBody = StreamHeader | list[MemberRecord] | list[NetworkEvent] | list[EntryEvent] | None


def decode_frame(plaintext: bytes) -> tuple[int, FrameBody]:
    """(frame type, body) of one frame plaintext, or DecodeError."""
    obj = _unpack(plaintext)
    if type(obj) is not list or len(obj) != 3 or obj[0] != VERSION:
        raise DecodeError("not a gossip stream frame")
    kind, body = obj[1], obj[2]
    if kind == FRAME_END:
        return kind, None
    if kind == FRAME_HEADER:
        if (type(body) is not list or len(body) != 6 or type(body[4]) is not list
                or type(body[5]) is not bytes):
            raise DecodeError("bad stream header")
        sk = _i(body[0])
        if sk > max(StreamKind):
            raise DecodeError("bad stream kind")
        return kind, StreamHeader(StreamKind(sk), _s(body[1]), _addr(body[2], body[3]),
                                  tuple(_s(n) for n in body[4]), body[5])
    if type(body) is not list:
        raise DecodeError("a frame body is an array")
    if kind == FRAME_MEMBERS:
        out: list[MemberRecord] = []
        for r in body:
            if type(r) is not list or len(r) != 5:
                raise DecodeError("bad member record")
            node, host, port, inc, st = r
            if (type(node) is not str or type(host) is not str or type(port) is not int
                    or not 0 <= port <= 65535 or type(inc) is not int or inc < 0
                    or type(st) is not int or not 0 <= st <= 3):
                raise DecodeError("bad member record")
            out.append(MemberRecord(node, (host, port), inc, _MSTATES[st]))
        return kind, out
    if kind == FRAME_NETWORKS:
        nets = []
        for r in body:
            if type(r) is not list or not r or r[0] != T_NETWORK:
                raise DecodeError("bad network record")
            nets.append(_network(r))
        return kind, nets
    if kind == FRAME_ENTRIES:
        entries = []
        for r in body:
            if type(r) is not list or not r or r[0] != T_ENTRY:
                raise DecodeError("bad entry record")
            entries.append(_entry(r))
        return kind, entries
    raise DecodeError(f"unknown frame type {kind!r}")


class FrameReader:
    """Splits a byte stream into sealed frames as bytes arrive (sans-IO)."""

    __slots__ = ("_buf", "_limit", "_total")

    def __init__(self, *, max_stream_size: int) -> None:
        self._buf = bytearray()
        self._limit = max_stream_size
        self._total = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Append ``data``; yield every complete sealed frame. DecodeError past the limit."""
        self._total += len(data)
        if self._total > self._limit:
            raise DecodeError("push/pull stream larger than max_stream_size")
        self._buf += data
        while len(self._buf) >= 4:
            (size,) = _LEN.unpack_from(self._buf)
            if size > self._limit:
                raise DecodeError("frame larger than max_stream_size")
            if len(self._buf) < 4 + size:
                return
            frame = bytes(self._buf[4:4 + size])
            del self._buf[:4 + size]
            yield frame

    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buf)
