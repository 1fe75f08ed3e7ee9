"""The embedded DNS on the real kernel, asked by real clients (getent, ping, dig).

Layout: topology host h1 runs the DNS server (``python -m netfabric.dns.runner`` inside
h1's netns, as the agent would run there); h2 runs dnsmasq as the upstream resolver on
198.51.100.2. Sandboxes are netns of this test's prefix: s1 and s2 share network "front"
and are wired by a veth pair (10.77.0.2 <-> 10.77.0.3) so ping by name really pings; s3 is
on network "back" only. The server runs in both serving modes (event loop, recvmmsg thread).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netfabric.lab.topology import Topology

UPSTREAM = "198.51.100.2"
BIG_TXT = ["x" * 200 + str(i) for i in range(12)]


def sh(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)


def must(*argv: str) -> None:
    proc = sh(*argv)
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"


class Runner:
    """The DNS server process, driven over its JSON-lines stdin."""

    def __init__(self, netns: str, *args: str) -> None:
        # stderr goes to a file, not a pipe: readable whenever a step fails, and a chatty
        # server can never block on a full pipe nobody reads.
        self.err = tempfile.TemporaryFile(mode="w+", prefix="nfdnsrunner-")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "netfabric.dns.runner",
             "--seed", "1", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        assert ready and json.loads(ready) == {"ready": True}, \
            f"runner did not start: {ready!r}\n{self.stderr()}"

    def stderr(self) -> str:
        """Everything the runner wrote to stderr so far (its traceback, if it died)."""
        self.err.flush()
        self.err.seek(0)
        return self.err.read()[-4000:]

    def try_call(self, op: str, **kw: object) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise AssertionError(f"runner gone before {op}:\n{self.stderr()}") from exc
        line = self.proc.stdout.readline()
        assert line, f"runner died during {op} (exit {self.proc.poll()}):\n{self.stderr()}"
        out = json.loads(line)
        assert isinstance(out, dict)
        return out

    def call(self, op: str, **kw: object) -> object:
        reply = self.try_call(op, **kw)
        assert reply["ok"], f"{reply}\n{self.stderr()}"
        return reply["result"]

    def stop(self) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        err = self.stderr()
        self.err.close()
        return err


@dataclass
class Lab:
    topo: Topology
    dns: Runner
    s1: str
    s2: str
    s3: str
    mode: str

    def run(self, sandbox: str, *argv: str, timeout: float = 20
            ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", sandbox, *argv, timeout=timeout)

    def dig(self, sandbox: str, *args: str) -> str:
        proc = self.run(sandbox, "dig", "@127.0.0.11", "+time=2", "+tries=1", *args)
        return proc.stdout


def _start_dnsmasq(netns: str) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", netns, "dnsmasq", "--keep-in-foreground",
            "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--listen-address={UPSTREAM}", "--pid-file", "--port=53",
            "--local=/example.test/", "--host-record=ext.example.test,10.99.0.5"]
    argv += [f"--txt-record=big.example.test,{t}" for t in BIG_TXT]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = sh("ip", "netns", "exec", netns, "dig", f"@{UPSTREAM}", "+short", "+time=1",
                 "+tries=1", "ext.example.test").stdout
        if "10.99.0.5" in out:
            return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("dnsmasq did not come up")


@pytest.fixture(scope="module", params=["loop", "thread"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    topo = Topology.build(2)
    dnsmasq: subprocess.Popen[str] | None = None
    dns: Runner | None = None
    try:
        p = topo.prefix
        s1, s2, s3 = f"{p}-s1", f"{p}-s2", f"{p}-s3"
        for ns in (s1, s2, s3):
            must("ip", "netns", "add", ns)
        must("ip", "-n", s1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
             "netns", s2)
        for ns, addr in ((s1, "10.77.0.2/24"), (s2, "10.77.0.3/24")):
            must("ip", "-n", ns, "addr", "add", addr, "dev", "eth0")
            must("ip", "-n", ns, "link", "set", "eth0", "up")
        dnsmasq = _start_dnsmasq(topo.host("h2").netns)
        dns = Runner(topo.host("h1").netns, "--upstream", UPSTREAM, "--mode", request.param,
                     "--forward-timeout", "2")
        dns.call("add_sandbox", netns=s1, networks=["front"])
        dns.call("add_sandbox", netns=s2, networks=["front"])
        dns.call("add_sandbox", netns=s3, networks=["back"])
        dns.call("set_endpoint", network="front", name="web1", ipv4="10.77.0.2")
        dns.call("set_endpoint", network="front", name="web2", aliases=["api", "Shop"],
                 ipv4="10.77.0.3", ipv6="fd77::3")
        dns.call("set_endpoint", network="back", name="db3", ipv4="10.78.0.2")
        yield Lab(topo=topo, dns=dns, s1=s1, s2=s2, s3=s3, mode=request.param)
    finally:
        if dns is not None:
            dns.stop()
        if dnsmasq is not None:
            dnsmasq.kill()
            dnsmasq.wait()
            assert dnsmasq.stderr is not None
            dnsmasq.stderr.close()
        topo.destroy()


def test_resolv_conf_written_for_each_sandbox(lab: Lab) -> None:
    for ns in (lab.s1, lab.s2, lab.s3):
        with open(f"/etc/netns/{ns}/resolv.conf") as fh:
            assert fh.read() == "nameserver 127.0.0.11\noptions ndots:0\n"
    assert "127.0.0.11" in lab.run(lab.s1, "cat", "/etc/resolv.conf").stdout


def test_getent_resolves_names_and_aliases_on_shared_networks(lab: Lab) -> None:
    for name in ("web2", "api", "SHOP", "shop."):
        proc = lab.run(lab.s1, "getent", "hosts", name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split()[0] in ("10.77.0.3", "fd77::3")
    proc = lab.run(lab.s1, "getent", "ahostsv4", "web2")
    assert proc.stdout.split()[0] == "10.77.0.3"


def test_name_on_another_network_does_not_resolve(lab: Lab) -> None:
    proc = lab.run(lab.s1, "getent", "hosts", "db3")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "status: NXDOMAIN" in lab.dig(lab.s1, "db3")
    assert lab.dig(lab.s3, "+short", "db3").split() == ["10.78.0.2"]
    assert "status: NXDOMAIN" in lab.dig(lab.s3, "web2")


def test_ping_by_name(lab: Lab) -> None:
    proc = lab.run(lab.s1, "ping", "-c1", "-W2", "web2")
    assert proc.returncode == 0, proc.stderr
    assert "10.77.0.3" in proc.stdout
    bad = lab.run(lab.s1, "ping", "-c1", "-W2", "db3")
    assert bad.returncode != 0
    assert "db3" in bad.stderr and ("Name or service not known" in bad.stderr
                                    or "bad address" in bad.stderr), bad.stderr


def test_dig_a_aaaa_ptr_and_tcp(lab: Lab) -> None:
    assert lab.dig(lab.s1, "+short", "web2", "A").split() == ["10.77.0.3"]
    assert lab.dig(lab.s1, "+short", "web2", "AAAA").split() == ["fd77::3"]
    assert lab.dig(lab.s1, "+short", "-x", "10.77.0.3").split() == ["web2."]
    assert lab.dig(lab.s1, "+short", "-x", "fd77::3").split() == ["web2."]
    assert lab.dig(lab.s1, "+short", "+tcp", "api").split() == ["10.77.0.3"]
    full = lab.dig(lab.s1, "web2")
    assert "status: NOERROR" in full and "\t2\tIN\tA\t10.77.0.3" in full, full
    assert "EDNS: version: 0" in full
    part = "pump" if lab.mode == "thread" else "resolver"

    def hits() -> int:
        stats = lab.dns.call("stats")
        assert isinstance(stats, dict)
        return int(stats[part]["hits"])

    # the same question (dig's cookie off) three times after one that fills the cache:
    # three hits, whatever the tests before this one asked
    query = ("+short", "+nocookie", "web1")
    assert lab.dig(lab.s2, *query).split() == ["10.77.0.2"]
    before = hits()
    for _ in range(3):
        assert lab.dig(lab.s2, *query).split() == ["10.77.0.2"]
    assert hits() - before == 3


def test_changes_are_seen_at_once(lab: Lab) -> None:
    lab.dns.call("set_endpoint", network="front", name="mover", ipv4="10.77.0.50")
    assert lab.dig(lab.s1, "+short", "mover").split() == ["10.77.0.50"]
    lab.dns.call("set_endpoint", network="front", name="mover", ipv4="10.77.0.51")
    assert lab.dig(lab.s1, "+short", "mover").split() == ["10.77.0.51"]
    lab.dns.call("remove_endpoint", network="front", name="mover")
    assert "status: NXDOMAIN" in lab.dig(lab.s1, "mover")


def test_dnsrr_order_changes_and_tasks(lab: Lab) -> None:
    tasks = [f"10.77.1.{i}" for i in range(1, 9)]
    lab.dns.call("set_service", network="front", name="rrsvc", mode="dnsrr", tasks=tasks)
    lab.dns.call("set_service", network="front", name="vipsvc", mode="vip", vip="10.77.2.1",
                 tasks=tasks[:2])
    orders = {tuple(lab.dig(lab.s1, "+short", "rrsvc").split()) for _ in range(6)}
    assert all(sorted(o) == sorted(tasks) for o in orders)
    assert len(orders) > 1
    assert lab.dig(lab.s1, "+short", "vipsvc").split() == ["10.77.2.1"]
    assert sorted(lab.dig(lab.s1, "+short", "tasks.vipsvc").split()) == tasks[:2]


def test_large_own_answer_truncates_then_dig_retries_over_tcp(lab: Lab) -> None:
    tasks = [f"10.77.{3 + i // 200}.{i % 200 + 1}" for i in range(120)]
    lab.dns.call("set_service", network="front", name="huge", mode="dnsrr", tasks=tasks)
    cut = lab.dig(lab.s1, "+noedns", "+ignore", "huge")
    assert " tc " in cut.split("flags:")[1].split(";")[0] + " ", cut
    retried = lab.dig(lab.s1, "+noedns", "huge")
    assert "Truncated, retrying in TCP mode" in retried
    assert len([ln for ln in retried.splitlines() if "\tIN\tA\t" in ln]) == 120


def test_forwarding_to_upstream_dnsmasq(lab: Lab) -> None:
    assert lab.dig(lab.s1, "+short", "ext.example.test").split() == ["10.99.0.5"]
    assert "status: NXDOMAIN" in lab.dig(lab.s1, "nosuch.example.test")
    proc = lab.run(lab.s3, "getent", "hosts", "ext.example.test")
    assert proc.stdout.split()[0] == "10.99.0.5"
    # dnsmasq truncates the big TXT over UDP: we retry over TCP, then truncate for our
    # client, which retries over TCP too and gets every record.
    cut = lab.dig(lab.s1, "+noedns", "+ignore", "big.example.test", "TXT")
    assert "flags: qr" in cut and " tc" in cut.split("flags:")[1].split(";")[0], cut
    full = lab.dig(lab.s1, "+noedns", "big.example.test", "TXT")
    assert len([ln for ln in full.splitlines() if "\tTXT\t" in ln]) == len(BIG_TXT), full
    viatcp = lab.dig(lab.s1, "+tcp", "big.example.test", "TXT")
    assert len([ln for ln in viatcp.splitlines() if "\tTXT\t" in ln]) == len(BIG_TXT)
    stats = lab.dns.call("stats")
    assert isinstance(stats, dict) and stats["forwarder"]["tcp_retries"] >= 1


_BURST = """
import socket, sys, time
from dnslib import DNSRecord
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE: no reply lost here
s.connect(("127.0.0.11", 53))
for i in range(n):
    q = DNSRecord.question(f"n{i}.example.test")
    q.header.id = i
    s.send(q.pack())
