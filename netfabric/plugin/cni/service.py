"""The agent's side of CNI: the ``cni`` verb of the local API, over :class:`AgentFrontend`.

One *attachment* is one (container id, ifname) of a runtime's netns on a netfabric network:
an address from the agent's IPAM, the interface plumbed by the agent's drivers into the
runtime's netns, the pod's name and aliases published to DNS and gossip (so every host
resolves it), and netfabric's resolver served at 127.0.0.11 in that netns. Attachments are
kept in ``cni.json`` in the agent's data dir (rewritten atomically before an answer), so an
agent restart takes them back (:meth:`CniService.restore`) and DEL, CHECK and GC know them.

- ADD refuses an interface that already exists and undoes every step on a failure.
- DEL is idempotent: an unknown attachment or a netns already gone is success.
- CHECK verifies the record, the netns, the interface, its address and default route.
- GC removes this network's attachments whose (container id, ifname) is not listed valid.
- STATUS answers while the agent can serve ADD on the network (it resolves it).

Port mappings (``runtimeConfig.portMappings``: conmon binds the host port itself) are
nftables DNAT rules in this host's netns, in a table of their own (:mod:`.ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from netfabric.agent.frontend import AgentFrontend
from netfabric.drivers.common import address_mac
from netfabric.errors import (
    AgentUnreachable,
    AlreadyExists,
    InvalidArgument,
    NetfabricError,
    NotFound,
    StoreCorrupt,
)
from netfabric.model import Driver, Endpoint, Network
from netfabric.plugin.cni import spec
from netfabric.plugin.cni.ports import PortTable

__all__ = ["STATE_FILE", "CniService", "Probe", "Record", "endpoint_id", "serve"]

log = logging.getLogger(__name__)

STATE_FILE: Final = "cni.json"
NETNS_DIR: Final = "/run/netns/"


def endpoint_id(container_id: str, ifname: str) -> str:
    """The endpoint id of one attachment (stable: DEL and restarts find it again)."""
    return hashlib.sha256(f"cni/{container_id}/{ifname}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Record:
    """One attachment, as ``cni.json`` keeps it."""

    container_id: str
    ifname: str
    name: str
    """The network configuration's name (GC is per configuration)."""
    network: str
    network_id: str
    netns: str
    ipv4: str
    prefixlen: int
    gateway: str
    mac: str
    pod_name: str = ""
    aliases: tuple[str, ...] = ()
    ports: tuple[tuple[str, int, int, str], ...] = field(default=())
    """(protocol, host port, container port, host IP) of each DNAT."""

    @property
    def key(self) -> str:
        return f"{self.container_id}/{self.ifname}"

    @property
    def endpoint_id(self) -> str:
        return endpoint_id(self.container_id, self.ifname)

    @property
    def sandbox(self) -> str:
        return self.netns[len(NETNS_DIR):]

    def answer(self) -> dict[str, Any]:
        return {"ifname": self.ifname, "mac": self.mac, "netns": self.netns,
                "address": f"{self.ipv4}/{self.prefixlen}", "gateway": self.gateway,
                "default_route": self.ifname == "eth0" and bool(self.gateway),
                "dns": [spec.DNS_SERVER]}


def _load(path: str) -> dict[str, Record]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StoreCorrupt(f"CNI state {path} is unreadable: {exc}") from exc
    out: dict[str, Record] = {}
    try:
        for r in raw.get("attachments", []):
            r = dict(r)
            r["aliases"] = tuple(r.get("aliases", ()))
            r["ports"] = tuple(tuple(p) for p in r.get("ports", ()))
            rec = Record(**r)
            out[rec.key] = rec
    except (TypeError, AttributeError) as exc:
        raise StoreCorrupt(f"CNI state {path} is malformed: {exc}") from exc
    return out


