"""AgentCore: the agent's service object. Every front end calls these typed methods.

The local HTTP API, the Docker plugin and CNI all end here, so a netfabric sandbox, a
Docker container and a pod share one IPAM and one DNS. The core owns the rules (roles,
names, attachable, rollback) and talks to the layers only through the seams of
:mod:`netfabric.agent.ports`. Mutations are serialised by one lock; kernel work runs in a
worker thread, so the event loop never blocks on netlink or changes netns.

Public methods (stable; the plugin and CNI call them):
``info``, ``init``, ``join``, ``join_token``, ``nodes``, ``update_node``, ``leave``,
``create_network``, ``remove_network``, ``networks``, ``inspect_network``, ``ensure_network``,
``run`` (a new sandbox, or an existing netns by path), ``remove_container``, ``containers``,
``inspect_container``, ``connect``, ``disconnect``; for the manager side of the cluster
endpoint, ``handle_cluster``; and lower-level hooks for front ends that plumb their own
interfaces (the Docker plugin): ``resolve_network``, ``allocate``, ``release``,
``sync_peers``, ``save``, ``lock``, ``mesh_started``, ``add_restorer``, with ``state``,
``kernel``, ``names`` and ``mesh`` as attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from netfabric import __version__
from netfabric.agent import handshake
from netfabric.agent.ports import (
    AddressBook,
    Allocation,
    BlockBook,
    Kernel,
    ManagerCall,
    Mesh,
    MeshEvent,
    MeshEventKind,
    NameService,
)
from netfabric.agent.rpc import DEFAULT_CLUSTER_PORT, ManagerLink, split_addr
from netfabric.agent.state import (
    ClusterRecord,
    EndpointRecord,
    LocalState,
    NetworkRecord,
    NodeRecord,
    SandboxRecord,
    new_id,
)
from netfabric.agent.tokens import make_token, new_cluster_secret, new_role_secret
from netfabric.api.types import (
    Availability,
    ClusterInfo,
    ContainerInfo,
    EndpointInfo,
    JoinToken,
    NetworkInfo,
    NodeInfo,
    NodeStatus,
    Role,
    to_wire,
)
from netfabric.errors import (
    AgentUnreachable,
    AlreadyExists,
    ClusterError,
    InUse,
    InvalidArgument,
    NetfabricError,
    NotAManager,
    NotFound,
    NotInCluster,
    PoolExhausted,
)
from netfabric.ipam.addr import IPFamily
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec

__all__ = ["NOT_A_MANAGER", "AgentConfig", "AgentCore"]

log = logging.getLogger(__name__)

NOT_A_MANAGER = ("This node is not a swarm manager. Worker nodes can't be used to view or "
                 "modify cluster state. Please run this command on a manager node or promote "
                 "the current node to a manager.")
NOT_IN_CLUSTER = ("This node is not a swarm manager. Use \"netfabric init\" or \"netfabric "
                  "join\" to connect this node to a cluster and try again.")
DEFAULT_BRIDGE = "bridge"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_MAX_IFACES = 16
BLOCKS_MIN_PREFIX = 24
"""Cluster subnets this size or larger are allocated from per-host blocks on workers."""
RETRY_INTERVAL = 2.0
"""Seconds between tries to give addresses back to an unreachable manager."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The agent's flags."""

    data_dir: str
    socket: str
    hostname: str
    host_netns: str
    """Name of the netns the agent runs in: sandbox netns names derive from it."""
    advertise_addr: str | None = None
    gossip_port: int = 7946
    vxlan_port: int = 4789
    cluster_port: int = DEFAULT_CLUSTER_PORT


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: use 1-63 of [a-zA-Z0-9_.-], starting with a "
            "letter or digit")
    return name


def _check_ip(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what} {value!r}: not an IP address") from exc


def _new_mac() -> str:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def to_network(rec: NetworkRecord) -> Network:
    return Network(id=rec.id, name=rec.name, driver=Driver(rec.driver), scope=Scope(rec.scope),
                   subnets=tuple(SubnetSpec(cidr=c, gateway=g, ip_range=r)
                                 for c, g, r in rec.subnets),
                   vni=rec.vni, attachable=rec.attachable, internal=rec.internal,
                   ipv6=rec.ipv6, mtu=rec.mtu, options=tuple(rec.options), created=rec.created)


def to_record(net: Network) -> NetworkRecord:
    return NetworkRecord(id=net.id, name=net.name, driver=str(net.driver), scope=str(net.scope),
                         subnets=[(s.cidr, s.gateway, s.ip_range) for s in net.subnets],
                         vni=net.vni, attachable=net.attachable, internal=net.internal,
                         ipv6=net.ipv6, mtu=net.mtu, options=list(net.options),
                         created=net.created)


