"""The agent's state file: round trip, atomic write, and corrupt files refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from netfabric.agent.state import (
    STATE_FILE,
    ClusterRecord,
    EndpointRecord,
    LocalState,
    NodeRecord,
    SandboxRecord,
)
from netfabric.api.types import Availability, Role
from netfabric.errors import StoreCorrupt


def test_state_round_trips(tmp_path: Path) -> None:
    st = LocalState.load(str(tmp_path), hostname="node1")
    st.cluster = ClusterRecord(cluster_id="c", secret="s", role=Role.MANAGER,
                               managers=["198.51.100.1:2377"], role_secrets={"worker": "w"},
                               listen="198.51.100.1:2377")
    st.nodes["n"] = NodeRecord(id="n", hostname="node1", address="198.51.100.1",
                               gossip_port=7946, role=Role.MANAGER,
                               availability=Availability.DRAIN)
    st.sandboxes["web"] = SandboxRecord(
        id="i", name="web", netns="nfx-h1-ci", netns_path="/run/netns/nfx-h1-ci",
        external=False, created=1.0,
        endpoints=[EndpointRecord(id="e", network_id="n1", network="ov", ifname="eth0",
                                  mac="02:00:00:00:00:01", ipv4="10.0.0.2", prefixlen=24,
                                  gateway="10.0.0.1", aliases=["w"])])
    st.pending_releases.append(("n1", "10.0.0.9"))
    st.save(str(tmp_path))
    back = LocalState.load(str(tmp_path), hostname="node1")
    assert back == st
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]   # no temp file left


@pytest.mark.parametrize("content", ["{not json", '{"version": 99}', '{"version": 1}',
                                     '{"version": 1, "node_id": "x", "cluster": {"role": 1}}'])
def test_corrupt_state_is_refused_naming_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(StoreCorrupt, match=STATE_FILE):
        LocalState.load(str(tmp_path), hostname="node1")
    assert (tmp_path / STATE_FILE).read_text() == content   # never silently reset
