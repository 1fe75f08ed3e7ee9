"""netfabric-cni without root: the pure core (env + stdin -> request, answer -> result or
error object), the executable's paths that need no agent, and the agent's ``cni`` verb over
an agent of fakes (kernel, DNS, gossip) with a fake netns probe and DNAT table."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from netfabric.agent.fakes import FakeLayers
from netfabric.plugin.cni import spec
from netfabric.plugin.cni.main import run
from netfabric.plugin.cni.ports import Mapped, render
from netfabric.plugin.cni.service import CniService, Probe, endpoint_id
from netfabric.plugin.cni.spec import CniError, parse, result

CID = "0123456789abcdef" * 4
NETNS = "/run/netns/netns-1234"


def env(command: str, **extra: str) -> dict[str, str]:
    out = {"CNI_COMMAND": command, "CNI_CONTAINERID": CID, "CNI_NETNS": NETNS,
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    out.update(extra)
    return out


def conf(version: str = "1.0.0", **extra: Any) -> bytes:
    c: dict[str, Any] = {"cniVersion": version, "name": "podnet", "type": "netfabric"}
    c.update(extra)
    return json.dumps(c).encode()


def code_of(e: dict[str, str], stdin: bytes) -> int:
    with pytest.raises(CniError) as info:
        parse(e, stdin)
    return info.value.code


# -- the pure core ----------------------------------------------------------------------------

def test_podman_inputs_become_one_agent_request() -> None:
    rc = {"aliases": {"podnet": ["web", "3f2a"], "other": ["x"]},
          "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
          "ips": ["10.7.0.9/24"], "mac": "02:00:00:00:00:07"}
    req = parse(env("ADD", CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web;FOO=1"),
                conf(network="ovl", runtimeConfig=rc))
    body = req.to_agent()
    assert body["network"] == "ovl" and body["name"] == "podnet"
    assert body["pod_name"] == "web" and body["aliases"] == ["web", "3f2a"]
    assert body["ip"] == "10.7.0.9" and body["mac"] == "02:00:00:00:00:07"
    assert body["port_mappings"] == [{"hostPort": 8080, "containerPort": 80,
                                      "protocol": "tcp", "hostIP": ""}]
    # without "network" the conflist's name is the netfabric network; IP=/MAC= from CNI_ARGS
    args = "IgnoreUnknown=1;K8S_POD_NAME=a;IP=10.7.0.5;MAC=02:aa:00:00:00:01"
    req = parse(env("ADD", CNI_ARGS=args), conf())
    assert (req.network, req.to_agent()["ip"], req.to_agent()["mac"]) == (
        "podnet", "10.7.0.5", "02:aa:00:00:00:01")


def test_bad_input_gets_the_specs_codes() -> None:
    assert code_of({}, conf()) == spec.ERR_INVALID_ENV
    assert code_of(env("BOGUS"), conf()) == spec.ERR_INVALID_ENV
    assert code_of(env("ADD"), b"{not json") == spec.ERR_DECODE
    assert code_of(env("ADD"), b"[]") == spec.ERR_DECODE
    assert code_of(env("ADD"), conf("0.2.0")) == spec.ERR_VERSION
    assert code_of(env("ADD"), conf("one")) == spec.ERR_INVALID_CONFIG
    assert code_of(env("ADD"), json.dumps({"cniVersion": "1.0.0"}).encode()) == 7
    assert code_of(env("ADD"), conf(type="bridge")) == spec.ERR_INVALID_CONFIG
    assert code_of(env("CHECK"), conf("0.3.1")) == spec.ERR_VERSION
    assert code_of(env("GC"), conf("1.0.0")) == spec.ERR_VERSION
    assert code_of(env("STATUS"), conf("0.4.0")) == spec.ERR_VERSION
    assert code_of(env("ADD", CNI_NETNS=""), conf()) == spec.ERR_INVALID_ENV
    assert code_of(env("ADD", CNI_CONTAINERID="-bad id"), conf()) == spec.ERR_INVALID_ENV
    assert code_of(env("ADD", CNI_IFNAME="a" * 16), conf()) == spec.ERR_INVALID_ENV
    assert code_of(env("ADD", CNI_ARGS="FOO=1"), conf()) == spec.ERR_INVALID_ENV
    assert code_of(env("ADD", CNI_ARGS="novalue"), conf()) == spec.ERR_INVALID_ENV
    two_ips = {"ips": ["10.7.0.5/24", "10.7.0.6/24"]}
    assert code_of(env("ADD"), conf(runtimeConfig=two_ips)) == spec.ERR_UNSUPPORTED_FIELD
    bad_port = {"portMappings": [{"hostPort": 0, "containerPort": 80}]}
    assert code_of(env("ADD"), conf(runtimeConfig=bad_port)) == spec.ERR_INVALID_CONFIG
    assert code_of(env("GC"), conf("1.1.0", **{"cni.dev/valid-attachments": [{}]})) == 7
    # DEL without a netns is fine (the runtime may have removed it already)
    assert parse(env("DEL", CNI_NETNS=""), conf()).netns == ""


def test_results_in_each_version_and_chained() -> None:
    att = {"ifname": "eth0", "mac": "02:00:00:00:00:05", "netns": NETNS,
           "address": "10.7.0.5/24", "gateway": "10.7.0.1", "default_route": True,
           "dns": ["127.0.0.11"]}
    new = result(parse(env("ADD"), conf("1.0.0")), att)
    assert new == {"cniVersion": "1.0.0",
                   "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:05",
                                   "sandbox": NETNS}],
                   "ips": [{"address": "10.7.0.5/24", "gateway": "10.7.0.1", "interface": 0}],
                   "routes": [{"dst": "0.0.0.0/0", "gw": "10.7.0.1"}],
                   "dns": {"nameservers": ["127.0.0.11"]}}
    old = result(parse(env("ADD"), conf("0.4.0")), att)
    assert old["cniVersion"] == "0.4.0" and old["ips"][0]["version"] == "4"
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo0"}],
            "ips": [{"address": "192.0.2.5/32", "interface": 0}]}
    chained = result(parse(env("ADD"), conf("1.0.0", prevResult=prev)), att)
    assert [i["name"] for i in chained["interfaces"]] == ["lo0", "eth0"]
    assert chained["ips"][1]["interface"] == 1
    assert result(parse(env("ADD", CNI_IFNAME="eth1"), conf()),
                  {**att, "ifname": "eth1", "default_route": False}).get("routes") is None


def test_version_and_error_objects() -> None:
    assert spec.version_answer(conf("0.4.0"))["cniVersion"] == "0.4.0"
    assert "1.1.0" in spec.version_answer(b"")["supportedVersions"]
    err = spec.error_object("1.0.0", CniError(3, "netns gone\nsecond line"))
    assert err == {"cniVersion": "1.0.0", "code": 3, "msg": "netns gone"}
    assert spec.code_for_kind("AgentUnreachable") == spec.ERR_TRY_LATER
    assert spec.code_for_kind("PoolExhausted") == spec.OUR_CODES["IPAMError"]
    assert spec.code_for_kind("SomethingNew") == 100


# -- the executable, where no agent is needed --------------------------------------------------

def test_executable_without_an_agent(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    code, out = run({"CNI_COMMAND": "VERSION"}, conf("1.0.0"))
    assert code == 0 and out is not None and out["cniVersion"] == "1.0.0"
    code, out = run({"CNI_COMMAND": "VERSION"}, b"{bad")
    assert code == 1 and out is not None and out["code"] == spec.ERR_DECODE
    # DEL succeeds when the agent is gone; ADD asks to try later; STATUS is "not available"
    assert run(env("DEL", NETFABRIC_HOST=sock), conf()) == (0, None)
    code, out = run(env("ADD", NETFABRIC_HOST=sock), conf())
    assert code == 1 and out is not None and out["code"] == spec.ERR_TRY_LATER
    assert sock in out["msg"]
    code, out = run({"CNI_COMMAND": "STATUS", "NETFABRIC_HOST": sock}, conf("1.1.0"))
    assert code == 1 and out is not None and out["code"] == spec.ERR_NOT_AVAILABLE
    code, out = run(env("ADD"), conf("9.9.9"))
    assert code == 1 and out is not None and out["code"] == spec.ERR_VERSION


# -- the agent's verb over fakes --------------------------------------------------------------

class FakeProbe(Probe):
    def __init__(self) -> None:
        self.netns: set[str] = {NETNS}
        self.links: dict[tuple[str, str], dict[str, Any]] = {}
        self.routes: dict[str, list[dict[str, Any]]] = {}

    def exists(self, netns_path: str) -> bool:
        return netns_path in self.netns

    async def ip_json(self, netns: str, *args: str) -> list[dict[str, Any]] | None:
        if args[0] == "route":
            return self.routes.get(netns, [])
        link = self.links.get((netns, args[-1]))
        return None if link is None else [link]


class FakePorts:
    def __init__(self) -> None:
        self.body = ""

    async def apply(self, attachments: Iterable[Mapped]) -> None:
        self.body = render(attachments)


def _service(tmp_path: Path) -> tuple[FakeLayers, Any, CniService, FakeProbe, FakePorts]:
    layers = FakeLayers()
    core = layers.core(str(tmp_path))
    probe, ports = FakeProbe(), FakePorts()
    svc = CniService(core, probe=probe, ports=ports)  # type: ignore[arg-type]
    return layers, core, svc, probe, ports


def _req(command: str, **extra: Any) -> dict[str, Any]:
    body = parse(env(command, CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web"),
                 conf(network="br1", runtimeConfig={"aliases": {"podnet": ["web", "w1"]}})
                 ).to_agent()
    body.update(extra)
    return body


def test_add_check_del_gc_over_the_agent(tmp_path: Path) -> None:
    layers, core, svc, probe, _ports = _service(tmp_path)
    eid = endpoint_id(CID, "eth0")

    async def go() -> None:
        await core.start()
        await core.create_network("br1", driver="bridge", subnet="10.9.0.0/24")
        net_id = next(n.id for n in await core.networks() if n.name == "br1")
        att = await svc.handle(_req("ADD"))
        assert att["address"].startswith("10.9.0.") and att["gateway"] == "10.9.0.1"
        assert att["dns"] == ["127.0.0.11"] and att["default_route"]
        assert layers.kernel.attached[eid] == (NETNS, "eth0")
        assert layers.names.records[(net_id, "web")][0] == att["address"].split("/")[0]
        assert layers.names.aliases[(net_id, "web")] == ("w1",)
        assert layers.names.served["netns-1234"] == frozenset({net_id})
        saved = json.loads((tmp_path / "cni.json").read_text())
        assert [a["container_id"] for a in saved["attachments"]] == [CID]
        # a second ADD of the same attachment, an existing interface, a missing netns
        assert (await svc.handle(_req("ADD")))["cni_error"]["code"] == 102
        probe.links[("netns-1234", "eth1")] = {"address": "x"}
        assert (await svc.handle(_req("ADD", ifname="eth1")))["cni_error"]["code"] == 102
        gone = await svc.handle(_req("ADD", netns="/run/netns/nope", container_id="c2"))
        assert gone["cni_error"]["code"] == spec.ERR_UNKNOWN_CONTAINER
        bad = await svc.handle(_req("ADD", netns="/proc/1/ns/net", container_id="c2"))
        assert bad["cni_error"]["code"] == spec.ERR_INVALID_ENV
        unknown = await svc.handle(_req("ADD", network="nonet", container_id="c2"))
        assert unknown["cni_error"]["code"] == 101 and "nonet" in unknown["cni_error"]["msg"]
        # CHECK: the interface, its address, MAC and default route
        ip, plen = att["address"].split("/")
        probe.links[("netns-1234", "eth0")] = {
            "address": att["mac"], "addr_info": [{"local": ip, "prefixlen": int(plen)}]}
        assert (await svc.handle(_req("CHECK")))["cni_error"]["code"] == 101  # no route yet
        probe.routes["netns-1234"] = [{"gateway": "10.9.0.1", "dev": "eth0"}]
        assert await svc.handle(_req("CHECK")) == {}
        probe.links[("netns-1234", "eth0")]["addr_info"] = []
        assert "lacks its address" in (await svc.handle(_req("CHECK")))["cni_error"]["msg"]
        # DEL twice: both succeed, everything is gone, the address is free again
        assert await svc.handle(_req("DEL")) == {}
        assert await svc.handle(_req("DEL")) == {}
        assert eid not in layers.kernel.attached and (net_id, "web") not in layers.names.records
        assert "netns-1234" not in layers.names.served and svc.records == {}
        assert (await svc.handle(_req("CHECK")))["cni_error"]["code"] == 3
        # GC keeps the valid attachment and removes the other
        del probe.links[("netns-1234", "eth0")]
        probe.netns.add("/run/netns/netns-2")
        assert "address" in await svc.handle(_req("ADD"))
        assert "address" in await svc.handle(_req("ADD", container_id="c2",
                                                  netns="/run/netns/netns-2", pod_name="db"))
        await svc.handle({"command": "GC", "name": "podnet", "network": "br1",
                          "valid_attachments": [[CID, "eth0"]]})
        assert list(svc.records) == [f"{CID}/eth0"]
        assert await svc.handle({"command": "STATUS", "network": "br1"}) == {}
        st = await svc.handle({"command": "STATUS", "network": "nonet"})
        assert st["cni_error"]["code"] == 101
        await core.close()
    asyncio.run(go())


def test_a_failed_add_leaves_nothing(tmp_path: Path) -> None:
    layers, core, svc, _probe, ports = _service(tmp_path)

    async def go() -> None:
        await core.start()
        await core.create_network("br1", driver="bridge", subnet="10.9.0.0/24")
        net_id = next(n.id for n in await core.networks() if n.name == "br1")
        before = set(layers.book.allocated(net_id))
        layers.kernel.fail_attach = OSError("netlink said no")
        with pytest.raises(OSError):
            await svc.handle(_req("ADD"))
        assert svc.records == {} and layers.names.records == {}
        assert set(layers.book.allocated(net_id)) == before
        assert not os.path.exists(tmp_path / "cni.json") or not json.loads(
            (tmp_path / "cni.json").read_text())["attachments"]
        layers.kernel.fail_attach = None
        ok = await svc.handle(_req("ADD", port_mappings=[
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}]))
        assert f"tcp dport 8080 dnat to {ok['address'].split('/')[0]}:80" in ports.body
        await svc.handle(_req("DEL"))
        assert ports.body == ""
        await core.close()
    asyncio.run(go())


def test_port_rules_render() -> None:
    class A:
        ipv4 = "10.9.0.5"
        ports = (("udp", 5353, 53, "198.51.100.2"), ("tcp", 8080, 80, ""))
    body = render([A()])
    assert "ip daddr 198.51.100.2 udp dport 5353 dnat to 10.9.0.5:53" in body
    assert "\t\ttcp dport 8080 dnat to 10.9.0.5:80" in body
    assert "type nat hook prerouting" in body and "type nat hook output" in body
    assert render([]) == ""


def test_cni_install_writes_a_conflist_and_the_plugin(tmp_path: Path) -> None:
    from netfabric.cli.main import main as cli

    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    assert cli(["cni", "install", "--name", "podnet", "--conf-dir", str(conf_dir),
                "--bin-dir", str(bin_dir), "--socket", "/run/x.sock", "ovl"]) == 0
    conf = json.loads((conf_dir / "podnet.conflist").read_text())
    assert conf["cniVersion"] == "1.0.0" and conf["name"] == "podnet"
    (plugin,) = conf["plugins"]
    assert plugin["type"] == "netfabric" and plugin["network"] == "ovl"
    assert plugin["socket"] == "/run/x.sock"
    assert set(plugin["capabilities"]) == {"aliases", "portMappings", "ips", "mac"}
    exe = bin_dir / "netfabric"
    assert os.access(exe, os.X_OK)
    import subprocess
    out = subprocess.run([str(exe)], input=b'{"cniVersion":"0.4.0"}', capture_output=True,
                         env={"CNI_COMMAND": "VERSION"}, check=True).stdout
    assert json.loads(out)["cniVersion"] == "0.4.0"
    assert cli(["cni", "install", "--cni-version", "2.0.0", "--conf-dir", str(conf_dir),
                "--bin-dir", str(bin_dir), "x"]) != 0


def test_version_path_imports_nothing_heavy() -> None:
    """VERSION runs on every podman command: neither json (re, enum) nor typing loads."""
    import subprocess
    import sys

    import netfabric

    root = os.path.dirname(os.path.dirname(os.path.abspath(netfabric.__file__)))
    heavy = "{'json', 're', 'typing', 'enum', 'dataclasses', 'socket', 'selectors'}"
    code = (f"import sys; sys.path.insert(0, {root!r})\n"
            "from netfabric.plugin.cni.main import run\n"
            "code, out = run({'CNI_COMMAND': 'VERSION'}, b'{\"cniVersion\": \"0.4.0\"}')\n"
            "assert code == 0 and out['cniVersion'] == '0.4.0', out\n"
            f"found = sorted({heavy} & set(sys.modules))\n"
            "env = {'CNI_COMMAND': 'ADD', 'CNI_CONTAINERID': 'c1', 'CNI_NETNS': '/run/netns/x',\n"
            "       'CNI_IFNAME': 'eth0', 'NETFABRIC_HOST': '/nonexistent/agent.sock'}\n"
            "code, out = run(env, b'{\"cniVersion\": \"1.0.0\", \"name\": \"n\"}')\n"
            "assert code == 1 and out['code'] == 11, out\n"
            f"found += sorted({heavy} & set(sys.modules))\n"
            "print(','.join(found))\n")
    out = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"VERSION imported {out}"


@pytest.mark.parametrize("text", [
    '{"cniVersion": "1.0.0"}', ' {"a": [1, 2.5, -3e2, true, false, null, "\\u00e9x"]}\n',
    '{"nested": {"k": [{}]}, "s": "q\\"uote"}', "[]", '"str"', "12", "NaN"])
def test_fastjson_agrees_with_json(text: str) -> None:
    from netfabric.plugin.cni.fastjson import dumps, loads
    got, want = loads(text), json.loads(text)
    assert got == want or (got != got and want != want)  # NaN
    assert dumps(want) == json.dumps(want)


@pytest.mark.parametrize("text", ["{bad", '{"a": 1} x', "", "[1,]", '{"a" 1}'])
def test_fastjson_refuses_what_json_refuses(text: str) -> None:
    from netfabric.plugin.cni.fastjson import dumps, loads
    with pytest.raises(ValueError):
        loads(text)
    with pytest.raises(TypeError):
        dumps({"a": object()})
