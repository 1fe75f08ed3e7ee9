"""A manager cut off from etcd's quorum (issue 16). Three machines each run an etcd member
beside their agent (stacked etcd, as kubeadm lays it out); node1 is the manager. Its
underlay is cut at the switch: it still reaches its own etcd member, which has lost the
quorum. ``network create`` on it is refused with one line naming etcd, within a bound, and
leaves nothing in etcd; meanwhile node2, a second manager on the majority side, creates a
network; after the heal node1 changes the cluster again and sees what node2 did."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from netfabric import Client
from netfabric.errors import StoreUnavailable
from netfabric.lab.cluster import Lab
from netfabric.lab.etcd import CLIENT_PORT, EtcdLab
from netfabric.lab.topology import Host, wait_for
from netfabric.netns import entered
from netfabric.store.base import Snapshot
from netfabric.store.etcd import EtcdStore, cluster_prefix

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REFUSE_WITHIN_S = 15.0
"""The refusal comes after etcd's own request timeout (its member has no leader) and a
connect timeout per unreachable member, never a hang."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, EtcdLab]]:
    with Lab.up(3, state_dir=str(tmp_path_factory.mktemp("fo"))) as lab:
        assert lab.topo is not None
        with EtcdLab(lab.topo.hosts, name="fopart").start() as etcd:
            init = lab.run("node1", ["netfabric", "init", "--advertise-addr", "eth0",
                                     "--store", etcd.url])
            assert init.returncode == 0, init.stderr
            token = re.search(r"netfabric join --token (\S+) (\S+)", init.stdout)
            assert token is not None
            join = lab.run("node3", ["netfabric", "join", "--token", token.group(1),
                                     token.group(2)])
            assert join.returncode == 0, join.stderr
            tok = lab.run("node1", ["netfabric", "join-token", "manager"])
            manager = re.search(r"netfabric join --token (\S+) (\S+)", tok.stdout)
            assert manager is not None, tok.stdout + tok.stderr
            join = lab.run("node2", ["netfabric", "join", "--token", manager.group(1),
                                     manager.group(2)])
            assert join.returncode == 0, join.stderr
            yield lab, etcd


def _alone(host: Host, cluster_id: str) -> bool:
    """``host``'s own etcd member answers 'no leader' (asked from inside its machine)."""
    try:
        with entered(host.netns_path()), EtcdStore(
                [(host.address, CLIENT_PORT)], prefix=cluster_prefix(cluster_id),
                timeout=0.5) as store:
            store.load()
    except StoreUnavailable as exc:
        return "no leader" in str(exc)
    return False


def _rows(etcd: EtcdLab, host: int, cluster_id: str) -> tuple[set[str], Snapshot]:
    with entered(etcd.hosts[host].netns_path()), \
            EtcdStore(etcd.url, prefix=cluster_prefix(cluster_id)) as store:
        return {n.name for n in store.list_networks()}, store.load()


def test_a_manager_cut_off_from_quorum_refuses_and_catches_up(
        lab: tuple[Lab, EtcdLab]) -> None:
    lab_, etcd = lab
    assert lab_.topo is not None
    n1 = Client(lab_.agent("node1").url)
    cid = n1.info().cluster_id
    assert cid
    n1.create_network("fo-before", driver="overlay", attachable=True)
    names_before, rows_before = _rows(etcd, 1, cid)
    assert "fo-before" in names_before

    node1 = lab_.topo.hosts[0]
    lab_.topo.set_link(node1, up=False)
    healed = False
    healed_at = 0.0
    try:
        # past etcd's election timeout: node1's member knows it is alone
        assert wait_for(lambda: _alone(node1, cid), 15, 0.1), \
            "node1's etcd member never said it has no leader"
        start = time.monotonic()
        proc = lab_.run("node1", ["netfabric", "network", "create", "-d", "overlay",
                                  "fo-cut"], timeout=60)
        took = time.monotonic() - start
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, (proc.returncode, proc.stderr)
        # "nothing was changed", or, where etcd took the request but never answered, that
        # the change was not confirmed: either way nothing is half-made (checked below)
        assert lines[0].startswith("Error: etcd ") and (
            "nothing was changed" in lines[0] or "not confirmed" in lines[0]), lines[0]
        assert took < REFUSE_WITHIN_S, f"the refusal took {took:.1f}s"
        print(f"refused in {took:.1f}s: {lines[0]}")
        assert "fo-cut" not in {n.name for n in n1.networks()}
        # the majority side holds nothing of it either
        names, rows = _rows(etcd, 1, cid)
        assert names == names_before and rows == rows_before, "a half-made network"
        # the majority side goes on: node2, a manager, creates a network meanwhile
        Client(lab_.agent("node2").url).create_network("fo-meanwhile", driver="overlay",
                                                       attachable=True)
        lab_.topo.set_link(node1, up=True)
        healed = True
        healed_at = time.monotonic()
    finally:
        if not healed:
            lab_.topo.set_link(node1, up=True)
    deadline = time.monotonic() + 30
    while True:
        proc = lab_.run("node1", ["netfabric", "network", "create", "-d", "overlay",
                                  "fo-after"], timeout=60)
        if proc.returncode == 0:
            break
        assert time.monotonic() < deadline, f"still refused after the heal: {proc.stderr}"
        time.sleep(0.5)
    assert wait_for(lambda: "fo-meanwhile" in {n.name for n in n1.networks()}, 10, 0.1), \
        "node1 does not see the network node2 made during the cut"
    print(f"node1 lists node2's network {time.monotonic() - healed_at:.1f}s after the heal")
    assert {"fo-before", "fo-after"} <= {n.name for n in n1.networks()}
    assert "fo-cut" not in {n.name for n in n1.networks()}
    assert {"fo-before", "fo-after", "fo-meanwhile"} <= _rows(etcd, 2, cid)[0]
    # and node1 serves it: a worker attached through node1 gets an address in it
    n3 = Client(lab_.agent("node3").url)
    assert n3.run("fo-w", network="fo-meanwhile").networks[0].ipv4
