"""The verbs of libnetwork's remote NetworkDriver and IpamDriver, over :class:`Fabric`.

One method per verb takes its typed request and returns its typed response; :meth:`handle`
decodes a body, dispatches, and maps every :class:`~netfabric.errors.NetfabricError` to
``{"Err": ...}`` (an unexpected bug too, with the traceback only in the agent's log). A
request is fully checked before anything changes, and state is saved before the answer.

How a Docker network finds its netfabric network. The protocol never carries a network's
name: ``RequestPool`` comes first, with at most ``--subnet``, then ``CreateNetwork`` with an
id. So binding is late: the pool Docker records is the user's ``--subnet`` or a subnet
netfabric *proposes* (free now, not reserved), and at the first container (``RequestAddress``
or ``CreateEndpoint``, when dockerd lists the network) the plugin reads the name from dockerd
and ensures the netfabric network of that name, creating it with the pool's subnet. Run on a
second host, the same command binds to the same netfabric network: one subnet, addresses
from one allocator. If the network already existed with another subnet, containers get
netfabric's subnet (Docker's ``network inspect`` then shows the proposal; give ``--subnet`` to
make both agree); a ``--subnet`` that contradicts the existing network is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Final

from netfabric.api.wire import encode_json
from netfabric.errors import (
    AlreadyExists,
    InvalidArgument,
    NetfabricError,
    NotFound,
    SubnetOverlap,
)
from netfabric.model import Driver
from netfabric.plugin.docker import schema as s
from netfabric.plugin.docker.backend import Engine, Fabric, FabricNetwork
from netfabric.plugin.docker.state import (
    DockerNetworkRecord,
    EndpointRecord,
    PluginState,
    PoolRecord,
    StateFile,
)

__all__ = ["ADDRESS_SPACE", "DockerPlugin", "Reply", "mac_for"]

log = logging.getLogger(__name__)

ADDRESS_SPACE: Final = "netfabric"
"""The one address space: netfabric's allocator is the same for local and global networks."""
NAME_WAIT_S: Final = 5.0
"""How long a request waits for dockerd to list its network before failing (seconds)."""
NAMES_WAIT_S: Final = 60.0
"""How long the background lookup of a container's name and aliases keeps trying (seconds):
dockerd answers a container inspect only once the container has started."""
NAMES_POLL_MAX_S: Final = 0.05
"""Longest pause between two lookups of a container's names (seconds)."""
CONNECT_WAIT_S: Final = 2.0
"""How long a joined endpoint's name lookup waits for dockerd's ``connect`` event before
asking dockerd itself (the events stream may be down): seconds."""
EVENTS_REPLAY_S: Final = 10.0
"""An events stream (re)opened replays dockerd's events of the last seconds, so a container
connected while it was down is still named."""
EVENTS_RETRY_S: Final = 0.5
"""Pause before reopening a broken events stream (seconds)."""
_CONTENT_TYPE: Final = "application/vnd.docker.plugins.v1+json"


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status and JSON body."""

    status: int
    body: bytes
    content_type: str = _CONTENT_TYPE


def mac_for(address: str) -> str:
    """Docker's convention: ``02:42`` then the four bytes of the IPv4 address."""
    packed = ipaddress.IPv4Address(address).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def _encode(resp: s.Response) -> bytes:
    return encode_json(resp.to_json())


EngineFactory = Callable[[int | None], Engine]
"""Gives the dockerd API client for the dockerd whose pid called (``None``: unknown)."""


