"""A fixed address (``run --ip``) is given wherever it lies in the subnet, as Docker does.

Issue 19, item 1: on a 3-host lab node3 leases the block 10.0.9.0/26; ``run --ip 10.0.9.5``
on node1 (the manager) and on node2 (a worker) used to be refused with "lies in block ...
leased to host ...". Now the block's owner lends the address: it is given, node3 never
hands it out itself (nor after a restart of node3 or of the manager), and an address
released on one host can be requested on another (moving a service address).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.errors import PoolExhausted
from netfabric.lab.cluster import Lab
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SUBNET = "10.0.9.0/24"
RANGE = "10.0.9.0/28"   # node3's block holds the only dynamic addresses: .2 to .15


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(3, state_dir=str(tmp_path)) as lab:
        form_cluster(lab)
        yield lab


def _ip(info: object) -> str:
    nets = info.networks  # type: ignore[attr-defined]
    assert nets[0].ipv4 is not None
    return str(nets[0].ipv4)


def _fill(n3: Client, prefix: str) -> list[str]:
    """Run containers on node3 until its block is full; their addresses."""
    got = []
    for i in range(16):
        try:
            got.append(_ip(n3.run(f"{prefix}{i}", network="ov")))
        except PoolExhausted:
            return got
    raise AssertionError(f"node3 handed out more addresses than its range holds: {got}")


def _ping(lab: Lab, host: str, sandbox: str, target: str) -> None:
    proc = lab.run(host, ["netfabric", "exec", sandbox, "ping", "-c1", "-W2", target])
    assert proc.returncode == 0, f"{sandbox} on {host} -> {target}: {proc.stdout}{proc.stderr}"


def test_fixed_address_in_another_hosts_block(lab: Lab) -> None:
    n1, n2, n3 = (Client(lab.agent(f"node{i}").url) for i in (1, 2, 3))
    n1.create_network("ov", driver="overlay", attachable=True, subnet=SUBNET, ip_range=RANGE)
    first = _ip(n3.run("c3", network="ov"))
    assert ipaddress.ip_address(first) in ipaddress.ip_network("10.0.9.0/26")

    # the manager and a worker each take an address of node3's block
    assert _ip(n1.run("x", network="ov", ip="10.0.9.5")) == "10.0.9.5"
    assert _ip(n2.run("y", network="ov", ip="10.0.9.6")) == "10.0.9.6"
    _ping(lab, "node3", "c3", "10.0.9.5")
    _ping(lab, "node3", "c3", "10.0.9.6")

    # node3 fills its block and never hands out .5 or .6
    filled = _fill(n3, "f")
    assert {"10.0.9.5", "10.0.9.6"}.isdisjoint(filled), filled
    assert len(filled) == 14 - 1 - 2, filled   # .2-.15, less c3's and the two lent

    # nor after a restart of node3, or of the manager
    for host in ("node3", "node1"):
        n3.remove_container("f0")
        n3.remove_container("f1")
        lab.restart_agent(lab.agent(host))
        again = _fill(n3, f"g{host}")
        assert {"10.0.9.5", "10.0.9.6"}.isdisjoint(again), (host, again)
        assert len(again) == 2, (host, again)
        for name in (f"g{host}0", f"g{host}1"):
            n3.remove_container(name)
        n3.run("f0", network="ov")
        n3.run("f1", network="ov")

    # moving a fixed address: released on node1, requested on node2
    n1.remove_container("x")
    assert _ip(n2.run("x2", network="ov", ip="10.0.9.5")) == "10.0.9.5"
    _ping(lab, "node3", "c3", "10.0.9.5")
    # and back, onto the block's owner itself
    n2.remove_container("x2")
    assert _ip(n3.run("x3", network="ov", ip="10.0.9.5")) == "10.0.9.5"
    _ping(lab, "node2", "y", "10.0.9.5")
