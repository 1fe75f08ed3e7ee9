"""The seed lab's networking walkthrough on 3 simulated hosts, as assertions, with real
ping, getent and dig (each step checks its exit status and output; see lab/walkthrough.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netfabric.lab.cluster import Lab
from netfabric.lab.walkthrough import (
    Walkthrough,
    walk_bridge,
    walk_cluster,
    walk_failure,
    walk_overlay,
    walk_services,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(params=["local", "lan"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """``local`` (fast failure detection) as the other multi-agent tests, and ``lan``, the
    default of ``netfabric agent``: the kill -9 purge and the heal under the real timers.
    The lab lives in the default lab directory, under ``/run``, as the demo's does (each
    machine has a private ``/run``: a task must not be given a path from there)."""
    with Lab.up(3, gossip_profile=request.param) as lab:
        yield lab


def test_walkthrough_as_assertions(lab: Lab) -> None:
    lines: list[str] = []
    walk = Walkthrough(lab, echo=lines.append)
    walk_cluster(walk)
    walk_bridge(walk)
    # dig against the embedded resolver of a sandbox: A for a same-network name, nothing
    # for a name on another network.
    walk.run("node1", ["netfabric", "exec", "alpine_client", "dig", "+short", "+tries=1",
                       "@127.0.0.11", "alpine_host"], expect=[r"^172\.\d+\.0\.2$"])
    walk.run("node1", ["netfabric", "exec", "alpine_client", "dig", "+short", "+tries=1",
                       "+tcp", "@127.0.0.11", "alpine_host"], expect=[r"^172\.\d+\.0\.2$"])
    walk_overlay(walk)
    walk.run("node2", ["netfabric", "exec", "alpine_client", "getent", "hosts",
                       "alpine_host"], expect=[r"^10\.0\.\d+\.\d+\s+alpine_host"])
    walk.run("node2", ["netfabric", "exec", "alpine_client", "dig", "+short", "+tries=1",
                       "-x", "10.0.0.2", "@127.0.0.11"], expect=[r"alpine_host"])
    walk.run("node3", ["netfabric", "network", "ls"], absent=[r"myoverlay"])
    walk_failure(walk)
    walk_services(walk)   # the seed's second half: services, mesh, upgrade, scale, drain
    text = "\n".join(lines)
    assert "[node1] $ netfabric init --advertise-addr eth0" in text
    assert "Traceback" not in text