s.settimeout(8)
seen = set()
try:
    while len(seen) < n:
        r = DNSRecord.parse(s.recv(4096))
        if r.header.rcode == 3:
            seen.add(r.header.id)
except TimeoutError:
    pass
s.close()
print(len(seen))
"""


def test_many_forwarded_queries_in_flight_are_all_served(lab: Lab) -> None:
    proc = lab.run(lab.s2, sys.executable, "-c", _BURST, "400", timeout=60)
    assert proc.stdout.strip() == "400", proc.stderr
    stats = lab.dns.call("stats")
    assert isinstance(stats, dict) and stats["forwarder"]["max_in_flight"] > 1


def test_sandbox_networks_update_and_removal(lab: Lab) -> None:
    p = lab.topo.prefix
    s4 = f"{p}-s4"
    must("ip", "netns", "add", s4)
    lab.dns.call("add_sandbox", netns=s4, networks=["back"])
    assert "status: NXDOMAIN" in lab.dig(s4, "web1")
    lab.dns.call("update_sandbox_networks", netns=s4, networks=["back", "front"])
    assert lab.dig(s4, "+short", "web1").split() == ["10.77.0.2"]
    assert lab.dig(s4, "+short", "db3").split() == ["10.78.0.2"]
    dup = lab.dns.try_call("add_sandbox", netns=s4, networks=[])
    assert not dup["ok"] and "AlreadyExists" in str(dup["error"])
    lab.dns.call("remove_sandbox", netns=s4)
    assert not os.path.exists(f"/etc/netns/{s4}")
    gone = lab.run(s4, "dig", "@127.0.0.11", "+time=1", "+tries=1", "web1")
    assert "connection refused" in gone.stdout or "timed out" in gone.stdout, gone.stdout
    missing = lab.dns.try_call("add_sandbox", netns=f"{p}-none", networks=[])
    assert not missing["ok"] and "DataplaneError" in str(missing["error"])
    must("ip", "netns", "delete", s4)


def test_upstream_failure_gives_servfail(lab: Lab) -> None:
    p = lab.topo.prefix
    s5 = f"{p}-s5"
    must("ip", "netns", "add", s5)
    # a second server whose upstream is an unused underlay address: nothing answers
    dead = Runner(lab.topo.host("h2").netns, "--upstream", "198.51.100.250",
                  "--forward-timeout", "1", "--mode", lab.mode)
    try:
        dead.call("add_sandbox", netns=s5, networks=["front"])
        out = lab.run(s5, "dig", "@127.0.0.11", "+time=4", "+tries=1", "ext.example.test")
        assert "status: SERVFAIL" in out.stdout, out.stdout
    finally:
        dead.stop()
    assert not os.path.exists(f"/etc/netns/{s5}")
    must("ip", "netns", "delete", s5)
