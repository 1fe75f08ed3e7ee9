"""`node rm` of a dead worker gives its address blocks back: `network rm` then succeeds
(issue 16). Before it, the blocks the worker leased stay held and the network stays."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.errors import InUse
from netfabric.lab.cluster import Lab
from netfabric.lab.topology import wait_for
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path)) as lab:
        form_cluster(lab)
        yield lab


def test_node_rm_of_a_dead_worker_frees_its_blocks_then_network_rm_succeeds(lab: Lab) -> None:
    n1, n2 = Client(lab.agent("node1").url), Client(lab.agent("node2").url)
    n1.create_network("ov", driver="overlay", attachable=True)
    n2.run("c2", network="ov")
    up = lab.run("node1", ["netfabric", "node", "rm", "node2"])
    assert up.returncode != 0 and "is not down" in up.stderr, up.stdout + up.stderr

    lab.stop_agent(lab.agent("node2"), sig=signal.SIGKILL)
    assert wait_for(lambda: {n.hostname: str(n.status) for n in n1.nodes()}
                    == {"node1": "Ready", "node2": "Down"}, 20)
    with pytest.raises(InUse, match="address blocks leased to"):
        n1.remove_network("ov")   # node2's block is still leased to it
    assert [n.name for n in n1.networks() if n.name == "ov"] == ["ov"]

    rm = lab.run("node1", ["netfabric", "node", "rm", "node2"])
    assert rm.returncode == 0, rm.stdout + rm.stderr
    assert [n.hostname for n in n1.nodes()] == ["node1"]
    n1.remove_network("ov")
    assert "ov" not in [n.name for n in n1.networks()]
