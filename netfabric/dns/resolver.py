"""The pure resolver core: query bytes and the asking sandbox in, reply bytes out.

``Resolver.answer(query, asker)`` answers names of the asker's networks from
:class:`~netfabric.dns.records.Records`, says :class:`Forward` for names it does not own
(the adapter does the I/O), and returns ``None`` for datagrams it drops (too short to carry
an ID, or replies). It never raises on any input.

Hot path: a reply to a UDP query is a function of the query bytes after the ID and of the
asker's network set, so the encoded reply (minus its ID) is cached under exactly that key and
served by patching the ID in, with no parsing. Each entry is indexed under its query name;
a records change on network N for names X drops only the entries of network sets holding N
for names in X. DNS round-robin answers are shuffled per reply and never cached.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from enum import StrEnum

from dnslib import AAAA, CLASS, EDNS0, PTR, QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord

from netfabric.dns.records import NameTarget, Records
from netfabric.errors import InvalidArgument

__all__ = [
    "CLASSIC_UDP_SIZE",
    "DEFAULT_EDNS_UDP_SIZE",
    "DEFAULT_TTL",
    "Asker",
    "Forward",
    "Resolver",
    "ResolverConfig",
    "ResolverStats",
    "Transport",
    "fit_udp",
    "servfail",
]

DEFAULT_TTL = 2
"""Seconds a client may cache our own answers: short, so moved endpoints are seen soon."""

DEFAULT_EDNS_UDP_SIZE = 1232
"""Our EDNS0 UDP payload size (the DNS flag day 2020 value: no IP fragmentation)."""

CLASSIC_UDP_SIZE = 512
"""Largest UDP reply to a query without EDNS0 (RFC 1035)."""

DEFAULT_CACHE_ENTRIES = 65536
"""Per network set; when full, that set's cache is emptied and refilled on demand."""

_HEADER = 12
_OPT = 41
_IN = 1
_ANY = 255
_RCODE_FORMERR = 1
_RCODE_SERVFAIL = 2
_RCODE_NXDOMAIN = 3
_RCODE_NOTIMP = 4
_EXT_BADVERS = 1  # BADVERS is 16: upper 8 bits go in the OPT TTL
_REVERSE = (".in-addr.arpa", ".ip6.arpa")


class Transport(StrEnum):
    """Which socket the query came in on: only UDP replies are size-limited."""

    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class Asker:
    """The sandbox that asks: the networks it has endpoints on."""

    networks: frozenset[str]


@dataclass(frozen=True, slots=True)
class Forward:
    """Not a name of ours: the adapter sends ``query`` upstream and relays the reply."""

    query: bytes


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """Tunables of the resolver core."""

    ttl: int = DEFAULT_TTL
    """TTL in seconds of every record we own (Docker uses 600 s: stale for ten minutes)."""
    edns_udp_size: int = DEFAULT_EDNS_UDP_SIZE
    """Largest UDP reply we send to an EDNS0 client, whatever larger size it advertises."""
    cache_entries: int = DEFAULT_CACHE_ENTRIES
    """Bound on cached replies per network set."""

    def __post_init__(self) -> None:
        if not 0 <= self.ttl <= 2**31 - 1:
            raise InvalidArgument(f"ttl must be 0..2^31-1 seconds, got {self.ttl}")
        if not CLASSIC_UDP_SIZE <= self.edns_udp_size <= 65535:
            raise InvalidArgument(f"edns_udp_size must be 512..65535, got {self.edns_udp_size}")
        if self.cache_entries < 0:
            raise InvalidArgument(f"cache_entries must be >= 0, got {self.cache_entries}")


@dataclass(slots=True)
class ResolverStats:
    """Counters: every drop and every error reply is counted here."""

    hits: int = 0
    misses: int = 0
    answered: int = 0
    nxdomain: int = 0
    forwarded: int = 0
    dropped_short: int = 0
    dropped_response: int = 0
    formerr: int = 0
    notimp: int = 0
    badvers: int = 0
    truncated: int = 0
    invalidated: int = 0


