"""The Docker plugin's handlers, without a socket, over an in-memory fabric.

The fakes here stand in for the agent only in these unit tests; tests/docker runs real
agents and real dockerds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netfabric.errors import (
    AddressInUse,
    AgentUnreachable,
    DataplaneError,
    InUse,
    InvalidArgument,
    ManagerUnreachable,
    NetfabricError,
    NotAManager,
    NotFound,
    PoolExhausted,
    StoreCorrupt,
    StoreError,
    SubnetOverlap,
)
from netfabric.model import Driver
from netfabric.plugin.docker import DockerPlugin, StateFile, mac_for
from netfabric.plugin.docker.agent_fabric import AgentFabric
from netfabric.plugin.docker.backend import Attachment, FabricNetwork
from netfabric.plugin.docker.schema import VERBS, parse_request


@dataclass
class FakeNet:
    net: FabricNetwork
    used: set[str] = field(default_factory=set)
    last: int = 1
    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)


class FakeFabric:
    """netfabric shared by every "host" of a unit test: networks by name, serial addresses."""

    def __init__(self) -> None:
        self.nets: dict[str, FakeNet] = {}
        self.calls: list[str] = []
        self.next_subnet = 0

    def _net(self, name: str) -> FakeNet:
        if name not in self.nets:
            raise NotFound(f"no network {name!r}")
        return self.nets[name]

    async def lookup_network(self, name: str) -> FabricNetwork | None:
        n = self.nets.get(name)
        return n.net if n else None

    async def ensure_network(self, name: str, *, driver: Driver, subnet: str | None,
                             gateway: str | None, ip_range: str | None,
                             options: Mapping[str, str]) -> FabricNetwork:
        self.calls.append(f"ensure {name} {subnet}")
        if name in self.nets:
            return self.nets[name].net
        if subnet is None:
            subnet = await self.propose_subnet(exclude=frozenset())
        for other in self.nets.values():
            if ipaddress.ip_network(subnet).overlaps(ipaddress.ip_network(other.net.subnet)):
                raise SubnetOverlap(f"{subnet} overlaps {other.net.name}")
        gw = gateway or str(next(ipaddress.ip_network(subnet).hosts()))
        net = FabricNetwork(name=name, driver=driver, subnet=subnet, gateway=gw)
        self.nets[name] = FakeNet(net=net, used={gw})
        return net

    async def release_network(self, name: str) -> None:
        self.calls.append(f"release_network {name}")
        n = self.nets.get(name)
        if n is not None and not n.endpoints:
            del self.nets[name]

    async def propose_subnet(self, *, exclude: frozenset[str]) -> str:
        taken = exclude | {n.net.subnet for n in self.nets.values()}
        for i in range(256):
            cand = f"10.9.{i}.0/24"
            if cand not in taken:
                return cand
        raise PoolExhausted("no subnet left")

    async def allocate_address(self, network: str, *, address: str | None) -> str:
        n = self._net(network)
        hosts = list(ipaddress.ip_network(n.net.subnet).hosts())
        if address is not None:
            if ipaddress.ip_address(address) not in ipaddress.ip_network(n.net.subnet):
                raise InvalidArgument(f"{address} outside {n.net.subnet}")
            if address in n.used:
                raise AddressInUse(f"{address} is in use on {network}")
            n.used.add(address)
            return address
        for k in range(len(hosts)):
            cand = str(hosts[(n.last + k) % len(hosts)])
            if cand not in n.used:
                n.used.add(cand)
                n.last = (n.last + k + 1) % len(hosts)
                return cand
        raise PoolExhausted(f"{network} is full")

    async def release_address(self, network: str, address: str) -> None:
        self.calls.append(f"release {network} {address}")
        self._net(network).used.discard(address)

    async def attach(self, network: str, *, endpoint_id: str, address: str,
                     mac: str, sandbox_key: str = "") -> Attachment:
        n = self._net(network)
        self.calls.append(f"attach {network} {address} {mac}")
        n.endpoints[endpoint_id] = (address, mac)
        return Attachment(ifname="nfd" + endpoint_id[:12], gateway=n.net.gateway)

    async def set_names(self, network: str, *, endpoint_id: str,
                        names: tuple[str, ...]) -> None:
        self._net(network).names[endpoint_id] = names

    async def leave(self, network: str, *, endpoint_id: str) -> None:
        self._net(network).left.add(endpoint_id)

    async def detach(self, network: str, *, endpoint_id: str) -> None:
        self.calls.append(f"detach {network} {endpoint_id[:12]}")
        n = self.nets.get(network)
        if n is not None:
            n.endpoints.pop(endpoint_id, None)
            n.names.pop(endpoint_id, None)


class FakeEngine:
    """The names dockerd would list: network id -> name, endpoint id -> names; and its
    events stream: ``(network id, container id)`` put in :attr:`events`, the container's
    ``(endpoint id, name)`` in :attr:`containers`."""

    key = "fake-dockerd"

    def __init__(self) -> None:
        self.networks: dict[str, str] = {}
        self.endpoints: dict[str, tuple[str, ...]] = {}
        self.containers: dict[str, tuple[str, str]] = {}
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.streams = 0
        """How many times the events stream was opened."""

    def gone(self) -> bool:
        return False

    async def connect_events(self, since: float) -> AsyncIterator[tuple[str, str]]:
        self.streams += 1
        yield "", ""   # subscribed
        while True:
            yield await self.events.get()

    async def endpoint_of(self, network_id: str, container_id: str) -> tuple[str, str]:
        return self.containers.get(container_id, ("", ""))

    async def network_name(self, network_id: str) -> str | None:
        return self.networks.get(network_id)

    async def endpoint_names(self, network_id: str, endpoint_id: str) -> tuple[str, ...]:
        return self.endpoints.get(endpoint_id, ())


# ---------------------------------------------------------------------------------------------
# the tests

NID = "a" * 64
NID2 = "b" * 64
EP1 = "e1" + "0" * 62
EP2 = "e2" + "0" * 62


@dataclass
class Host:
    """One "host": a plugin with its own state file and dockerd names, on a shared fabric."""

    plugin: DockerPlugin
    engine: FakeEngine
    state: Path

    async def call(self, verb: str, body: object = None) -> tuple[int, dict[str, Any]]:
        raw = b"" if body is None else json.dumps(body).encode()
        reply = await self.plugin.handle(verb, raw, caller_pid=1234)
        return reply.status, json.loads(reply.body)

    async def ok(self, verb: str, body: object = None) -> dict[str, Any]:
        status, out = await self.call(verb, body)
        assert status == 200 and "Err" not in out, (verb, out)
        return out

    async def err(self, verb: str, body: object = None) -> str:
        _status, out = await self.call(verb, body)
        assert "Err" in out, (verb, out)
        assert out["Error"] == out["Err"], "libnetwork's IPAM client reads Error"
        assert "internal error" not in out["Err"], out
        return str(out["Err"])

    async def create_network(self, nid: str, name: str, *, subnet: str = "",
                             kind: str = "overlay") -> str:
        pool = await self.ok("IpamDriver.RequestPool", {
            "AddressSpace": "netfabric", "Pool": subnet, "SubPool": "", "Options": {},
            "V6": False})
        gw = await self.ok("IpamDriver.RequestAddress", {
            "PoolID": pool["PoolID"], "Address": "",
            "Options": {"RequestAddressType": "com.docker.network.gateway"}})
        await self.ok("NetworkDriver.CreateNetwork", {
            "NetworkID": nid,
            "Options": {"com.docker.network.enable_ipv6": False,
                        "com.docker.network.generic": {"type": kind}},
            "IPv4Data": [{"AddressSpace": "netfabric", "Gateway": gw["Address"],
                          "Pool": pool["Pool"]}], "IPv6Data": []})
        self.engine.networks[nid] = name
        return str(pool["PoolID"])

    async def run(self, nid: str, pool_id: str, ep: str, *, ip: str = "",
                  names: tuple[str, ...] = ()) -> tuple[str, dict[str, Any]]:
        addr = await self.ok("IpamDriver.RequestAddress",
                             {"PoolID": pool_id, "Address": ip, "Options": None})
        await self.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": nid, "EndpointID": ep,
            "Interface": {"Address": addr["Address"], "AddressIPv6": "", "MacAddress": ""},
            "Options": {"com.docker.network.endpoint.exposedports": []}})
        self.engine.endpoints[ep] = names
        join = await self.ok("NetworkDriver.Join", {
            "NetworkID": nid, "EndpointID": ep, "SandboxKey": "/run/docker/netns/abc",
            "Options": {}})
        await self.ok("NetworkDriver.ProgramExternalConnectivity",
                      {"NetworkID": nid, "EndpointID": ep, "Options": {}})
        await self.plugin.settle()
        return str(addr["Address"]), join

    async def rm(self, nid: str, pool_id: str, ep: str, address: str) -> None:
        body = {"NetworkID": nid, "EndpointID": ep}
        await self.ok("NetworkDriver.RevokeExternalConnectivity", body)
        await self.ok("NetworkDriver.Leave", body)
        await self.ok("NetworkDriver.DeleteEndpoint", body)
        await self.ok("IpamDriver.ReleaseAddress",
                      {"PoolID": pool_id, "Address": address.split("/")[0]})


@pytest.fixture
def fabric() -> FakeFabric:
    return FakeFabric()


@pytest.fixture
def make_host(tmp_path: Path, fabric: FakeFabric) -> Callable[[str], Host]:
    def make(name: str) -> Host:
        engine = FakeEngine()
        state = tmp_path / name / "docker-plugin.json"
        plugin = DockerPlugin(fabric, StateFile(state), lambda pid: engine, name_wait_s=0.1,
                              names_wait_s=0.1)
        return Host(plugin=plugin, engine=engine, state=state)
    return make


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_handshake_and_capabilities(make_host: Callable[[str], Host]) -> None:
    h = make_host("h1")

    async def go() -> None:
        assert await h.ok("Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
        assert (await h.ok("NetworkDriver.GetCapabilities"))["Scope"] == "local"
        caps = await h.ok("IpamDriver.GetCapabilities", {})
        assert caps == {"RequiresMACAddress": False, "RequiresRequestReplay": False}
        spaces = await h.ok("IpamDriver.GetDefaultAddressSpaces")
        assert spaces["LocalDefaultAddressSpace"] == "netfabric"
        for verb in ("NetworkDriver.DiscoverNew", "NetworkDriver.DiscoverDelete"):
            assert await h.ok(verb, {"DiscoveryType": 1, "DiscoveryData": {"Address": "x"}}) == {}
    run(go())


def test_lifecycle_leaves_nothing(make_host: Callable[[str], Host], fabric: FakeFabric) -> None:
    h = make_host("h1")

    async def go() -> None:
        pool = await h.create_network(NID, "myoverlay")
        assert fabric.nets == {}, "binding is late: nothing before the first container"
        addr, join = await h.run(NID, pool, EP1, names=("web1", "web"))
        net = fabric.nets["myoverlay"]
        assert addr == "10.9.0.2/24" and net.net.subnet == "10.9.0.0/24"
        assert join == {"InterfaceName": {"SrcName": "nfd" + EP1[:12], "DstPrefix": "eth"},
                        "Gateway": "10.9.0.1", "DisableGatewayService": True}
        assert net.endpoints[EP1] == ("10.9.0.2", "02:42:0a:09:00:02")
        assert net.names[EP1] == ("web1", "web")
        info = await h.ok("NetworkDriver.EndpointOperInfo", {"NetworkID": NID, "EndpointID": EP1})
        assert info["Value"]["ifname"] == "nfd" + EP1[:12]
        await h.rm(NID, pool, EP1, addr)
        assert EP1 in net.left and net.endpoints == {} and net.used == {"10.9.0.1"}
        await h.ok("IpamDriver.ReleaseAddress", {"PoolID": pool, "Address": "10.9.0.1"})
        await h.ok("IpamDriver.ReleasePool", {"PoolID": pool})
        await h.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NID})
        assert fabric.nets == {}, "network rm frees the subnet"
        assert h.plugin.state.pools == {} and h.plugin.state.networks == {}
        assert h.plugin.state.endpoints == {}
    run(go())


def test_same_name_on_two_hosts_is_one_network(make_host: Callable[[str], Host],
                                              fabric: FakeFabric) -> None:
    a, b = make_host("a"), make_host("b")

    async def go() -> None:
        pa = await a.create_network(NID, "shared")
        pb = await b.create_network(NID2, "shared")   # each dockerd has its own id
        addr_a, _ = await a.run(NID, pa, EP1, names=("alpine_host",))
        addr_b, join_b = await b.run(NID2, pb, EP2, names=("alpine_client",))
        assert list(fabric.nets) == ["shared"]
        net = fabric.nets["shared"]
        assert addr_a != addr_b
        assert addr_a.endswith("/24") and addr_b.split("/")[0] in net.used
        assert join_b["Gateway"] == net.net.gateway
        assert set(net.names.values()) == {("alpine_host",), ("alpine_client",)}
        # host a removes its Docker network: the plugin asks the fabric to release the
        # netfabric network (whether it goes is the agent's rule: InUse while b uses it,
        # pinned on the real AgentFabric below and with two real dockerds in tests/docker)
        await a.rm(NID, pa, EP1, addr_a)
        await a.ok("IpamDriver.ReleasePool", {"PoolID": pa})
        fabric.calls.clear()
        await a.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NID})
        assert fabric.calls == ["release_network shared"]
    run(go())


def test_explicit_address_and_conflicts(make_host: Callable[[str], Host]) -> None:
    h = make_host("h1")

    async def go() -> None:
        pool = await h.create_network(NID, "n1", subnet="10.20.0.0/24")
        addr, _ = await h.run(NID, pool, EP1, ip="10.20.0.50")
        assert addr == "10.20.0.50/24"
        err = await h.err("IpamDriver.RequestAddress",
                          {"PoolID": pool, "Address": "10.20.0.50", "Options": {}})
        assert "10.20.0.50" in err and "in use" in err
        err = await h.err("IpamDriver.RequestPool", {"AddressSpace": "netfabric",
                                                     "Pool": "10.20.0.0/25"})
        assert "overlaps 10.20.0.0/24" in err
    run(go())


def test_user_subnet_must_match_existing(make_host: Callable[[str], Host]) -> None:
    a, b = make_host("a"), make_host("b")

    async def go() -> None:
        pa = await a.create_network(NID, "n1", subnet="10.30.0.0/24")
        await a.run(NID, pa, EP1)
        pb = await b.create_network(NID2, "n1", subnet="10.31.0.0/24")
        err = await b.err("IpamDriver.RequestAddress", {"PoolID": pb, "Address": ""})
        assert "has subnet 10.30.0.0/24" in err and "--subnet" in err
        pk = await b.create_network(NID2[:-1] + "c", "n1", subnet="", kind="bridge")
        err = await b.err("IpamDriver.RequestAddress", {"PoolID": pk, "Address": ""})
        assert "overlay network" in err and "-o type=overlay" in err
    run(go())


def test_proposal_adopted_when_new_and_ignored_when_network_exists(
        make_host: Callable[[str], Host], fabric: FakeFabric) -> None:
    a, b = make_host("a"), make_host("b")

    async def go() -> None:
        pa = await a.create_network(NID, "n1")
        await a.run(NID, pa, EP1)
        pb = await b.create_network(NID2, "n1")
        assert b.plugin.state.pools[pb].cidr != fabric.nets["n1"].net.subnet
        addr, join = await b.run(NID2, pb, EP2)
        assert addr.startswith("10.9.0.") and join["Gateway"] == "10.9.0.1"
    run(go())


def test_state_survives_restart(make_host: Callable[[str], Host], fabric: FakeFabric,
                                tmp_path: Path) -> None:
    h = make_host("h1")

    async def go() -> None:
        pool = await h.create_network(NID, "n1")
        addr1, _ = await h.run(NID, pool, EP1)
        again = DockerPlugin(fabric, StateFile(h.state), lambda pid: h.engine,
                             names_wait_s=0.1)
        h2 = Host(plugin=again, engine=h.engine, state=h.state)
        assert again.state.networks[NID].name == "n1"
        addr2, _ = await h2.run(NID, pool, EP2)
        assert addr1 != addr2
        await h2.rm(NID, pool, EP1, addr1)
        assert EP1 not in fabric.nets["n1"].endpoints
    run(go())


def test_corrupt_state_is_refused(tmp_path: Path, fabric: FakeFabric) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(StoreCorrupt, match=r"s\.json"):
        DockerPlugin(fabric, StateFile(path), lambda pid: FakeEngine())


def test_repeats_are_harmless(make_host: Callable[[str], Host]) -> None:
    h = make_host("h1")

    async def go() -> None:
        body = {"AddressSpace": "netfabric", "Pool": "10.40.0.0/24", "V6": False}
        first = await h.ok("IpamDriver.RequestPool", body)
        assert await h.ok("IpamDriver.RequestPool", body) == first
        await h.ok("IpamDriver.ReleasePool", {"PoolID": first["PoolID"]})
        await h.ok("IpamDriver.ReleasePool", {"PoolID": first["PoolID"]})
        await h.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NID})
        await h.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": NID, "EndpointID": EP1})
        await h.ok("NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EP1})
        await h.ok("IpamDriver.ReleaseAddress", {"PoolID": "nfpool-x", "Address": "10.0.0.9"})
        pool = await h.create_network(NID, "n1")
        again = {"NetworkID": NID, "Options": {}, "IPv4Data": [
            {"AddressSpace": "netfabric", "Pool": h.plugin.state.pools[pool].cidr}]}
        await h.ok("NetworkDriver.CreateNetwork", again)
    run(go())


def test_refusals_name_the_fix(make_host: Callable[[str], Host]) -> None:
    h = make_host("h1")

    async def go() -> None:
        err = await h.err("IpamDriver.RequestPool", {"AddressSpace": "x", "V6": True})
        assert "IPv4 only" in err
        err = await h.err("NetworkDriver.CreateNetwork", {"NetworkID": NID, "IPv4Data": [
            {"AddressSpace": "default", "Pool": "172.18.0.0/16"}]})
        assert "--ipam-driver netfabric" in err
        pool = await h.create_network(NID, "n1")
        err = await h.err("NetworkDriver.CreateNetwork", {
            "NetworkID": NID2, "Options": {"com.docker.network.generic": {"type": "macvlan"}},
            "IPv4Data": [{"AddressSpace": "netfabric", "Pool": "10.50.0.0/24"}]})
        assert "type=overlay" in err
        err = await h.err("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EP2})
        assert "unknown endpoint" in err
        err = await h.err("IpamDriver.RequestAddress", {"PoolID": "nfpool-gone"})
        assert "unknown pool" in err
        del h.engine.networks[NID]
        err = await h.err("IpamDriver.RequestAddress", {"PoolID": pool})
        assert "does not list network" in err
    run(go())


def test_unknown_verb_is_404_with_err(make_host: Callable[[str], Host]) -> None:
    h = make_host("h1")
    status, out = run(h.call("NetworkDriver.AllocateNetwork", {"NetworkID": NID}))
    assert status == 404 and "unknown verb" in out["Err"] and "NetworkDriver.Join" in out["Err"]


NOT_OBJECTS: list[bytes] = [b"{", b"[]", b"null", b"42", b'"x"', b"\xff\xfe\x00", b"[" * 100000,
                            b"{}" + b" " * 10, b'{"a": 1} trailing']
BAD_IDS: list[object] = [None, 5, [], {"x": 1}, "../../etc/passwd", "x y", "a;rm -rf /", "a" * 5000]
EPB = {"NetworkID": NID, "EndpointID": EP1}
IPV4 = [{"AddressSpace": "netfabric", "Pool": "10.9.0.0/24", "Gateway": "10.9.0.1/24"}]
# verb -> (a valid body, [(field path, bad value), ...]); every corruption must answer Err
CORRUPT: dict[str, tuple[dict[str, Any], list[tuple[str, object]]]] = {
    "NetworkDriver.CreateNetwork": (
        {"NetworkID": NID2, "Options": {}, "IPv4Data": IPV4},
        [("NetworkID", v) for v in BAD_IDS] + [
            ("Options", "yes"), ("Options", [1]),
            ("Options.com.docker.network.generic", {"type": 5}),
            ("Options.com.docker.network.generic", "type=overlay"),
            ("Options.com.docker.network.enable_ipv6", "true"),
            ("IPv4Data", {}), ("IPv4Data", [5]), ("IPv4Data", [{"Pool": "300.0.0.0/8"}]),
            ("IPv4Data", [{"Pool": "10.9.0.0/24", "Gateway": "gw"}]),
            ("IPv4Data", [{"Pool": "10.9.0.0/24", "AuxAddresses": {"a": 5}}]),
            ("IPv4Data", [{"Pool": "10.9.0.0/24"}] * 65)]),
    "NetworkDriver.DeleteNetwork": ({"NetworkID": NID}, [("NetworkID", v) for v in BAD_IDS]),
    "NetworkDriver.CreateEndpoint": (
        {"NetworkID": NID, "EndpointID": EP2, "Interface": {"Address": "10.9.0.7/24"}},
        [("NetworkID", v) for v in BAD_IDS] + [("EndpointID", v) for v in BAD_IDS] + [
            ("Interface", []), ("Interface.Address", "nope"), ("Interface.Address", 5),
            ("Interface.MacAddress", "zz"), ("Interface.AddressIPv6", "::g/64"),
            ("Options", "x"), ("Options.com.docker.network.endpoint.dnsservers", "1.1.1.1"),
            ("Options.com.docker.network.endpoint.dnsservers", ["dns.example"])]),
    "NetworkDriver.EndpointOperInfo": (EPB, [("NetworkID", v) for v in BAD_IDS]
                                       + [("EndpointID", v) for v in BAD_IDS]),
    "NetworkDriver.DeleteEndpoint": (EPB, [("NetworkID", v) for v in BAD_IDS]
                                     + [("EndpointID", v) for v in BAD_IDS]),
    "NetworkDriver.Leave": (EPB, [("NetworkID", v) for v in BAD_IDS]
                            + [("EndpointID", v) for v in BAD_IDS]),
    "NetworkDriver.RevokeExternalConnectivity": (EPB, [("EndpointID", v) for v in BAD_IDS]),
    "NetworkDriver.ProgramExternalConnectivity": (
        {**EPB, "Options": {}}, [("EndpointID", v) for v in BAD_IDS] + [("Options", "x")]),
    "NetworkDriver.Join": (
        {**EPB, "SandboxKey": "/var/run/docker/netns/1", "Options": {}},
        [("EndpointID", v) for v in BAD_IDS] + [("SandboxKey", 5), ("Options", [])]),
    "NetworkDriver.DiscoverNew": ({"DiscoveryType": 1, "DiscoveryData": {}},
                                  [("DiscoveryType", "1"), ("DiscoveryType", True),
                                   ("DiscoveryType", None)]),
    "NetworkDriver.DiscoverDelete": ({"DiscoveryType": 1}, [("DiscoveryType", 1.5)]),
    "IpamDriver.RequestPool": (
        {"AddressSpace": "netfabric", "Pool": "10.60.0.0/24", "SubPool": "", "V6": False},
        [("AddressSpace", v) for v in BAD_IDS[:4]] + [
            ("Pool", "10.0.0.0/33"), ("Pool", "10.60.0.1/24"), ("Pool", 5), ("Pool", "fd00::/64"),
            ("SubPool", "10.61.0.0/25"), ("V6", "true"), ("Options", {"a": 5}),
            ("Options", "x")]),
    "IpamDriver.ReleasePool": ({"PoolID": "nfpool-x"}, [("PoolID", v) for v in BAD_IDS]),
    "IpamDriver.RequestAddress": (
        {"PoolID": "nfpool-x", "Address": "", "Options": {}},
        [("PoolID", v) for v in BAD_IDS] + [
            ("Address", "1.2.3"), ("Address", 5), ("Options", "x"),
            ("Options", {"RequestAddressType": 5})]),
    "IpamDriver.ReleaseAddress": (
        {"PoolID": "nfpool-x", "Address": "10.9.0.2"},
        [("PoolID", v) for v in BAD_IDS] + [("Address", None), ("Address", "nope"),
                                            ("Address", ["10.9.0.2"])]),
}
FIELDLESS = {"Plugin.Activate", "NetworkDriver.GetCapabilities", "IpamDriver.GetCapabilities",
             "IpamDriver.GetDefaultAddressSpaces"}


def _corrupt(body: dict[str, Any], path: str, value: object) -> bytes:
    out = json.loads(json.dumps(body))
    head, _, rest = path.partition(".")
    if rest:
        inner = out.get(head)
        out[head] = dict(inner) if isinstance(inner, dict) else {}
        out[head][rest] = value
    elif value is None:
        out.pop(head, None)
    else:
        out[head] = value
    return json.dumps(out).encode()


def _snapshot(h: Host, fabric: FakeFabric) -> tuple[bytes, str, list[str]]:
    raw = h.state.read_bytes() if h.state.exists() else b""
    return raw, repr(fabric.nets), list(fabric.calls)


def test_every_verb_has_corruptions() -> None:
    assert set(CORRUPT) | FIELDLESS == set(VERBS)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_hostile_bodies_answer_err_and_change_nothing(
        verb: str, make_host: Callable[[str], Host], fabric: FakeFabric) -> None:
    h = make_host("h1")

    async def go() -> None:
        pool = await h.create_network(NID, "n1", subnet="10.9.0.0/24")
        await h.run(NID, pool, EP1)
        before = _snapshot(h, fabric)
        bodies = [b for b in NOT_OBJECTS if verb not in FIELDLESS or not b.startswith(b"{}")]
        if verb in CORRUPT:
            valid, bad = CORRUPT[verb]
            bodies += [b"", b"{}"] + [_corrupt(valid, path, v) for path, v in bad]
        for body in bodies:
            reply = await h.plugin.handle(verb, body, caller_pid=None)
            out = json.loads(reply.body)
            assert out.get("Err"), (verb, body[:60], out)
            assert "internal error" not in out["Err"]
            assert _snapshot(h, fabric) == before, (verb, body[:60])
    run(go())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=3), max_leaves=8)
fields = st.sampled_from(["NetworkID", "EndpointID", "PoolID", "Address", "Pool", "SubPool",
                          "V6", "Options", "Interface", "IPv4Data", "SandboxKey",
                          "AddressSpace", "DiscoveryType"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(verb=st.sampled_from(sorted(VERBS)),
       body=st.dictionaries(fields, json_values, max_size=6))
def test_fuzzed_requests_never_crash(verb: str, body: dict[str, Any]) -> None:
    fabric = FakeFabric()
    with tempfile.TemporaryDirectory() as tmp:
        plugin = DockerPlugin(fabric, StateFile(Path(tmp) / "s.json"),
                              lambda pid: FakeEngine(), name_wait_s=0.0, names_wait_s=0.0)
        raw = json.dumps(body).encode()
        try:
            parse_request(verb, raw)
            refusal = None
        except InvalidArgument as exc:
            refusal = str(exc)
        reply = asyncio.run(plugin.handle(verb, raw))
        out = json.loads(reply.body)
        assert reply.status == 200 and isinstance(out, dict)
        if refusal is not None:
            # what the schema refuses is refused with its reason, and nothing happens
            assert out.get("Err") == refusal, (out, refusal)
            assert fabric.calls == [] and fabric.nets == {}
            assert not (Path(tmp) / "s.json").exists()
        else:
            # a well-formed request on an empty plugin: an answer, or a clear refusal
            assert "internal error" not in out.get("Err", ""), out
            if "Err" in out:
                assert out["Err"] and fabric.nets == {}, out


class FlakyEngine(FakeEngine):
    """dockerd busy starting the container: the first lookups time out."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def endpoint_names(self, network_id: str, endpoint_id: str) -> tuple[str, ...]:
        if self.failures:
            self.failures -= 1
            raise AgentUnreachable("dockerd API: TimeoutError")
        return await super().endpoint_names(network_id, endpoint_id)


