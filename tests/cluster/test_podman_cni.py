"""Real podman 4.3 on its CNI backend, on netfabric networks through netfabric-cni.

Two hosts in one cluster: a podman container on node1 and a netfabric container on node2,
on one overlay, ping each other by name both ways (podman's CNI backend has no DNS: the
names come from netfabric's resolver, which the plugin serves in the pod and hands podman
as the result's nameserver), and the pod reaches a service's VIP by address and name.
Then ``podman restart``, ``network disconnect/connect``, ``rm -f`` and ``-p 8080:80`` (on
a bridge network): each leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netfabric import Client
from netfabric.errors import LabError
from netfabric.lab.cluster import Lab
from netfabric.lab.podman import Podman
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, Podman]]:
    with Lab.up(2, state_dir=str(tmp_path / "lab")) as lab:
        form_cluster(lab)
        n1 = Client(lab.agent("node1").url)
        n1.create_network("ovl", driver="overlay", attachable=True, subnet="10.0.77.0/24")
        # podman refuses a run root longer than 50 characters: a short directory
        pm = Podman.start(lab, lab.agent("node1"), tempfile.mkdtemp(prefix="cnpm-"),
                          networks=["ovl"])
        try:
            yield lab, pm
        finally:
            pm.close()


def _attachments(lab: Lab) -> list[dict[str, Any]]:
    path = Path(lab.agent("node1").data_dir) / "cni.json"
    return list(json.loads(path.read_text())["attachments"]) if path.exists() else []


def _ping_from_sandbox(lab: Lab, host: str, sandbox: str, target: str) -> bool:
    return lab.run(host, ["netfabric", "exec", sandbox, "ping", "-c1", "-W2", target]
                   ).returncode == 0


def _eventually(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.3)


def _on(lab: Lab, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command on a host (where its agent, podman and podman's netns are)."""
    return subprocess.run(lab.exec_argv(lab.agent(host), list(argv)), capture_output=True,
                          text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)


def _host_links(lab: Lab, host: str) -> set[str]:
    out = _on(lab, host, "ip", "-j", "link").stdout
    return {link["ifname"] for link in json.loads(out)}


