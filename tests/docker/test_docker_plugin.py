"""Real dockerd 20.10 using netfabric as its network and IPAM driver, on two simulated hosts.

One lab for the module: two hosts, each with its netfabric agent (serving the plugin) and
its own dockerd; node1 is the manager, node2 a worker. Every container and network a test
makes is its own (unique names), and the lab is removed at the end whatever happens.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from netfabric.client import Client
from netfabric.lab.cluster import AgentProc
from netfabric.lab.dockerd import IMAGE, Dockerd, DockerLab, busybox_rootfs_tar
from netfabric.lab.topology import wait_for
from netfabric.plugin.docker.agent_fabric import docker_ifname
from netfabric.plugin.docker.schema import VERBS

pytestmark = pytest.mark.slow

NF = ("-d", "netfabric", "--ipam-driver", "netfabric")


class Env:
    def __init__(self, lab: DockerLab) -> None:
        self.lab = lab
        self.a = lab.dockerds["node1"]
        self.b = lab.dockerds["node2"]
        self.manager = Client(lab.agent("node1").url)

    def netfabric_networks(self) -> dict[str, Any]:
        return {n.name: n for n in self.manager.networks()}


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with tempfile.TemporaryDirectory(prefix="nfdockertest-") as state_dir:
        lab = DockerLab.up(2, state_dir=state_dir)
        assert isinstance(lab, DockerLab)
        try:
            lab.start_cluster(busybox_rootfs_tar())
            e = Env(lab)
            for d in (e.a, e.b):
                d.docker("network", "create", *NF, "-o", "type=overlay", "myoverlay")
            e.a.docker("run", "-d", "--network", "myoverlay", "--name", "alpine_host",
                       "--stop-timeout", "1", IMAGE, "sleep", "600")
            e.b.docker("run", "-d", "--network", "myoverlay", "--name", "alpine_client",
                       "--stop-timeout", "1", IMAGE, "sleep", "600")
            yield e
        finally:
            lab.down()


def ping(d: Dockerd, container: str, target: str, *, count: int = 1) -> bool:
    return d.docker("exec", container, "ping", "-c", str(count), "-W", "1", target,
                    check=False, timeout=30).returncode == 0


def inspect(d: Dockerd, container: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(d.docker("inspect", container).stdout)
    return out[0]


def ip_of(d: Dockerd, container: str, network: str) -> str:
    return str(inspect(d, container)["NetworkSettings"]["Networks"][network]["IPAddress"])


def links(host: AgentProc, netns: str | None = None) -> list[str]:
    """Links of a host (or of one of its netns)."""
    where = ["-n", netns] if netns else []
    out = subprocess.run(host.enter(["ip", *where, "-o", "link"]), capture_output=True,
                         text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def overlay_netns(host: AgentProc) -> list[str]:
    out = subprocess.run(host.enter(["ip", "netns", "list"]), capture_output=True, text=True,
                         check=True).stdout
    return [w.split()[0] for w in out.splitlines() if w.startswith("nf-ov")]


def fdb_macs(host: AgentProc) -> str:
    return " ".join(subprocess.run(host.enter(["bridge", "-n", ns, "fdb", "show"]),
                                   capture_output=True, text=True, check=False).stdout
                    for ns in overlay_netns(host))


def diagnose(env: Env, name: str) -> str:
    """What each host's resolver and overlay tables say, for a failure message."""
    out = []
    for agent in env.lab.agents:
        dig = subprocess.run(agent.enter(["dig", "+short", "@127.0.0.11", name]),
                             capture_output=True, text=True).stdout
        out.append(f"{agent.name}: {name} -> {dig.split()} fdb: {fdb_macs(agent)}")
        log = Path(agent.log).read_text(errors="replace")
        out += [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line][-8:]
    return "\n".join(out)


def test_overlay_spans_hosts_and_names_resolve_both_ways(env: Env) -> None:
    a_ip = ip_of(env.a, "alpine_host", "myoverlay")
    b_ip = ip_of(env.b, "alpine_client", "myoverlay")
    assert a_ip != b_ip
    nets = env.netfabric_networks()
    assert nets["myoverlay"].driver == "overlay"
    subnet = nets["myoverlay"].subnets[0]
    import ipaddress
    assert ipaddress.ip_address(a_ip) in ipaddress.ip_network(subnet)
    assert ipaddress.ip_address(b_ip) in ipaddress.ip_network(subnet)
    # Docker's view on the first host is netfabric's subnet
    net_a = json.loads(env.a.docker("network", "inspect", "myoverlay").stdout)[0]
    assert net_a["IPAM"]["Config"][0]["Subnet"] == subnet
    assert net_a["Scope"] == "local"
    assert wait_for(lambda: ping(env.b, "alpine_client", "alpine_host")), \
        diagnose(env, "alpine_host")
    assert ping(env.b, "alpine_client", "alpine_host", count=3)
    assert wait_for(lambda: ping(env.a, "alpine_host", "alpine_client")), \
        diagnose(env, "alpine_client")
    assert ping(env.a, "alpine_host", "alpine_client", count=3)


