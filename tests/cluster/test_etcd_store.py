"""A manager initialised with ``--store etcd://`` keeps the cluster's rows in etcd (issue 16):
its cluster rows are copied there at init (its local bridge networks stay its own), new
ones land there, a kill -9 and restart reads them back, and with etcd gone a change is
refused by one clear error naming etcd, half-made never. etcd runs in node1's lab host
netns, on its underlay address."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.errors import NetfabricError
from netfabric.lab.cluster import Lab
from netfabric.lab.etcd import EtcdLab
from netfabric.netns import entered
from netfabric.store.etcd import EtcdStore, cluster_prefix

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, EtcdLab]]:
    with Lab.up(2, state_dir=str(tmp_path)) as lab:
        assert lab.topo is not None
        with EtcdLab([lab.topo.hosts[0]]).start() as etcd:
            yield lab, etcd


def _rows(etcd: EtcdLab, cluster_id: str) -> list[str]:
    with entered(etcd.hosts[0].netns_path()), EtcdStore(etcd.url,
                                                prefix=cluster_prefix(cluster_id)) as s:
        return [n.name for n in s.list_networks()]


def test_manager_on_etcd(lab: tuple[Lab, EtcdLab]) -> None:
    lab_, etcd = lab
    n1 = Client(lab_.agent("node1").url)
    n1.create_network("br")   # before init: a local network, which stays on node1
    init = lab_.run("node1", ["netfabric", "init", "--advertise-addr", "198.51.100.1",
                              "--store", etcd.url])
    assert init.returncode == 0, init.stdout + init.stderr
    m = re.search(r"netfabric join --token (\S+) (\S+)", init.stdout)
    assert m is not None
    join = lab_.run("node2", ["netfabric", "join", "--token", m.group(1), m.group(2)])
    assert join.returncode == 0, join.stdout + join.stderr
    cid = n1.info().cluster_id
    assert cid
    n1.create_network("ov", driver="overlay", attachable=True)
    n2 = Client(lab_.agent("node2").url)
    c2 = n2.run("c2", network="ov")
    c1 = n1.run("c1", network="ov")
    assert c1.networks[0].ipv4 != c2.networks[0].ipv4
    assert "ov" in set(_rows(etcd, cid)) and "br" not in set(_rows(etcd, cid))

    agent = lab_.agent("node1")
    lab_.stop_agent(agent, sig=signal.SIGKILL)
    lab_.start_agent(agent)
    lab_.wait_ready(agent)
    assert {"br", "ov"} <= {n.name for n in n1.networks()}
    n1.create_network("ov2", driver="overlay")
    assert "ov2" in _rows(etcd, cid)

    etcd.kill(etcd.hosts[0])
    with pytest.raises(NetfabricError, match="etcd"):
        n1.create_network("ov3", driver="overlay")
    assert "ov3" not in {n.name for n in n1.networks()}
    etcd.start_member(etcd.hosts[0])
    etcd.wait_healthy()
    n1.create_network("ov3", driver="overlay")
    assert "ov3" in _rows(etcd, cid)
