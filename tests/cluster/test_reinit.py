"""Leaving and initialising again gives a working new cluster (issue 19, item 7).

On a 2-host lab, ``leave --force`` then ``init`` on node1 used to fail with EADDRINUSE on
the cluster port (the old endpoint was still open) yet leave node1 the manager of a
half-made cluster without gossip: node2 could not rejoin (``Down``) and containers on a new
overlay could not reach each other. Leaving now closes what the membership opened, and an
``init`` that fails leaves no cluster behind.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.topology import wait_for
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path)) as lab:
        form_cluster(lab)
        yield lab


def _ok(lab: Lab, host: str, argv: list[str]) -> str:
    proc = lab.run(host, argv)
    assert proc.returncode == 0, f"{' '.join(argv)} on {host}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def _statuses(n1: Client) -> dict[str, str]:
    return {n.hostname: str(n.status) for n in n1.nodes()}


def _works(lab: Lab, net: str) -> None:
    n1, n2 = Client(lab.agent("node1").url), Client(lab.agent("node2").url)
    n1.create_network(net, driver="overlay", attachable=True)
    a = n1.run(f"{net}a", network=net)
    b = n2.run(f"{net}b", network=net)
    assert a.networks[0].ipv4 and b.networks[0].ipv4
    for target in (str(b.networks[0].ipv4), f"{net}b"):
        assert wait_for(lambda t=target: lab.run(
            "node1", ["netfabric", "exec", f"{net}a", "ping", "-c1", "-W1", t]).returncode == 0,
            10), f"{net}a cannot reach {target}"
    n1.remove_container(f"{net}a")
    n2.remove_container(f"{net}b")


def _reform(lab: Lab) -> None:
    node1 = lab.agent("node1")
    out = _ok(lab, "node1", ["netfabric", "init", "--advertise-addr", node1.address])
    match = re.search(r"netfabric join --token (\S+) (\S+)", out)
    assert match, out
    _ok(lab, "node2", ["netfabric", "leave", "--force"])
    _ok(lab, "node2", ["netfabric", "join", "--token", match.group(1), match.group(2)])
    n1 = Client(node1.url)
    assert wait_for(lambda: _statuses(n1) == {"node1": "Ready", "node2": "Ready"}, 15), \
        _statuses(n1)


def test_leave_then_init_again_gives_a_working_cluster(lab: Lab) -> None:
    _works(lab, "ov1")
    for _ in range(2):
        _ok(lab, "node1", ["netfabric", "leave", "--force"])
        _reform(lab)
        _works(lab, "ov2")
        Client(lab.agent("node1").url).remove_network("ov2")


def test_a_failed_init_leaves_no_cluster(lab: Lab) -> None:
    node1 = lab.agent("node1")
    _ok(lab, "node1", ["netfabric", "leave", "--force"])
    # something else holds the cluster port: init must fail and leave nothing behind
    holder = subprocess.Popen(
        node1.enter([sys.executable, "-c",
         "import socket, sys, time\n"
         "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         f"s.bind(({node1.address!r}, 2377)); s.listen(); print('up', flush=True)\n"
         "time.sleep(120)\n"]), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        proc = lab.run("node1", ["netfabric", "init", "--advertise-addr", node1.address])
        assert proc.returncode != 0
        assert "2377" in proc.stderr and "internal" not in proc.stderr, proc.stderr
        info = Client(node1.url).info()
        assert (info.role.value, info.cluster_id) == ("standalone", ""), info
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    _reform(lab)
    _works(lab, "ov3")