class DockerPlugin:
    """The plugin's handlers. One instance per agent; ``aclose()`` stops its tasks."""

    def __init__(self, fabric: Fabric, state_file: StateFile, engine_for: EngineFactory,
                 *, name_wait_s: float = NAME_WAIT_S,
                 names_wait_s: float = NAMES_WAIT_S) -> None:
        self.fabric = fabric
        self.state_file = state_file
        self.state: PluginState = state_file.load()
        self.engine_for = engine_for
        self.name_wait_s = name_wait_s
        self.names_wait_s = names_wait_s
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        """dockerd -> the task following its events stream."""
        self._streaming: set[str] = set()
        """The dockerds whose events stream is open now."""
        self._connected: dict[str, asyncio.Event] = {}
        """Joined endpoint -> set once dockerd's connect event named it."""
        self._published: dict[str, tuple[str, ...]] = {}
        """Endpoint -> the names published for it."""
        self.restore_failures = 0
        """Endpoints :meth:`restore` could not take back (each one logged)."""

    # -- dispatch -----------------------------------------------------------------------------

    async def handle(self, verb: str, body: bytes, *, caller_pid: int | None = None) -> Reply:
        """Answer one request; never raises, never leaks a traceback to Docker."""
        try:
            req = s.parse_request(verb, body)
        except InvalidArgument as exc:
            status = 404 if verb not in s.VERBS else 200
            return Reply(status, _encode(s.ErrorResponse(str(exc))))
        engine = self.engine_for(caller_pid)
        self._follow(engine)
        try:
            resp = await self.dispatch(verb, req, engine=engine)
        except NetfabricError as exc:
            resp = s.ErrorResponse(str(exc) or type(exc).__name__)
        except Exception as exc:  # a bug: keep serving, say where to look
            log.exception("docker plugin: %s failed", verb)
            resp = s.ErrorResponse(f"netfabric plugin internal error in {verb}: "
                                   f"{type(exc).__name__}: {exc} (see the agent's log)")
        out = _encode(resp)
        if isinstance(resp, s.ErrorResponse):
            log.warning("docker plugin: %s %s -> %s", verb, body[:300], resp.err)
        else:
            log.debug("docker plugin: %s %s -> %s", verb, body[:300], out)
        return Reply(200, out)

    async def dispatch(self, verb: str, req: s.Request, *, engine: Engine) -> s.Response:
        """Run the handler of ``verb``; raises :class:`NetfabricError` on refusal."""
        match verb, req:
            case "Plugin.Activate", s.ActivateRequest():
                return s.ActivateResponse()
            case "NetworkDriver.GetCapabilities", _:
                return s.NetworkCapabilitiesResponse()
            case "IpamDriver.GetCapabilities", _:
                return s.IPAMCapabilitiesResponse()
            case "IpamDriver.GetDefaultAddressSpaces", _:
                return s.AddressSpacesResponse(local=ADDRESS_SPACE, global_=ADDRESS_SPACE)
            case "IpamDriver.RequestPool", s.RequestPoolRequest():
                return await self.request_pool(req)
            case "IpamDriver.ReleasePool", s.ReleasePoolRequest():
                return await self.release_pool(req)
            case "IpamDriver.RequestAddress", s.RequestAddressRequest():
                return await self.request_address(req, engine)
            case "IpamDriver.ReleaseAddress", s.ReleaseAddressRequest():
                return await self.release_address(req)
            case "NetworkDriver.CreateNetwork", s.CreateNetworkRequest():
                return await self.create_network(req)
            case "NetworkDriver.DeleteNetwork", s.NetworkRequest():
                return await self.delete_network(req)
            case "NetworkDriver.CreateEndpoint", s.CreateEndpointRequest():
                return await self.create_endpoint(req, engine)
            case "NetworkDriver.EndpointOperInfo", s.EndpointRequest():
                return self.endpoint_oper_info(req)
            case "NetworkDriver.DeleteEndpoint", s.EndpointRequest():
                return await self.delete_endpoint(req)
            case "NetworkDriver.Join", s.JoinRequest():
                return await self.join(req, engine)
            case "NetworkDriver.Leave", s.EndpointRequest():
                return await self.leave(req)
            case ("NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete",
                  s.DiscoverRequest()):
                return s.EmptyResponse()  # netfabric's gossip discovers nodes itself
            case ("NetworkDriver.ProgramExternalConnectivity"
                  | "NetworkDriver.RevokeExternalConnectivity", _):
                return s.EmptyResponse()  # egress is the driver's; ports are not published
        raise InvalidArgument(f"{verb}: request of the wrong shape ({type(req).__name__})")

    def _save(self) -> None:
        self.state_file.save(self.state)

    # -- IPAM ---------------------------------------------------------------------------------

    async def request_pool(self, req: s.RequestPoolRequest) -> s.RequestPoolResponse:
        if req.v6:
            raise InvalidArgument("netfabric's Docker plugin serves IPv4 only: "
                                  "create the network without --ipv6")
        space = req.address_space or ADDRESS_SPACE
        async with self._lock:
            held = {p.cidr for p in self.state.pools.values()}
            if req.pool:
                old = self.state.pool_by_cidr(space, req.pool)
                if old is not None and not old.network_id:
                    return s.RequestPoolResponse(old.pool_id, old.cidr)  # a harmless repeat
                net = ipaddress.ip_network(req.pool)
                for cidr in held:
                    if net.overlaps(ipaddress.ip_network(cidr)):
                        raise SubnetOverlap(f"subnet {req.pool} overlaps {cidr}, already used "
                                            "by another Docker network on this host")
                cidr, user = req.pool, True
            else:
                cidr, user = await self.fabric.propose_subnet(exclude=frozenset(held)), False
            pool = PoolRecord(pool_id="nfpool-" + secrets.token_hex(8), address_space=space,
                              cidr=cidr, user_subnet=user, ip_range=req.sub_pool)
            self.state.pools[pool.pool_id] = pool
            self._save()
        return s.RequestPoolResponse(pool.pool_id, pool.cidr)

    async def release_pool(self, req: s.ReleasePoolRequest) -> s.EmptyResponse:
        async with self._lock:
            if self.state.pools.pop(req.pool_id, None) is not None:
                self._save()
        return s.EmptyResponse()

    async def request_address(self, req: s.RequestAddressRequest,
                              engine: Engine) -> s.RequestAddressResponse:
        pool = self._pool(req.pool_id)
        if req.gateway:
            return await self._request_gateway(pool, req.address)
        if not pool.network_id:
            raise InvalidArgument(f"pool {pool.cidr} has no network yet: netfabric hands out "
                                  "container addresses only (no --aux-address)")
        fab = await self._bind(pool.network_id, engine)
        async with self._lock:
            addr = await self.fabric.allocate_address(fab.name, address=req.address or None)
        prefix = ipaddress.ip_network(fab.subnet).prefixlen
        return s.RequestAddressResponse(f"{addr}/{prefix}")

    async def _request_gateway(self, pool: PoolRecord, address: str) -> s.RequestAddressResponse:
        net = ipaddress.ip_network(pool.cidr)
        gw = address or str(next(net.hosts()))
        if ipaddress.ip_address(gw) not in net:
            raise InvalidArgument(f"gateway {gw} is not inside the subnet {pool.cidr}")
        async with self._lock:
            if pool.gateway != gw:
                self.state.set_pool(pool, gateway=gw)
                self._save()
        return s.RequestAddressResponse(f"{gw}/{net.prefixlen}")

    async def release_address(self, req: s.ReleaseAddressRequest) -> s.EmptyResponse:
        async with self._lock:
            pool = self.state.pools.get(req.pool_id)
            if pool is None:
                return s.EmptyResponse()
            if pool.gateway == req.address:
                self.state.set_pool(pool, gateway="")
                self._save()
                return s.EmptyResponse()
            rec = self.state.network_of_pool(pool.pool_id)
            if rec is not None and rec.name:
                with contextlib.suppress(NotFound):
                    await self.fabric.release_address(rec.name, req.address)
        return s.EmptyResponse()

    def _pool(self, pool_id: str) -> PoolRecord:
        pool = self.state.pools.get(pool_id)
        if pool is None:
            raise NotFound(f"unknown pool {pool_id!r}: it was released or never requested "
                           "from netfabric")
        return pool

    # -- networks -----------------------------------------------------------------------------

    async def create_network(self, req: s.CreateNetworkRequest) -> s.EmptyResponse:
        kind = req.option("type", Driver.OVERLAY.value)
        if kind not in (Driver.OVERLAY.value, Driver.BRIDGE.value):
            raise InvalidArgument(f"option type={kind!r}: use -o type=overlay or -o type=bridge")
        if req.ipv6 or req.ipv6_data:
            raise InvalidArgument("netfabric's Docker plugin serves IPv4 only: "
                                  "create the network without --ipv6")
        if len(req.ipv4_data) != 1:
            raise InvalidArgument("a netfabric network needs exactly one IPv4 pool: create it "
                                  "with --ipam-driver netfabric and at most one --subnet")
        data = req.ipv4_data[0]
        async with self._lock:
            if req.network_id in self.state.networks:
                return s.EmptyResponse()
            pool = self.state.pool_by_cidr(data.address_space, data.pool)
            if pool is None:
                raise InvalidArgument(f"pool {data.pool} was not handed out by netfabric: "
                                      "create the network with --ipam-driver netfabric")
            if pool.network_id and pool.network_id != req.network_id:
                raise AlreadyExists(f"pool {data.pool} already belongs to Docker network "
                                    f"{pool.network_id[:12]}")
            self.state.set_pool(pool, network_id=req.network_id)
            self.state.networks[req.network_id] = DockerNetworkRecord(
                network_id=req.network_id, pool_id=pool.pool_id, driver=Driver(kind),
                options=tuple(kv for kv in req.options if kv[0] != "type"))
            self._save()
        return s.EmptyResponse()

    async def delete_network(self, req: s.NetworkRequest) -> s.EmptyResponse:
        async with self._lock:
            rec = self.state.networks.pop(req.network_id, None)
            if rec is None:
                return s.EmptyResponse()
            pool = self.state.pools.get(rec.pool_id)
            if pool is not None and pool.network_id == rec.network_id:
                self.state.set_pool(pool, network_id="")
            self._save()
            others = [n for n in self.state.networks.values() if n.name == rec.name]
            if rec.name and not others:
                await self.fabric.release_network(rec.name)
        return s.EmptyResponse()

    async def _bind(self, network_id: str, engine: Engine) -> FabricNetwork:
        """The netfabric network a Docker network stands for, bound on first use."""
        rec = self.state.networks.get(network_id)
        if rec is None:
            raise NotFound(f"unknown Docker network {network_id[:12]}: not created through "
                           "netfabric, or removed")
        name = rec.name or await self._network_name(network_id, engine)
        async with self._lock:
            rec = self.state.networks.get(network_id)
            if rec is None:
                raise NotFound(f"Docker network {network_id[:12]} was removed meanwhile")
            pool = self._pool(rec.pool_id)
            fab = await self._ensure(name, rec, pool)
            if not rec.name:
                self.state.networks[network_id] = DockerNetworkRecord(
                    network_id=rec.network_id, pool_id=rec.pool_id, driver=rec.driver,
                    options=rec.options, name=name)
                self._save()
        return fab

    async def _ensure(self, name: str, rec: DockerNetworkRecord,
                      pool: PoolRecord) -> FabricNetwork:
        fab = await self.fabric.lookup_network(name)
        if fab is None:
            try:
                fab = await self.fabric.ensure_network(
                    name, driver=rec.driver, subnet=pool.cidr, gateway=pool.gateway or None,
                    ip_range=pool.ip_range or None, options=dict(rec.options))
            except SubnetOverlap:
                if pool.user_subnet:
                    raise
                # the proposal was taken meanwhile: let netfabric choose
                fab = await self.fabric.ensure_network(
                    name, driver=rec.driver, subnet=None, gateway=None, ip_range=None,
                    options=dict(rec.options))
        if fab.driver != rec.driver:
            raise InvalidArgument(f"netfabric network {name!r} is a {fab.driver} network: "
                                  f"create the Docker network with -o type={fab.driver}")
        if pool.user_subnet and fab.subnet != pool.cidr:
            raise InvalidArgument(f"netfabric network {name!r} has subnet {fab.subnet}, not "
                                  f"{pool.cidr}: recreate the Docker network with --subnet "
                                  f"{fab.subnet} or without --subnet")
        return fab

    async def _network_name(self, network_id: str, engine: Engine) -> str:
        deadline = asyncio.get_running_loop().time() + self.name_wait_s
        delay = 0.02
        while True:
            name = await engine.network_name(network_id)
            if name:
                return name
            if asyncio.get_running_loop().time() >= deadline:
                raise NotFound(f"dockerd does not list network {network_id[:12]}; netfabric "
                               "needs its name to find the network on other hosts")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    # -- endpoints ----------------------------------------------------------------------------

    async def create_endpoint(self, req: s.CreateEndpointRequest,
                              engine: Engine) -> s.CreateEndpointResponse:
        if not req.address:
            raise InvalidArgument("netfabric needs the endpoint's IPv4 address: create the "
                                  "network with --ipam-driver netfabric")
        if req.address_ipv6:
            raise InvalidArgument("netfabric's Docker plugin serves IPv4 only")
        await self._bind(req.network_id, engine)
        mac = req.mac or mac_for(str(ipaddress.ip_interface(req.address).ip))
        async with self._lock:
            old = self.state.endpoints.get(req.endpoint_id)
            if old is not None and old.network_id != req.network_id:
                raise AlreadyExists(f"endpoint {req.endpoint_id[:12]} exists on another network")
            self.state.endpoints[req.endpoint_id] = EndpointRecord(
                endpoint_id=req.endpoint_id, network_id=req.network_id, address=req.address,
                mac=mac, ifname=old.ifname if old else "")
            self._save()
        return s.CreateEndpointResponse(mac="" if req.mac else mac)

    def endpoint_oper_info(self, req: s.EndpointRequest) -> s.OperInfoResponse:
        ep = self._endpoint(req.network_id, req.endpoint_id)
        return s.OperInfoResponse({"ifname": ep.ifname, "mac": ep.mac, "address": ep.address})

    async def join(self, req: s.JoinRequest, engine: Engine) -> s.JoinResponse:
        ep = self._endpoint(req.network_id, req.endpoint_id)
        fab = await self._bind(req.network_id, engine)
        address = str(ipaddress.ip_interface(ep.address).ip)
        async with self._lock:
            att = await self.fabric.attach(fab.name, endpoint_id=ep.endpoint_id, address=address,
                                           mac=ep.mac, sandbox_key=req.sandbox_key)
            if ep.endpoint_id in self.state.endpoints:
                self.state.endpoints[ep.endpoint_id] = EndpointRecord(
                    endpoint_id=ep.endpoint_id, network_id=ep.network_id, address=ep.address,
                    mac=ep.mac, ifname=att.ifname, sandbox_key=req.sandbox_key)
                self._save()
        self._connected[req.endpoint_id] = asyncio.Event()
        self._spawn(self._publish_names(fab.name, req.network_id, req.endpoint_id, engine))
        return s.JoinResponse(src_name=att.ifname, gateway=att.gateway)

    async def leave(self, req: s.EndpointRequest) -> s.EmptyResponse:
        async with self._lock:
            ep = self.state.endpoints.get(req.endpoint_id)
            rec = self.state.networks.get(req.network_id)
            if ep is not None and rec is not None and rec.name:
                await self.fabric.leave(rec.name, endpoint_id=req.endpoint_id)
            self._published.pop(req.endpoint_id, None)
            if ep is not None and ep.ifname:   # no longer Docker's: not restored
                self.state.endpoints[ep.endpoint_id] = replace(ep, ifname="", sandbox_key="")
                self._save()
        return s.EmptyResponse()

    async def delete_endpoint(self, req: s.EndpointRequest) -> s.EmptyResponse:
        async with self._lock:
            ep = self.state.endpoints.get(req.endpoint_id)
            if ep is None:
                return s.EmptyResponse()
            rec = self.state.networks.get(ep.network_id)
            if rec is not None and rec.name:
                await self.fabric.detach(rec.name, endpoint_id=req.endpoint_id)
            del self.state.endpoints[req.endpoint_id]
            self._published.pop(req.endpoint_id, None)
            self._save()
        return s.EmptyResponse()

    def _endpoint(self, network_id: str, endpoint_id: str) -> EndpointRecord:
        ep = self.state.endpoints.get(endpoint_id)
        if ep is None or ep.network_id != network_id:
            raise NotFound(f"unknown endpoint {endpoint_id[:12]} on network {network_id[:12]}")
        return ep

    # -- agent restart ------------------------------------------------------------------------

    async def restore(self) -> None:
        """Take back the endpoints handed to Docker, after an agent restart and before its
        reconcile: dockerd holds their veths (the inner end in the container) and never
        replays Join. Re-attaching is idempotent; the container's names are republished. A
        failure is logged and counted in :attr:`restore_failures`; the others go on."""
        async with self._lock:
            for ep in list(self.state.endpoints.values()):
                rec = self.state.networks.get(ep.network_id)
                if not ep.ifname or rec is None or not rec.name:
                    continue   # never joined, or left: nothing of it is Docker's
                address = str(ipaddress.ip_interface(ep.address).ip)
                try:
                    await self.fabric.attach(rec.name, endpoint_id=ep.endpoint_id,
                                             address=address, mac=ep.mac,
                                             sandbox_key=ep.sandbox_key)
                    if ep.names:
                        await self.fabric.set_names(rec.name, endpoint_id=ep.endpoint_id,
                                                    names=ep.names)
                        self._published[ep.endpoint_id] = ep.names
                except NetfabricError as exc:
                    self.restore_failures += 1
                    log.warning("docker plugin: endpoint %s (%s on %s) not restored: %s",
                                ep.endpoint_id[:12], address, rec.name, exc)

    # -- names for DNS ------------------------------------------------------------------------

    def _follow(self, engine: Engine) -> None:
        """Follow this dockerd's events stream, once per dockerd."""
        task = self._watchers.get(engine.key)
        if task is None or task.done():
            self._watchers[engine.key] = asyncio.get_running_loop().create_task(
                self._watch(engine))

    async def _watch(self, engine: Engine) -> None:
        """Name each container the moment dockerd connects it to one of our networks (its
        ``connect`` event comes while ``docker start`` still runs), reopening a broken
        stream, until that dockerd is gone."""
        while True:
            try:
                async for network_id, container_id in engine.connect_events(
                        time.time() - EVENTS_REPLAY_S):
                    if not network_id:
                        self._streaming.add(engine.key)
                    elif network_id in self.state.networks:
                        self._spawn(self._on_connect(engine, network_id, container_id))
            except NetfabricError as exc:
                log.debug("docker plugin: events stream of %s: %s", engine.key, exc)
            finally:
                self._streaming.discard(engine.key)
            if engine.gone():
                self._watchers.pop(engine.key, None)
                return
            await asyncio.sleep(EVENTS_RETRY_S)

    async def _on_connect(self, engine: Engine, network_id: str, container_id: str) -> None:
        """Publish the connected container's name at once (its aliases follow from
        :meth:`_publish_names` once dockerd has started it)."""
        try:
            endpoint_id, name = await engine.endpoint_of(network_id, container_id)
        except NetfabricError as exc:
            log.debug("docker plugin: container %s on %s: %s", container_id[:12],
                      network_id[:12], exc)
            return
        rec = self.state.networks.get(network_id)
        try:
            if (name and rec is not None and rec.name and endpoint_id in self.state.endpoints
                    and endpoint_id not in self._published):
                await self._set_names(rec.name, endpoint_id, (name,))
        finally:
            connected = self._connected.get(endpoint_id)
            if connected is not None:
                connected.set()

    async def _set_names(self, network: str, endpoint_id: str, names: tuple[str, ...]) -> None:
        """Publish an endpoint's names (unless already) and keep them, so that a restarted
        agent republishes them."""
        if self._published.get(endpoint_id) == names:
            return
        await self.fabric.set_names(network, endpoint_id=endpoint_id, names=names)
        self._published[endpoint_id] = names
        async with self._lock:
            ep = self.state.endpoints.get(endpoint_id)
            if ep is not None and ep.names != names:
                self.state.endpoints[endpoint_id] = replace(ep, names=names)
                self._save()

    async def _publish_names(self, network: str, network_id: str, endpoint_id: str,
                             engine: Engine) -> None:
        """Publish the container's name and aliases, read from dockerd once it has started
        the container. While dockerd's events stream is open, waits first for its connect
        event (:meth:`_on_connect` then publishes the name at once), at most
        ``CONNECT_WAIT_S``; then asks dockerd,
        retrying (dockerd may be busy starting the container), and gives up with a warning
        after ``names_wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.names_wait_s
        connected = self._connected.get(endpoint_id)
        try:
            if connected is not None and engine.key in self._streaming:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(connected.wait(),
                                           min(CONNECT_WAIT_S, self.names_wait_s))
            delay = 0.02
            error: NetfabricError | None = None
            while True:
                try:
                    names = await engine.endpoint_names(network_id, endpoint_id)
                except NetfabricError as exc:
                    names, error = (), exc
                if endpoint_id not in self.state.endpoints:
                    return
                if names:
                    try:
                        await self._set_names(network, endpoint_id, names)
                    except NetfabricError as exc:
                        log.warning("docker plugin: publishing %s: %s", names[0], exc)
                    return
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, NAMES_POLL_MAX_S)
            log.warning("docker plugin: dockerd never listed endpoint %s (%s)",
                        endpoint_id[:12], error or "not found")
        finally:
            if self._connected.get(endpoint_id) is connected:
                self._connected.pop(endpoint_id, None)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for background name lookups (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop following dockerd's events; cancel background name lookups."""
        tasks = [*self._watchers.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watchers.clear()
        self._tasks.clear()