def test_names_lookup_retries_a_busy_dockerd(tmp_path: Path, fabric: FakeFabric) -> None:
    engine = FlakyEngine(failures=3)
    plugin = DockerPlugin(fabric, StateFile(tmp_path / "s.json"), lambda pid: engine,
                          names_wait_s=5.0)
    h = Host(plugin=plugin, engine=engine, state=tmp_path / "s.json")

    async def go() -> None:
        pool = await h.create_network(NID, "n1")
        await h.run(NID, pool, EP1, names=("web1",))
        assert fabric.nets["n1"].names[EP1] == ("web1",)
        assert engine.failures == 0
    run(go())


class StartingEngine(FakeEngine):
    """dockerd starting a container: inspecting it waits until the start completes."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def endpoint_names(self, network_id: str, endpoint_id: str) -> tuple[str, ...]:
        await self.started.wait()
        return await super().endpoint_names(network_id, endpoint_id)


def test_connect_event_publishes_the_name_before_the_start_completes(
        tmp_path: Path, fabric: FakeFabric) -> None:
    """dockerd's connect event (sent while ``docker start`` runs) names the container at
    once; its aliases follow when dockerd has started it. Without the events stream the
    name would wait for the start."""
    engine = StartingEngine()
    plugin = DockerPlugin(fabric, StateFile(tmp_path / "s.json"), lambda pid: engine,
                          names_wait_s=5.0)
    h = Host(plugin=plugin, engine=engine, state=tmp_path / "s.json")
    cid = "c" * 64

    async def go() -> None:
        pool = await h.create_network(NID, "n1")
        addr = await h.ok("IpamDriver.RequestAddress",
                          {"PoolID": pool, "Address": "", "Options": None})
        await h.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": NID, "EndpointID": EP1,
            "Interface": {"Address": addr["Address"], "AddressIPv6": "", "MacAddress": ""}})
        engine.endpoints[EP1] = ("web1", "cccccccccccc", "web")
        await h.ok("NetworkDriver.Join", {"NetworkID": NID, "EndpointID": EP1,
                                          "SandboxKey": "/run/docker/netns/abc", "Options": {}})
        engine.containers[cid] = (EP1, "web1")
        engine.events.put_nowait((NID2, "f" * 64))   # another network's: ignored
        engine.events.put_nowait((NID, cid))
        for _ in range(100):
            if fabric.nets["n1"].names.get(EP1):
                break
            await asyncio.sleep(0.01)
        assert fabric.nets["n1"].names.get(EP1) == ("web1",), "not named at the connect event"
        engine.started.set()
        await plugin.settle()
        assert fabric.nets["n1"].names[EP1] == ("web1", "cccccccccccc", "web")
        assert StateFile(h.state).load().endpoints[EP1].names == ("web1", "cccccccccccc",
                                                                   "web")
        assert engine.streams == 1
        await plugin.aclose()
    run(go())


class NoEventsEngine(FakeEngine):
    """A dockerd whose events stream cannot be opened."""

    async def connect_events(self, since: float) -> AsyncIterator[tuple[str, str]]:
        self.streams += 1
        raise AgentUnreachable("dockerd API: no events")
        yield "", ""   # pragma: no cover (an async generator)


def test_without_the_events_stream_names_come_from_dockerd_at_once(
        tmp_path: Path, fabric: FakeFabric) -> None:
    """No events stream open: the name lookup asks dockerd straight away (as before the
    stream), rather than waiting for a connect event that cannot come."""
    engine = NoEventsEngine()
    plugin = DockerPlugin(fabric, StateFile(tmp_path / "s.json"), lambda pid: engine,
                          names_wait_s=5.0)
    h = Host(plugin=plugin, engine=engine, state=tmp_path / "s.json")

    async def go() -> None:
        pool = await h.create_network(NID, "n1")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await h.run(NID, pool, EP1, names=("web1", "web"))
        assert fabric.nets["n1"].names[EP1] == ("web1", "web")
        assert loop.time() - t0 < 1.0, "waited for a connect event with no stream open"
        assert engine.streams >= 1
        await plugin.aclose()
    run(go())


def test_mac_for() -> None:
    assert mac_for("10.0.0.2") == "02:42:0a:00:00:02"


def test_restore_after_an_agent_restart(fabric: FakeFabric,
                                        make_host: Callable[[str], Host]) -> None:
    """A new plugin over the same state file (the agent was killed) takes back exactly the
    endpoints Docker still holds: joined ones, with their names; not left or unjoined ones."""
    h = make_host("h1")
    ep3 = "e3" + "0" * 62

    async def go() -> None:
        pool = await h.create_network(NID, "ov")
        a1, _ = await h.run(NID, pool, EP1, names=("web1", "web"))
        await h.run(NID, pool, EP2, names=("gone",))
        await h.ok("NetworkDriver.Leave", {"NetworkID": NID, "EndpointID": EP2})
        addr = await h.ok("IpamDriver.RequestAddress",
                          {"PoolID": pool, "Address": "", "Options": None})
        await h.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": NID, "EndpointID": ep3,
            "Interface": {"Address": addr["Address"], "AddressIPv6": "", "MacAddress": ""}})
        fabric.nets["ov"].endpoints.clear()   # the restarted agent's drivers know nothing
        fabric.nets["ov"].names.clear()
        fabric.calls.clear()
        again = DockerPlugin(fabric, StateFile(h.state), lambda pid: h.engine)
        await again.restore()
        await again.restore()                  # idempotent
        ip1 = a1.split("/")[0]
        assert fabric.nets["ov"].endpoints == {EP1: (ip1, mac_for(ip1))}
        assert fabric.nets["ov"].names == {EP1: ("web1", "web")}
        assert again.restore_failures == 0
        # a network the fabric lost is counted and logged; the rest goes on
        del fabric.nets["ov"]
        await again.restore()
        assert again.restore_failures == 1
        # DeleteEndpoint of the left endpoint still works after the restart
        fabric.nets["ov"] = FakeNet(net=FabricNetwork(name="ov", driver=Driver.OVERLAY,
                                                      subnet="10.9.0.0/24", gateway="10.9.0.1"))
        await again.handle("NetworkDriver.DeleteEndpoint",
                           json.dumps({"NetworkID": NID, "EndpointID": EP2}).encode())
        assert EP2 not in again.state.endpoints
    run(go())


def test_state_file_without_names_still_loads(tmp_path: Path) -> None:
    """A state written before names were kept: endpoints load with no names."""
    path = tmp_path / "docker-plugin.json"
    path.write_text(json.dumps({"version": 1, "pools": [], "networks": [], "endpoints": [
        {"endpoint_id": EP1, "network_id": NID, "address": "10.9.0.2/24",
         "mac": "02:42:0a:09:00:02", "ifname": "nfd" + EP1[:12]}]}))
    ep = StateFile(path).load().endpoints[EP1]
    assert ep.names == () and ep.ifname == "nfd" + EP1[:12]
    state = StateFile(path).load()
    StateFile(path).save(state)
    assert StateFile(path).load() == state


class _RemovingAgent:
    """The one agent verb ``release_network`` calls, answering as the agent would."""

    host_netns = "nfx-h1"

    def __init__(self, answer: NetfabricError | None) -> None:
        self.answer = answer
        self.removed: list[str] = []

    async def remove_network(self, name: str) -> None:
        if self.answer is not None:
            raise self.answer
        self.removed.append(name)


@pytest.mark.parametrize("answer, kept_quietly", [
    (None, True),
    (InUse("network shared has active endpoints: alpine_client (node 4e1f)"), True),
    (NotFound("network shared not found"), True),
    (NotAManager("This node is not a swarm manager."), True),
    (InvalidArgument("bridge is a pre-defined network and cannot be removed"), False),
    (ManagerUnreachable("manager at 198.51.100.1:2377 did not answer"), False),
    (DataplaneError("cannot delete nfbr1234"), False),
    (StoreError("cannot write state"), False),
])
def test_real_agent_fabric_release_network_rules(answer: NetfabricError | None,
                                                  kept_quietly: bool) -> None:
    """The rules of the real AgentFabric (not FakeFabric's): a network still used elsewhere,
    already gone, or a worker's view of a cluster network stays without an error; anything
    else reaches dockerd as an error."""
    agent = _RemovingAgent(answer)
    fab = AgentFabric(agent)  # type: ignore[arg-type]
    if kept_quietly:
        asyncio.run(fab.release_network("shared"))
        assert agent.removed == ([] if answer else ["shared"])
    else:
        assert answer is not None
        with pytest.raises(type(answer)):
            asyncio.run(fab.release_network("shared"))
