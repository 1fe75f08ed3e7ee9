"""Upstream parsing and resolv.conf reading (the forwarding I/O is tested on the kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netfabric.dns.forwarder import Forwarder, Upstream, parse_upstream, read_resolv_conf
from netfabric.errors import InvalidArgument


def test_parse_upstream_forms() -> None:
    assert parse_upstream("198.51.100.2") == Upstream("198.51.100.2", 53)
    assert parse_upstream("198.51.100.2:5353") == Upstream("198.51.100.2", 5353)
    assert parse_upstream("fd00::1") == Upstream("fd00::1", 53)
    assert parse_upstream("[fd00::1]:5353") == Upstream("fd00::1", 5353)
    for bad in ("", "nohost", "1.2.3.4:0", "1.2.3.4:x", "[fd00::1]:99999", "1.2.3.400"):
        with pytest.raises(InvalidArgument):
            parse_upstream(bad)


def test_read_resolv_conf_skips_ourselves_and_junk(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver 127.0.0.11\nnameserver 10.0.0.53\n"
                    "nameserver fe80::1%eth0\nnameserver bogus\noptions ndots:0\n")
    assert read_resolv_conf(str(conf)) == (Upstream("10.0.0.53"), Upstream("fe80::1"))
    assert read_resolv_conf(str(tmp_path / "missing")) == ()


def test_forwarder_refuses_a_bad_timeout() -> None:
    with pytest.raises(InvalidArgument):
        Forwarder((), timeout=0)