class Resolver:
    """Answers DNS queries for the names of the asker's networks."""

    def __init__(self, records: Records, *, rng: random.Random,
                 config: ResolverConfig | None = None) -> None:
        self.records = records
        self.config = config or ResolverConfig()
        self.stats = ResolverStats()
        self._rng = rng
        self._caches: dict[frozenset[str], dict[bytes, bytes]] = {}
        self._index: dict[frozenset[str], dict[str, set[bytes]]] = {}
        records.subscribe(self._on_change)

    def close(self) -> None:
        """Stop following the records (the resolver is being dropped)."""
        self.records.unsubscribe(self._on_change)

    def udp_cache(self, networks: frozenset[str]) -> dict[bytes, bytes]:
        """The live reply cache of a network set: ``query[2:] -> reply[2:]``.

        A serving thread may read it without a lock; only :meth:`answer` writes it.
        """
        cache = self._caches.get(networks)
        if cache is None:
            cache = self._caches[networks] = {}
            self._index[networks] = {}
        return cache

    def peek_cache(self, networks: frozenset[str]) -> dict[bytes, bytes] | None:
        """The live cache of a network set if there is one; never creates (thread-safe)."""
        return self._caches.get(networks)

    def forget(self, networks: frozenset[str]) -> None:
        """Drop the cache of a network set no sandbox uses any more."""
        cache = self._caches.pop(networks, None)
        if cache is not None:
            cache.clear()
        self._index.pop(networks, None)

    def answer(self, query: bytes, asker: Asker, *,
               transport: Transport = Transport.UDP) -> bytes | Forward | None:
        """The reply to ``query``, a :class:`Forward`, or None to drop it. Never raises."""
        if type(query) is not bytes:
            query = bytes(query)
        if len(query) < _HEADER:
            self.stats.dropped_short += 1
            return None
        if query[2] & 0x80:
            self.stats.dropped_response += 1
            return None
        if transport is Transport.UDP:
            cache = self._caches.get(asker.networks)
            if cache is not None:
                hit = cache.get(query[2:])
                if hit is not None:
                    self.stats.hits += 1
                    return query[:2] + hit
        self.stats.misses += 1
        return self._answer_slow(query, asker, transport)

    # --- slow path ---------------------------------------------------------------------

    def _answer_slow(self, query: bytes, asker: Asker,
                     transport: Transport) -> bytes | Forward | None:
        try:
            rec = DNSRecord.parse(query)
        except Exception:  # dnslib raises assorted types on garbage: all mean FORMERR
            self.stats.formerr += 1
            return _bare(query, _RCODE_FORMERR)
        if rec.header.opcode != 0:
            self.stats.notimp += 1
            return _bare(query, _RCODE_NOTIMP)
        opts = [rr for rr in rec.ar if rr.rtype == _OPT]
        if len(rec.questions) != 1 or len(opts) > 1:
            self.stats.formerr += 1
            return _bare(query, _RCODE_FORMERR)
        opt = opts[0] if opts else None
        if opt is not None and (opt.ttl >> 16) & 0xFF != 0:
            self.stats.badvers += 1
            return self._pack(rec, opt, rcode=0, answers=[], ext_rcode=_EXT_BADVERS)
        question = rec.questions[0]
        if question.qclass not in (_IN, _ANY):
            self.stats.notimp += 1
            return self._pack(rec, opt, rcode=_RCODE_NOTIMP, answers=[])
        name = _name_of(question)
        if name is None:
            self.stats.forwarded += 1
            return Forward(query)
        networks = asker.networks
        answers: list[RR]
        shuffle = False
        if name.endswith(_REVERSE):
            targets = self.records.lookup_ptr(networks, name)
            if not targets:
                self.stats.forwarded += 1
                return Forward(query)
            answers = self._ptr_rrs(question, targets)
            rcode = 0
        else:
            target = self.records.lookup(networks, name)
            if target is None:
                if "." in name:
                    self.stats.forwarded += 1
                    return Forward(query)
                self.stats.nxdomain += 1
                answers, rcode = [], _RCODE_NXDOMAIN
            else:
                answers = self._addr_rrs(question, target)
                shuffle = target.shuffle
                rcode = 0
        reply = self._pack(rec, opt, rcode=rcode, answers=answers)
        if transport is Transport.UDP and len(reply) > _udp_limit(opt, self.config):
            self.stats.truncated += 1
            return self._pack(rec, opt, rcode=rcode, answers=[], truncated=True)
        self.stats.answered += 1
        if transport is Transport.UDP and not shuffle:
            self._store(networks, name, query[2:], reply[2:])
        return reply

    def _addr_rrs(self, question: DNSQuestion, target: NameTarget) -> list[RR]:
        ttl = self.config.ttl
        qtype = question.qtype
        v4 = list(target.ipv4) if qtype in (QTYPE.A, _ANY) else []
        v6 = list(target.ipv6) if qtype in (QTYPE.AAAA, _ANY) else []
        if target.shuffle:
            self._rng.shuffle(v4)
            self._rng.shuffle(v6)
        rrs = [RR(question.qname, QTYPE.A, CLASS.IN, ttl, A(str(a))) for a in v4]
        rrs += [RR(question.qname, QTYPE.AAAA, CLASS.IN, ttl, AAAA(str(a))) for a in v6]
        return rrs

    def _ptr_rrs(self, question: DNSQuestion, targets: tuple[str, ...]) -> list[RR]:
        if question.qtype not in (QTYPE.PTR, _ANY):
            return []
        ttl = self.config.ttl
        return [RR(question.qname, QTYPE.PTR, CLASS.IN, ttl, PTR(t + ".")) for t in targets]

    def _pack(self, rec: DNSRecord, opt: RR | None, *, rcode: int, answers: list[RR],
              truncated: bool = False, ext_rcode: int = 0) -> bytes:
        header = DNSHeader(id=rec.header.id, qr=1, aa=1, ra=1, rd=rec.header.rd,
                           tc=int(truncated), rcode=rcode)
        reply = DNSRecord(header, questions=rec.questions[:1], rr=answers)
        if opt is not None:
            reply.add_ar(EDNS0(udp_len=self.config.edns_udp_size, ext_rcode=ext_rcode))
        return bytes(reply.pack())

    def _store(self, networks: frozenset[str], name: str, key: bytes, value: bytes) -> None:
        cache = self.udp_cache(networks)
        index = self._index[networks]
        if len(cache) >= self.config.cache_entries:
            cache.clear()
            index.clear()
            if self.config.cache_entries == 0:
                return
        cache[key] = value
        index.setdefault(name, set()).add(key)

    def _on_change(self, network_id: str, names: frozenset[str]) -> None:
        for networks, cache in self._caches.items():
            if network_id not in networks:
                continue
            index = self._index[networks]
            for name in names:
                for key in index.pop(name, ()):
                    if cache.pop(key, None) is not None:
                        self.stats.invalidated += 1


