"""Services in the agent: definitions from the managers' Store, backends from any node, over gossip.

A manager creates a service (name, networks, endpoint mode, published ports): it takes one
VIP per network from that network's IPAM (VIP mode) and writes the definition as a row of
the Store, in the same transaction (on etcd every manager sees it; on SQLite the one
manager keeps it across restarts), then into the cluster-wide gossip table ``services``.
Every manager republishes the Store's definitions (services, run specs, tasks) into gossip,
and every node keeps a definition in force when the manager that announced it dies
(:mod:`netfabric.services.definitions`): a manager's ``kill -9`` withdraws no VIP, name or
task anywhere, and a restarted manager announces its Store again.

Any node adds a local sandbox as a backend of a service: the entry (in table ``backends``)
is owned by that node, so it goes from every node when the backend is removed, and within
the failure-detection time when the node dies.

Every node turns the two tables into kernel state with a
:class:`~netfabric.services.ServiceFabric` (a VIP load balancer in each local sandbox on a
service's networks) and into DNS records (the service name to its VIP, or every backend in
dnsrr mode; ``tasks.NAME`` to every backend), scoped to the service's networks as container
names are. A burst of table events coalesces into one sync in flight.

**Published ports** (the routing mesh): the first service that publishes a port makes the
manager create the ``ingress`` overlay network, as swarm has one. Every node, once a service
publishes a port, plugs a leg into it in its host netns (``nfingress0``, an address from the
ingress IPAM, announced like any endpoint) and catches the published ports on every local
address there, DNAT to the backends' ingress addresses, masqueraded so replies come back
through it. A backend of a service with published ports is connected to ``ingress``
first, as swarm's tasks are. Host-mode ports are caught only on nodes with a local backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import msgspec

from netfabric.agent.addresses import AddressRouter
from netfabric.agent.context import AgentContext, check_name
from netfabric.agent.endpoints import Endpoints
from netfabric.agent.networks import NetworkRegistry
from netfabric.agent.peers import PeerSync
from netfabric.agent.ports import Allocation, MeshEvent, MeshEventKind
from netfabric.api.types import Role
from netfabric.dataplane.services import configure_leg
from netfabric.dns.records import Records, ServiceMode
from netfabric.drivers.common import address_mac
from netfabric.errors import AlreadyExists, InvalidArgument, NetfabricError, NotFound
from netfabric.model import Driver, Endpoint, Network, Scope
from netfabric.netns import netns_exists
from netfabric.services import (
    Backend,
    EndpointMode,
    NodeView,
    PortConfig,
    Proto,
    PublishMode,
    Service,
    ServiceFabric,
    parse_publish,
)
from netfabric.services.definitions import MARKS, TABLES, Kept, digest, republish

__all__ = ["BACKENDS", "SERVICES", "ServiceRegistry", "decode_backend", "decode_service",
           "encode_backend", "encode_service"]

log = logging.getLogger(__name__)

SERVICES = "services"
BACKENDS = "backends"
RUNSPECS = "runspecs"
TASKS = "tasks"
TASKSTATES = "taskstates"
MANAGER_TABLES = TABLES
"""Definitions: rows of the managers' Store, republished into gossip by every manager."""
KEPT_PREFIX = "kept:"
STATE_FILE = "services.json"
"""In the data dir: the backends this node announced (announced again after a restart:
gossip forgets a restarted node's entries), and the definitions it keeps in force
(``kept:TABLE``), so that a node restarted while no manager answers still has them.
A file of before definitions moved to the Store also lists a manager's definitions under
their table names: they are moved into the Store at start."""
ADOPT_WAIT_S = 30.0
"""How long a netns adopted from Docker may take to appear (Docker's Join comes before the
container's netns is mounted at its SandboxKey)."""
ADOPT_POLL_S = 0.1
REPUBLISH_S = 5.0
"""A manager republishes the Store into gossip this often, and at once after a change or a
definition gone with its node."""
INGRESS = "ingress"
INGRESS_IF = "nfingress0"
LEG = "leg"
"""In the state file: this node's ingress leg (network id -> its address), so that a
restarted agent plugs the same leg back, not a second address beside the first."""


class _ServiceEntry(msgspec.Struct, frozen=True):
    """A ``services`` table value: a :class:`Service` with each port as
    ``[target, published, proto, mode]``."""

    name: str
    networks: tuple[str, ...]
    mode: EndpointMode
    vips: tuple[tuple[str, str], ...]
    ports: tuple[tuple[int, int, Proto, PublishMode], ...]


