"""No lost service state with two managers on etcd (issue 16), on agents in lab machines:
etcd in a machine of its own, managers ``node1`` (A) and ``node2`` (B), worker ``node3``.

A service created through A lives in etcd and in every node's gossip. ``kill -9`` of A: the
service still resolves on the worker (name -> VIP, ``tasks.NAME``), its VIP and published port
still answer there, ``service ls`` on B lists it, and B changes it (scale) once it leads.
A restarted A sees B's change; B removes it, and it is gone from every node for good."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.etcd import EtcdLab
from tests.cluster.test_service_state import seen_dead, web_service
from tests.cluster.test_services import _HOSTS, _running, dig, poll, wget

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def nf(lab: Lab, host: str, *argv: str) -> str:
    proc = lab.run(host, ["netfabric", *argv], timeout=60)
    assert proc.returncode == 0, (argv, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    state = tmp_path_factory.mktemp("svha")
    with Lab.up(4, state_dir=str(state), names=["node1", "node2", "node3", "etcd1"],
                start=False) as lab:
        assert lab.topo is not None
        for name in ("node1", "node2", "node3"):
            lab.start_agent(lab.agent(name))
        for name in ("node1", "node2", "node3"):
            lab.wait_ready(lab.agent(name))
        with EtcdLab([lab.topo.host("etcd1")], name="svha").start() as etcd:
            init = nf(lab, "node1", "init", "--advertise-addr", "eth0", "--store", etcd.url)
            worker = re.search(r"netfabric join --token (\S+) (\S+)", init)
            assert worker is not None
            nf(lab, "node3", "join", "--token", worker.group(1), worker.group(2))
            tok = re.search(r"netfabric join --token (\S+) (\S+)",
                            nf(lab, "node1", "join-token", "manager"))
            assert tok is not None
            nf(lab, "node2", "join", "--token", tok.group(1), tok.group(2))
            _HOSTS[:] = [lab.agent(n) for n in ("node1", "node2", "node3")]
            try:
                yield lab, state
            finally:
                _HOSTS.clear()


def test_a_service_outlives_the_manager_that_created_it(lab: tuple[Lab, Path]) -> None:
    lab_, state = lab
    a, b, worker = (lab_.agent(n) for n in ("node1", "node2", "node3"))
    ca, cb, cw = Client(a.url), Client(b.url), Client(worker.url)
    for name in ("node1", "node2"):
        ca.update_node(name, availability="drain")        # the task runs on the worker
    web_service(ca, state, replicas=1)
    assert poll(lambda: len(_running(ca, "web")) == 1, timeout=30), ca.service_ps("web")
    vip = ca.inspect_service("web")["vips"][0]["addr"]
    c3 = cw.run("c3", network="app").netns
    port_url = f"http://{worker.address}:8080/"
    assert poll(lambda: dig(c3, "web") == [vip] and len(dig(c3, "tasks.web")) == 1)
    assert poll(lambda: wget(c3, "http://web:8080/") == "web")
    assert poll(lambda: wget(b.netns, port_url) == "web")
    assert "web" in nf(lab_, "node2", "service", "ls")

    lab_.stop_agent(a)                                     # kill -9 of the creator
    seen_dead([b, worker])                                # A's gossip entries are gone
    assert dig(c3, "web") == [vip]
    assert len(dig(c3, "tasks.web")) == 1
    assert [wget(c3, f"http://{vip}:8080/") for _ in range(5)] == ["web"] * 5
    assert [wget(c3, "http://web:8080/") for _ in range(5)] == ["web"] * 5
    assert [wget(b.netns, port_url) for _ in range(5)] == ["web"] * 5
    listed = nf(lab_, "node2", "service", "ls")
    assert re.search(r"\bweb\b", listed), listed
    assert [s["name"] for s in cb.services()] == ["web"]
    # B changes it once it leads (A's etcd lease expired): a second task, on the worker.
    cb.scale_service("web", 2)
    assert poll(lambda: len(_running(cb, "web")) == 2, timeout=40), cb.service_ps("web")
    assert poll(lambda: len(dig(c3, "tasks.web")) == 2, timeout=10)
    assert [wget(c3, "http://web:8080/") for _ in range(5)] == ["web"] * 5
    # A comes back: it lists what B changed; removed through B (A announced the entry),
    # the service leaves every node and A's republishing never brings it back.
    lab_.start_agent(a)
    lab_.wait_ready(a)
    assert poll(lambda: len(_running(ca, "web")) == 2, timeout=20), ca.service_ps("web")
    cb.remove_service("web")
    assert poll(lambda: dig(c3, "web") == [] and dig(c3, "tasks.web") == [], timeout=10)
    assert poll(lambda: not any(c.name.startswith("web.") for c in cw.containers()),
                timeout=30)
    time.sleep(6.0)                                      # past a republish by each manager
    assert ca.services() == [] and cb.services() == [] and dig(c3, "web") == []
    cw.remove_container("c3", force=True)