def _name_of(question: DNSQuestion) -> str | None:
    """The query name, lower-case without the trailing dot; None if it cannot be ours."""
    labels = question.qname.label
    if not labels:
        return None
    parts: list[str] = []
    for label in labels:
        if not isinstance(label, bytes) or b"." in label or not label.isascii():
            return None
        parts.append(label.decode("ascii").lower())
    return ".".join(parts)


def _udp_limit(opt: RR | None, config: ResolverConfig) -> int:
    if opt is None:
        return CLASSIC_UDP_SIZE
    return max(CLASSIC_UDP_SIZE, min(int(opt.rclass), config.edns_udp_size))


def _bare(query: bytes, rcode: int) -> bytes:
    """A header-only reply (FORMERR, NOTIMP, SERVFAIL) to a query that does not parse."""
    flags = 0x8000 | ((query[2] & 0x79) << 8) | 0x0080 | rcode
    return query[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


def servfail(query: bytes) -> bytes | None:
    """SERVFAIL for a query we could not get answered upstream; None if no ID to answer."""
    if len(query) < _HEADER or query[2] & 0x80:
        return None
    try:
        rec = DNSRecord.parse(query)
        header = DNSHeader(id=rec.header.id, qr=1, ra=1, rd=rec.header.rd,
                           rcode=_RCODE_SERVFAIL)
        return bytes(DNSRecord(header, questions=rec.questions[:1]).pack())
    except Exception:  # unparsable query: a header-only SERVFAIL still carries its ID
        return _bare(query, _RCODE_SERVFAIL)


def fit_udp(reply: bytes, query: bytes, *,
            edns_udp_size: int = DEFAULT_EDNS_UDP_SIZE) -> bytes:
    """``reply`` if it fits the UDP size the query allows, else a truncated copy (TC set,
    question only): used for upstream replies fetched over TCP."""
    try:
        qrec = DNSRecord.parse(query)
        opt = next((rr for rr in qrec.ar if rr.rtype == _OPT), None)
        limit = _udp_limit(opt, ResolverConfig(edns_udp_size=edns_udp_size))
        if len(reply) <= limit:
            return reply
        rrec = DNSRecord.parse(reply)
        header = DNSHeader(id=rrec.header.id, qr=1, aa=rrec.header.aa, ra=rrec.header.ra,
                           rd=rrec.header.rd, tc=1, rcode=rrec.header.rcode)
        short = DNSRecord(header, questions=rrec.questions[:1])
        if opt is not None:
            short.add_ar(EDNS0(udp_len=edns_udp_size))
        return bytes(short.pack())
    except Exception:  # an upstream reply we cannot parse is an upstream failure
        return servfail(query) or b""