def test_rm_f_leaves_no_veth_fdb_or_address(env: Env) -> None:
    env.a.docker("network", "create", *NF, "-o", "type=overlay", "--subnet", "10.77.7.0/24",
                 "fixed")
    env.b.docker("network", "create", *NF, "-o", "type=overlay", "--subnet", "10.77.7.0/24",
                 "fixed")
    # the first container of a new cluster network runs on the manager (see the next test)
    env.a.docker("run", "-d", "--network", "fixed", "--name", "watcher", IMAGE, "sleep", "600")
    env.b.docker("run", "-d", "--network", "fixed", "--ip", "10.77.7.50", "--name", "victim",
                 IMAGE, "sleep", "600")
    victim = inspect(env.b, "victim")["NetworkSettings"]["Networks"]["fixed"]
    assert victim["IPAddress"] == "10.77.7.50"
    mac, ep = victim["MacAddress"], victim["EndpointID"]
    host_b = env.lab.agent("node2")
    host_a = env.lab.agent("node1")
    assert wait_for(lambda: ping(env.a, "watcher", "victim"))
    assert mac in fdb_macs(host_a)
    # the same address cannot be had twice
    dup = env.b.docker("run", "-d", "--network", "fixed", "--ip", "10.77.7.50", "--name", "dup",
                       IMAGE, "sleep", "600", check=False)
    assert dup.returncode != 0 and "10.77.7.50" in dup.stderr, dup.stderr
    assert "in use" in dup.stderr.lower() or "allocated" in dup.stderr.lower(), dup.stderr
    env.b.docker("rm", "-f", "dup", check=False)
    env.b.docker("rm", "-f", "victim")
    assert docker_ifname(ep) not in links(host_b)
    for ns in overlay_netns(host_b):
        assert not any(name.startswith("ve" + ep[:12]) for name in links(host_b, ns))
    assert wait_for(lambda: mac not in fdb_macs(host_a)), "peer FDB entry left behind"
    # the address is free again (in this host's IPAM block)
    env.b.docker("run", "-d", "--network", "fixed", "--ip", "10.77.7.50", "--name", "reuse",
                 IMAGE, "sleep", "600")
    assert ip_of(env.b, "reuse", "fixed") == "10.77.7.50"
    assert wait_for(lambda: ping(env.a, "watcher", "reuse"))
    env.a.docker("rm", "-f", "watcher")
    env.b.docker("rm", "-f", "reuse")


def test_a_worker_cannot_create_a_cluster_network(env: Env) -> None:
    env.b.docker("network", "create", *NF, "-o", "type=overlay", "workerfirst")
    out = env.b.docker("run", "-d", "--network", "workerfirst", "--name", "wf", IMAGE,
                       "sleep", "600", check=False)
    assert out.returncode != 0
    assert "does not exist yet and this node is a worker" in out.stderr, out.stderr
    assert "workerfirst" not in env.netfabric_networks()
    env.b.docker("rm", "-f", "wf", check=False)
    env.b.docker("network", "rm", "workerfirst")


def test_bridge_through_the_plugin_is_isolated(env: Env) -> None:
    a = env.a
    for net in ("nfbr1", "nfbr2"):
        a.docker("network", "create", *NF, "-o", "type=bridge", net)
    for name, net in (("b1a", "nfbr1"), ("b1b", "nfbr1"), ("b2a", "nfbr2")):
        a.docker("run", "-d", "--network", net, "--name", name, IMAGE, "sleep", "600")
    assert env.netfabric_networks()["nfbr1"].driver == "bridge"
    assert wait_for(lambda: ping(a, "b1a", "b1b"))
    assert ping(a, "b1b", "b1a")
    assert not ping(a, "b2a", ip_of(a, "b1a", "nfbr1"), count=2)
    for name in ("b1a", "b1b", "b2a"):
        a.docker("rm", "-f", name)
    for net in ("nfbr1", "nfbr2"):
        a.docker("network", "rm", net)
    assert not {"nfbr1", "nfbr2"} & set(env.netfabric_networks())


