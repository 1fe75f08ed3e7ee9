"""The core on a virtual clock: probes, suspicion, drops, errors; no sockets, no sleeping."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netfabric.errors import DecodeError, InvalidArgument, NotFound
from netfabric.gossip.codec import compound, decode_datagram, encode_message
from netfabric.gossip.config import GossipConfig
from netfabric.gossip.core import GossipCore
from netfabric.gossip.events import MemberDead, MemberSuspect
from netfabric.gossip.keyring import Keyring, derive_key
from netfabric.gossip.messages import Ack, Alive, MemberState, Ping, PingReq, Suspect

KEY = derive_key("unit")
A, B, C = ("10.0.0.1", 1), ("10.0.0.2", 1), ("10.0.0.3", 1)


def core(node: str = "a", addr: tuple[str, int] = A, **kw: object) -> GossipCore:
    return GossipCore(GossipConfig.lan(), node_id=node, addr=addr, keyring=Keyring(KEY),
                      rng=random.Random(1), now=0.0, **kw)  # type: ignore[arg-type]


def packet(*msgs: object, key: bytes = KEY) -> bytes:
    return Keyring(key).seal(compound([encode_message(m) for m in msgs]))  # type: ignore[arg-type]


def drain(c: GossipCore) -> list[object]:
    out = []
    while (ev := c.next_event()) is not None:
        out.append(ev)
    return out


def test_ping_is_acked_with_our_id() -> None:
    a = core()
    a.receive(packet(Ping(7, "a", "b", B)), B, 0.1)
    [(addr, data)] = a.datagrams_to_send(0.1)
    assert addr == B
    assert decode_datagram(Keyring(KEY).open(data))[0] == Ack(7, "a")


def test_unanswered_probe_leads_to_suspect_then_dead() -> None:
    a = core()
    a.receive(packet(Alive("b", 0, B)), B, 0.0)
    now = 0.0
    events: list[object] = []
    while now < 60 and not any(isinstance(e, MemberDead) for e in events):
        now = a.next_deadline()
        a.handle_timer(now)
        a.datagrams_to_send(now)  # b never answers
        events += drain(a)
    kinds = [type(e) for e in events]
    assert kinds.index(MemberSuspect) < kinds.index(MemberDead)
    # two probe rounds to suspect, then the lone-suspicion timeout (no confirmations
    # needed in a 2-node cluster): a few seconds, well under a minute
    assert now < 10
    assert a.health > 0  # the failed probe counted against our local health


def test_a_member_that_misses_one_probe_round_is_probed_again_not_suspected() -> None:
    a = core()
    a.receive(packet(Alive("b", 0, B)), B, 0.0)
    pings: list[Ping] = []
    now = 0.0
    while len(pings) < 2:  # b misses the first round, direct and indirect
        now = a.next_deadline()
        a.handle_timer(now)
        for addr, data in a.datagrams_to_send(now):
            pings += [m for m in decode_datagram(Keyring(KEY).open(data))
                      if isinstance(m, Ping) and m.target == "b" and addr == B]
    assert a.counters.probe_retries == 1 and a.members.get("b").state == MemberState.ALIVE  # type: ignore[union-attr]
    a.receive(packet(Ack(pings[1].seq, "b")), B, now + 0.01)  # and answers the second
    end = now + 5
    while now < end:
        now = a.next_deadline()
        a.handle_timer(now)
        for _, data in a.datagrams_to_send(now):
            for m in decode_datagram(Keyring(KEY).open(data)):
                if isinstance(m, Ping) and m.target == "b":
                    a.receive(packet(Ack(m.seq, "b")), B, now + 0.01)
    assert not any(isinstance(e, MemberSuspect) for e in drain(a))
    assert a.counters.probe_failures == 1


def test_indirect_probe_relays_the_ack() -> None:
    c = core("c", C)
    c.receive(packet(PingReq(42, "b", B, "a", A)), A, 0.0)
    [(addr, data)] = c.datagrams_to_send(0.0)
    assert addr == B
    ping = decode_datagram(Keyring(KEY).open(data))[0]
    assert isinstance(ping, Ping) and ping.target == "b"
    c.receive(packet(Ack(ping.seq, "b")), B, 0.01)
    [(addr, data)] = c.datagrams_to_send(0.01)
    assert addr == A and decode_datagram(Keyring(KEY).open(data))[0] == Ack(42, "b")


def test_suspicion_of_us_is_refuted_with_a_higher_incarnation() -> None:
    a = core(incarnation=3)
    a.receive(packet(Alive("b", 0, B)), B, 0.0)
    a.receive(packet(Suspect("a", 3, "b")), B, 0.1)
    assert a.members.incarnation == 4
    assert a.counters.refutations == 1


def test_wrong_key_garbage_and_bad_messages_are_counted_never_raised() -> None:
    a = core()
    a.receive(packet(Ping(1, "a", "b", B), key=derive_key("other cluster")), B, 0)
    assert a.counters.auth_failed == 1
    a.receive(b"\x00garbage", B, 0)
    assert a.counters.auth_failed == 2
    a.receive(Keyring(KEY).seal(b"\x92\x01\x91\x92\x63\x01"), B, 0)
    assert a.counters.decode_failed == 1
    assert a.receive_stream(b"\x00\x00\x00\x05hello", B, 0) is None
    assert a.counters.stream_failed == 1
    assert a.datagrams_to_send(0) == []


def decodes(plaintext: bytes) -> bool:
    try:
        decode_datagram(plaintext)
    except DecodeError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_into_receive_are_counted_drops(data: bytes) -> None:
    a = core()
    a.receive(data, B, 0.0)  # not sealed with our key: fails authentication, nothing sent
    assert (a.counters.datagrams_in, a.counters.auth_failed, a.counters.decode_failed) == (
        1, 1, 0)
    assert a.datagrams_to_send(0.0) == []
    a.receive(Keyring(KEY).seal(data), B, 0.0)  # authentic but arbitrary plaintext
    assert a.counters.auth_failed == 1
    assert a.counters.decode_failed == (0 if decodes(data) else 1)
    assert a.receive_stream(data, B, 0.0) is None  # no sealed header: a failed stream
    assert (a.counters.streams_in, a.counters.stream_failed) == (1, 1)
    a.handle_timer(a.next_deadline())


_scalar = st.none() | st.integers(-2, 70000) | st.text(max_size=3) | st.binary(max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 12), st.lists(_scalar, max_size=9))
def test_fuzz_authentic_structures_are_handled_or_counted(t: int, fields: list[object]) -> None:
    a = core()
    plaintext = msgpack.packb([1, [[t, *fields]]])
    a.receive(Keyring(KEY).seal(plaintext), B, 0.0)
    a.handle_timer(a.next_deadline())
    # a structure the codec refuses is counted as a decode failure; one it accepts is not
    assert a.counters.auth_failed == 0
    assert a.counters.decode_failed == (0 if decodes(plaintext) else 1)


def test_table_commands_check_their_arguments() -> None:
    a = core()
    with pytest.raises(NotFound):
        a.set_entry("t", "net1", "k", b"v", 0)
    a.join_network("net1", 0)
    a.set_entry("t", "net1", "k", b"v", 0)
    assert a.entries("t", "net1") == {"k": b"v"}
    with pytest.raises(NotFound):
        a.delete_entry("t", "net1", "missing", 0)
    a.delete_entry("t", "net1", "k", 1)
    assert a.entries("t", "net1") == {}
    with pytest.raises(InvalidArgument):
        GossipCore(GossipConfig.lan(), node_id="", addr=A, keyring=Keyring(KEY),
                   rng=random.Random(), now=0)
