"""Property: after any sequence of record changes, a cached reply equals a fresh one.

This is what "a change invalidates exactly the affected entries" must guarantee: no stale
entry survives (compared with a resolver that has never cached anything), and entries of
unaffected names stay (counted).
"""

from __future__ import annotations

import contextlib
import random

from dnslib import EDNS0, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from netfabric.dns.records import Records, ServiceMode
from netfabric.dns.resolver import Asker, Resolver, ResolverConfig
from netfabric.errors import NotFound

NETS = ["a", "b", "c"]
NAMES = ["x", "y", "svc"]
ASKERS = [Asker(frozenset(s)) for s in ({"a"}, {"b"}, {"a", "b"}, {"a", "b", "c"}, set())]

set_ep = st.tuples(st.just("set"), st.sampled_from(NETS), st.sampled_from(NAMES),
                   st.lists(st.sampled_from(NAMES), max_size=2), st.integers(1, 3))
rm_ep = st.tuples(st.just("rm"), st.sampled_from(NETS), st.sampled_from(NAMES))
svc = st.tuples(st.just("svc"), st.sampled_from(NETS), st.sampled_from(NAMES),
                st.integers(1, 3))
rm_net = st.tuples(st.just("rmnet"), st.sampled_from(NETS))
PROBES = [
    (asker, DNSRecord.question(name, qtype))
    for asker in ASKERS[2:4] + ASKERS[:1]
    for name, qtype in [("x", "A"), ("X.", "ANY"), ("y", "AAAA"), ("svc", "A"),
                        ("tasks.svc", "A"), ("nope", "A"), ("2.0.1.10.in-addr.arpa", "PTR"),
                        ("3.0.2.10.in-addr.arpa", "PTR")]
]
for _, q in PROBES[::2]:
    q.add_ar(EDNS0(udp_len=1232))


def _apply(records: Records, op: tuple[object, ...]) -> None:
    kind = op[0]
    if kind == "set":
        _, net, name, aliases, last = op
        assert isinstance(aliases, list)
        records.set_endpoint(str(net), str(name), aliases=[str(a) for a in aliases],
                             ipv4=f"10.1.0.{last}", ipv6=f"fd00::{last}")
    elif kind == "rm":
        _, net, name = op
        with contextlib.suppress(NotFound):
            records.remove_endpoint(str(net), str(name))
    elif kind == "svc":
        _, net, name, last = op
        records.set_service(str(net), str(name), mode=ServiceMode.VIP, vip=f"10.2.0.{last}",
                            tasks=[f"10.1.0.{last}"])
    elif kind == "rmnet":
        records.remove_network(str(op[1]))


def _probe_all(cached: Resolver, fresh: Resolver) -> None:
    for asker, q in PROBES:
        data = bytes(q.pack())
        for _ in range(2):  # the second ask is a cache hit when cacheable
            got = cached.answer(data, asker)
            want = fresh.answer(data, asker)
            if isinstance(got, bytes) and isinstance(want, bytes):
                assert DNSRecord.parse(got) == DNSRecord.parse(want), q
            else:
                assert got == want, q


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(set_ep, rm_ep, svc, rm_net), max_size=8))
def test_cached_replies_never_go_stale(ops: list[tuple[object, ...]]) -> None:
    records = Records()
    cached = Resolver(records, rng=random.Random(0))
    fresh = Resolver(records, rng=random.Random(0), config=ResolverConfig(cache_entries=0))
    _probe_all(cached, fresh)
    for op in ops:
        _apply(records, op)
        _probe_all(cached, fresh)
    assert fresh.stats.hits == 0
    assert cached.stats.hits > 0
