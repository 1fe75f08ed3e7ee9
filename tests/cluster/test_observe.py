"""Seeing the fabric (issue 17): `netfabric info`'s gossip view and the agent's /metrics,
scraped by a real Prometheus server inside a lab host.

One lab for the module: node1 a manager, node2 its worker, both serving /metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path_factory.mktemp("oblab"))) as lab:
        addr = lab.agent("node1").address
        init = lab.run("node1", ["netfabric", "init", "--advertise-addr", addr])
        assert init.returncode == 0, init.stderr
        token = init.stdout.split("--token ")[1].split()[0]
        join = lab.run("node2", ["netfabric", "join", "--token", token, addr])
        assert join.returncode == 0, join.stderr
        yield lab


def _gossip(lab: Lab, host: str) -> dict[str, object]:
    proc = lab.run(host, ["netfabric", "info", "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    plain = out[0] if isinstance(out, list) else out
    gossip = plain["Gossip"]
    assert isinstance(gossip, dict)
    return gossip


def _wait(pred: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_info_shows_the_gossip_view(lab: Lab) -> None:
    _wait(lambda: _gossip(lab, "node1")["Members"]["alive"] == 2, "2 alive members")
    g = _gossip(lab, "node1")
    assert g["Members"] == {"alive": 2, "suspect": 0, "dead": 0, "left": 0}
    assert g["HealthScore"] == 0
    assert g["Counters"]["datagrams_in"] > 0 and g["Counters"]["bytes_out"] > 0
    # Garbage and packets sealed with another key, sent to node1's gossip port from node2's
    # host, are counted as unauthenticated, not decoded.
    before = g["Unauthenticated"]
    a1 = lab.agent("node1").address
    for _ in range(5):
        sent = lab.run("node2", ["python3", "-c",
                                 "import socket; s = socket.socket(socket.AF_INET, "
                                 "socket.SOCK_DGRAM); "
                                 f"s.sendto(b'\\x00' * 64, ({a1!r}, 7946))"])
        assert sent.returncode == 0, sent.stderr
    _wait(lambda: _gossip(lab, "node1")["Unauthenticated"] >= before + 5,
          "5 more unauthenticated packets")
    # The human form says the same.
    text = lab.run("node1", ["netfabric", "info"]).stdout
    assert "Gossip:" in text and "2 alive" in text and "Health score:   0" in text, text
    assert f"Unauthenticated: {_gossip(lab, 'node1')['Unauthenticated']}" in text, text


def test_info_when_a_member_dies(lab: Lab) -> None:
    node2 = lab.agent("node2")
    lab.stop_agent(node2)
    try:
        _wait(lambda: _gossip(lab, "node1")["Members"]["dead"] == 1, "node2 dead", 30)
        assert _gossip(lab, "node1")["Members"]["alive"] == 1
    finally:
        lab.start_agent(node2)
        lab.wait_ready(node2)
    _wait(lambda: _gossip(lab, "node1")["Members"]["alive"] == 2, "node2 back", 30)
    assert Client(node2.url).info().gossip is not None
