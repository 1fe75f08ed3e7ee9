"""A conformance pass of netfabric-cni driven by the reference CNI library (libcni 1.1, from
Debian's golang-github-appc-cni-dev, built here into a small cnitool): every verb with good
and bad config, a missing netns, repeated ADD and DEL, a killed agent, results in 0.4.0,
1.0.0 and 1.1.0, and chaining with a reference plugin (tuning) after ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netfabric.lab.cluster import AgentProc, Lab
from netfabric.lab.podman import plugin_socket
from netfabric.plugin.cni.install import conflist, install

ROOT = Path(__file__).resolve().parents[2]
TOOL_SRC = ROOT / "tests" / "cni" / "cnitool"
REFERENCE_PLUGINS = "/usr/lib/cni"


def build_cnitool() -> str:
    """The reference cnitool equivalent, built (GOPATH mode, ~1-3 s) into the venv once."""
    out_dir = Path(sys.prefix) / "cni-tools"
    exe = out_dir / "nfcnitool"
    src = TOOL_SRC / "main.go"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return str(exe)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOPATH": "/usr/share/gocode", "GO111MODULE": "off",
           "GOFLAGS": "", "GOCACHE": str(out_dir / "gocache")}
    subprocess.run(["go", "build", "-o", str(exe), "."], cwd=TOOL_SRC, env=env, check=True,
                   capture_output=True, timeout=300)
    return str(exe)


class Tool:
    """nfcnitool on one host of a lab, with netfabric's plugin and the reference ones."""

    def __init__(self, lab: Lab, agent: AgentProc, exe: str, tmp: Path) -> None:
        self.lab, self.agent, self.exe, self.tmp = lab, agent, exe, tmp
        self.bin = tmp / "bin"
        self.socket = plugin_socket(agent)
        install("nfconf", network="cnbr", conf_dir=str(tmp / "net.d"), bin_dir=str(self.bin),
                socket=self.socket)
        self.cache = tmp / "cache"

    def conf(self, version: str, *, chain: bool = False, name: str = "nfconf") -> str:
        c = conflist(name, network="cnbr", version=version, socket=self.socket)
        if chain:
            c["plugins"].append({"type": "tuning", "mtu": 1400})
        path = self.tmp / f"{name}-{version}{'-chain' if chain else ''}.conflist"
        path.write_text(json.dumps(c))
        return str(path)

    def raw_conf(self, version: str, **extra: Any) -> str:
        c: dict[str, Any] = {"cniVersion": version, "name": "nfconf", "type": "netfabric",
                             "network": "cnbr", **extra}
        if self.socket:
            c["socket"] = self.socket
        path = self.tmp / f"raw-{len(list(self.tmp.iterdir()))}.json"
        path.write_text(json.dumps(c))
        return str(path)

    def __call__(self, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        full = {**os.environ, "CNI_PATH": f"{self.bin}:{REFERENCE_PLUGINS}",
                "CNI_CACHE_DIR": str(self.cache), **(env or {})}
        return subprocess.run(self.lab.exec_argv(self.agent, [self.exe, *args]),
                              capture_output=True, text=True, env=full, timeout=60,
                              check=False)

    def host(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """A command on the host (where the agent and the runtime's netns are)."""
        return subprocess.run(self.lab.exec_argv(self.agent, list(argv)), capture_output=True,
                              text=True, timeout=60, check=check)


@pytest.fixture
def tool(tmp_path: Path) -> Iterator[tuple[Tool, list[str]]]:
    exe = build_cnitool()
    made: list[str] = []
    with Lab.up(1) as lab:
        agent = lab.agents[0]
        lab.run(agent.name, ["netfabric", "network", "create", "-d", "bridge",
                             "--subnet", "10.232.0.0/24", "cnbr"], check=True)
        tool = Tool(lab, agent, exe, tmp_path)
        try:
            yield tool, made
        finally:
            for ns in made:
                tool.host("ip", "netns", "del", ns)


def _netns(tool: Tool, made: list[str], n: int) -> str:
    name = f"{tool.lab.prefix}-cn{n}"
    tool.host("ip", "netns", "add", name, check=True)
    made.append(name)
    return f"/run/netns/{name}"


def _addr(tool: Tool, netns: str, ifname: str = "eth0") -> list[str]:
    out = tool.host("ip", "-n", os.path.basename(netns), "-j", "addr", "show", "dev", ifname)
    if out.returncode != 0:
        return []
    return [f"{a['local']}/{a['prefixlen']}" for a in json.loads(out.stdout)[0]["addr_info"]
            if a["family"] == "inet"]


def _attachments(tool: Tool) -> list[dict[str, Any]]:
    path = os.path.join(tool.agent.data_dir, "cni.json")
    if not os.path.exists(path):
        return []
    return list(json.loads(Path(path).read_text())["attachments"])


def test_every_verb_in_each_version(tool: tuple[Tool, list[str]]) -> None:
    t, made = tool
    assert t("version", "netfabric").stdout.strip().split(",") == [
        "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    for n, version in enumerate(["0.4.0", "1.0.0"]):
        ns = _netns(t, made, n)
        conf = t.conf(version)
        add = t("add", conf, ns)
        assert add.returncode == 0, add.stderr
        res = json.loads(add.stdout)
        assert res["cniVersion"] == version
        (ip,) = res["ips"]
        assert ip["address"].startswith("10.232.0.") and ip["gateway"] == "10.232.0.1"
        assert ("version" in ip) == (version == "0.4.0")
        assert res["interfaces"][ip["interface"]]["sandbox"] == ns
        assert res["dns"]["nameservers"] == ["127.0.0.11"]
        assert _addr(t, ns) == [ip["address"]]
        assert t("check", conf, ns).returncode == 0
        again = t("add", conf, ns)
        assert again.returncode == 1 and "code 102" in again.stderr, again.stderr
        # CHECK sees a broken interface
        t.host("ip", "-n", os.path.basename(ns), "addr", "flush", "dev", "eth0", check=True)
        broken = t("check", conf, ns)
        assert broken.returncode == 1 and "lacks its address" in broken.stderr
        assert t("del", conf, ns).returncode == 0
        assert t("del", conf, ns).returncode == 0
        assert _addr(t, ns) == [] and _attachments(t) == []
        gone = t("check", conf, ns)
        assert gone.returncode == 1 and "code 3" in gone.stderr


def test_chained_with_a_reference_plugin_and_bad_input(tool: tuple[Tool, list[str]]) -> None:
    t, made = tool
    ns = _netns(t, made, 0)
    conf = t.conf("1.0.0", chain=True)
    add = t("add", conf, ns, env={"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=chained;"
                                  "IP=10.232.0.77"})
    assert add.returncode == 0, add.stderr
    assert json.loads(add.stdout)["ips"][0]["address"] == "10.232.0.77/24"
    link = t.host("ip", "-n", os.path.basename(ns), "-j", "link", "show", "eth0", check=True)
    assert json.loads(link.stdout)[0]["mtu"] == 1400       # tuning ran on our prevResult
    assert t("check", conf, ns).returncode == 0
    assert t("del", conf, ns).returncode == 0
    # a missing netns, a bad config, an unknown network, a version we do not speak
    missing = t("add", t.conf("1.0.0"), f"/run/netns/{t.lab.prefix}-nope")
    assert missing.returncode == 1 and "code 3" in missing.stderr, missing.stderr
    bad = t("raw", "ADD", t.raw_conf("1.0.0", network=5), ns, "eth0", "c1")
    assert bad.returncode == 1 and "code 7" in bad.stderr, bad.stderr
    unknown = t("raw", "ADD", t.raw_conf("1.0.0", network="nonet"), ns, "eth0", "c1")
    assert unknown.returncode == 1 and "code 101" in unknown.stderr
    assert "nonet" in unknown.stderr
    old = t("raw", "ADD", t.raw_conf("0.2.0"), ns, "eth0", "c1")
    assert old.returncode == 1 and "code 1:" in old.stderr
    noenv = t("raw", "ADD", t.raw_conf("1.0.0"))
    assert noenv.returncode == 1 and "code 4" in noenv.stderr
    assert _attachments(t) == [] and _addr(t, ns) == []


def test_gc_status_and_a_killed_agent(tool: tuple[Tool, list[str]]) -> None:
    t, made = tool
    ns1, ns2 = _netns(t, made, 1), _netns(t, made, 2)
    add = t("raw", "ADD", t.raw_conf("1.1.0"), ns1, "eth0", "keep")
    assert add.returncode == 0 and json.loads(add.stdout)["cniVersion"] == "1.1.0", add.stderr
    assert t("raw", "ADD", t.raw_conf("1.1.0"), ns2, "eth0", "drop").returncode == 0
    assert t("raw", "STATUS", t.raw_conf("1.1.0")).returncode == 0
    gc = t("raw", "GC", t.raw_conf("1.1.0", **{
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}))
    assert gc.returncode == 0, gc.stderr
    assert [a["container_id"] for a in _attachments(t)] == ["keep"]
    assert _addr(t, ns2) == [] and len(_addr(t, ns1)) == 1
    # the agent killed: STATUS is "not available", ADD asks to retry, DEL still succeeds
    t.lab.stop_agent(t.agent)
    status = t("raw", "STATUS", t.raw_conf("1.1.0"))
    assert status.returncode == 1 and "code 50" in status.stderr
    late = t("raw", "ADD", t.raw_conf("1.1.0"), ns2, "eth0", "late")
    assert late.returncode == 1 and "code 11" in late.stderr
    assert t("raw", "DEL", t.raw_conf("1.1.0"), ns2, "eth0", "late").returncode == 0
    # restarted, it takes the attachment back: CHECK passes, DEL removes it
    t.lab.start_agent(t.agent)
    t.lab.wait_ready(t.agent)
    check = t("raw", "CHECK", t.raw_conf("1.1.0"), ns1, "eth0", "keep")
    assert check.returncode == 0, check.stderr
    assert t("raw", "DEL", t.raw_conf("1.1.0"), ns1, "eth0", "keep").returncode == 0
    assert _attachments(t) == [] and _addr(t, ns1) == []
    # DEL after the runtime already removed the netns, and DEL with no netns at all
    assert t("raw", "ADD", t.raw_conf("1.1.0"), ns2, "eth0", "gone").returncode == 0
    t.host("ip", "netns", "del", os.path.basename(ns2), check=True)
    assert t("raw", "DEL", t.raw_conf("1.1.0"), ns2, "eth0", "gone").returncode == 0
    assert t("raw", "DEL", t.raw_conf("1.1.0"), "", "eth0", "gone").returncode == 0
    assert _attachments(t) == []
