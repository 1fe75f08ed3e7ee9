"""Refusals, each one clear line and nothing half-made: /29 exhaustion, duplicate names, bad
input, a worker asked for cluster state, non-attachable overlays, bad join tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netfabric import Client
from netfabric.agent.tokens import make_token, new_cluster_secret, new_role_secret
from netfabric.errors import (
    AlreadyExists,
    ClusterError,
    InUse,
    InvalidArgument,
    InvalidToken,
    NotAManager,
    NotFound,
    PoolExhausted,
)
from netfabric.lab.cluster import Lab

pytestmark = [pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def module_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(3, state_dir=str(tmp_path_factory.mktemp("lab"))) as lab:
        token = Client(lab.agent("node1").url).init(lab.agent("node1").address).token
        Client(lab.agent("node2").url).join(token, lab.agent("node1").address)
        yield lab


def _baseline(lab: Lab) -> list[str]:
    """How the shared lab differs from what every test starts from: node1 manager, node2
    its worker, node3 standalone, no container, no network but the pre-defined bridge."""
    out = []
    roles = {a.name: Client(a.url).info().role for a in lab.agents}
    if roles != {"node1": "manager", "node2": "worker", "node3": "standalone"}:
        out.append(f"roles {roles}")
    for a in lab.agents:
        nf = Client(a.url)
        if nf.containers():
            out.append(f"{a.name} containers {[c.name for c in nf.containers()]}")
        extra = [n.name for n in nf.networks() if n.name != "bridge"]
        if extra:
            out.append(f"{a.name} networks {extra}")
    return out


@pytest.fixture
def lab(module_lab: Lab) -> Iterator[Lab]:
    """The module's lab, checked to be at its baseline before each test and brought back to
    it after (a test that joins node3 or makes node2 leave undoes that here), so that no test
    depends on which ran before it."""
    lab = module_lab
    assert _baseline(lab) == [], "the previous test left the lab changed"
    try:
        yield lab
    finally:
        manager = Client(lab.agent("node1").url)
        for a in lab.agents:
            nf = Client(a.url)
            for con in nf.containers():
                nf.remove_container(con.name)
        node3 = Client(lab.agent("node3").url)
        if node3.info().role != "standalone":
            node3.leave()
        node2 = Client(lab.agent("node2").url)
        if node2.info().role == "standalone":
            node2.join(manager.join_token("worker").token, lab.agent("node1").address)
        for net in manager.networks():
            if net.name != "bridge":
                manager.remove_network(net.name)
        assert _baseline(lab) == []


def _cli(lab: Lab, host: str, *argv: str) -> tuple[int, str, str]:
    proc = lab.run(host, ["netfabric", *argv])
    return proc.returncode, proc.stdout, proc.stderr


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error"), err
    return lines[0]


def _kernel_names(lab: Lab, host: str) -> set[str]:
    links = lab.run(host, ["ip", "-o", "link", "show"]).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    netns = set(lab.netns(host, "nf-"))
    return names | netns


def test_exhausted_29_fails_cleanly_and_leaves_nothing(lab: Lab) -> None:
    nf = Client(lab.agent("node1").url)
    nf.create_network("tiny", driver="overlay", attachable=True, subnet="10.99.0.0/29")
    for i in range(5):   # a /29 has 8 addresses: network, gateway, broadcast reserved
        nf.run(f"t{i}", network="tiny")
    before = _kernel_names(lab, "node1")
    containers = {c.name for c in nf.containers()}
    rc, _, err = _cli(lab, "node1", "container", "run", "-d", "--network", "tiny",
                      "--name", "t5")
    line = _one_error_line(err)
    assert rc == 125 and "tiny" in line and "10.99.0.0/29" in line
    assert _kernel_names(lab, "node1") == before
    assert {c.name for c in nf.containers()} == containers
    with pytest.raises(PoolExhausted):
        Client(lab.agent("node2").url).run("t6", network="tiny")   # via the manager
    assert "t6" not in {c.name for c in Client(lab.agent("node2").url).containers()}
    with pytest.raises(InUse, match="t0"):
        nf.remove_network("tiny")
    for i in range(5):
        nf.remove_container(f"t{i}")
    nf.remove_network("tiny")
    assert "tiny" not in {n.name for n in nf.networks()}


def test_duplicate_names_and_bad_input(lab: Lab) -> None:
    nf = Client(lab.agent("node1").url)
    nf.create_network("dupnet")
    with pytest.raises(AlreadyExists, match="dupnet already exists"):
        nf.create_network("dupnet")
    nf.run("dupc", network="dupnet")
    with pytest.raises(AlreadyExists, match='"/dupc" is already in use'):
        nf.run("dupc", network="dupnet")
    with pytest.raises(InvalidArgument):
        nf.create_network("badcidr", subnet="10.1.2.300/24")
    with pytest.raises(NotFound, match="network nosuchnet not found"):
        nf.run("x1", network="nosuchnet")
    with pytest.raises(InvalidArgument, match="invalid container name"):
        nf.run("bad name!", network="dupnet")
    for argv, code in ((["network", "create", "--subnet", "10.0.0.0/33", "x"], 1),
                       (["network", "create", "dupnet"], 1),
                       (["container", "run", "-d", "--network", "nope", "--name", "z"], 125),
                       (["network", "rm", "dupnet"], 1),
                       (["inspect", "nothing-here"], 1)):
        rc, _, err = _cli(lab, "node1", *argv)
        assert rc == code, (argv, err)
        _one_error_line(err)
    nf.remove_container("dupc")
    nf.remove_network("dupnet")


def test_worker_is_refused_cluster_state(lab: Lab) -> None:
    rc, _, err = _cli(lab, "node2", "node", "ls")
    line = _one_error_line(err)
    assert rc == 1 and "This node is not a swarm manager" in line
    with pytest.raises(NotAManager):
        Client(lab.agent("node2").url).join_token("worker")
    with pytest.raises(NotAManager, match="worker node"):
        Client(lab.agent("node2").url).create_network("ov2", driver="overlay")


def test_non_attachable_overlay_is_refused(lab: Lab) -> None:
    nf = Client(lab.agent("node1").url)
    nf.create_network("svcnet", driver="overlay")
    with pytest.raises(InvalidArgument, match="not manually attachable"):
        nf.run("s1", network="svcnet")
    assert "s1" not in {c.name for c in nf.containers()}
    nf.remove_network("svcnet")


def test_bad_tokens_are_refused_and_the_node_stays_out(lab: Lab) -> None:
    manager = Client(lab.agent("node1").url)
    outsider = Client(lab.agent("node3").url)
    addr = f"{lab.agent('node1').address}:2377"
    old = manager.join_token("worker").token
    new = manager.join_token("worker", rotate=True).token
    assert new != old
    tail = "a" * 25 if not old.endswith("a" * 25) else "b" * 25
    forged = old[:-25] + tail
    foreign = make_token(new_cluster_secret(), new_role_secret())
    for token, why in ((old, "rotated out"), (forged, "forged"),
                       (foreign, "not issued by this cluster"), ("SWMTKN-1-x", "malformed")):
        with pytest.raises(InvalidToken, match=why):
            outsider.join(token, addr)
        assert outsider.info().role == "standalone"
    rc, _, err = _cli(lab, "node3", "join", "--token", old, addr)
    assert rc == 1 and "invalid join token" in _one_error_line(err)
    assert {n.hostname for n in manager.nodes()} == {"node1", "node2"}
    with pytest.raises(ClusterError, match="a second manager needs --store etcd://"):
        manager.join_token("manager")   # the embedded store: one manager
    assert outsider.info().role == "standalone"
    assert outsider.join(new, addr).role == "worker"
    assert {n.hostname for n in manager.nodes()} == {"node1", "node2", "node3"}


def test_ipv6_overlay_across_hosts(lab: Lab) -> None:
    nf1, nf2 = Client(lab.agent("node1").url), Client(lab.agent("node2").url)
    net = nf1.create_network("v6net", driver="overlay", attachable=True, ipv6=True)
    assert net.subnets[1].endswith("::/64")
    a = nf1.run("v6a", network="v6net")
    b = nf2.run("v6b", network="v6net")
    assert a.networks[0].ipv6 and b.networks[0].ipv6
    ping = lab.run("node2", ["netfabric", "exec", "v6b", "ping", "-6", "-c1", "-W2", "v6a"])
    assert ping.returncode == 0 and a.networks[0].ipv6 in ping.stdout, ping.stdout + ping.stderr
    nf2.remove_container("v6b")
    nf1.remove_container("v6a")
    nf1.remove_network("v6net")   # every IPv4 and IPv6 address was given back


def test_attach_an_existing_netns_by_path(lab: Lab) -> None:
    agent = lab.agent("node1")
    name = "ext-x1"
    lab.run("node1", ["ip", "netns", "add", name], check=True)
    try:
        nf = Client(agent.url)
        con = nf.attach("ext1", f"/run/netns/{name}", network="bridge", aliases=["e1"])
        assert con.external and con.networks[0].ipv4
        nf.run("peer1", network="bridge")
        ping = lab.run("node1", ["netfabric", "exec", "peer1", "ping", "-c1", "-W2", "e1"])
        assert ping.returncode == 0, ping.stdout + ping.stderr
        nf.remove_container("ext1")
        nf.remove_container("peer1")
        assert name in lab.netns("node1")   # not ours to delete
        links = lab.run("node1", ["ip", "-n", name, "-o", "link"], check=True).stdout
        assert "eth0" not in links
        with pytest.raises(NotFound):
            nf.attach("ext2", "/run/netns/nf-no-such-netns", network="bridge")
    finally:
        lab.run("node1", ["ip", "netns", "delete", name])


def test_node_update_and_leave(lab: Lab) -> None:
    rc, out, err = _cli(lab, "node1", "node", "update", "--availability", "drain", "node2")
    assert rc == 0 and out.strip() == "node2", err
    rc, out, _ = _cli(lab, "node1", "node", "ls")
    assert any(line.split()[1:4] == ["node2", "Ready", "Drain"] for line in out.splitlines())
    rc, _, err = _cli(lab, "node1", "node", "update", "--availability", "drain", "nosuch")
    assert rc == 1 and "node nosuch not found" in _one_error_line(err)
    Client(lab.agent("node1").url).update_node("node2", availability="active")
    rc, _, err = _cli(lab, "node1", "leave")
    assert rc == 1 and "--force" in _one_error_line(err)
    worker = Client(lab.agent("node2").url)
    worker.run("busy", network="bridge")
    worker.leave()
    assert worker.info().role == "standalone"
    assert [c.name for c in worker.containers()] == ["busy"]   # local work is untouched
    assert "node2" not in {n.hostname for n in Client(lab.agent("node1").url).nodes()}
