"""Restart recovery: after kill -9 and a restart, an agent reconciles the kernel with its
state and the gossip tables: same IPs, no leaked links or netns, DNS served again, and peers
that see the node come back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.topology import wait_for
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path)) as lab:
        form_cluster(lab)
        yield lab


def _kernel(lab: Lab, host: str) -> tuple[set[str], set[str]]:
    """Links of the host netns, and every netns derived from it."""
    out = lab.run(host, ["ip", "-o", "link", "show"]).stdout
    links = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    return links, set(lab.netns(host, "nf-"))


def _resolves(lab: Lab, host: str, sandbox: str, name: str) -> str:
    proc = lab.run(host, ["netfabric", "exec", sandbox, "getent", "hosts", name], timeout=10)
    return proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout else ""


def test_kill9_and_restart_restores_everything(lab: Lab) -> None:
    n1, n2 = Client(lab.agent("node1").url), Client(lab.agent("node2").url)
    n1.create_network("ov", driver="overlay", attachable=True)
    n1.run("a1", network="ov")
    n2.create_network("br")
    n2.run("web", network="ov", aliases=["www"])
    n2.connect("br", "web")
    web = n2.inspect_container("web")
    db = n2.run("db", network="br")
    before = {c.name: [(e.network, e.ipv4, e.mac) for e in c.networks]
              for c in n2.containers()}
    kernel_before = _kernel(lab, "node2")
    assert any(n.endswith(f"-c{web.id[:8]}") for n in kernel_before[1])
    assert wait_for(lambda: _resolves(lab, "node1", "a1", "www") == web.networks[0].ipv4, 5)

    agent = lab.agent("node2")
    lab.stop_agent(agent, sig=signal.SIGKILL)
    assert wait_for(lambda: _resolves(lab, "node1", "a1", "web") == "", 10), \
        "a peer still resolves a dead node's name"
    lab.start_agent(agent)
    lab.wait_ready(agent)

    after = {c.name: [(e.network, e.ipv4, e.mac) for e in c.networks]
             for c in n2.containers()}
    assert after == before
    assert wait_for(lambda: _kernel(lab, "node2") == kernel_before, 5), \
        (kernel_before, _kernel(lab, "node2"))
    # DNS is served again inside the restarted node's sandboxes, local and remote names
    assert _resolves(lab, "node2", "db", "web") == web.networks[1].ipv4
    assert wait_for(lambda: _resolves(lab, "node2", "web", "a1") != "", 10)
    dig = lab.run("node2", ["netfabric", "exec", "web", "dig", "+short", "+tries=1",
                            "@127.0.0.11", "www"])
    assert dig.stdout.strip() == web.networks[0].ipv4
    # peers see the node back: its names resolve and the overlay carries traffic
    assert wait_for(lambda: _resolves(lab, "node1", "a1", "www") == web.networks[0].ipv4, 10)
    ping = lab.run("node1", ["netfabric", "exec", "a1", "ping", "-c2", "-i0.2", "-W1", "web"])
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert {n.hostname: str(n.status) for n in n1.nodes()} == {"node1": "Ready",
                                                               "node2": "Ready"}
    # removing after recovery leaves nothing of the containers behind
    n2.remove_container("web")
    n2.remove_container("db")
    links, netns = _kernel(lab, "node2")
    assert links < kernel_before[0] and len(kernel_before[0] - links) == 2   # two bridge veths
    assert not any(n.endswith((f"-c{web.id[:8]}", f"-c{db.id[:8]}")) for n in netns)
    assert not [n for n in netns if "-ov" in n], netns
    assert db.networks[0].ipv4 is not None
