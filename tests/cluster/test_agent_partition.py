"""A partition: one host's underlay is cut for 20 s, then healed. Within 5 s of the heal
(``local`` profile; the default ``lan`` profile reconnects a dead member every
``reconnect_interval``, 10 s, so it gets that much more) its names resolve on every other
host again and pings pass; meanwhile no host ever resolves a stale address."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.gossip.config import GossipConfig
from netfabric.lab.cluster import Lab
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PARTITION_S = 20.0
HEAL_BUDGET_S = {"local": 5.0, "lan": GossipConfig.lan().reconnect_interval + 5.0}


@pytest.fixture(params=["local", "lan"])
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    with Lab.up(3, state_dir=str(tmp_path), gossip_profile=request.param) as lab:
        form_cluster(lab)
        yield lab


Where = tuple[Lab, str, str]
"""A sandbox: its lab, its host and its netns (inside the host's machine)."""


def _getent(where: Where, name: str) -> str:
    lab, host, netns = where
    proc = lab.run(host, ["ip", "netns", "exec", netns, "getent", "hosts", name], timeout=10)
    return proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout else ""


def _ping(where: Where, name: str) -> bool:
    lab, host, netns = where
    return lab.run(host, ["ip", "netns", "exec", netns, "ping", "-c1", "-W1", name],
                   timeout=10).returncode == 0


def test_partition_20s_then_heal(lab: Lab) -> None:
    assert lab.topo is not None
    Client(lab.agent("node1").url).create_network("ov", driver="overlay", attachable=True)
    sandboxes: dict[str, tuple[Where, str]] = {}   # name -> (where, ip)
    for agent in lab.agents:
        name = "s" + agent.name[-1]
        con = Client(agent.url).run(name, network="ov")
        sandboxes[name] = ((lab, agent.name, con.netns), con.networks[0].ipv4 or "")
    cut = "s3"
    others = ["s1", "s2"]
    deadline = time.monotonic() + 10
    while any(_getent(sandboxes[o][0], cut) != sandboxes[cut][1] for o in others):
        assert time.monotonic() < deadline, "the overlay did not converge before the cut"
        time.sleep(0.2)

    host3 = lab.topo.hosts[2]
    lab.topo.set_link(host3, up=False)
    healed = False
    budget = HEAL_BUDGET_S[lab.gossip_profile]
    try:
        seen: dict[tuple[str, str], set[str]] = {}
        end = time.monotonic() + PARTITION_S
        while time.monotonic() < end:
            for asker in ["s1", "s2", "s3"]:
                for target in sandboxes:
                    if target != asker:
                        got = _getent(sandboxes[asker][0], target)
                        seen.setdefault((asker, target), set()).add(got)
                        assert got in ("", sandboxes[target][1]), \
                            f"{asker} resolved {target} to stale {got}"
            time.sleep(0.5)
        # the cut host's names are gone from the others once it is declared dead
        assert "" in seen[("s1", cut)] and "" in seen[("s2", cut)], seen
        lab.topo.set_link(host3, up=True)
        healed = True
        t0 = time.monotonic()
        while True:
            ok = all(_getent(sandboxes[o][0], cut) == sandboxes[cut][1] for o in others) and \
                all(_getent(sandboxes[cut][0], o) == sandboxes[o][1] for o in others)
            if ok:
                break
            assert time.monotonic() - t0 < budget, f"names did not come back in {budget} s"
            time.sleep(0.1)
        heal_s = time.monotonic() - t0
        for o in others:
            assert _ping(sandboxes[o][0], cut) and _ping(sandboxes[cut][0], o)
        assert time.monotonic() - t0 < budget + 4, "pings took too long after heal"
        print(f"{lab.gossip_profile}: names back {heal_s:.2f}s after the heal")
    finally:
        if not healed:
            lab.topo.set_link(host3, up=True)
