"""Codec: every message and frame round-trips; anything malformed is a DecodeError."""

from __future__ import annotations

import dataclasses
import enum
from typing import get_type_hints

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netfabric.errors import DecodeError
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
    Nack,
    NetworkEvent,
    NotMe,
    Ping,
    PingReq,
    StreamHeader,
    StreamKind,
    Suspect,
)

MESSAGE_TYPES = (Ping, PingReq, Ack, Nack, NotMe, Alive, Suspect, Dead, NetworkEvent, EntryEvent)
MESSAGES = [
    Ping(1, "b", "a", ("198.51.100.1", 7946)),
    PingReq(2, "c", ("198.51.100.3", 7946), "a", ("198.51.100.1", 7946)),
    Ack(3, "b"),
    Nack(4, "b"),
    NotMe(5, "x"),
    Alive("a", 7, ("198.51.100.1", 7946)),
    Suspect("a", 7, "b"),
    Dead("a", 7, "a"),
    NetworkEvent("a", "net1", 12, Attachment.JOINED),
    EntryEvent("endpoints", "net1", "ep1", b"\x00\xff", "a", 7, 13, EntryState.DELETED),
]


def test_compound_datagram_round_trip() -> None:
    plain = compound([encode_message(m) for m in MESSAGES])
    assert decode_datagram(plain) == MESSAGES
    many = [Ack(i, "n") for i in range(40)]  # more than a fixarray holds
    assert decode_datagram(compound([encode_message(m) for m in many])) == many


def test_frames_round_trip() -> None:
    header = StreamHeader(StreamKind.REQUEST, "a", ("h", 1), ("n1", "n2"))
    assert decode_frame(encode_frame(FRAME_HEADER, header)) == (FRAME_HEADER, header)
    members = [MemberRecord("a", ("h", 1), 3, MemberState.SUSPECT)]
    assert decode_frame(encode_frame(FRAME_MEMBERS, members)) == (FRAME_MEMBERS, members)
    nets = [MESSAGES[8]]
    assert decode_frame(encode_frame(FRAME_NETWORKS, nets)) == (FRAME_NETWORKS, nets)
    entries = [MESSAGES[9]]
    assert decode_frame(encode_frame(FRAME_ENTRIES, entries)) == (FRAME_ENTRIES, entries)
    assert decode_frame(encode_frame(FRAME_END, None)) == (FRAME_END, None)


