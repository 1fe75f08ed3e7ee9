"""The pure resolver core: scoping, records, EDNS0, truncation, errors and the cache."""

from __future__ import annotations

import random
import struct

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from netfabric.dns.records import Records, ServiceMode
from netfabric.dns.resolver import (
    Asker,
    Forward,
    Resolver,
    ResolverConfig,
    Transport,
    fit_udp,
    servfail,
)
from netfabric.errors import InvalidArgument, NotFound

FRONT = Asker(frozenset({"front"}))
BACK = Asker(frozenset({"back"}))
BOTH = Asker(frozenset({"front", "back"}))


@pytest.fixture
def records() -> Records:
    r = Records()
    r.set_endpoint("front", "web1", aliases=["www", "Portal"], ipv4="10.0.1.2",
                   ipv6="fd00:1::2")
    r.set_endpoint("back", "db1", ipv4="10.0.2.2")
    r.set_endpoint("back", "web1", ipv4="10.0.2.3")
    return r


@pytest.fixture
def resolver(records: Records) -> Resolver:
    return Resolver(records, rng=random.Random(7))


def ask(res: Resolver, name: str, qtype: str = "A", asker: Asker = FRONT, *,
        edns: int | None = None, transport: Transport = Transport.UDP) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    out = res.answer(q.pack(), asker, transport=transport)
    assert isinstance(out, bytes), out
    reply = DNSRecord.parse(out)
    assert reply.header.id == q.header.id
    assert reply.header.qr == 1
    return reply


