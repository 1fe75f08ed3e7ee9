"""kill -9 of the netfabric agent under running Docker containers, then a restart.

Docker endpoints are not sandboxes of the agent's state: their veths were handed to dockerd
(the inner end lives in the container's netns). The restarted agent must take them back from
the plugin's persisted records before it reconciles the kernel, or it deletes them and the
containers lose their interface. Two hosts, their own lab: node1 (A, the manager, killed) and
node2 (B).
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from netfabric.lab.cluster import AgentProc
from netfabric.lab.dockerd import IMAGE, Dockerd, DockerLab, busybox_rootfs_tar
from netfabric.lab.topology import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NF = ("-d", "netfabric", "--ipam-driver", "netfabric")


@pytest.fixture
def lab() -> Iterator[DockerLab]:
    with tempfile.TemporaryDirectory(prefix="nfdockerrestart-") as state_dir:
        lab = DockerLab.up(2, state_dir=state_dir)
        assert isinstance(lab, DockerLab)
        try:
            lab.start_cluster(busybox_rootfs_tar())
            yield lab
        finally:
            lab.down()


def ping(d: Dockerd, container: str, target: str) -> bool:
    return d.docker("exec", container, "ping", "-c", "1", "-W", "1", target,
                    check=False, timeout=30).returncode == 0


def settings(d: Dockerd, container: str, network: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(d.docker("inspect", container).stdout)
    net: dict[str, Any] = out[0]["NetworkSettings"]["Networks"][network]
    return net


def ifconfig(d: Dockerd, container: str) -> str:
    """The container's own view of its interfaces: ``ip -o -4 addr``."""
    return d.docker("exec", container, "ip", "-o", "-4", "addr", check=False).stdout


def kernel(host: AgentProc) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """Links of the host, the netns the agent made there, and the links of each."""
    def links(ns: str | None) -> set[str]:
        where = ["-n", ns] if ns else []
        out = subprocess.run(host.enter(["ip", *where, "-o", "link"]), capture_output=True,
                             text=True, check=True).stdout
        return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    listed = subprocess.run(host.enter(["ip", "netns", "list"]), capture_output=True,
                            text=True, check=True).stdout
    derived = {w.split()[0] for w in listed.splitlines() if w.startswith("nf-")}
    return links(None), derived, {ns: links(ns) for ns in sorted(derived)}


def dig(host: AgentProc, name: str) -> str:
    """What netfabric's resolver in a host (dockerd's upstream) answers for ``name``."""
    return subprocess.run(host.enter(["dig", "+short", "+tries=1", "+time=1", "@127.0.0.11",
                                      name]),
                          capture_output=True, text=True, check=False).stdout.strip()


def fdb(host: AgentProc) -> str:
    _, derived, _ = kernel(host)
    return " ".join(subprocess.run(host.enter(["bridge", "-n", ns, "fdb", "show"]),
                                   capture_output=True, text=True, check=False).stdout
                    for ns in sorted(derived) if "-ov" in ns)


def kill9_and_restart(lab: DockerLab, victim: str, peer: str, name: str,
                      mine: dict[str, Any]) -> None:
    """kill -9 the agent of ``victim``, see ``peer`` purge the container ``name``, restart
    the agent, and see ``peer`` resolve and reach ``name`` again within 5 s; the victim's
    kernel (links, netns) is as it was."""
    dead, alive = lab.agent(victim), lab.agent(peer)
    assert wait_for(lambda: dig(alive, name) == mine["IPAddress"])
    assert mine["MacAddress"] in fdb(alive)
    kernel_before = kernel(dead)
    lab.stop_agent(dead, sig=signal.SIGKILL)
    # the peer purges the dead node's endpoints: seen again below means republished
    assert wait_for(lambda: dig(alive, name) == "", 15), f"{peer} still has {name}"
    lab.start_agent(dead)
    lab.wait_ready(dead)
    assert wait_for(lambda: dig(alive, name) == mine["IPAddress"], 5), \
        f"{peer} does not see {name} again"
    assert wait_for(lambda: mine["MacAddress"] in fdb(alive), 5)
    assert kernel(dead) == kernel_before, "links or netns leaked or lost"


def test_kill9_of_the_agent_keeps_docker_containers_connected(lab: DockerLab) -> None:
    a, b = lab.dockerds["node1"], lab.dockerds["node2"]
    agent_a, agent_b = lab.agent("node1"), lab.agent("node2")
    for d in (a, b):
        d.docker("network", "create", *NF, "-o", "type=overlay", "ov")
    a.docker("network", "create", *NF, "-o", "type=bridge", "br")
    a.docker("run", "-d", "--network", "ov", "--name", "ca", "--stop-timeout", "1", IMAGE,
             "sleep", "600")
    a.docker("network", "connect", "br", "ca")
    a.docker("run", "-d", "--network", "br", "--name", "cbr", "--stop-timeout", "1", IMAGE,
             "sleep", "600")
    b.docker("run", "-d", "--network", "ov", "--name", "cb", "--stop-timeout", "1", IMAGE,
             "sleep", "600")
    assert wait_for(lambda: ping(b, "cb", "ca") and ping(a, "ca", "cb"), 20)
    assert wait_for(lambda: ping(a, "cbr", "ca"))
    ca, cb = settings(a, "ca", "ov"), settings(b, "cb", "ov")
    where = {"ca": a, "cbr": a, "cb": b}
    ifaces = {name: ifconfig(d, name) for name, d in where.items()}
    assert ca["IPAddress"] in ifaces["ca"] and cb["IPAddress"] in ifaces["cb"]

    # the manager (A) first, then the worker (B), whose networks come from the manager
    for victim, peer, name, mine in (("node1", "node2", "ca", ca), ("node2", "node1", "cb", cb)):
        kill9_and_restart(lab, victim, peer, name, mine)
        # every container keeps its interfaces and addresses: nothing was reconciled away
        assert {name: ifconfig(d, name) for name, d in where.items()} == ifaces
        assert wait_for(lambda: ping(b, "cb", "ca") and ping(a, "ca", "cb"), 5), \
            f"no ping by name across hosts after {victim}'s agent restarted"
        assert ping(a, "cbr", "ca")
        assert settings(a, "ca", "ov")["IPAddress"] == ca["IPAddress"]
        assert settings(b, "cb", "ov")["IPAddress"] == cb["IPAddress"]

    # no duplicate address: a new container on each host gets a fresh one
    a.docker("run", "-d", "--network", "ov", "--name", "ca2", IMAGE, "sleep", "600")
    b.docker("run", "-d", "--network", "ov", "--name", "cb2", IMAGE, "sleep", "600")
    ips = [ca["IPAddress"], cb["IPAddress"], settings(a, "ca2", "ov")["IPAddress"],
           settings(b, "cb2", "ov")["IPAddress"]]
    assert len(set(ips)) == 4, ips
    assert wait_for(lambda: ping(b, "cb", "ca2"))
    # and removing after the restarts leaves nothing of the containers behind
    for d, name in ((a, "ca"), (a, "ca2"), (a, "cbr"), (b, "cb"), (b, "cb2")):
        d.docker("rm", "-f", name)
    for agent in (agent_a, agent_b):
        links, derived, _ = kernel(agent)
        assert not [n for n in links if n.startswith(("nfd", "nfbv"))], links
        assert not [n for n in derived if "-ov" in n], derived
