"""Fuzzing ``Resolver.answer``: any bytes give a reply, a Forward or None, never an exception."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
import textwrap

import pytest
from dnslib import EDNS0, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netfabric.dns.records import Records, ServiceMode
from netfabric.dns.resolver import Asker, Forward, Resolver, Transport


def _resolver() -> Resolver:
    records = Records()
    records.set_endpoint("n1", "web1", aliases=["www"], ipv4="10.0.0.2", ipv6="fd00::2")
    records.set_service("n1", "rr", mode=ServiceMode.DNSRR,
                        tasks=[f"10.0.0.{i}" for i in range(10, 120)])
    return Resolver(records, rng=random.Random(0))


RES = _resolver()
ASKER = Asker(frozenset({"n1"}))


def _check(data: bytes) -> None:
    for transport in Transport:
        out = RES.answer(data, ASKER, transport=transport)
        assert out is None or isinstance(out, bytes | Forward)
        if isinstance(out, bytes):
            assert out[:2] == data[:2], "every reply carries the query's ID"
            assert out[2] & 0x80, "every reply has QR set"
            if transport is Transport.UDP:
                assert len(out) <= 1232


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _check(data)


def _seeds() -> list[bytes]:
    out = []
    for name, qtype in (("web1", "A"), ("WWW.", "AAAA"), ("rr", "A"), ("example.com", "MX"),
                        ("2.0.0.10.in-addr.arpa", "PTR"), ("x", "ANY")):
        q = DNSRecord.question(name, qtype)
        out.append(bytes(q.pack()))
        q.add_ar(EDNS0(udp_len=4096))
        out.append(bytes(q.pack()))
    return out


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_seeds()), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                           max_size=6), st.integers(0, 80))
def test_mutated_valid_queries_never_raise(seed: bytes, flips: list[tuple[int, int]],
                                           cut: int) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    _check(bytes(data[: len(data) - cut] if cut < len(data) else data))


_ATHERIS = textwrap.dedent('''
    import random, sys
    import atheris
    with atheris.instrument_imports():
        from netfabric.dns.records import Records, ServiceMode
        from netfabric.dns.resolver import Asker, Forward, Resolver, Transport
    records = Records()
    records.set_endpoint("n1", "web1", aliases=["www"], ipv4="10.0.0.2", ipv6="fd00::2")
    records.set_service("n1", "rr", mode=ServiceMode.DNSRR,
                        tasks=[f"10.0.0.{i}" for i in range(10, 120)])
    res = Resolver(records, rng=random.Random(0))
    asker = Asker(frozenset({"n1"}))
    def one(data):
        for transport in Transport:
            out = res.answer(data, asker, transport=transport)
            assert out is None or isinstance(out, (bytes, Forward))
    atheris.Setup([sys.argv[0], "-runs=30000", "-seed=1"], one)
    atheris.Fuzz()
''')


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_coverage_guided_fuzzing() -> None:
    proc = subprocess.run([sys.executable, "-c", _ATHERIS], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 30000 runs" in proc.stderr