def addrs(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


def test_names_and_aliases_resolve_case_insensitively_with_or_without_dot(
        resolver: Resolver) -> None:
    for name in ("web1", "WEB1.", "www", "portal.", "PoRtAl"):
        reply = ask(resolver, name)
        assert reply.header.rcode == RCODE.NOERROR
        assert addrs(reply) == ["10.0.1.2"]
        assert reply.rr[0].ttl == 2
    assert addrs(ask(resolver, "web1", "AAAA")) == ["fd00:1::2"]
    assert sorted(addrs(ask(resolver, "web1", "ANY"))) == ["10.0.1.2", "fd00:1::2"]


def test_names_resolve_only_on_shared_networks(resolver: Resolver) -> None:
    assert ask(resolver, "db1", asker=FRONT).header.rcode == RCODE.NXDOMAIN
    assert addrs(ask(resolver, "db1", asker=BACK)) == ["10.0.2.2"]
    assert addrs(ask(resolver, "web1", asker=BACK)) == ["10.0.2.3"]
    assert sorted(addrs(ask(resolver, "web1", asker=BOTH))) == ["10.0.1.2", "10.0.2.3"]
    assert ask(resolver, "www", asker=BACK).header.rcode == RCODE.NXDOMAIN
    assert ask(resolver, "db1", asker=Asker(frozenset())).header.rcode == RCODE.NXDOMAIN


def test_known_name_without_that_type_is_nodata(resolver: Resolver) -> None:
    reply = ask(resolver, "db1", "AAAA", asker=BACK)
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []
    reply = ask(resolver, "db1", "MX", asker=BACK)
    assert reply.header.rcode == RCODE.NOERROR and reply.rr == []


def test_ptr_for_every_endpoint_address_scoped(resolver: Resolver) -> None:
    reply = ask(resolver, "2.1.0.10.in-addr.arpa", "PTR")
    assert addrs(reply) == ["web1."]
    v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa"
    assert addrs(ask(resolver, v6, "PTR")) == ["web1."]
    q = DNSRecord.question("2.2.0.10.in-addr.arpa", "PTR")
    assert resolver.answer(q.pack(), FRONT) == Forward(q.pack())


def test_other_names_are_forwarded_single_labels_are_nxdomain(resolver: Resolver) -> None:
    q = DNSRecord.question("example.com", "A").pack()
    assert resolver.answer(q, FRONT) == Forward(q)
    root = bytes(DNSRecord.question(".", "NS").pack())
    assert resolver.answer(root, FRONT) == Forward(root)
    assert ask(resolver, "nosuch").header.rcode == RCODE.NXDOMAIN
    assert resolver.stats.forwarded == 2


def test_services_vip_dnsrr_and_tasks(records: Records, resolver: Resolver) -> None:
    records.set_service("front", "api", mode=ServiceMode.VIP, vip="10.0.1.100",
                        tasks=["10.0.1.11", "10.0.1.12"])
    records.set_service("front", "rr", mode=ServiceMode.DNSRR,
                        tasks=[f"10.0.1.{i}" for i in range(20, 30)])
    assert addrs(ask(resolver, "api")) == ["10.0.1.100"]
    assert sorted(addrs(ask(resolver, "tasks.api"))) == ["10.0.1.11", "10.0.1.12"]
    assert addrs(ask(resolver, "100.1.0.10.in-addr.arpa", "PTR")) == ["api."]
    orders = {tuple(addrs(ask(resolver, "rr"))) for _ in range(10)}
    assert len(orders) > 1, "DNSRR answers must be shuffled per reply"
    assert all(sorted(o) == sorted(f"10.0.1.{i}" for i in range(20, 30)) for o in orders)
    assert ask(resolver, "api", asker=BACK).header.rcode == RCODE.NXDOMAIN
    records.remove_service("front", "api")
    assert ask(resolver, "api").header.rcode == RCODE.NXDOMAIN
    q = DNSRecord.question("tasks.api").pack()
    assert resolver.answer(q, FRONT) == Forward(q), "gone: no longer ours"
    with pytest.raises(InvalidArgument):
        records.set_service("front", "x", mode=ServiceMode.VIP)
    with pytest.raises(InvalidArgument):
        records.set_service("front", "x", mode=ServiceMode.DNSRR, vip="10.0.0.1")


def test_edns0_is_echoed_and_sizes_honoured(records: Records, resolver: Resolver) -> None:
    reply = ask(resolver, "web1", edns=4096)
    opts = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == 1 and opts[0].rclass == 1232
    assert not [rr for rr in ask(resolver, "web1").ar if rr.rtype == QTYPE.OPT]
    q = DNSRecord.question("web1", "A")
    q.add_ar(EDNS0(version=1))
    reply = DNSRecord.parse(resolver.answer(q.pack(), FRONT))  # type: ignore[arg-type]
    opt = next(rr for rr in reply.ar if rr.rtype == QTYPE.OPT)
    assert opt.ttl >> 24 == 1 and not reply.rr, "BADVERS (16) = ext_rcode 1"


def test_large_answers_are_truncated_over_udp_and_whole_over_tcp(
        records: Records, resolver: Resolver) -> None:
    many = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(100)]
    records.set_service("front", "big", mode=ServiceMode.DNSRR, tasks=many)
    small = ask(resolver, "big")
    assert small.header.tc == 1 and small.rr == []
    assert ask(resolver, "big", edns=1232).header.tc == 1
    whole = ask(resolver, "big", transport=Transport.TCP)
    assert whole.header.tc == 0 and sorted(addrs(whole)) == sorted(many)
    records.set_service("front", "mid", mode=ServiceMode.DNSRR, tasks=many[:40])
    assert ask(resolver, "mid").header.tc == 1
    assert len(ask(resolver, "mid", edns=1232).rr) == 40


def test_malformed_queries_formerr_or_drop(resolver: Resolver) -> None:
    assert resolver.answer(b"", FRONT) is None
    assert resolver.answer(b"\x12\x34\x01", FRONT) is None
    reply = DNSRecord.question("web1").reply().pack()
    assert resolver.answer(reply, FRONT) is None, "replies are dropped, never answered"
    garbage = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc"
    out = resolver.answer(garbage, FRONT)
    assert isinstance(out, bytes) and out[:2] == b"\xab\xcd"
    assert DNSRecord.parse(out).header.rcode == RCODE.FORMERR
    two = b"\x00\x01\x01\x00\x00\x02" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01" * 2
    assert DNSRecord.parse(resolver.answer(two, FRONT)).header.rcode == RCODE.FORMERR  # type: ignore[arg-type]
    notify = bytearray(DNSRecord.question("web1").pack())
    notify[2] |= 4 << 3
    assert DNSRecord.parse(resolver.answer(bytes(notify), FRONT)).header.rcode == RCODE.NOTIMP  # type: ignore[arg-type]
    chaos = DNSRecord.question("version.bind", "TXT", "CH").pack()
    assert DNSRecord.parse(resolver.answer(chaos, FRONT)).header.rcode == RCODE.NOTIMP  # type: ignore[arg-type]
    assert resolver.stats.dropped_short == 2 and resolver.stats.dropped_response == 1