def test_connect_disconnect_and_alias_across_hosts(env: Env) -> None:
    a, b = env.a, env.b
    a.docker("network", "create", *NF, "-o", "type=bridge", "nflocal")
    a.docker("run", "-d", "--network", "nflocal", "--name", "multi", IMAGE, "sleep", "600")
    a.docker("network", "connect", "--alias", "web2", "myoverlay", "multi")
    multi = inspect(a, "multi")["NetworkSettings"]["Networks"]
    assert set(multi) == {"nflocal", "myoverlay"}
    assert wait_for(lambda: ping(b, "alpine_client", "web2")), "alias not resolved remotely"
    assert ping(b, "alpine_client", "multi")
    a.docker("network", "disconnect", "myoverlay", "multi")
    ep = multi["myoverlay"]["EndpointID"]
    assert docker_ifname(ep) not in links(env.lab.agent("node1"))
    assert wait_for(lambda: not ping(b, "alpine_client", "web2")), "alias survives disconnect"
    a.docker("rm", "-f", "multi")
    a.docker("network", "rm", "nflocal")


def test_network_rm_frees_the_subnet(env: Env) -> None:
    a = env.a
    a.docker("network", "create", *NF, "--subnet", "10.66.6.0/24", "short")
    a.docker("run", "--rm", "--network", "short", "--name", "once", IMAGE, "true")
    assert env.netfabric_networks()["short"].subnets == ("10.66.6.0/24",)
    a.docker("network", "rm", "short")
    assert "short" not in env.netfabric_networks()
    a.docker("network", "create", *NF, "--subnet", "10.66.6.0/24", "short2")
    a.docker("run", "--rm", "--network", "short2", IMAGE, "true")
    assert env.netfabric_networks()["short2"].subnets == ("10.66.6.0/24",)
    a.docker("network", "rm", "short2")


def test_network_rm_keeps_what_another_host_uses(env: Env) -> None:
    """The real AgentFabric's release rules, with the agent's real answers: a manager's
    `docker network rm` keeps a network a container on another host uses (InUse); a worker's
    never removes a cluster network (NotAManager): a manager does. The subnet and gateway
    are netfabric's, whatever the second dockerd proposed."""
    a, b = env.a, env.b
    a.docker("network", "create", *NF, "-o", "type=overlay", "--subnet", "10.67.0.0/24",
             "both")
    b.docker("network", "create", *NF, "-o", "type=overlay", "both")
    try:
        a.docker("run", "--rm", "--network", "both", IMAGE, "true")
        b.docker("run", "-d", "--network", "both", "--name", "stay", "--stop-timeout", "1",
                 IMAGE, "sleep", "600")
        net = env.netfabric_networks()["both"]
        assert net.subnets == ("10.67.0.0/24",)
        settings = inspect(b, "stay")["NetworkSettings"]["Networks"]["both"]
        assert ipaddress.ip_address(settings["IPAddress"]) in \
            ipaddress.ip_network("10.67.0.0/24")
        gateway = env.manager.inspect_network("both").gateways[0]
        assert settings["Gateway"] == gateway == "10.67.0.1"
        a.docker("network", "rm", "both")
        assert "both" in env.netfabric_networks(), "removed under a running container"
        b.docker("rm", "-f", "stay")
        b.docker("network", "rm", "both")
        assert "both" in env.netfabric_networks(), "a worker removed a cluster network"
        env.manager.remove_network("both")
    finally:
        for d in (a, b):
            d.docker("rm", "-f", "stay", check=False)
            d.docker("network", "rm", "both", check=False)
        if "both" in env.netfabric_networks():
            env.manager.remove_network("both")


def test_dockerd_restart_keeps_networks_and_never_duplicates(env: Env) -> None:
    b = env.b
    b.restart()
    assert "myoverlay" in b.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    b.docker("start", "alpine_client")
    b.docker("run", "-d", "--network", "myoverlay", "--name", "late", IMAGE, "sleep", "600")
    ips = [ip_of(env.a, "alpine_host", "myoverlay"), ip_of(b, "alpine_client", "myoverlay"),
           ip_of(b, "late", "myoverlay")]
    assert len(set(ips)) == 3, ips
    assert wait_for(lambda: ping(b, "late", "alpine_host")), diagnose(env, "late")
    assert wait_for(lambda: ping(env.a, "alpine_host", "late")), diagnose(env, "late")
    b.docker("rm", "-f", "late")