_ENCODER = msgspec.json.Encoder()
_SERVICE = msgspec.json.Decoder(_ServiceEntry)
_BACKEND = msgspec.json.Decoder(Backend)
_SAVED = msgspec.json.Decoder(dict[str, dict[str, str]])
"""The state file: table -> key -> the entry's value."""


def encode_service(s: Service) -> bytes:
    return _ENCODER.encode(_ServiceEntry(
        s.name, s.networks, s.mode, s.vips,
        tuple((p.target, p.published, p.proto, p.mode) for p in s.ports)))


def decode_service(raw: bytes) -> Service:
    """A service from a table value; malformed values are :class:`InvalidArgument`."""
    try:
        v = _SERVICE.decode(raw)
        return Service(v.name, v.networks, v.mode, v.vips,
                       tuple(PortConfig(*port) for port in v.ports))
    except (msgspec.DecodeError, InvalidArgument) as exc:
        raise InvalidArgument(f"malformed service entry: {exc}") from None


def encode_backend(b: Backend) -> bytes:
    return _ENCODER.encode(b)


def decode_backend(raw: bytes) -> Backend:
    try:
        return _BACKEND.decode(raw)
    except (msgspec.DecodeError, InvalidArgument) as exc:
        raise InvalidArgument(f"malformed backend entry: {exc}") from None


def _backend_key(service: str, backend_id: str) -> str:
    return f"{service}/{backend_id}"