def test_cache_hits_patch_the_id_and_changes_invalidate_exactly(
        records: Records, resolver: Resolver) -> None:
    q1 = DNSRecord.question("web1", "A")
    first = resolver.answer(q1.pack(), FRONT)
    ask(resolver, "www")
    ask(resolver, "db1", asker=BACK)
    ask(resolver, "nosuch")
    q2 = DNSRecord.question("web1", "A")
    q2.header.id = (q1.header.id + 1) % 65536
    second = resolver.answer(q2.pack(), FRONT)
    assert isinstance(first, bytes) and isinstance(second, bytes)
    assert second[2:] == first[2:] and second[:2] == q2.pack()[:2]
    assert resolver.stats.hits == 1
    cache = resolver.udp_cache(FRONT.networks)
    assert len(cache) == 3
    records.set_endpoint("front", "nosuch", ipv4="10.0.1.9")
    assert len(cache) == 2 and resolver.stats.invalidated == 1
    assert addrs(ask(resolver, "nosuch")) == ["10.0.1.9"]
    records.set_endpoint("back", "db1", ipv4="10.0.2.99")  # other network: front untouched
    assert len(cache) == 3
    assert addrs(ask(resolver, "db1", asker=BACK)) == ["10.0.2.99"]
    records.remove_endpoint("front", "web1")
    assert ask(resolver, "web1").header.rcode == RCODE.NXDOMAIN
    assert ask(resolver, "www").header.rcode == RCODE.NXDOMAIN
    with pytest.raises(NotFound):
        records.remove_endpoint("front", "web1")


def test_cache_is_bounded() -> None:
    records = Records()
    res = Resolver(records, rng=random.Random(1), config=ResolverConfig(cache_entries=4))
    for i in range(10):
        ask(res, f"n{i}")
    assert len(res.udp_cache(FRONT.networks)) <= 4


def test_servfail_and_fit_udp() -> None:
    q = DNSRecord.question("example.com", "A")
    out = servfail(q.pack())
    assert out is not None
    reply = DNSRecord.parse(out)
    assert reply.header.rcode == RCODE.SERVFAIL and reply.header.id == q.header.id
    assert servfail(b"\x00") is None
    assert servfail(b"\x01\x02\x01\x00" + b"\xff" * 9)[:2] == b"\x01\x02"  # type: ignore[index]
    big = q.reply()
    for i in range(60):
        big.add_answer(RR("example.com", QTYPE.A, rdata=A(f"192.0.2.{i}"), ttl=60))
    packed = big.pack()
    assert len(packed) > 512
    cut = DNSRecord.parse(fit_udp(packed, q.pack()))
    assert cut.header.tc == 1 and cut.rr == []
    q.add_ar(EDNS0(udp_len=4096))
    assert fit_udp(packed, q.pack()) == packed


def test_bad_records_input_is_refused() -> None:
    r = Records()
    for bad in ("", "a..b", "-x", "x" * 64, "sp ace"):
        with pytest.raises(InvalidArgument):
            r.set_endpoint("n", bad, ipv4="10.0.0.1")
    with pytest.raises(InvalidArgument):
        r.set_endpoint("n", "ok", ipv4="10.0.0.300")
    with pytest.raises(InvalidArgument):
        r.set_endpoint("n", "ok", ipv6="10.0.0.3")
    with pytest.raises(InvalidArgument):
        r.set_endpoint("", "ok", ipv4="10.0.0.3")
    with pytest.raises(InvalidArgument):
        ResolverConfig(ttl=-1)
    r.set_endpoint("n", "ok", ipv4="10.0.0.1")
    r.remove_network("n")
    assert r.networks() == frozenset()


def test_header_only_errors_keep_id_and_rd() -> None:
    res = Resolver(Records(), rng=random.Random(1))
    q = b"\x99\x98\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0"
    out = res.answer(q, FRONT)
    assert isinstance(out, bytes)
    ident, flags = struct.unpack("!HH", out[:4])
    assert ident == 0x9998 and flags & 0x8000 and flags & 0x0100 and flags & 0xF == 1