def test_python_docker_sdk(env: Env) -> None:
    clients = [docker.DockerClient(base_url=d.url, version="1.41") for d in (env.a, env.b)]
    try:
        ipam = docker.types.IPAMConfig(driver="netfabric")
        for c in clients:
            c.networks.create("sdknet", driver="netfabric", ipam=ipam,
                              options={"type": "overlay"})
        one = clients[0].containers.run(IMAGE, "sleep 600", detach=True, network="sdknet",
                                        name="sdk1")
        two = clients[1].containers.run(IMAGE, "sleep 600", detach=True, name="sdk2",
                                        network="sdknet")
        assert wait_for(lambda: two.exec_run("ping -c1 -W1 sdk1").exit_code == 0)
        assert wait_for(lambda: one.exec_run("ping -c1 -W1 sdk2").exit_code == 0)
        clients[1].networks.get("myoverlay").connect(two, aliases=["sdkalias"])
        two.reload()
        assert set(two.attrs["NetworkSettings"]["Networks"]) == {"sdknet", "myoverlay"}
        assert wait_for(lambda: ping(env.a, "alpine_host", "sdkalias"))
        for c in (one, two):
            c.remove(force=True)
        for c in clients:
            c.networks.get("sdknet").remove()
    finally:
        for c in clients:
            c.close()


def _post(path: Path, verb: str, body: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(f"POST /{verb} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                  "Connection: close\r\n\r\n".encode() + body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.1 (200|404) ", head), head
    out: dict[str, Any] = json.loads(payload)
    return out


HOSTILE = [b"{", b"[]", b"null", b"\xff\xfe", b"[" * 50000,
           b'{"NetworkID": 5, "EndpointID": [], "PoolID": {}, "Address": "1.2.3",'
           b' "Pool": "10.0.0.0/33", "AddressSpace": 7, "DiscoveryType": "x"}',
           b'{"NetworkID": "../../etc", "EndpointID": "a b", "PoolID": "x;y",'
           b' "IPv4Data": [{"Pool": "nope"}], "Interface": {"Address": "bad"}}']
FIELDLESS = {"Plugin.Activate", "NetworkDriver.GetCapabilities", "IpamDriver.GetCapabilities",
             "IpamDriver.GetDefaultAddressSpaces"}


def test_bad_input_on_every_verb_answers_err_and_changes_nothing(env: Env) -> None:
    agent = env.lab.agent("node1")
    sock = Path(agent.path("/run/docker/plugins/netfabric.sock"))
    state = Path(agent.data_dir) / "docker-plugin.json"
    before = (state.read_bytes(), sorted(env.netfabric_networks()),
              links(agent))
    for verb in sorted(VERBS):
        for body in HOSTILE:
            if verb in FIELDLESS and body.startswith(b"{"):
                continue
            out = _post(sock, verb, body)
            assert out.get("Err"), (verb, body[:40], out)
            assert "internal error" not in out["Err"]
    assert "unknown verb" in _post(sock, "NetworkDriver.Nope", b"{}")["Err"]
    after = (state.read_bytes(), sorted(env.netfabric_networks()), links(agent))
    assert after == before
    # and the plugin still works
    assert ping(env.a, "alpine_host", "alpine_client")


def test_docker_setup_is_idempotent_and_undone(env: Env) -> None:
    """The lab ran `netfabric docker setup` in each machine before its dockerd started (that
    is what makes names resolve across hosts above); again is a no-op, --undo restores the
    machine's resolv.conf exactly, and names then stop resolving across hosts."""
    lab = env.lab
    conf = Path(lab.agent("node2").path("/etc/resolv.conf"))
    set_up = conf.read_text()
    assert set_up.splitlines()[1] == "nameserver 127.0.0.11"
    again = lab.run("node2", ["netfabric", "docker", "setup"], check=True).stdout
    assert "already set up" in again and conf.read_text() == set_up
    undo = lab.run("node2", ["netfabric", "docker", "setup", "--undo"], check=True).stdout
    assert "restored as it was" in undo
    assert conf.read_text() == ""   # the machine's own resolv.conf: no resolver at all
    try:
        env.b.docker("run", "-d", "--network", "myoverlay", "--name", "nosetup",
                     "--stop-timeout", "1", IMAGE, "sleep", "600")
        assert not ping(env.b, "nosetup", "alpine_host"), "resolves without the setup"
    finally:
        env.b.docker("rm", "-f", "nosetup", check=False)
        lab.run("node2", ["netfabric", "docker", "setup"], check=True)
    assert conf.read_text() == set_up
    assert lab.run("node2", ["netfabric", "docker", "setup", "--undo"]).returncode == 0
    assert lab.run("node2", ["netfabric", "docker", "setup"]).returncode == 0
