"""Lab hosts are machines, and the agent runs in one as on a real host: its defaults and
``--advertise-addr eth0``, nothing else; a killed test run leaves nothing behind."""

from __future__ import annotations

import difflib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric.client import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.machine import machine_pids
from netfabric.lab.topology import wait_for

pytestmark = [pytest.mark.timeout(180)]

ONLY_ETH0 = ("--advertise-addr", "eth0")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


@pytest.fixture
def lab3(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(3, state_dir=str(tmp_path), agent_args=ONLY_ETH0) as lab:
        yield lab


def _nf(lab: Lab, host: str, *argv: str, ok: bool = True) -> str:
    proc = lab.run(host, ["netfabric", *argv])
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_a_machine_is_a_host_of_its_own(lab3: Lab) -> None:
    node1 = lab3.agent("node1")
    assert wait_for(lambda: os.path.exists(node1.path("/run/docker/plugins/netfabric.sock")))
    inside = lab3.run("node1", ["sh", "-c", "hostname; ps -e -o pid=,args=; ip -o link; "
                                "ls /run/netfabric /var/lib/netfabric /run/docker/plugins"],
                      check=True).stdout
    assert inside.splitlines()[0] == "node1"
    assert f" 1 netfabric-machine:{lab3.prefix}-node1" in inside   # its own PID ns
    assert "eth0" in inside and "agent.sock" in inside and "agent-state.json" in inside
    assert "netfabric.sock" in inside   # the Docker plugin socket, by default
    # nothing of it under the VM's /run/netns or in its own
    assert not [n for n in os.listdir("/run/netns") if n.startswith(lab3.prefix)]
    assert lab3.netns("node1") == ["nf"]   # the agent named its host netns by the prefix
    info = Client(node1.url).info()
    assert info.hostname == "node1" and info.advertise_addr == node1.address


def test_seed_steps_kill9_and_restart_on_agent_defaults(lab3: Lab) -> None:
    out = _nf(lab3, "node1", "init", "--advertise-addr", "eth0")
    token = next(w for w in out.split() if w.startswith("SWMTKN-"))
    for host in ("node2", "node3"):
        _nf(lab3, host, "join", "--token", token, lab3.agent("node1").address)
    _nf(lab3, "node1", "network", "create", "-d", "overlay", "--attachable", "myoverlay")
    for host, name in (("node1", "alpine_host"), ("node2", "alpine_client"),
                       ("node3", "alpine_other")):
        _nf(lab3, host, "run", "-d", "--network", "myoverlay", "--name", name)

    def ping(host: str, sandbox: str, target: str) -> bool:
        return lab3.run(host, ["netfabric", "exec", sandbox, "ping", "-c1", "-W1",
                               target]).returncode == 0

    assert wait_for(lambda: ping("node2", "alpine_client", "alpine_host"), 15)
    assert wait_for(lambda: ping("node3", "alpine_other", "alpine_client"), 15)
    victim = lab3.agent("node2")
    lab3.stop_agent(victim, sig=signal.SIGKILL)
    lab3.start_agent(victim)
    lab3.wait_ready(victim)
    # the default (lan) gossip profile: a restarted node is back within a reconnect interval
    # (10 s) and a push-pull, not the local profile's fraction of a second
    assert wait_for(lambda: ping("node1", "alpine_host", "alpine_client"), 30), \
        "no ping by name to the restarted node's container"
    assert ping("node2", "alpine_client", "alpine_other")


def test_advertise_addr_takes_an_interface_name(lab3: Lab) -> None:
    # an interface with no address, one with two, and none at all: clear errors
    lab3.run("node3", ["sh", "-c", "ip link add nfd0 type veth peer name nfd1 "
                       "&& ip addr add 10.9.0.1/24 dev nfd1 && ip addr add 10.9.1.1/24 dev nfd1"],
             check=True)
    out = _nf(lab3, "node3", "init", "--advertise-addr", "nfd0", ok=False)
    assert "interface nfd0 has no IPv4 address" in out and "Traceback" not in out
    out = _nf(lab3, "node3", "init", "--advertise-addr", "nfd1", ok=False)
    assert "more than one IPv4 address (10.9.0.1, 10.9.1.1)" in out
    out = _nf(lab3, "node3", "init", "--advertise-addr", "nosuch0", ok=False)
    assert "no interface 'nosuch0'" in out and "eth0" in out
    agent = lab3.run("node3", ["netfabric", "agent", "--advertise-addr", "nfd1",
                               "--socket", "/run/other.sock", "--data-dir", "/tmp/x"])
    assert agent.returncode == 1 and "more than one IPv4 address" in agent.stderr, agent.stderr
    assert "Traceback" not in agent.stderr
    helps = [lab3.run("node3", ["netfabric", cmd, "--help"]).stdout for cmd in ("init", "agent")]
    assert all("interface name" in h for h in helps), helps
    # and the working case, on the machine's eth0
    out = _nf(lab3, "node1", "init", "--advertise-addr", "eth0", "--listen-addr", "eth0:2377")
    assert Client(lab3.agent("node1").url).info().managers == (
        f"{lab3.agent('node1').address}:2377",)
    # join takes one too: an interface name, checked against the agent's own address
    token = next(w for w in out.split() if w.startswith("SWMTKN-"))
    manager = lab3.agent("node1").address
    for iface, why in (("nfd0", "interface nfd0 has no IPv4 address"),
                       ("nfd1", "more than one IPv4 address"),
                       ("lo", "differs from the agent's --advertise-addr")):
        out = _nf(lab3, "node3", "join", "--advertise-addr", iface, "--token", token, manager,
                  ok=False)
        assert why in out and "Traceback" not in out, out
    assert "interface name" in lab3.run("node2", ["netfabric", "join", "--help"]).stdout
    _nf(lab3, "node2", "join", "--advertise-addr", "eth0", "--token", token, manager)
    info = Client(lab3.agent("node2").url).info()
    assert info.role == "worker" and info.advertise_addr == lab3.agent("node2").address


def test_netns_prefix_and_no_docker_plugin_are_settings(tmp_path: Path) -> None:
    """``--netns-prefix`` names every netns the agent makes (its host netns too), and
    ``--docker-plugin none`` serves no plugin socket; reset takes the same prefix."""
    args = ("--advertise-addr", "eth0", "--netns-prefix", "nfhs", "--docker-plugin", "none")
    with Lab.up(1, state_dir=str(tmp_path), agent_args=args) as lab:
        _nf(lab, "node1", "network", "create", "br")
        _nf(lab, "node1", "run", "-d", "--network", "br", "--name", "c1")
        names = lab.netns("node1")
        assert "nfhs" in names and len(names) > 1, names
        assert all(n == "nfhs" or n.startswith("nfhs-") for n in names), names
        assert not os.path.exists(lab.agent("node1").path("/run/docker/plugins/netfabric.sock"))
        done = _nf(lab, "node1", "reset", "--force", "--netns-prefix", "nfhs")
        assert "removed: netns nfhs" in done, done
        assert lab.netns("node1") == []


BUILDER = """
import sys, time
from netfabric.lab.cluster import Lab
lab = Lab.up(2, state_dir=sys.argv[1])
print(lab.prefix, *[a.pid for a in lab.agents], *[a.machine_pid for a in lab.agents],
      flush=True)
time.sleep(600)
"""


def test_sigkill_of_the_test_process_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        words = proc.stdout.readline().split()
        assert words, "the lab did not come up"
        prefix, pids = words[0], [int(w) for w in words[1:]]
        assert machine_pids(prefix) and all(_alive(p) for p in pids)
        state = json.loads(Path(tmp_path, f"{prefix}.json").read_text())
        assert len(state["agents"]) == 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 10
    while (machine_pids(prefix) or any(_alive(p) for p in pids)) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not machine_pids(prefix), "machines survive their builder"
    assert not [p for p in pids if _alive(p)], "agents survive their machine"
    assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    assert "p-node" not in links


SNAPSHOT = ("ip -o link | cut -d: -f2 | sed 's/@.*//'; echo; ip netns list; echo; "
            "nft list tables; echo; find /run /var/lib/netfabric /etc/docker /etc/netns "
            "/etc/cni /opt/cni | sort; echo; cat /etc/resolv.conf; echo; "
            "sysctl net.ipv4.ip_forward net.ipv4.conf.all.forwarding")
"""What reset must leave as it was: links, netns, nft tables, the files netfabric may write
(state, sockets, /etc/netns, dockerd's and CNI's configuration), resolv.conf, sysctls."""


def test_reset_leaves_the_machine_as_before_the_agent_first_ran(tmp_path: Path) -> None:
    with Lab.up(2, state_dir=str(tmp_path), agent_args=ONLY_ETH0, start=False) as lab:
        before = {a.name: lab.run(a.name, ["sh", "-c", SNAPSHOT], check=True).stdout
                  for a in lab.agents}
        assert "nfb-" not in before["node1"] and "inet netfabric" not in before["node1"]
        for agent in lab.agents:
            lab.start_agent(agent)
        for agent in lab.agents:
            lab.wait_ready(agent)
        out = _nf(lab, "node1", "init", "--advertise-addr", "eth0")
        token = next(w for w in out.split() if w.startswith("SWMTKN-"))
        _nf(lab, "node2", "join", "--token", token, lab.agent("node1").address)
        _nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "ov")
        for node in ("node1", "node2"):
            _nf(lab, node, "network", "create", "br")
            _nf(lab, node, "run", "-d", "--network", "ov", "--name", f"c-{node}")
            _nf(lab, node, "run", "-d", "--network", "br", "--name", f"b-{node}")
            _nf(lab, node, "docker", "setup")
            _nf(lab, node, "cni", "install", "ov")
        assert wait_for(lambda: lab.run("node2", ["netfabric", "exec", "c-node2", "ping", "-c1",
                                                  "-W1", "c-node1"]).returncode == 0, 15)
        during = lab.run("node2", ["sh", "-c", SNAPSHOT], check=True).stdout
        assert "nfb-" in during and "nf-ov" in during and "inet netfabric" in during
        assert "/etc/cni/net.d/ov.conflist" in during and "/opt/cni/bin/netfabric" in during
        # node2: the agent runs (reset stops it); node1: it was killed first
        lab.stop_agent(lab.agent("node1"), sig=signal.SIGKILL)
        for node in ("node2", "node1"):
            refused = lab.run(node, ["netfabric", "reset"])
            assert refused.returncode == 1 and "--force" in refused.stderr
            done = _nf(lab, node, "reset", "--force")
            assert "removed: netns nf-ov" in done and "removed: link nfb-" in done, done
            assert "removed: nftables table inet netfabric" in done, done
            assert "/etc/resolv.conf: restored" in done, done
            assert "removed: file /etc/cni/net.d/ov.conflist" in done, done
            assert "removed: file /opt/cni/bin/netfabric" in done, done
            assert ("removed: agent" in done) == (node == "node2"), done
            after = lab.run(node, ["sh", "-c", SNAPSHOT], check=True).stdout
            assert after == before[node], "\n".join(difflib.unified_diff(
                before[node].splitlines(), after.splitlines(), "before", "after", lineterm=""))
            again = _nf(lab, node, "reset", "--force")
            assert "nothing to remove" in again, again
        assert not lab.agent("node2").alive()


def test_the_agent_tells_systemd_it_is_ready(tmp_path: Path) -> None:
    """Type=notify: READY=1 comes once the API answers, STOPPING=1 on SIGTERM."""
    import socket as so

    with Lab.up(1, state_dir=str(tmp_path), agent_args=ONLY_ETH0, start=False) as lab, \
            so.socket(so.AF_UNIX, so.SOCK_DGRAM) as manager:
        path = tmp_path / "notify"   # /tmp is shared with the machine
        manager.bind(str(path))
        manager.settimeout(30)
        agent = lab.agent("node1")
        lab.start_agent(agent, env={"NOTIFY_SOCKET": str(path)})
        ready = manager.recv(4096).decode()
        assert ready.startswith("READY=1\n"), ready
        assert Client(agent.url).info().hostname == "node1"   # answering when it says so
        pid = int(Path(agent.path("/run/netfabric/agent.pid")).read_text())
        assert f"MAINPID={pid}" in ready
        lab.stop_agent(agent, sig=signal.SIGTERM)
        assert manager.recv(4096) == b"STOPPING=1"
        assert not os.path.exists(agent.path("/run/netfabric/agent.pid"))