class AgentCore:
    """The agent's logic; construct with the layers, then ``await start()``."""

    def __init__(self, config: AgentConfig, state: LocalState, *, kernel: Kernel,
                 book: AddressBook, names: NameService, mesh: Mesh,
                 blocks: Callable[[ManagerCall], BlockBook] | None = None) -> None:
        self.config = config
        self.state = state
        self.kernel = kernel
        self.book = book
        self.names = names
        self.mesh = mesh
        self._lock = asyncio.Lock()
        self._mesh_started = False
        self._peer_tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        # remote endpoints whose names wait for their FDB/neighbour entries (network -> id -> ep)
        self._pending_names: dict[str, dict[str, Endpoint]] = {}
        self._programmed: dict[str, frozenset[Endpoint]] = {}
        self._retry_task: asyncio.Task[None] | None = None
        self._blocks_factory = blocks
        self._blocks: BlockBook | None = None
        self._restorers: list[Callable[[], Awaitable[None]]] = []

    # -- helpers ------------------------------------------------------------------------------

    async def _thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _save(self) -> None:
        self.state.save(self.config.data_dir)

    @property
    def role(self) -> Role:
        return self.state.cluster.role if self.state.cluster else Role.STANDALONE

    @property
    def address(self) -> str:
        return self.config.advertise_addr or ""

    def _require_manager(self) -> ClusterRecord:
        cluster = self.state.cluster
        if cluster is None:
            raise NotInCluster(NOT_IN_CLUSTER)
        if cluster.role is not Role.MANAGER:
            raise NotAManager(NOT_A_MANAGER)
        return cluster

    def _link(self) -> ManagerLink:
        cluster = self.state.cluster
        if cluster is None:
            raise NotInCluster(NOT_IN_CLUSTER)
        return ManagerLink(cluster.managers, secret=cluster.secret)

    def sandbox_netns(self, sandbox_id: str) -> str:
        return f"{self.config.host_netns}-c{sandbox_id[:8]}"

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover: make the kernel, DNS and gossip match the persisted state, then serve."""
        self.mesh.subscribe(self._on_mesh_event)
        if DEFAULT_BRIDGE not in {n.name for n in self.state.networks.values()}:
            await self._create_network_locked(DEFAULT_BRIDGE, driver=Driver.BRIDGE,
                                              attachable=True, subnet=None, gateway=None,
                                              ip_range=None, ipv6=False, internal=False,
                                              options={})
        for rec in self.state.networks.values():
            if rec.scope == Scope.LOCAL:
                await self._thread(self.kernel.ensure_network, to_network(rec))
        if self.state.cluster is not None:
            await self.start_cluster_endpoint()
            await self._start_mesh()
        for sb in list(self.state.sandboxes.values()):
            await self._recover_sandbox(sb)
        for restore in self._restorers:   # before the reconcile that removes unknown links
            await restore()
        known = {sb.netns for sb in self.state.sandboxes.values()}
        for netns in await self._thread(self.kernel.sandboxes, f"{self.config.host_netns}-c"):
            if netns not in known:   # made by a run that a crash cut short
                log.info("removing leaked sandbox netns %s", netns)
                await self._thread(self.kernel.delete_sandbox, netns)
        await self._thread(self.kernel.reconcile)
        if self.state.pending_releases:
            self._schedule_retry()

    async def _recover_sandbox(self, sb: SandboxRecord) -> None:
        if not sb.external:
            await self._thread(self.kernel.ensure_sandbox, sb.netns)
        elif not os.path.exists(sb.netns_path):
            log.warning("sandbox %s: its netns %s is gone; removing it", sb.name, sb.netns_path)
            for ep in list(sb.endpoints):
                await self._release(self._network_by_id(ep.network_id), ep.ipv4)
                await self._release(self._network_by_id(ep.network_id), ep.ipv6)
            del self.state.sandboxes[sb.name]
            self._save()
            return
        for ep in sb.endpoints:
            net = self._network_by_id(ep.network_id)
            endpoint = self._endpoint(sb, ep)
            await self._thread(self.kernel.attach, net, endpoint, netns_path=sb.netns_path,
                               ifname=ep.ifname, gateway=ep.gateway)
            self._publish(sb, ep, net)
        await self.names.open_sandbox(sb.netns, sb.netns_path, self._sandbox_networks(sb))

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry_task
        for task in self._peer_tasks.values():
            task.cancel()
        for task in self._peer_tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.names.close()
        await self.mesh.close()
        await self._thread(self.kernel.close)
        await self._thread(self.book.close)
        if self._blocks is not None:
            await self._thread(self._blocks.close)

    async def _start_mesh(self) -> None:
        cluster = self.state.cluster
        assert cluster is not None
        seeds = [f"{n.address}:{n.gossip_port}" for n in self.state.nodes.values()
                 if n.id != self.state.node_id]
        seeds += [f"{split_addr(m)[0]}:{self.config.gossip_port}" for m in cluster.managers]
        await self.mesh.start(secret=cluster.secret, seeds=sorted(set(seeds)))
        self._mesh_started = True
        for rec in self.state.networks.values():
            if rec.scope == Scope.SWARM and (self.role is Role.MANAGER or self._local_eps(rec.id)):
                self.mesh.join_network(rec.id)

    # -- stable hooks for other front ends (the Docker plugin, CNI) ---------------------------

    def add_restorer(self, restore: Callable[[], Awaitable[None]]) -> None:
        """Register, before :meth:`start`, how a front end takes back the interfaces it
        plumbed itself (not sandboxes of :attr:`state`, e.g. Docker's endpoints). ``start``
        awaits it once networks, gossip and sandboxes are back, and before its reconcile,
        which removes every kernel object the drivers were not told about. It re-attaches
        (attach is idempotent) and handles a failure per interface itself."""
        self._restorers.append(restore)

    @property
    def lock(self) -> asyncio.Lock:
        """Held by every mutation; hold it around kernel work on shared state."""
        return self._lock

    @property
    def mesh_started(self) -> bool:
        """Whether this node is in a cluster and gossip runs."""
        return self._mesh_started

    def save(self) -> None:
        """Persist :attr:`state` (atomic; call after changing it)."""
        self._save()

    async def resolve_network(self, ref: str) -> Network:
        """A network by name or ID (a worker asks a manager for cluster networks)."""
        return await self._resolve_network(ref)

    async def allocate(self, network: Network, ip: str | None = None) -> Allocation:
        """An address on ``network`` from the right IPAM (local, or the manager's)."""
        return await self._allocate(network, ip)

    async def release(self, network: Network, ip: str | None) -> None:
        """Give an address back (kept and retried if the manager is unreachable)."""
        await self._release(network, ip)

    async def sync_peers(self, network: Network) -> None:
        """Program the overlay's remote endpoints from the gossip table now."""
        await self._sync_peers(network)

    # -- cluster ------------------------------------------------------------------------------

    async def info(self) -> ClusterInfo:
        cluster = self.state.cluster
        return ClusterInfo(
            node_id=self.state.node_id, hostname=self.state.hostname, role=self.role,
            advertise_addr=self.address, cluster_id=cluster.cluster_id if cluster else "",
            managers=tuple(cluster.managers) if cluster else (),
            nodes=len(self.mesh.members()) if self._mesh_started else 1,
            networks=len(await self.networks()), containers=len(self.state.sandboxes),
            version=__version__)

    async def init(self, advertise_addr: str, *, listen_addr: str | None = None) -> JoinToken:
        _check_ip(advertise_addr, "advertise address")
        async with self._lock:
            if self.state.cluster is not None:
                raise ClusterError("This node is already part of a swarm. Use \"netfabric "
                                   "leave\" to leave this swarm and join another one.")
            if self.config.advertise_addr and advertise_addr != self.config.advertise_addr:
                raise InvalidArgument(
                    f"advertise address {advertise_addr} differs from the agent's "
                    f"--advertise-addr {self.config.advertise_addr}")
            listen = listen_addr or f"{advertise_addr}:{self.config.cluster_port}"
            split_addr(listen)
            secret = new_cluster_secret()
            self.state.cluster = ClusterRecord(
                cluster_id=new_id(13), secret=secret, role=Role.MANAGER,
                managers=[f"{advertise_addr}:{split_addr(listen)[1]}"],
                role_secrets={"worker": new_role_secret(), "manager": new_role_secret()},
                listen=listen)
            self.state.nodes[self.state.node_id] = NodeRecord(
                id=self.state.node_id, hostname=self.state.hostname, address=advertise_addr,
                gossip_port=self.config.gossip_port, role=Role.MANAGER)
            self._save()
            await self.start_cluster_endpoint()
            await self._start_mesh()
        return await self.join_token(Role.WORKER)

    _cluster_endpoint: Callable[[str], Awaitable[None]] | None = None

    def set_cluster_endpoint(self, starter: Callable[[str], Awaitable[None]]) -> None:
        """The daemon's hook that opens the manager's TCP endpoint on ``HOST:PORT``."""
        self._cluster_endpoint = starter

    async def start_cluster_endpoint(self) -> None:
        cluster = self.state.cluster
        if cluster and cluster.role is Role.MANAGER and self._cluster_endpoint is not None:
            await self._cluster_endpoint(cluster.listen)

    async def join_token(self, role: Role | str, *, rotate: bool = False) -> JoinToken:
        try:
            role = Role(role)
        except ValueError as exc:
            raise InvalidArgument(f"unknown role {role!r}: use worker or manager") from exc
        if role is Role.STANDALONE:
            raise InvalidArgument("unknown role 'standalone': use worker or manager")
        cluster = self._require_manager()
        if rotate:
            async with self._lock:
                cluster.role_secrets[str(role)] = new_role_secret()
                self._save()
        return JoinToken(role=role, token=make_token(cluster.secret,
                                                     cluster.role_secrets[str(role)]),
                         address=cluster.managers[0])

    async def join(self, token: str, remote: str) -> ClusterInfo:
        if not isinstance(token, str) or not isinstance(remote, str):
            raise InvalidArgument("join needs a token and a manager address")
        host, port = split_addr(remote)
        if not self.address:
            raise InvalidArgument("this agent has no --advertise-addr: restart it with one")
        async with self._lock:
            if self.state.cluster is not None:
                raise ClusterError("This node is already part of a swarm. Use \"netfabric "
                                   "leave\" to leave this swarm and join another one.")
            offer = handshake.make_offer(token, node_id=self.state.node_id,
                                         hostname=self.state.hostname, address=self.address,
                                         gossip_port=self.config.gossip_port)
            link = ManagerLink([f"{host}:{port}"], secret=None)
            answer = await link.call("join", offer.to_wire())
            try:
                secret = handshake.open_secret(str(answer["sealed"]), token=token,
                                               nonce=offer.nonce)
                role = Role(answer["role"])
                managers = [str(m) for m in answer["managers"]]
                nodes = [NodeRecord(id=str(n["id"]), hostname=str(n["hostname"]),
                                    address=str(n["address"]), gossip_port=int(n["gossip_port"]),
                                    role=Role(n["role"])) for n in answer["nodes"]]
                cluster_id = str(answer["cluster_id"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ClusterError(f"manager at {host}:{port} sent a malformed answer") from exc
            self.state.cluster = ClusterRecord(cluster_id=cluster_id, secret=secret, role=role,
                                               managers=managers)
            self.state.nodes = {n.id: n for n in nodes}
            self._save()
            await self._start_mesh()
        return await self.info()

    async def nodes(self) -> list[NodeInfo]:
        self._require_manager()
        alive = {m.node_id: m.alive for m in self.mesh.members()} if self._mesh_started else {}
        leader = self.state.node_id
        rows = []
        for n in self.state.nodes.values():
            up = n.id == self.state.node_id or alive.get(n.id, False)
            rows.append(NodeInfo(
                id=n.id, hostname=n.hostname, address=n.address,
                status=NodeStatus.READY if up else NodeStatus.DOWN,
                availability=n.availability, role=n.role, leader=n.id == leader,
                is_self=n.id == self.state.node_id))
        return sorted(rows, key=lambda r: (not r.is_self, r.hostname, r.id))

    def _find_node(self, ref: str) -> NodeRecord:
        exact = [n for n in self.state.nodes.values() if ref in (n.id, n.hostname)]
        if len(exact) == 1:
            return exact[0]
        pref = [n for n in self.state.nodes.values() if n.id.startswith(ref)]
        if len(pref) == 1 and ref:
            return pref[0]
        if len(exact) + len(pref) > 1:
            raise InvalidArgument(f"node {ref!r} is ambiguous: use its ID")
        raise NotFound(f"node {ref} not found")

    async def update_node(self, node: str, *, availability: Availability | str) -> NodeInfo:
        self._require_manager()
        try:
            avail = Availability(availability)
        except ValueError as exc:
            raise InvalidArgument(
                f"invalid availability {availability!r}: use active, pause or drain") from exc
        async with self._lock:
            rec = self._find_node(node)
            rec.availability = avail
            self._save()
        return next(n for n in await self.nodes() if n.id == rec.id)

    async def leave(self, *, force: bool = False) -> None:
        async with self._lock:
            cluster = self.state.cluster
            if cluster is None:
                raise NotInCluster("This node is not part of a swarm")
            if cluster.role is Role.MANAGER and not force:
                raise ClusterError(
                    "You are attempting to leave the swarm on a node that is participating as "
                    "a manager. Use `--force` to ignore this message.")
            busy = [f"{sb.name} on {ep.network}" for sb in self.state.sandboxes.values()
                    for ep in sb.endpoints
                    if self.state.networks[ep.network_id].scope == Scope.SWARM]
            if busy and not force:
                raise InUse("containers are attached to cluster networks: "
                            + ", ".join(sorted(busy)) + " (remove them or use --force)")
        for sb in list(self.state.sandboxes.values()):
            for ep in list(sb.endpoints):
                if self.state.networks[ep.network_id].scope == Scope.SWARM:
                    await self.disconnect(ep.network_id, sb.name, force=True)
        async with self._lock:
            if cluster.role is not Role.MANAGER:
                with contextlib.suppress(NetfabricError):
                    await self._link().call("leave", {"node_id": self.state.node_id})
            await self.mesh.leave()
            self._mesh_started = False
            self.state.cluster = None
            self.state.nodes.clear()
            for rec in list(self.state.networks.values()):
                if rec.scope == Scope.SWARM:
                    del self.state.networks[rec.id]
                    if self._blocks is not None:   # the manager reclaims them at leave
                        await self._thread(self._blocks.forget_network, rec.id)
            self._save()

    # -- the manager's side of the cluster endpoint -------------------------------------------

    async def handle_cluster(self, verb: str, args: dict[str, Any]) -> Any:
        """One authenticated (except ``join``) call from a node to this manager."""
        cluster = self._require_manager()
        if verb == "join":
            return await self._accept_join(cluster, handshake.JoinOffer.from_wire(args))
        if verb == "get_network":
            return to_wire(self._find_network(str(args.get("name", ""))))
        if verb == "allocate":
            net = self._network_by_id(str(args.get("network_id", "")))
            alloc = await self._thread(self.book.allocate, net.id,
                                       node_id=str(args.get("node_id", "")),
                                       ip=_check_ip(args.get("ip"), "address"))
            return to_wire(alloc)
        if verb == "release":
            net = self._network_by_id(str(args.get("network_id", "")))
            await self._thread(self.book.release, net.id, str(args.get("ip", "")),
                               node_id=str(args.get("node_id", "")))
            return None
        if verb == "lease_block":
            net = self._network_by_id(str(args.get("network_id", "")))
            fam = IPFamily(int(args.get("family", 4)))
            lease = await self._thread(self.book.lease_block, net.id,
                                       str(args.get("host_id", "")),
                                       address=_check_ip(args.get("ip"), "address"), family=fam)
            return lease.to_dict()
        if verb == "release_block":
            net = self._network_by_id(str(args.get("network_id", "")))
            await self._thread(self.book.release_block, net.id, str(args.get("host_id", "")),
                               str(args.get("block", "")))
            return None
        if verb == "leave":
            async with self._lock:
                node = self.state.nodes.pop(str(args.get("node_id", "")), None)
                if node is not None:
                    self._save()
                    await self._thread(self.book.release_node, node.id)
            return None
        raise NotFound(f"unknown cluster verb {verb!r}")

    async def _accept_join(self, cluster: ClusterRecord, offer: handshake.JoinOffer) -> Any:
        role, role_secret = handshake.accept_offer(offer, cluster_secret=cluster.secret,
                                                   role_secrets=cluster.role_secrets)
        if role == Role.MANAGER:
            # A second manager needs the store replicated (DESIGN.md: a distributed engine
            # behind the Store protocol); two SQLite stores would allocate independently.
            raise ClusterError(
                "this cluster keeps its state in the embedded single-manager store: a second "
                "manager is not supported; join this node as a worker")
        check_name(offer.hostname, "host")
        _check_ip(offer.address, "node address")
        async with self._lock:
            for n in list(self.state.nodes.values()):
                if n.id != offer.node_id and n.address == offer.address and \
                        n.gossip_port == offer.gossip_port:
                    # the same host re-joined with a new identity: its old blocks are free
                    del self.state.nodes[n.id]
                    await self._thread(self.book.release_node, n.id)
            self.state.nodes[offer.node_id] = NodeRecord(
                id=offer.node_id, hostname=offer.hostname, address=offer.address,
                gossip_port=offer.gossip_port, role=Role(role))
            self._save()
        return {"sealed": handshake.seal_secret(cluster.secret, role_secret=role_secret,
                                                nonce=offer.nonce),
                "role": role, "cluster_id": cluster.cluster_id, "managers": cluster.managers,
                "nodes": [to_wire(n) for n in self.state.nodes.values()]}

    # -- networks -----------------------------------------------------------------------------

    def _network_by_id(self, network_id: str) -> Network:
        rec = self.state.networks.get(network_id)
        if rec is None:
            raise NotFound(f"network {network_id} not found")
        return to_network(rec)

    def _find_network(self, ref: str) -> Network:
        nets = self.state.networks.values()
        for match in ([n for n in nets if n.id == ref], [n for n in nets if n.name == ref],
                      [n for n in nets if ref and n.id.startswith(ref)]):
            if len(match) == 1:
                return to_network(match[0])
            if len(match) > 1:
                raise InvalidArgument(f"network {ref!r} is ambiguous: use its ID")
        raise NotFound(f"network {ref} not found")

    async def _resolve_network(self, ref: str) -> Network:
        """A network by name or ID; a worker asks a manager for cluster networks it lacks,
        and refreshes a cached one it has no endpoint on (it may have been removed)."""
        try:
            net = self._find_network(ref)
        except NotFound:
            if self.role is not Role.WORKER:
                raise
        else:
            if self.role is not Role.WORKER or net.scope != Scope.SWARM or \
                    self._local_eps(net.id):
                return net
            try:
                fresh = await self._fetch_network(net.name)
            except NotFound:
                self.state.networks.pop(net.id, None)
                self._save()
                blocks = self._block_book(net)
                if blocks is not None:
                    await self._thread(blocks.forget_network, net.id)
                raise
            except AgentUnreachable:
                return net   # the manager is down: the cached record is the best we have
            if fresh.id != net.id:
                self.state.networks.pop(net.id, None)
                self._save()
            return fresh
        return await self._fetch_network(ref)

    async def _fetch_network(self, ref: str) -> Network:
        raw = await self._link().call("get_network", {"name": ref})
        try:
            net = Network(
                id=str(raw["id"]), name=str(raw["name"]), driver=Driver(raw["driver"]),
                scope=Scope(raw["scope"]),
                subnets=tuple(SubnetSpec(cidr=s["cidr"], gateway=s["gateway"],
                                         ip_range=s.get("ip_range")) for s in raw["subnets"]),
                vni=raw.get("vni"), attachable=bool(raw["attachable"]),
                internal=bool(raw["internal"]), ipv6=bool(raw["ipv6"]), mtu=raw.get("mtu"),
                options=tuple((str(a), str(b)) for a, b in raw["options"]),
                created=float(raw["created"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ClusterError(f"manager sent a malformed network for {ref!r}") from exc
        return net

    def _local_eps(self, network_id: str) -> list[tuple[SandboxRecord, EndpointRecord]]:
        return [(sb, ep) for sb in self.state.sandboxes.values() for ep in sb.endpoints
                if ep.network_id == network_id]

    def _network_info(self, net: Network) -> NetworkInfo:
        eps: list[EndpointInfo] = []
        for sb, ep in self._local_eps(net.id):
            eps.append(self._endpoint_info(sb, ep))
        if net.scope == Scope.SWARM and self._mesh_started:
            for remote in self.mesh.endpoints(net.id):
                if remote.node_id != self.state.node_id:
                    eps.append(EndpointInfo(
                        network=net.name, network_id=net.id, endpoint_id=remote.id,
                        container=remote.sandbox, node=remote.node_id, mac=remote.mac,
                        ipv4=remote.ipv4, ipv6=remote.ipv6, prefixlen=remote.prefixlen,
                        aliases=remote.aliases))
        return NetworkInfo(
            id=net.id, name=net.name, driver=str(net.driver), scope=str(net.scope),
            subnets=tuple(s.cidr for s in net.subnets),
            gateways=tuple(s.gateway for s in net.subnets),
            ip_ranges=tuple(s.ip_range or "" for s in net.subnets), vni=net.vni,
            attachable=net.attachable, internal=net.internal, ipv6=net.ipv6, mtu=net.mtu,
            options=net.options, created=net.created,
            endpoints=tuple(sorted(eps, key=lambda e: (e.container, e.endpoint_id))))

    async def networks(self) -> list[NetworkInfo]:
        """Local networks, plus cluster ones: all on a manager, on a worker only those with
        a local endpoint (the lab's behaviour)."""
        out = []
        for rec in self.state.networks.values():
            if rec.scope == Scope.SWARM and self.role is not Role.MANAGER and \
                    not self._local_eps(rec.id):
                continue
            out.append(self._network_info(to_network(rec)))
        return sorted(out, key=lambda n: n.name)

    async def inspect_network(self, name: str) -> NetworkInfo:
        net = self._find_network(name)
        if net.scope == Scope.SWARM and self.role is Role.WORKER and not self._local_eps(net.id):
            raise NotFound(f"network {name} not found")
        return self._network_info(net)

    async def create_network(self, name: str, *, driver: str = "bridge",
                             attachable: bool = False, subnet: str | None = None,
                             gateway: str | None = None, ip_range: str | None = None,
                             ipv6: bool = False, internal: bool = False,
                             options: dict[str, str] | None = None) -> NetworkInfo:
        check_name(name, "network")
        try:
            drv = Driver(driver)
        except ValueError as exc:
            raise InvalidArgument(f"unknown driver {driver!r}: use bridge or overlay") from exc
        if drv is Driver.OVERLAY:
            cluster = self.state.cluster
            if cluster is None:
                raise NotInCluster(NOT_IN_CLUSTER)
            if cluster.role is not Role.MANAGER:
                raise NotAManager("Cannot create a multi-host network from a worker node. "
                                  "Please create the network from a manager node.")
        for key, value in (options or {}).items():
            if key == "mtu":
                try:
                    mtu = int(value)
                except ValueError as exc:
                    raise InvalidArgument(f"invalid mtu {value!r}: not a number") from exc
                if not 576 <= mtu <= 65000:
                    raise InvalidArgument(f"invalid mtu {mtu}: must be 576..65000")
            elif key not in ("com.docker.network.bridge.name",):
                raise InvalidArgument(f"unknown network option {key!r} (known: mtu)")
        if ip_range is not None and subnet is None:
            raise InvalidArgument("--ip-range needs --subnet")
        if gateway is not None and subnet is None:
            raise InvalidArgument("--gateway needs --subnet")
        async with self._lock:
            net = await self._create_network_locked(
                name, driver=drv, attachable=attachable or drv is Driver.BRIDGE, subnet=subnet,
                gateway=gateway, ip_range=ip_range, ipv6=ipv6, internal=internal,
                options=dict(options or {}))
        return self._network_info(net)

    async def _create_network_locked(self, name: str, *, driver: Driver, attachable: bool,
                                     subnet: str | None, gateway: str | None,
                                     ip_range: str | None, ipv6: bool, internal: bool,
                                     options: dict[str, str]) -> Network:
        if any(n.name == name for n in self.state.networks.values()):
            raise AlreadyExists(f"network with name {name} already exists")
        scope = Scope.SWARM if driver is Driver.OVERLAY else Scope.LOCAL
        mtu = int(options["mtu"]) if "mtu" in options else None
        net = Network(id=new_id(16), name=name, driver=driver, scope=scope,
                      attachable=attachable, internal=internal, ipv6=ipv6, mtu=mtu,
                      options=tuple(sorted(options.items())), created=time.time())
        subnets = await self._thread(self.book.create_network, net, subnet=subnet,
                                     gateway=gateway, ip_range=ip_range)
        vni = None
        if driver is Driver.OVERLAY:
            used = {n.vni for n in self.state.networks.values()}
            vni = 4096 + secrets.randbelow(1 << 23)
            while vni in used:
                vni = 4096 + secrets.randbelow(1 << 23)
        net = replace(net, subnets=subnets, vni=vni)
        try:
            if scope == Scope.LOCAL:
                await self._thread(self.kernel.ensure_network, net)
        except BaseException:
            await self._thread(self.book.delete_network, net.id)
            raise
        self.state.networks[net.id] = to_record(net)
        self._save()
        if scope == Scope.SWARM and self._mesh_started:
            self.mesh.join_network(net.id)
        return net

    async def ensure_network(self, name: str, *, driver: str = "overlay") -> NetworkInfo:
        """The network of that name, created on first use (the Docker plugin's mapping)."""
        try:
            return await self.inspect_network(name)
        except NotFound:
            pass
        try:
            return await self.create_network(name, driver=driver, attachable=True)
        except AlreadyExists:
            return await self.inspect_network(name)

    async def remove_network(self, name: str) -> None:
        async with self._lock:
            net = self._find_network(name)
            if net.name == DEFAULT_BRIDGE and net.scope == Scope.LOCAL:
                raise InvalidArgument("bridge is a pre-defined network and cannot be removed")
            if net.scope == Scope.SWARM:
                self._require_manager()
            users = sorted({sb.name for sb, _ in self._local_eps(net.id)})
            if net.scope == Scope.SWARM and self._mesh_started:
                users += sorted({f"{e.sandbox} (node {e.node_id[:12]})"
                                 for e in self.mesh.endpoints(net.id)
                                 if e.node_id != self.state.node_id})
            held = await self._thread(self.book.allocated, net.id)
            leases = await self._thread(self.book.leased, net.id)
            if leases and not users:
                hosts = sorted({self.state.nodes[lease.host_id].hostname
                                if lease.host_id in self.state.nodes else lease.host_id
                                for lease in leases})
                users = [f"address blocks leased to {', '.join(hosts)}"]
            if users or held:
                who = ", ".join(users) if users else f"{len(held)} endpoint address(es)"
                raise InUse(f"error while removing network: network {net.name} id {net.id} "
                            f"has active endpoints: {who}")
            if net.scope == Scope.LOCAL:
                await self._thread(self.kernel.delete_network, net)
            await self._thread(self.book.delete_network, net.id)
            del self.state.networks[net.id]
            self._save()
            if net.scope == Scope.SWARM and self._mesh_started:
                self.mesh.leave_network(net.id)

    # -- containers ---------------------------------------------------------------------------

    def _find_sandbox(self, ref: str) -> SandboxRecord:
        sb = self.state.sandboxes.get(ref)
        if sb is not None:
            return sb
        matches = [s for s in self.state.sandboxes.values() if ref and s.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"No such container: {ref}")

    def _endpoint(self, sb: SandboxRecord, ep: EndpointRecord) -> Endpoint:
        return Endpoint(id=ep.id, network_id=ep.network_id, sandbox=sb.name,
                        node_id=self.state.node_id, mac=ep.mac, ipv4=ep.ipv4, ipv6=ep.ipv6,
                        prefixlen=ep.prefixlen, vtep=self.address, aliases=tuple(ep.aliases))

    def _endpoint_info(self, sb: SandboxRecord, ep: EndpointRecord) -> EndpointInfo:
        return EndpointInfo(network=ep.network, network_id=ep.network_id, endpoint_id=ep.id,
                            container=sb.name, node=self.state.node_id, mac=ep.mac,
                            ipv4=ep.ipv4, ipv6=ep.ipv6, prefixlen=ep.prefixlen,
                            gateway=ep.gateway, aliases=tuple(ep.aliases))

    def _container_info(self, sb: SandboxRecord) -> ContainerInfo:
        return ContainerInfo(id=sb.id, name=sb.name, netns=sb.netns, netns_path=sb.netns_path,
                             node=self.state.hostname, created=sb.created, external=sb.external,
                             networks=tuple(self._endpoint_info(sb, ep) for ep in sb.endpoints))

    def _sandbox_networks(self, sb: SandboxRecord) -> frozenset[str]:
        return frozenset(ep.network_id for ep in sb.endpoints)

    async def containers(self) -> list[ContainerInfo]:
        return sorted((self._container_info(sb) for sb in self.state.sandboxes.values()),
                      key=lambda c: (-c.created, c.name))

    async def inspect_container(self, name: str) -> ContainerInfo:
        return self._container_info(self._find_sandbox(name))

    async def run(self, name: str, *, network: str | None = None, aliases: Sequence[str] = (),
                  ip: str | None = None, netns_path: str | None = None) -> ContainerInfo:
        """A new sandbox (its own netns), or an existing netns adopted by ``netns_path``,
        connected to ``network`` (default: the host's ``bridge``). All or nothing."""
        check_name(name, "container")
        aliases = [check_name(a, "alias") for a in aliases]
        ip = _check_ip(ip, "address")
        if netns_path is not None and not os.path.exists(netns_path):
            raise NotFound(f"netns {netns_path} does not exist")
        net = await self._resolve_network(network or DEFAULT_BRIDGE)
        if net.scope == Scope.SWARM and not net.attachable:
            raise InvalidArgument(
                f"Could not attach to network {net.name}: rpc error: code = PermissionDenied "
                f"desc = network {net.name} not manually attachable")
        async with self._lock:
            if name in self.state.sandboxes:
                raise AlreadyExists(
                    f"Conflict. The container name \"/{name}\" is already in use by container "
                    f"\"{self.state.sandboxes[name].id}\". You have to remove (or rename) that "
                    "container to be able to reuse that name.")
            sid = new_id(32)
            netns = self.sandbox_netns(sid)
            sb = SandboxRecord(id=sid, name=name, netns=netns,
                               netns_path=netns_path or f"/run/netns/{netns}",
                               external=netns_path is not None, created=time.time())
            if not sb.external:
                await self._thread(self.kernel.ensure_sandbox, netns)
            try:
                await self._connect_locked(sb, net, aliases=aliases, ip=ip)
                await self.names.open_sandbox(sb.netns, sb.netns_path,
                                              self._sandbox_networks(sb))
            except BaseException:
                await self._teardown_locked(sb)
                raise
        return self._container_info(sb)

    def _block_book(self, net: Network) -> BlockBook | None:
        """A worker's block allocator, for cluster networks with room for several blocks
        (>= a /24: four /26 blocks); smaller subnets stay with the manager, so that one host
        never holds a whole tiny subnet."""
        if self._blocks_factory is None or net.scope != Scope.SWARM or \
                self.role is not Role.WORKER:
            return None
        v4 = [s for s in net.subnets if ":" not in s.cidr]
        if not v4 or ipaddress.ip_network(v4[0].cidr).prefixlen > BLOCKS_MIN_PREFIX:
            return None
        if self._blocks is None:
            self._blocks = self._blocks_factory(self._manager_call)
        return self._blocks

    async def _manager_call(self, verb: str, args: dict[str, Any]) -> Any:
        return await self._link().call(verb, args)

    async def _allocate(self, net: Network, ip: str | None) -> Allocation:
        blocks = self._block_book(net)
        if blocks is not None:
            try:
                return await self._thread(blocks.allocate, net.id, ip=ip, ipv6=net.ipv6)
            except PoolExhausted as exc:
                cidrs = ", ".join(s.cidr for s in net.subnets) or "no subnet"
                raise PoolExhausted(f"no available IPv4 address on network {net.name} "
                                    f"(subnet {cidrs}): every address is in use") from exc
        if net.scope == Scope.SWARM and self.role is Role.WORKER:
            raw = await self._link().call("allocate", {"network_id": net.id,
                                                       "node_id": self.state.node_id, "ip": ip})
            try:
                v6 = raw.get("ipv6")
                return Allocation(ipv4=str(raw["ipv4"]), prefixlen=int(raw["prefixlen"]),
                                  gateway=raw.get("gateway"),
                                  ipv6=None if v6 is None else str(v6))
            except (KeyError, TypeError, ValueError) as exc:
                raise ClusterError("manager sent a malformed address allocation") from exc
        try:
            return await self._thread(self.book.allocate, net.id, node_id=self.state.node_id,
                                      ip=ip)
        except PoolExhausted as exc:
            cidrs = ", ".join(s.cidr for s in net.subnets) or "no subnet"
            raise PoolExhausted(f"no available IPv4 address on network {net.name} (subnet "
                                f"{cidrs}): every address is in use") from exc

    async def _release(self, net: Network, ip: str | None) -> None:
        if ip is None:
            return
        blocks = self._block_book(net)
        if blocks is not None and await self._thread(blocks.release, net.id, ip):
            return
        if net.scope == Scope.SWARM and self.role is Role.WORKER:
            try:
                await self._link().call("release", {"network_id": net.id,
                                                    "node_id": self.state.node_id, "ip": ip})
            except AgentUnreachable:
                # Never lost: kept in the state and given back once a manager answers.
                self.state.pending_releases.append((net.id, ip))
                self._save()
                self._schedule_retry()
        else:
            await self._thread(self.book.release, net.id, ip, node_id=self.state.node_id)

    def _schedule_retry(self) -> None:
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.get_running_loop().create_task(self._retry_releases())

    async def _retry_releases(self) -> None:
        """Give back the addresses a manager could not take while it was unreachable."""
        while self.state.pending_releases and self.state.cluster is not None:
            network_id, ip = self.state.pending_releases[0]
            try:
                await self._link().call("release", {"network_id": network_id,
                                                    "node_id": self.state.node_id, "ip": ip})
            except AgentUnreachable:
                await asyncio.sleep(RETRY_INTERVAL)
                continue
            except NetfabricError as exc:   # the network is gone: nothing to give back
                log.info("pending release of %s in %s dropped: %s", ip, network_id, exc)
            self.state.pending_releases.pop(0)
            self._save()

    async def _connect_locked(self, sb: SandboxRecord, net: Network, *, aliases: Sequence[str],
                              ip: str | None) -> EndpointRecord:
        if any(ep.network_id == net.id for ep in sb.endpoints):
            raise AlreadyExists(f"container {sb.name} is already attached to network {net.name}")
        used = {ep.ifname for ep in sb.endpoints}
        ifname = next((f"eth{i}" for i in range(_MAX_IFACES) if f"eth{i}" not in used), None)
        if ifname is None:
            raise InvalidArgument(f"container {sb.name} has {_MAX_IFACES} interfaces already")
        if net.id not in self.state.networks:   # a cluster network new to this worker
            self.state.networks[net.id] = to_record(net)
        alloc = await self._allocate(net, ip)
        ep = EndpointRecord(id=new_id(32), network_id=net.id, network=net.name, ifname=ifname,
                            mac=_new_mac(), ipv4=alloc.ipv4, prefixlen=alloc.prefixlen,
                            gateway=alloc.gateway, ipv6=alloc.ipv6, aliases=list(aliases))
        sb.endpoints.append(ep)
        self.state.sandboxes[sb.name] = sb
        try:
            self._save()
            if net.scope == Scope.SWARM and self._mesh_started:
                self.mesh.join_network(net.id)
            await self._thread(self.kernel.attach, net, self._endpoint(sb, ep),
                               netns_path=sb.netns_path, ifname=ifname, gateway=alloc.gateway)
            if net.scope == Scope.SWARM:
                await self._sync_peers(net)
        except BaseException:
            sb.endpoints.remove(ep)
            with contextlib.suppress(NetfabricError):
                await self._thread(self.kernel.detach, net, self._endpoint(sb, ep),
                                   netns_path=sb.netns_path, ifname=ifname)
            await self._release(net, alloc.ipv4)
            await self._release(net, alloc.ipv6)
            self._save()
            raise
        self._publish(sb, ep, net)
        return ep

    def _publish(self, sb: SandboxRecord, ep: EndpointRecord, net: Network) -> None:
        self.names.set_endpoint(ep.network_id, sb.name, aliases=ep.aliases, ipv4=ep.ipv4,
                                ipv6=ep.ipv6, owner=ep.id)
        if net.scope == Scope.SWARM and self._mesh_started:
            self.mesh.join_network(net.id)
            self.mesh.publish(self._endpoint(sb, ep))

    async def _disconnect_locked(self, sb: SandboxRecord, ep: EndpointRecord) -> None:
        net = self._network_by_id(ep.network_id)
        endpoint = self._endpoint(sb, ep)
        self.names.remove_endpoint(ep.network_id, sb.name, owner=ep.id)
        if net.scope == Scope.SWARM and self._mesh_started:
            self.mesh.withdraw(endpoint)
        await self._thread(self.kernel.detach, net, endpoint, netns_path=sb.netns_path,
                           ifname=ep.ifname)
        sb.endpoints.remove(ep)
        self._save()
        await self._release(net, ep.ipv4)
        await self._release(net, ep.ipv6)
        if net.scope == Scope.SWARM and not self._local_eps(net.id) and \
                self.role is Role.WORKER:
            blocks = self._block_book(net)
            if blocks is not None:
                await self._thread(blocks.return_empty, net.id)
            if self._mesh_started:
                self.mesh.leave_network(net.id)

    async def _teardown_locked(self, sb: SandboxRecord) -> None:
        """Remove a sandbox and everything of it; used by rm and by a failed run."""
        errors: list[NetfabricError] = []
        for ep in list(sb.endpoints):
            try:
                await self._disconnect_locked(sb, ep)
            except NetfabricError as exc:
                errors.append(exc)
        await self.names.close_sandbox(sb.netns)
        if not sb.external:
            try:
                await self._thread(self.kernel.delete_sandbox, sb.netns)
            except NetfabricError as exc:
                errors.append(exc)
        if self.state.sandboxes.get(sb.name) is sb:
            del self.state.sandboxes[sb.name]
            self._save()
        if errors:
            raise errors[0]

    async def remove_container(self, name: str, *, force: bool = False) -> None:
        async with self._lock:
            sb = self._find_sandbox(name)
            await self._teardown_locked(sb)

    async def connect(self, network: str, container: str, *, aliases: Sequence[str] = (),
                      ip: str | None = None) -> EndpointInfo:
        aliases = [check_name(a, "alias") for a in aliases]
        ip = _check_ip(ip, "address")
        net = await self._resolve_network(network)
        if net.scope == Scope.SWARM and not net.attachable:
            raise InvalidArgument(f"network {net.name} is not manually attachable")
        async with self._lock:
            sb = self._find_sandbox(container)
            ep = await self._connect_locked(sb, net, aliases=aliases, ip=ip)
            await self.names.open_sandbox(sb.netns, sb.netns_path, self._sandbox_networks(sb))
            return self._endpoint_info(sb, ep)

    async def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        async with self._lock:
            sb = self._find_sandbox(container)
            net = self._find_network(network)
            ep = next((e for e in sb.endpoints if e.network_id == net.id), None)
            if ep is None:
                raise NotFound(f"container {sb.name} is not connected to network {net.name}")
            await self._disconnect_locked(sb, ep)
            await self.names.open_sandbox(sb.netns, sb.netns_path, self._sandbox_networks(sb))

    # -- gossip events --------------------------------------------------------------------------

    async def _on_mesh_event(self, event: MeshEvent) -> None:
        ep = event.endpoint
        if event.node_id == self.state.node_id:
            return
        if event.kind is MeshEventKind.ENDPOINT_SET and ep is not None:
            # The name is published only once the datapath to it is programmed (in
            # _peer_job), so a name never resolves to an address that cannot be reached yet.
            if ep.ipv4 or ep.ipv6:
                self._pending_names.setdefault(ep.network_id, {})[ep.id] = ep
            self._schedule_peers(ep.network_id)
        elif event.kind is MeshEventKind.ENDPOINT_GONE and ep is not None:
            self._pending_names.get(ep.network_id, {}).pop(ep.id, None)
            self.names.remove_endpoint(ep.network_id, ep.sandbox, owner=ep.id)
            self._schedule_peers(ep.network_id)

    def _schedule_peers(self, network_id: str) -> None:
        """Coalesce bursts: one peer sync per network in flight, run again if more came."""
        self._dirty.add(network_id)
        task = self._peer_tasks.get(network_id)
        if task is None or task.done():
            self._peer_tasks[network_id] = asyncio.get_running_loop().create_task(
                self._peer_job(network_id))

    async def _peer_job(self, network_id: str) -> None:
        while network_id in self._dirty:
            self._dirty.discard(network_id)
            # names seen before this sync starts are the ones it programs
            pending = self._pending_names.pop(network_id, {})
            rec = self.state.networks.get(network_id)
            if rec is not None and self._local_eps(network_id):
                try:
                    await self._sync_peers(to_network(rec))
                except NetfabricError as exc:
                    log.warning("peer sync of network %s failed: %s", rec.name, exc)
            current = set(self.mesh.endpoints(network_id)) if pending else set()
            for ep in pending.values():
                if ep not in current:  # gone or replaced while the sync ran
                    continue
                self.names.set_endpoint(ep.network_id, ep.sandbox, aliases=ep.aliases,
                                        ipv4=ep.ipv4, ipv6=ep.ipv6, owner=ep.id)

    async def _sync_peers(self, net: Network) -> None:
        """Program the remote endpoints of ``net``; skipped when they did not change (the
        driver keeps the last set, and a reconverge costs a netlink dump)."""
        if not self._mesh_started:
            return
        peers = sorted((e for e in self.mesh.endpoints(net.id)
                        if e.node_id != self.state.node_id), key=lambda e: e.id)
        key = frozenset(peers)
        if self._programmed.get(net.id) == key:
            return
        await self._thread(self.kernel.set_peers, net, peers)
        self._programmed[net.id] = key
