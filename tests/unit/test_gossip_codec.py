"""Codec: every message and frame round-trips; anything malformed is a DecodeError."""

from __future__ import annotations

import contextlib

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


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    for fn in (decode_datagram, decode_frame):
        with contextlib.suppress(DecodeError):
            fn(data)


_scalar = (st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=4)
           | st.binary(max_size=4) | st.lists(st.integers(0, 3) | st.text(max_size=2), max_size=5))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(_scalar, max_size=9), max_size=4), st.integers(0, 12))
def test_random_structures_never_raise_anything_but_decode_error(
        msgs: list[list[object]], t: int) -> None:
    body = [[t, *m] for m in msgs]
    for data in (msgpack.packb([1, body]), msgpack.packb([1, t, body])):
        for fn in (decode_datagram, decode_frame):
            with contextlib.suppress(DecodeError):
                fn(data)