class ServiceRegistry:
    """The agent's services; subscribe :meth:`on_mesh_event` to the mesh."""

    def __init__(self, ctx: AgentContext, networks: NetworkRegistry,
                 addresses: AddressRouter, endpoints: Endpoints, peers: PeerSync, *,
                 fabric: ServiceFabric | None = None) -> None:
        self._ctx = ctx
        self._peers = peers
        peers.on_programmed.append(self.schedule)
        self._networks = networks
        self._addresses = addresses
        self._endpoints = endpoints
        self._leg: Endpoint | None = None
        self.listeners: list[Callable[[MeshEvent], Awaitable[None]]] = []
        self._sync_lock = asyncio.Lock()
        self._fabric = fabric
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._dns: dict[tuple[str, str], tuple[object, ...]] = {}
        self._saved = self._load()
        self._kept = Kept({t[len(KEPT_PREFIX):]: {k: v.encode() for k, v in rows.items()}
                           for t, rows in self._saved.items() if t.startswith(KEPT_PREFIX)})
        self._republisher: asyncio.Task[None] | None = None
        self._adopted: dict[str, frozenset[str]] = {}
        """Netns made by others (Docker, CNI) by path, and their networks."""
        self._pending: dict[str, float] = {}
        """Adopted netns not seen mounted yet, and since when they are waited for."""
        self._republish_soon = asyncio.Event()

    def fabric(self) -> ServiceFabric:
        if self._fabric is None:
            ctx = self._ctx
            self._fabric = ServiceFabric(NodeView(ctx.node_id, {}, ctx.config.host_netns))
        return self._fabric

    # -- what this node announced, kept across restarts ------------------------------------

    def _path(self) -> str:
        return os.path.join(self._ctx.config.data_dir, STATE_FILE)

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            with open(self._path(), "rb") as f:
                raw = _SAVED.decode(f.read())
            return {t: dict(rows) for t, rows in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring unreadable %s: %s", self._path(), exc)
            return {}

    def _write(self) -> None:
        tmp = f"{self._path()}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(_ENCODER.encode(self._saved))
        os.replace(tmp, self._path())

    def _announce(self, table: str, key: str, value: bytes | None) -> None:
        """Set (or, ``None``, delete) one of this node's entries, and remember it."""
        if value is None:
            self._ctx.mesh.delete_record(table, key)
        else:
            self._ctx.mesh.set_record(table, key, value)
        rows = self._saved.setdefault(table, {})
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value.decode()
        self._write()

    async def resume(self) -> None:
        """After a restart: announce again the backends whose sandbox is still here; a
        manager moves the definitions of an older state file into the Store and
        republishes the Store; then sync."""
        ctx = self._ctx
        if ctx.role is Role.MANAGER:
            await self._upgrade()
        names = {sb.name for sb in ctx.ledger.state.sandboxes.values()}
        for key, value in dict(self._saved.get(BACKENDS, {})).items():
            try:
                backend = decode_backend(value.encode())
            except InvalidArgument:
                continue
            if backend.id in names:
                ctx.mesh.set_record(BACKENDS, key, value.encode())
            else:
                self._announce(BACKENDS, key, None)
        if ctx.role is Role.MANAGER:
            try:
                await self.republish()
            except NetfabricError as exc:
                log.warning("cannot republish the service definitions: %s", exc)
        if self._republisher is None:
            self._republisher = asyncio.get_running_loop().create_task(self._republish_loop())
        self.schedule()

    async def _upgrade(self) -> None:
        """Definitions a manager announced before they lived in the Store (its state file
        lists them) go into the Store, unless it has them; rows first, then the file
        without them, so a crash in between moves them again."""
        old = {t: self._saved[t] for t in MANAGER_TABLES if self._saved.get(t)}
        if not old:
            return
        ctx = self._ctx
        stored = await ctx.thread(ctx.book.objects, MANAGER_TABLES)
        writes: list[tuple[str, str, bytes | None]] = [
            (t, k, v.encode()) for t, rows in old.items() for k, v in rows.items()
            if k not in stored.get(t, {})]
        await ctx.thread(ctx.book.write_objects, writes)
        for t in old:
            del self._saved[t]
        self._write()
        log.info("moved %d service definitions from %s into the store", len(writes),
                 self._path())

    # -- definitions: the Store, republished; kept in force on every node --------------------

    async def define(self, writes: Sequence[tuple[str, str, bytes | None]]) -> None:
        """Put (or, ``None``, delete) definitions: into the Store, then into gossip."""
        ctx = self._ctx
        ctx.require_manager()
        await ctx.thread(ctx.book.write_objects, writes)
        for table, key, value in writes:
            if value is None:
                ctx.mesh.delete_record(table, key)
            else:
                ctx.mesh.set_record(table, key, value)
        self._republish_soon.set()

    def records(self, table: str) -> dict[str, bytes]:
        """A table as in force here: for a definition table, the live entries and those
        kept since their manager died."""
        live = self._ctx.mesh.records(table)
        return self._kept.view(table, live) if table in MANAGER_TABLES else live

    async def republish(self) -> None:
        """A manager: make gossip hold exactly the Store's definitions, then say so (its
        mark). Live entries are read before the Store (see :func:`republish`)."""
        ctx = self._ctx
        if ctx.role is not Role.MANAGER:
            return
        live = {t: ctx.mesh.records(t) for t in MANAGER_TABLES}
        stored = await ctx.thread(ctx.book.objects, MANAGER_TABLES)
        sets, deletes = republish(stored, live)
        for table, key, value in sets:
            ctx.mesh.set_record(table, key, value)
        for table, key in deletes:
            ctx.mesh.delete_record(table, key)
        mark = digest(stored)
        if ctx.mesh.records(MARKS).get(ctx.node_id) != mark:
            ctx.mesh.set_record(MARKS, ctx.node_id, mark)
        if sets or deletes:
            log.info("republished %d definitions, withdrew %d", len(sets), len(deletes))

    async def _republish_loop(self) -> None:
        while True:
            # (asyncio.timeout, not wait_for: a cancel that meets a set event is never lost)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPUBLISH_S):
                    await self._republish_soon.wait()
            self._republish_soon.clear()
            try:
                await self.republish()
            except NetfabricError as exc:
                log.warning("cannot republish the service definitions: %s", exc)

    def _observe(self) -> None:
        """Take the live definitions and the live managers' marks into what is kept."""
        mesh = self._ctx.mesh
        live = {t: mesh.records(t) for t in MANAGER_TABLES}
        if self._kept.observe(live, mesh.records(MARKS).values()):
            self._save_kept()

    def _save_kept(self) -> None:
        for table, rows in self._kept.saved().items():
            self._saved[KEPT_PREFIX + table] = {k: v.decode() for k, v in rows.items()}
        self._write()

    # -- tables ---------------------------------------------------------------------------

    def _services(self) -> dict[str, Service]:
        out: dict[str, Service] = {}
        for key, raw in self.records(SERVICES).items():
            try:
                svc = decode_service(raw)
            except InvalidArgument as exc:
                log.warning("dropped service entry %s: %s", key, exc)
                continue
            out[svc.name] = svc
        return out

    def _backends(self) -> list[Backend]:
        out = []
        for key, raw in self._ctx.mesh.records(BACKENDS).items():
            try:
                out.append(decode_backend(raw))
            except InvalidArgument as exc:
                log.warning("dropped backend entry %s: %s", key, exc)
        return out

    def service(self, name: str) -> Service:
        return self._service(name)

    def backend_counts(self) -> dict[str, int]:
        """Each service the cluster defines and its active backends (for the metrics)."""
        out = dict.fromkeys(self._services(), 0)
        for b in self._backends():
            if b.active and b.service in out:
                out[b.service] += 1
        return out

    async def network_name(self, network_id: str) -> str:
        """A network's name (a worker asks the manager for one it does not know yet)."""
        return (await self._networks.resolve(network_id)).name

    def _service(self, name: str) -> Service:
        svc = self._services().get(name)
        if svc is None:
            raise NotFound(f"service {name} not found")
        return svc

    # -- sync -----------------------------------------------------------------------------

    async def on_mesh_event(self, event: MeshEvent) -> None:
        if event.kind is MeshEventKind.RECORD_GONE and event.table in MANAGER_TABLES:
            alive = {m.node_id for m in self._ctx.mesh.members() if m.alive}
            if event.node_id in alive or event.node_id == self._ctx.node_id:
                if self._kept.removed(event.table, event.key):   # deleted, not died
                    self._save_kept()
            else:
                self._republish_soon.set()   # gone with its manager: another says it again
        if event.kind is MeshEventKind.NODE_DOWN:
            self._republish_soon.set()
        if event.kind in (MeshEventKind.RECORD_SET, MeshEventKind.RECORD_GONE) and \
                event.table in (SERVICES, BACKENDS, MARKS, *MANAGER_TABLES):
            self.schedule()
        for listener in self.listeners:
            await listener(event)

    def schedule(self) -> None:
        """One sync in flight; run again if more came meanwhile."""
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._job())

    async def _job(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.sync()
            except NetfabricError as exc:
                log.warning("service sync failed: %s", exc)

    async def sync(self) -> None:
        """Make the kernel and DNS of this node match the tables and the local sandboxes
        (one sync at a time: the verbs' own and the event-driven ones)."""
        async with self._sync_lock:
            await self._sync()

    async def _sync(self) -> None:
        ctx = self._ctx
        self._observe()
        fabric = self.fabric()
        services = self._services()
        backends = {(b.service, b.id): b for b in map(self._reachable, self._backends())}
        for svc in fabric.services():
            if svc.name not in services:
                fabric.remove_service(svc.name)
        for svc in services.values():
            fabric.set_service(svc)
        for b in fabric.backends():
            if (b.service, b.id) not in backends:
                fabric.remove_backend(b.service, b.id)
        for b in backends.values():
            fabric.set_backend(b)
        local = {sb.netns: frozenset(ep.network_id for ep in sb.endpoints)
                 for sb in ctx.ledger.state.sandboxes.values() if not sb.external}
        for path, nets in list(self._adopted.items()):
            since = self._pending.get(path)
            if netns_exists(path):
                local[path] = nets
                self._pending.pop(path, None)
            elif since is None or time.monotonic() - since > ADOPT_WAIT_S:
                del self._adopted[path]   # gone without a word, or never came: forget it
                self._pending.pop(path, None)
            else:   # not mounted yet (Docker mounts it after Join): look again soon
                asyncio.get_running_loop().call_later(ADOPT_POLL_S, self.schedule)
        for netns in set(fabric.view.sandboxes) - set(local):
            await ctx.thread(fabric.remove_sandbox, netns)
        for netns, nets in local.items():
            fabric.set_sandbox(netns, nets)
        if any(svc.ports for svc in services.values()):
            try:
                fabric.set_ingress(await self._ensure_leg())
            except NetfabricError as exc:
                log.warning("no leg on the ingress network: %s", exc)
        await ctx.thread(fabric.apply)
        self._sync_dns(fabric)

    async def open_sandbox(self, netns_path: str, networks: frozenset[str]) -> None:
        """A netns made by others (a Docker or CNI container's) gets the VIP load
        balancers of ``networks``'s services."""
        if not netns_path.startswith("/"):
            raise InvalidArgument(f"netns path {netns_path!r} is not absolute")
        if networks:
            if netns_path not in self._adopted:
                self._pending[netns_path] = time.monotonic()
            self._adopted[netns_path] = frozenset(networks)
        else:
            self._adopted.pop(netns_path, None)
        if self._republisher is not None:   # (before resume, a front end's restore: later)
            await self.sync()

    async def close_sandbox(self, netns_path: str) -> None:
        self._pending.pop(netns_path, None)
        if self._adopted.pop(netns_path, None) is not None and self._republisher is not None:
            await self.sync()

    def _reachable(self, b: Backend) -> Backend:
        """``b`` with only the addresses this node can reach now: a remote task's address
        counts once its FDB and neighbour entries are programmed, so that no connection is
        balanced to an address the datapath cannot reach yet (as names wait for it)."""
        if b.node == self._ctx.node_id:
            return b
        addrs = tuple((n, ip) for n, ip in b.addresses if ip in self._peers.reachable(n))
        return b if addrs == b.addresses else replace(b, addresses=addrs)

    async def _ensure_leg(self) -> str:
        """This node's leg on the ingress network, in its host netns (made once)."""
        ctx = self._ctx
        if self._leg is not None:
            return self._leg.network_id
        net = await self._networks.resolve(INGRESS)
        kept = self._saved.get(LEG, {}).get(net.id)
        if kept is not None:
            # The leg of before a restart: same address (still allocated here), same MAC.
            ip, _, plen = kept.partition("/")
            alloc = Allocation(ipv4=ip, prefixlen=int(plen), gateway=None)
        else:
            alloc = await self._addresses.allocate(net, None)
        ep = Endpoint(id=f"ingress-{ctx.node_id}", network_id=net.id,
                      sandbox=f"ingress-{ctx.ledger.state.hostname}", node_id=ctx.node_id,
                      mac=address_mac(alloc.ipv4), ipv4=alloc.ipv4, prefixlen=alloc.prefixlen,
                      vtep=ctx.address)
        host = ctx.config.host_netns
        try:
            await self._endpoints.attach_external(net, ep, netns_path=f"/run/netns/{host}",
                                                  ifname=INGRESS_IF, gateway=None)
            await ctx.thread(configure_leg, host, INGRESS_IF, f"{alloc.ipv4}/{alloc.prefixlen}",
                             ep.mac)
        except BaseException:
            if kept is None:
                await self._addresses.release(net, alloc.ipv4)
            raise
        self._saved[LEG] = {net.id: f"{alloc.ipv4}/{alloc.prefixlen}"}
        self._write()
        self._endpoints.publish(net, ep)
        self._leg = ep
        return net.id

    async def _ingress_network(self) -> Network:
        """The ingress network, made by this manager the first time a port is published."""
        try:
            return self._networks.find(INGRESS)
        except NotFound:
            await self._networks.create(INGRESS, driver="overlay", attachable=True)
            return self._networks.find(INGRESS)

    def _sync_dns(self, fabric: ServiceFabric) -> None:
        records = getattr(self._ctx.names, "records", None)
        if not isinstance(records, Records):
            return
        want = {(r.network_id, r.name): r for r in fabric.records()}
        for key in list(self._dns):
            if key not in want:
                del self._dns[key]
                with contextlib.suppress(NotFound):
                    records.remove_service(*key)
        for key, r in want.items():
            sig = (r.mode, r.vip, r.tasks)
            if self._dns.get(key) == sig:
                continue
            records.set_service(r.network_id, r.name, mode=ServiceMode(str(r.mode)),
                                vip=r.vip, tasks=r.tasks)
            self._dns[key] = sig

    # -- verbs ----------------------------------------------------------------------------

    async def create_service(self, name: str, *, networks: Sequence[str] = (),
                             endpoint_mode: str = "vip",
                             publish: Sequence[str] = ()) -> dict[str, Any]:
        ctx = self._ctx
        ctx.require_manager()
        check_name(name, "service")
        try:
            mode = EndpointMode(endpoint_mode)
        except ValueError as exc:
            raise InvalidArgument(f"invalid endpoint mode {endpoint_mode!r}: vip or dnsrr") \
                from exc
        ports = tuple(parse_publish(p) for p in publish)
        if ports:
            await self._ingress_network()
        async with ctx.lock:
            stored = await ctx.thread(ctx.book.objects, (SERVICES,))
            if name in stored[SERVICES]:
                raise AlreadyExists(f"service {name} already exists")
            nets = []
            for ref in networks:
                net = await self._networks.resolve(ref)
                if net.driver != Driver.OVERLAY or net.scope != Scope.SWARM:
                    raise InvalidArgument(f"network {net.name} is not an overlay network: "
                                          "services need cluster-wide networks")
                nets.append(net)
            net_ids = tuple(n.id for n in nets)
            vip_nets = net_ids if mode is EndpointMode.VIP else ()

            def make(ips: tuple[str, ...]) -> bytes:
                return encode_service(Service(name, net_ids, mode, tuple(zip(vip_nets, ips,
                                                                             strict=True)),
                                              ports))
            # The VIPs and the row in one transaction: a crash leaves both or neither.
            value = await ctx.thread(ctx.book.allocate_object, SERVICES, name, vip_nets, make)
            ctx.mesh.set_record(SERVICES, name, value)
            self._republish_soon.set()
        await self.sync()
        return self._info(decode_service(value))

    async def remove_service(self, name: str) -> None:
        ctx = self._ctx
        ctx.require_manager()
        async with ctx.lock:
            raw = (await ctx.thread(ctx.book.objects, (SERVICES,)))[SERVICES].get(name)
            svc = self._service(name) if raw is None else decode_service(raw)
            # The row and its VIPs go in one transaction, then the gossip entry.
            await ctx.thread(ctx.book.write_objects, [(SERVICES, name, None)],
                             release=svc.vips)
            ctx.mesh.delete_record(SERVICES, name)
            self._kept.removed(SERVICES, name)
            self._republish_soon.set()
        await self.sync()

    async def services(self) -> list[dict[str, Any]]:
        self._ctx.require_manager()
        return [self._info(s) for s in sorted(self._services().values(), key=lambda s: s.name)]

    async def inspect_service(self, name: str) -> dict[str, Any]:
        self._ctx.require_manager()
        return self._info(self._service(name))

    async def add_backend(self, service: str, container: str) -> dict[str, Any]:
        """Make local container ``container`` a backend of ``service`` (its addresses on the
        service's networks), on every node."""
        ctx = self._ctx
        svc = self._service(service)
        sb = next((s for s in ctx.ledger.state.sandboxes.values()
                   if container in (s.name, s.id)), None)
        if sb is None:
            raise NotFound(f"container {container} not found")
        if svc.ports:
            # The routing mesh reaches tasks over the ingress network, as swarm's does.
            ingress = await self._networks.resolve(INGRESS)
            if not any(ep.network_id == ingress.id for ep in sb.endpoints):
                await self._endpoints.connect(INGRESS, sb.name, service_task=True)
            networks = (*svc.networks, ingress.id)
        else:
            networks = svc.networks
        addrs = tuple((ep.network_id, ep.ipv4) for ep in sb.endpoints
                      if ep.network_id in networks and ep.ipv4)
        if not addrs:
            raise InvalidArgument(f"container {sb.name} is on none of the networks of "
                                  f"service {service}")
        backend = Backend(service, sb.name, ctx.node_id, addrs)
        self._announce(BACKENDS, _backend_key(service, backend.id), encode_backend(backend))
        await self.sync()
        return _backend_info(backend)

    async def remove_backend(self, service: str, container: str) -> None:
        """Take ``container`` out of ``service`` everywhere: from here on no new connection
        is sent to it (established ones go on); stop its task only after this returns."""
        self._announce(BACKENDS, _backend_key(service, container), None)
        await self.sync()

    async def forget_container(self, container: str) -> None:
        """Take a local container out of every service it backs (before it goes)."""
        ctx = self._ctx
        sb = next((s for s in ctx.ledger.state.sandboxes.values()
                   if container in (s.name, s.id)), None)
        if sb is None:
            return
        mine = [b for b in self._backends() if b.node == ctx.node_id and b.id == sb.name]
        for b in mine:
            self._announce(BACKENDS, _backend_key(b.service, b.id), None)
        if mine:
            await self.sync()

    def _info(self, svc: Service) -> dict[str, Any]:
        backends = [b for b in self._backends() if b.service == svc.name]
        names = {n.id: n.name for n in self._ctx.ledger.networks()}
        return {
            "name": svc.name,
            "mode": str(svc.mode),
            "networks": [names.get(n, n) for n in svc.networks],
            "vips": [{"network": names.get(n, n), "addr": ip} for n, ip in svc.vips],
            "ports": [str(p) for p in svc.ports],
            "backends": [_backend_info(b) for b in sorted(backends, key=lambda b: b.id)],
        }

    async def close(self) -> None:
        if self._republisher is not None:
            self._republisher.cancel()
            await asyncio.gather(self._republisher, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._fabric is not None:
            await self._ctx.thread(self._fabric.close)


def _backend_info(b: Backend) -> dict[str, Any]:
    return {"id": b.id, "node": b.node, "addresses": [ip for _, ip in b.addresses],
            "active": b.active}
