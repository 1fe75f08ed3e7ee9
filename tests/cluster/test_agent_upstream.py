"""Names netfabric does not own, from a running agent, to a real upstream: dnsmasq on another
host of the lab (its own netns, on the underlay), agents with the default ``lan`` gossip
profile and ``--dns-upstream`` pointing at it, as a user runs them. The other multi-agent
tests start agents with ``--dns-upstream none``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.topology import Host
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

UPSTREAM_HOST = 3   # the lab's third underlay address: a host with no agent, only dnsmasq


def _dnsmasq(host: Host, address: str) -> subprocess.Popen[str]:
    argv = host.enter(["dnsmasq", "--keep-in-foreground",
            "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--listen-address={address}", "--port=53", "--pid-file",
            "--local=/example.test/", "--host-record=ext.example.test,10.99.0.5",
            "--log-queries", "--log-facility=-"])
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(host.enter(["dig", f"@{address}", "+short", "+time=1",
                                         "+tries=1", "ext.example.test"]),
                             capture_output=True, text=True, check=False).stdout
        if "10.99.0.5" in out:
            return proc
        time.sleep(0.1)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"dnsmasq did not come up: {err}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Lab, subprocess.Popen[str]]]:
    upstream = f"198.51.100.{UPSTREAM_HOST}"
    with Lab.up(2, state_dir=str(tmp_path), gossip_profile="lan",
                dns_upstream=[upstream]) as lab:
        assert lab.topo is not None
        host = lab.topo.add_host("dns")
        assert host.address == upstream
        dnsmasq = _dnsmasq(host, upstream)
        try:
            form_cluster(lab)
            yield lab, dnsmasq
        finally:
            # nsenter forked dnsmasq inside the machine: end it there (pkill sees only the
            # machine's processes), then its nsenter
            subprocess.run(host.enter(["pkill", "-KILL", "dnsmasq"]), check=False)
            dnsmasq.kill()
            if dnsmasq.stderr is not None and not dnsmasq.stderr.closed:
                dnsmasq.communicate()
            dnsmasq.wait()


def _exec(lab: Lab, host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return lab.run(host, ["netfabric", "exec", *argv])


def test_agents_forward_unknown_names_to_a_real_upstream(
        lab: tuple[Lab, subprocess.Popen[str]]) -> None:
    lab_, dnsmasq = lab
    nf1, nf2 = Client(lab_.agent("node1").url), Client(lab_.agent("node2").url)
    nf1.create_network("up", driver="overlay", attachable=True)
    nf1.run("web", network="up")
    nf2.run("client", network="up")
    nf2.run("plain")   # the host's bridge: forwarding is not an overlay feature
    for host, con in (("node2", "client"), ("node2", "plain"), ("node1", "web")):
        got = _exec(lab_, host, con, "getent", "hosts", "ext.example.test")
        assert got.returncode == 0 and got.stdout.split()[0] == "10.99.0.5", got
        dig = _exec(lab_, host, con, "dig", "+tries=1", "+time=3", "nosuch.example.test")
        assert "status: NXDOMAIN" in dig.stdout and "SERVER: 127.0.0.11#53" in dig.stdout, dig
    # netfabric's own names are still answered by netfabric, never asked upstream
    deadline = time.monotonic() + 10
    while _exec(lab_, "node2", "client", "getent", "hosts", "web").returncode != 0:
        assert time.monotonic() < deadline, "web never resolved on node2"
        time.sleep(0.2)
    assert lab_.topo is not None   # dnsmasq runs in the "dns" machine: end it there
    subprocess.run(lab_.topo.host("dns").enter(["pkill", "-KILL", "dnsmasq"]), check=False)
    dnsmasq.kill()
    _, log = dnsmasq.communicate()
    asked = [line for line in log.splitlines() if "query[" in line]
    assert any("ext.example.test from 198.51.100." in line for line in asked), log[-2000:]
    assert not any(" web from " in line or "web.example" in line for line in asked), asked