@pytest.mark.parametrize("bad", [
    msgpack.packb([2, []]),                            # unknown version
    msgpack.packb([1, [[99, 1]]]),                     # unknown message type
    msgpack.packb([1, [[1, -1, "b", "a", "h", 1]]]),   # negative seq
    msgpack.packb([1, [[1, 1, "b", "a", "h", 70000]]]),  # port out of range
    msgpack.packb([1, [[3, 1]]]),                      # field missing
    msgpack.packb([1, [[10, "t", "n", "k", "str", "o", 1, 1, 0]]]),  # value not bytes
    msgpack.packb([1, [[9, "a", "n", 1, 5]]]),         # bad attachment
    msgpack.packb({"a": 1}),
    b"\xc1",                                           # never-used msgpack byte
    b"",
])
def test_malformed_datagrams_are_decode_errors(bad: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_datagram(bad)


def test_frame_reader_splits_and_bounds() -> None:
    frames = [b"a" * 10, b"b" * 300, b""]
    stream = b"".join(frame_prefix(f) + f for f in frames)
    reader = FrameReader(max_stream_size=10_000)
    got = [f for i in range(0, len(stream), 7) for f in reader.feed(stream[i:i + 7])]
    assert got == frames
    assert reader.pending() == 0
    with pytest.raises(DecodeError):
        list(FrameReader(max_stream_size=100).feed(frame_prefix(b"x" * 200) + b"x" * 200))


def well_typed(obj: object) -> bool:
    """Every field of a decoded message or record has its declared type and range."""
    hints = get_type_hints(type(obj))
    return all(_fits(getattr(obj, f.name), hints[f.name]) for f in dataclasses.fields(obj))  # type: ignore[arg-type]


def _fits(value: object, tp: object) -> bool:
    if tp is str or tp is bytes:
        return type(value) is tp
    if tp is int:
        return type(value) is int and value >= 0
    if tp == Addr:
        return (type(value) is tuple and len(value) == 2 and type(value[0]) is str
                and type(value[1]) is int and 0 <= value[1] <= 65535)
    if tp == tuple[str, ...]:
        return type(value) is tuple and all(type(v) is str for v in value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return type(value) is tp
    raise AssertionError(f"no rule for {tp!r}")


def check_datagram(plaintext: bytes) -> None:
    """Either a DecodeError, or well-typed messages that encode back to the same list."""
    try:
        msgs = decode_datagram(plaintext)
    except DecodeError:
        return
    assert all(type(m) in MESSAGE_TYPES and well_typed(m) for m in msgs), msgs
    assert decode_datagram(compound([encode_message(m) for m in msgs])) == msgs


def check_frame(plaintext: bytes) -> None:
    """Either a DecodeError, or a known frame of well-typed records that round-trips."""
    try:
        kind, body = decode_frame(plaintext)
    except DecodeError:
        return
    if kind == FRAME_END:
        assert body is None
    elif kind == FRAME_HEADER:
        assert isinstance(body, StreamHeader) and well_typed(body)
    else:
        record = {FRAME_MEMBERS: MemberRecord, FRAME_NETWORKS: NetworkEvent,
                  FRAME_ENTRIES: EntryEvent}[kind]
        assert isinstance(body, list)
        assert all(type(r) is record and well_typed(r) for r in body), body
    assert decode_frame(encode_frame(kind, body)) == (kind, body)


def test_the_checks_catch_an_ill_typed_decode() -> None:
    assert all(well_typed(m) for m in MESSAGES)
    assert not well_typed(Ack(-1, "b"))
    assert not well_typed(Alive("a", 1, ("h", 70000)))
    assert not well_typed(NetworkEvent("a", "n", 1, 1))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_to_well_typed_messages_or_decode_error(data: bytes) -> None:
    check_datagram(data)
    check_frame(data)


_scalar = (st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=4)
           | st.binary(max_size=4) | st.lists(st.integers(0, 3) | st.text(max_size=2), max_size=5))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_scalar, max_size=9), max_size=4), st.integers(0, 12))
def test_random_structures_decode_to_well_typed_messages_or_decode_error(
        msgs: list[list[object]], t: int) -> None:
    body = [[t, *m] for m in msgs]
    for data in (msgpack.packb([1, body]), msgpack.packb([1, t, body])):
        check_datagram(data)
        check_frame(data)


EDGES: list[object] = [-1, 0, 1, 2, 3, 4, 5, 99, 65535, 65536, 2**32, 2**64 - 1, -2**63, 1.5,
                       True, None, "", "x", b"", b"x", [], ["x"], [1], {}]
FRAMES = [
    (FRAME_HEADER, StreamHeader(StreamKind.DIGEST, "a", ("h", 1), ("n1",), b"\x01" * 16)),
    (FRAME_MEMBERS, [MemberRecord("a", ("h", 1), 3, MemberState.DEAD)]),
    (FRAME_NETWORKS, [MESSAGES[8]]),
    (FRAME_ENTRIES, [MESSAGES[9]]),
]


def _one_field_changed(fields: list[object]) -> list[list[object]]:
    """Every variant of ``fields`` with one field set to one edge value, one field
    dropped, or one added."""
    out = [[*fields[:i], v, *fields[i + 1:]] for i in range(len(fields)) for v in EDGES]
    return [*out, fields[:-1], [*fields, 0]]


def test_every_one_field_change_decodes_well_typed_or_decode_error() -> None:
    """Exhaustive where the fuzz above is random: each field of each message and record,
    set to each edge value (negative, out of range, wrong type)."""
    for msg in MESSAGES:
        t, *fields = msgpack.unpackb(encode_message(msg))  # type: ignore[arg-type]
        for variant in _one_field_changed(fields):
            check_datagram(msgpack.packb([1, [[t, *variant]]]))
    for frame in FRAMES:
        _, kind, body = msgpack.unpackb(encode_frame(*frame))
        variants = (_one_field_changed(body) if kind == FRAME_HEADER
                    else [[v] for v in _one_field_changed(body[0])])
        for variant in variants:
            check_frame(msgpack.packb([1, kind, variant]))
