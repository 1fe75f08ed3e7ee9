"""Verbs no other test drives through the agent and the CLI: ``init --listen-addr``,
``join-token --rotate``, ``network create --subnet --gateway --ip-range --internal -o mtu=``,
``run --ip``, ``network connect --ip``, ``network disconnect``, ``network inspect`` (a
worker's NotFound), ``leave --force`` on a manager, :class:`AsyncClient`, and
examples/orchestrator.py.

One lab for the module (node1 a manager listening on a non-default port, node2 its worker,
node3 standalone); each test uses its own names and gives back what it made, and the lab is
checked to be back at that baseline after each, so no test depends on another's order.
``leave --force`` and the example build their own labs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import AsyncClient, Client, NotFound
from netfabric.lab.cluster import Lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
PORT = 2400   # not the default 2377: the join must go where --listen-addr says


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(3, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        addr = lab.agent("node1").address
        init = lab.run("node1", ["netfabric", "init", "--advertise-addr", addr,
                                 "--listen-addr", f"{addr}:{PORT}"])
        assert init.returncode == 0, init.stderr
        assert "netfabric join --token SWMTKN-1-" in init.stdout
        assert f" {addr}:{PORT}\n" in init.stdout, init.stdout
        token = init.stdout.split("--token ")[1].split()[0]
        join = lab.run("node2", ["netfabric", "join", "--token", token, f"{addr}:{PORT}"])
        assert join.returncode == 0, join.stderr
        yield lab


def _state(lab: Lab) -> dict[str, object]:
    return {a.name: (Client(a.url).info().role, sorted(c.name for c in Client(a.url).containers()),
                     sorted(n.name for n in Client(a.url).networks()))
            for a in lab.agents}


@pytest.fixture
def lab(module_lab: Lab) -> Iterator[Lab]:
    before = _state(module_lab)
    yield module_lab
    assert _state(module_lab) == before, "the test left the shared lab changed"


def nf(lab: Lab, host: str, *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = lab.run(host, ["netfabric", *argv])
    if ok:
        assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc


def test_listen_addr_and_join_token_rotate(lab: Lab) -> None:
    listening = lab.run("node1", ["ss", "-ltnH"]).stdout
    addr = lab.agent("node1").address
    assert f"{addr}:{PORT} " in listening and ":2377 " not in listening, listening
    old = nf(lab, "node1", "join-token", "-q", "worker").stdout.strip()
    new = nf(lab, "node1", "join-token", "--rotate", "-q", "worker").stdout.strip()
    assert old.startswith("SWMTKN-1-") and new.startswith("SWMTKN-1-") and old != new
    assert nf(lab, "node1", "join-token", "-q", "worker").stdout.strip() == new
    refused = nf(lab, "node3", "join", "--token", old, f"{addr}:{PORT}", ok=False)
    assert refused.returncode == 1 and "rotated out" in refused.stderr
    assert Client(lab.agent("node3").url).info().role == "standalone"
    nf(lab, "node3", "join", "--token", new, f"{addr}:{PORT}")
    assert "node3" in {n.hostname for n in Client(lab.agent("node1").url).nodes()}
    nf(lab, "node3", "leave")
    assert "node3" not in {n.hostname for n in Client(lab.agent("node1").url).nodes()}


def test_bridge_create_options_through_the_cli(lab: Lab) -> None:
    nf(lab, "node1", "network", "create", "--subnet", "10.88.0.0/24", "--gateway",
       "10.88.0.254", "--ip-range", "10.88.0.128/25", "--internal", "-o", "mtu=1400", "optnet")
    try:
        info = json.loads(nf(lab, "node1", "network", "inspect", "optnet").stdout)[0]
        assert info["IPAM"]["Config"] == [{"Subnet": "10.88.0.0/24", "IPRange": "10.88.0.128/25",
                                           "Gateway": "10.88.0.254"}]
        assert info["Internal"] is True and info["MTU"] == 1400
        nf(lab, "node1", "run", "-d", "--network", "optnet", "--name", "o1")
        nf(lab, "node1", "run", "-d", "--network", "optnet", "--name", "o2", "--ip",
           "10.88.0.200")
        addr = nf(lab, "node1", "exec", "o1", "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert "inet 10.88.0.128/24" in addr, addr   # the first of --ip-range, not of the subnet
        assert "inet 10.88.0.200/24" in nf(lab, "node1", "exec", "o2", "ip", "-4", "-o",
                                           "addr", "show", "eth0").stdout
        dup = nf(lab, "node1", "run", "-d", "--network", "optnet", "--name", "o3", "--ip",
                 "10.88.0.200", ok=False)
        assert dup.returncode == 125 and "10.88.0.200" in dup.stderr
        assert "mtu 1400" in nf(lab, "node1", "exec", "o1", "ip", "link", "show",
                                "eth0").stdout
        route = nf(lab, "node1", "exec", "o1", "ip", "route").stdout
        assert "default" not in route, route   # --internal: no way out
        nf(lab, "node1", "exec", "o1", "ping", "-c1", "-W2", "10.88.0.254")   # --gateway
        nf(lab, "node1", "exec", "o1", "ping", "-c1", "-W2", "o2")
        out = nf(lab, "node1", "exec", "o1", "ping", "-c1", "-W1",
                 lab.agent("node2").address, ok=False)
        assert out.returncode != 0
    finally:
        nf(lab, "node1", "rm", "-f", "o1", "o2", ok=False)
        nf(lab, "node1", "network", "rm", "optnet", ok=False)


def test_connect_ip_disconnect_and_inspect(lab: Lab) -> None:
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "--subnet",
       "10.89.0.0/24", "cn")
    try:
        missing = nf(lab, "node2", "network", "inspect", "cn", ok=False)
        assert missing.returncode == 1 and "No such network: cn" in missing.stderr
        nf(lab, "node1", "run", "-d", "--name", "k1")            # on the host's bridge
        nf(lab, "node2", "run", "-d", "--network", "cn", "--name", "k2")
        nf(lab, "node1", "network", "connect", "--ip", "10.89.0.77", "--alias", "kay",
           "cn", "k1")
        assert "inet 10.89.0.77/24" in nf(lab, "node1", "exec", "k1", "ip", "-4", "-o",
                                          "addr").stdout
        info = json.loads(nf(lab, "node1", "network", "inspect", "cn").stdout)[0]
        assert info["Driver"] == "overlay" and info["Scope"] == "swarm"
        assert info["IPAM"]["Config"][0]["Subnet"] == "10.89.0.0/24"
        deadline = time.monotonic() + 10
        while nf(lab, "node2", "exec", "k2", "ping", "-c1", "-W1", "kay",
                 ok=False).returncode != 0:
            assert time.monotonic() < deadline, "kay (k1's alias on cn) never answered"
        nf(lab, "node1", "network", "disconnect", "cn", "k1")
        assert "10.89.0.77" not in nf(lab, "node1", "exec", "k1", "ip", "-4", "-o",
                                      "addr").stdout
        deadline = time.monotonic() + 10
        while "status: NXDOMAIN" not in nf(lab, "node2", "exec", "k2", "dig", "+tries=1",
                                           "kay", ok=False).stdout:
            assert time.monotonic() < deadline, "kay still resolves after disconnect"
            time.sleep(0.2)
        # the address was given back: the same --ip is free again
        nf(lab, "node1", "network", "connect", "--ip", "10.89.0.77", "cn", "k1")
        nf(lab, "node1", "network", "disconnect", "cn", "k1")
        gone = nf(lab, "node1", "network", "disconnect", "cn", "k1", ok=False)
        assert gone.returncode == 1 and gone.stderr.startswith("Error")
    finally:
        nf(lab, "node1", "rm", "-f", "k1", ok=False)
        nf(lab, "node2", "rm", "-f", "k2", ok=False)
        nf(lab, "node1", "network", "rm", "cn", ok=False)


def test_async_client_every_verb(lab: Lab) -> None:
    async def go() -> None:
        async with AsyncClient(lab.agent("node1").url) as m, \
                AsyncClient(lab.agent("node2").url) as w:
            assert (await m.info()).role == "manager" and (await w.info()).role == "worker"
            assert {n.hostname for n in await m.nodes()} >= {"node1", "node2"}
            assert (await m.join_token("worker")).token.startswith("SWMTKN-1-")
            net = await m.create_network("anet", driver="overlay", attachable=True,
                                         subnet="10.91.0.0/24")
            assert (await m.inspect_network("anet")).id == net.id
            assert "anet" in {n.name for n in await m.networks()}
            _, c2 = await asyncio.gather(m.run("a1", network="anet"),
                                         w.run("a2", network="anet", ip="10.91.0.9"))
            assert c2.networks[0].ipv4 == "10.91.0.9"
            await m.connect("bridge", "a1", aliases=["a1b"])
            got = await m.inspect_container("a1")
            assert {e.network for e in got.networks} == {"anet", "bridge"}
            await m.disconnect("bridge", "a1")
            assert {e.network for e in (await m.inspect_container("a1")).networks} == {"anet"}
            assert [c.name for c in await w.containers()] == ["a2"]
            with pytest.raises(NotFound):
                await w.inspect_container("a1")
            await asyncio.gather(m.remove_container("a1"), w.remove_container("a2"))
            await m.remove_network("anet")
            with pytest.raises(NotFound):
                await m.inspect_network("anet")
    try:
        asyncio.run(go())
    finally:
        for host, name in (("node1", "a1"), ("node2", "a2")):
            nf(lab, host, "rm", "-f", name, ok=False)
        nf(lab, "node1", "network", "rm", "anet", ok=False)


def test_leave_force_on_a_manager(tmp_path: Path) -> None:
    with Lab.up(2, state_dir=str(tmp_path)) as lab:
        addr = lab.agent("node1").address
        token = Client(lab.agent("node1").url).init(addr).token
        Client(lab.agent("node2").url).join(token, addr)
        nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "ov")
        nf(lab, "node1", "run", "-d", "--name", "keep")
        refused = nf(lab, "node1", "leave", ok=False)
        assert refused.returncode == 1 and "--force" in refused.stderr
        assert "Node left the swarm." in nf(lab, "node1", "leave", "--force").stdout
        manager = Client(lab.agent("node1").url)
        assert manager.info().role == "standalone"
        assert [n.name for n in manager.networks()] == ["bridge"]   # cluster networks go
        assert [c.name for c in manager.containers()] == ["keep"]   # local work stays
        with pytest.raises(NotFound):
            manager.inspect_network("ov")
        # a new cluster can start on it; the old worker is not in it
        Client(lab.agent("node1").url).init(addr)
        assert [n.hostname for n in manager.nodes()] == ["node1"]


def test_orchestrator_example(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "orchestrator.py")],
                          capture_output=True, text=True, timeout=150, check=False, cwd=REPO,
                          env={**os.environ, "NETFABRIC_LAB_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok") == 5 and "FAILED" not in proc.stdout, proc.stdout
    assert os.listdir(tmp_path) == [], "the example left its lab behind"