def _save(path: str, records: dict[str, Record]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "attachments": [asdict(r) for r in records.values()]}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Probe:
    """What the service reads of a runtime's netns (the seam tests replace)."""

    def exists(self, netns_path: str) -> bool:
        return os.path.exists(netns_path)

    async def ip_json(self, netns: str, *args: str) -> list[dict[str, Any]] | None:
        """``ip -n NETNS -j ARGS``; None when the command fails (netns or device missing)."""
        proc = await asyncio.create_subprocess_exec(
            "ip", "-n", netns, "-j", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            return None
        try:
            data = json.loads(out or b"[]")
        except ValueError:
            return None
        return data if isinstance(data, list) else None


def _fail(code: int, msg: str) -> dict[str, Any]:
    return {"cni_error": {"code": code, "msg": msg}}


def _str(args: dict[str, Any], key: str) -> str:
    v = args.get(key, "")
    if not isinstance(v, str):
        raise InvalidArgument(f"cni: {key} must be a string")
    return v


class CniService:
    """The ``cni`` verb; ``start``/``close`` as an agent service."""

    def __init__(self, agent: AgentFrontend, *, ports: PortTable | None = None,
                 probe: Probe | None = None) -> None:
        self.agent = agent
        self.probe = probe or Probe()
        self.path = os.path.join(agent.data_dir, STATE_FILE)
        self.records = _load(self.path)
        self.ports = ports or PortTable(agent.host_netns)
        self._lock = asyncio.Lock()
        self.verbs = {"cni": self.handle}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # -- the verb -----------------------------------------------------------------------------

    async def handle(self, args: dict[str, Any]) -> Any:
        command = _str(args, "command")
        async with self._lock:
            try:
                if command == "ADD":
                    return await self._add(args)
                if command == "DEL":
                    return await self._del(args)
                if command == "CHECK":
                    return await self._check(args)
                if command == "STATUS":
                    await self._network(_str(args, "network"))
                    return {}
                if command == "GC":
                    return await self._gc(args)
            except (AgentUnreachable, NotFound, AlreadyExists, InvalidArgument) as exc:
                return _fail(spec.code_for_kind(type(exc).__name__),
                             self.agent.name_ids(str(exc)))
            except NetfabricError as exc:
                return _fail(spec.code_for_kind(type(exc).__name__),
                             self.agent.name_ids(str(exc)))
        raise InvalidArgument(f"cni: unknown command {command!r}")

    async def _add(self, args: dict[str, Any]) -> Any:
        cid, ifname, netns = _str(args, "container_id"), _str(args, "ifname"), _str(args, "netns")
        if not netns.startswith(NETNS_DIR) or "/" in netns[len(NETNS_DIR):]:
            return _fail(spec.ERR_INVALID_ENV, f"CNI_NETNS {netns!r}: netfabric serves named "
                         f"netns under {NETNS_DIR} only")
        if not self.probe.exists(netns):
            return _fail(spec.ERR_UNKNOWN_CONTAINER, f"netns {netns} does not exist")
        key = f"{cid}/{ifname}"
        if key in self.records:
            return _fail(spec.OUR_CODES["AlreadyExists"], f"container {cid[:12]} already has "
                         f"{ifname} on {self.records[key].network}: DEL it first")
        sandbox = netns[len(NETNS_DIR):]
        if await self.probe.ip_json(sandbox, "link", "show", "dev", ifname) is not None:
            return _fail(spec.OUR_CODES["AlreadyExists"],
                         f"interface {ifname} already exists in netns {netns}")
        net = await self._network(_str(args, "network"))
        if args.get("port_mappings") and net.driver is not Driver.BRIDGE:
            return _fail(spec.ERR_UNSUPPORTED_FIELD, f"port mappings need a bridge network; "
                         f"{net.name} is {net.driver.value}: publish with a netfabric service")
        ip = _str(args, "ip") or None
        pod = _str(args, "pod_name")
        aliases = tuple(a for a in args.get("aliases") or () if isinstance(a, str) and a != pod)
        ports = tuple((str(p["protocol"]), int(p["hostPort"]), int(p["containerPort"]),
                       str(p.get("hostIP") or "")) for p in args.get("port_mappings") or ())
        alloc = await self.agent.allocate(net, ip)
        mac = _str(args, "mac") or address_mac(alloc.ipv4, None)
        rec = Record(container_id=cid, ifname=ifname, name=_str(args, "name"),
                     network=net.name, network_id=net.id, netns=netns, ipv4=alloc.ipv4,
                     prefixlen=alloc.prefixlen, gateway=alloc.gateway or "", mac=mac,
                     pod_name=pod, aliases=aliases, ports=ports)
        ep = self._endpoint(net, rec)
        done: list[str] = []
        try:
            await self.agent.attach_endpoint(net, ep, netns_path=netns, ifname=ifname,
                                             gateway=alloc.gateway)
            done.append("attach")
            self.agent.publish(net, ep)
            done.append("publish")
            self.records[key] = rec
            done.append("record")
            await self._names(sandbox)
            done.append("names")
            if ports:
                await self._ports(net)
            _save(self.path, self.records)
        except BaseException:
            await self._undo(net, ep, rec, done)
            raise
        return rec.answer()

    async def _network(self, name: str) -> Network:
        try:
            return await self.agent.resolve_network(name)
        except NotFound as exc:
            raise NotFound(f"netfabric network {name!r} not found: create it (netfabric network "
                           f"create --attachable {name}) or name another in the conflist's "
                           "\"network\"") from exc

    async def _undo(self, net: Network, ep: Endpoint, rec: Record, done: list[str]) -> None:
        """Roll an ADD back, newest step first; every step is tried."""
        with contextlib.suppress(Exception):
            if "record" in done:
                self.records.pop(rec.key, None)
                await self._ports(net)
            if "names" in done:
                await self._names(rec.sandbox)
        with contextlib.suppress(Exception):
            if "publish" in done:
                self.agent.withdraw(net, ep)
        with contextlib.suppress(Exception):
            if "attach" in done:
                await self.agent.detach_endpoint(net, ep, netns_path=rec.netns,
                                                 ifname=rec.ifname)
        with contextlib.suppress(Exception):
            await self.agent.release(net, rec.ipv4)

    def _endpoint(self, net: Network, rec: Record) -> Endpoint:
        return Endpoint(id=rec.endpoint_id, network_id=net.id,
                        sandbox=rec.pod_name or rec.container_id[:12], node_id=self.agent.node_id,
                        mac=rec.mac, ipv4=rec.ipv4, prefixlen=rec.prefixlen,
                        vtep=self.agent.address, aliases=rec.aliases)

    async def _names(self, sandbox: str) -> None:
        """Serve 127.0.0.11 and the services' VIPs in ``sandbox`` for the networks its
        attachments are on (or stop)."""
        nets = frozenset(r.network_id for r in self.records.values() if r.sandbox == sandbox)
        path = NETNS_DIR + sandbox
        if nets and self.probe.exists(path):
            await self.agent.open_names(sandbox, path, nets)
            await self.agent.open_services(path, nets)
        else:
            await self.agent.close_names(sandbox)
            await self.agent.close_services(path)

    async def _ports(self, net: Network) -> None:
        """Program the DNAT of every attachment with port mappings (the whole table)."""
        await self.ports.apply(self.records.values())

    async def _remove(self, rec: Record) -> None:
        """Every trace of an attachment: names, DNAT, interface, address, record."""
        self.records.pop(rec.key, None)
        try:
            net = await self.agent.resolve_network(rec.network_id)
        except NotFound:
            net = None
        if net is not None:
            ep = self._endpoint(net, rec)
            self.agent.withdraw(net, ep)
            if rec.ports:
                await self._ports(net)
            with contextlib.suppress(NotFound):
                await self._names(rec.sandbox)
            await self.agent.detach_endpoint(net, ep, netns_path=rec.netns, ifname=rec.ifname)
            await self.agent.release(net, rec.ipv4)
        else:
            with contextlib.suppress(NotFound):
                await self._names(rec.sandbox)
        _save(self.path, self.records)

    async def _del(self, args: dict[str, Any]) -> Any:
        key = f"{_str(args, 'container_id')}/{_str(args, 'ifname')}"
        rec = self.records.get(key)
        if rec is not None:
            await self._remove(rec)
        return {}

    async def _check(self, args: dict[str, Any]) -> Any:
        cid, ifname = _str(args, "container_id"), _str(args, "ifname")
        rec = self.records.get(f"{cid}/{ifname}")
        if rec is None:
            return _fail(spec.ERR_UNKNOWN_CONTAINER,
                         f"container {cid[:12]} has no {ifname} on a netfabric network here")
        if not self.probe.exists(rec.netns):
            return _fail(spec.ERR_UNKNOWN_CONTAINER, f"netns {rec.netns} does not exist")
        addrs = await self.probe.ip_json(rec.sandbox, "addr", "show", "dev", ifname)
        if not addrs:
            return _fail(spec.OUR_CODES["NotFound"],
                         f"interface {ifname} is missing from netns {rec.netns}")
        have = {(a.get("local"), a.get("prefixlen")) for a in addrs[0].get("addr_info", [])}
        if (rec.ipv4, rec.prefixlen) not in have:
            return _fail(spec.OUR_CODES["NotFound"], f"{ifname} in {rec.netns} lacks its "
                         f"address {rec.ipv4}/{rec.prefixlen}")
        if str(addrs[0].get("address", "")).lower() != rec.mac.lower():
            return _fail(spec.OUR_CODES["NotFound"], f"{ifname} in {rec.netns} has MAC "
                         f"{addrs[0].get('address')}, not {rec.mac}")
        if rec.answer()["default_route"]:
            routes = await self.probe.ip_json(rec.sandbox, "route", "show", "default") or []
            if not any(r.get("gateway") == rec.gateway and r.get("dev") == ifname
                       for r in routes):
                return _fail(spec.OUR_CODES["NotFound"], f"netns {rec.netns} lacks its default "
                             f"route via {rec.gateway} dev {ifname}")
        return {}

    async def _gc(self, args: dict[str, Any]) -> Any:
        name = _str(args, "name")
        valid = {f"{v[0]}/{v[1]}" for v in args.get("valid_attachments") or ()
                 if isinstance(v, list) and len(v) == 2}
        for rec in [r for r in self.records.values() if r.name == name and r.key not in valid]:
            try:
                await self._remove(rec)
            except NetfabricError as exc:
                log.warning("cni: GC of %s failed: %s", rec.key, exc)
        return {}

    # -- recovery -----------------------------------------------------------------------------

    async def restore(self) -> None:
        """After an agent restart, before its reconcile: plumb and publish every attachment
        whose netns still exists again; drop (and release) the others."""
        async with self._lock:
            for rec in list(self.records.values()):
                try:
                    net = await self.agent.resolve_network(rec.network_id)
                    ep = self._endpoint(net, rec)
                    if not self.probe.exists(rec.netns):
                        self.records.pop(rec.key, None)
                        await self.agent.release(net, rec.ipv4)
                        continue
                    await self.agent.attach_endpoint(net, ep, netns_path=rec.netns,
                                                     ifname=rec.ifname,
                                                     gateway=rec.gateway or None)
                    self.agent.publish(net, ep)
                    await self._names(rec.sandbox)
                except NetfabricError as exc:
                    log.warning("cni: attachment %s not restored: %s", rec.key, exc)
            with contextlib.suppress(NetfabricError):
                await self.ports.apply(self.records.values())
            _save(self.path, self.records)


async def serve(agent: AgentFrontend) -> CniService:
    """The CNI verb for ``agent``; call before the agent starts (registers its recovery)."""
    svc = CniService(agent)
    agent.add_restorer(svc.restore)
    return svc