def test_podman_and_netfabric_containers_ping_by_name(lab: tuple[Lab, Podman]) -> None:
    lab_, pm = lab
    n2 = Client(lab_.agent("node2").url)
    n2.run("nb", network="ovl")
    pm.ok(["run", "-d", "--name", "pa", "--network", "ovl", "nfbox", "sleep", "600"])
    resolv = pm.ok(["exec", "pa", "cat", "/etc/resolv.conf"])
    assert resolv.splitlines()[0] == "nameserver 127.0.0.11", resolv
    _eventually(lambda: pm.run(["exec", "pa", "ping", "-c1", "-W2", "nb"]).returncode == 0,
                "podman's pa does not reach nb by name")
    _eventually(lambda: _ping_from_sandbox(lab_, "node2", "nb", "pa"),
                "netfabric's nb does not reach pa by name")
    # the short id podman gives as an alias resolves too
    short = pm.ok(["inspect", "-f", "{{.Id}}", "pa"]).strip()[:12]
    assert _ping_from_sandbox(lab_, "node2", "nb", short)

    # a service's VIP on ovl answers in the pod too (its netns gets the VIP tables), by
    # address and by name; its task is nb on node2
    n1 = Client(lab_.agent("node1").url)
    vip = n1.create_service("pweb", networks=["ovl"])["vips"][0]["addr"]
    with tempfile.TemporaryDirectory(prefix="cnweb-") as root:
        Path(root, "index.html").write_text("nb\n")
        nb = n2.inspect_container("nb").netns
        assert _on(lab_, "node2", "ip", "netns", "exec", nb, "busybox", "httpd", "-p", "80",
                   "-h", root).returncode == 0
        n2.add_backend("pweb", "nb")

        def fetch(url: str) -> str:
            try:
                return pm.run(["exec", "pa", "wget", "-q", "-O", "-", url], timeout=10
                              ).stdout.strip()
            except LabError:
                return "TIMEOUT"
        _eventually(lambda: fetch(f"http://{vip}/") == "nb", "pa does not reach pweb's VIP")
        assert fetch("http://pweb/") == "nb"
        n1.remove_service("pweb")
        _on(lab_, "node2", "ip", "netns", "exec", nb, "pkill", "httpd")

    # restart: DEL then ADD; the name still resolves on the other host
    pm.ok(["restart", "-t", "0", "pa"])
    assert len(_attachments(lab_)) == 1
    _eventually(lambda: _ping_from_sandbox(lab_, "node2", "nb", "pa"),
                "pa is not reachable by name after podman restart")

    # disconnect / connect
    pm.ok(["network", "disconnect", "ovl", "pa"])
    assert _attachments(lab_) == []
    _eventually(lambda: not _ping_from_sandbox(lab_, "node2", "nb", "pa"),
                "pa still answers after network disconnect")
    pm.ok(["network", "connect", "ovl", "pa"])
    _eventually(lambda: _ping_from_sandbox(lab_, "node2", "nb", "pa"),
                "pa is not reachable after network connect")

    # the agent restarts under a running pod: it takes the attachment back
    lab_.restart_agent(lab_.agent("node1"))
    _eventually(lambda: _ping_from_sandbox(lab_, "node2", "nb", "pa"),
                "pa is not reachable by name after node1's agent restarted", timeout=30)
    assert pm.run(["exec", "pa", "ping", "-c1", "-W2", "nb"]).returncode == 0

    # podman's --ip and --mac-address (CNI_ARGS IP= and MAC=)
    pm.ok(["run", "-d", "--name", "fixed", "--network", "ovl", "--ip", "10.0.77.50",
           "--mac-address", "02:00:0a:00:4d:32", "nfbox", "sleep", "600"])
    link = pm.ok(["exec", "fixed", "ip", "addr", "show", "eth0"])
    assert "10.0.77.50/24" in link and "02:00:0a:00:4d:32" in link, link
    _eventually(lambda: _ping_from_sandbox(lab_, "node2", "nb", "fixed"),
                "the fixed-address container is not reachable by name")
    pm.ok(["rm", "-f", "-t", "0", "fixed"])

    # rm -f: nothing of pa is left (attachment, name, netns, links)
    netns = _attachments(lab_)[0]["netns"]
    pm.ok(["rm", "-f", "-t", "0", "pa"])
    assert _attachments(lab_) == []
    assert _on(lab_, "node1", "test", "-e", netns).returncode == 1
    _eventually(lambda: not _ping_from_sandbox(lab_, "node2", "nb", "pa"),
                "the name pa still resolves after podman rm -f")
    assert not any(n.startswith("nfv") or n.startswith("veth") for n in _host_links(lab_, "node1")
                   if n not in _host_links(lab_, "node2"))


def test_published_port_is_dnat_and_leaves_nothing(lab: tuple[Lab, Podman]) -> None:
    lab_, pm = lab
    n1 = Client(lab_.agent("node1").url)
    n1.create_network("pbr", driver="bridge", subnet="10.234.0.0/24")
    pm.add_network("pbr")
    pm.ok(["run", "-d", "--name", "web", "--network", "pbr", "-p", "8080:80", "nfbox",
           "sh", "-c", "while true; do echo hello-from-podman | nc -l -p 80; done"])
    table = _on(lab_, "node1", "nft", "list", "table", "ip", "netfabric-cni")
    assert "dport 8080 dnat to 10.234.0." in table.stdout, table.stdout + table.stderr
    node1_addr = lab_.agent("node1").address

    def fetch() -> bool:
        out = _on(lab_, "node2", "busybox", "nc", "-w", "2", node1_addr, "8080")
        return "hello-from-podman" in out.stdout
    _eventually(fetch, "node2 does not reach web's port 80 through node1:8080")
    pm.ok(["rm", "-f", "-t", "0", "web"])
    assert _attachments(lab_) == []
    gone = _on(lab_, "node1", "nft", "list", "table", "ip", "netfabric-cni")
    assert gone.returncode != 0, gone.stdout
