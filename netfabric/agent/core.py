"""AgentCore: the agent as one object, a small facade over its services.

The local HTTP API, the Docker plugin and CNI all end here, so a netfabric sandbox, a
Docker container and a pod share one IPAM and one DNS. Front ends see only
:class:`~netfabric.agent.frontend.AgentFrontend`, which this class implements; the daemon
builds it and adds :meth:`handle_cluster`, :meth:`set_cluster_endpoint`, :meth:`start` and
:meth:`close`.

Each job is one service, all sharing one :class:`~netfabric.agent.context.AgentContext`
(flags, the state's one writer, the layers of :mod:`netfabric.agent.ports`, one lock):

- :class:`~netfabric.agent.cluster.ClusterService`: membership (init, join, tokens, nodes,
  leave) and gossip start;
- :class:`~netfabric.agent.manager.ManagerRpc`: the manager's side of the cluster endpoint;
- :class:`~netfabric.agent.networks.NetworkRegistry`: networks;
- :class:`~netfabric.agent.addresses.AddressRouter`: which IPAM gives an address, and the
  retry of releases a manager could not take;
- :class:`~netfabric.agent.endpoints.Endpoints`: sandboxes and endpoints, names, recovery;
- :class:`~netfabric.agent.peers.PeerSync`: the gossip endpoint table into the kernel.

Mutations are serialised by the one lock; kernel work runs in a worker thread, so the event
loop never blocks on netlink or changes netns.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from netfabric import __version__
from netfabric.agent.addresses import BLOCKS_MIN_PREFIX, RETRY_INTERVAL, AddressRouter
from netfabric.agent.cluster import ROLE_VERBS, ClusterService
from netfabric.agent.context import (
    NODE_VERBS,
    NOT_A_MANAGER,
    NOT_IN_CLUSTER,
    AgentConfig,
    AgentContext,
    check_name,
    manager_link,
)
from netfabric.agent.diagnose import gather_host, gather_path
from netfabric.agent.doctor import DoctorReport, check_host, check_path
from netfabric.agent.endpoints import Endpoints
from netfabric.agent.frontend import AgentFrontend, Restorer
from netfabric.agent.ledger import Ledger
from netfabric.agent.manager import ManagerRpc
from netfabric.agent.managerset import ManagerSet
from netfabric.agent.metrics import NetworkUsage, Observation, dns_results
from netfabric.agent.networks import DEFAULT_BRIDGE, NetworkRegistry
from netfabric.agent.peers import PeerSync
from netfabric.agent.ports import (
    AddressBook,
    Allocation,
    BlockBook,
    DnsStats,
    Kernel,
    KernelStats,
    LinkFactory,
    ManagerCall,
    Mesh,
    NameService,
    RecordsFactory,
)
from netfabric.agent.records import open_etcd_records
from netfabric.agent.services import ServiceRegistry
from netfabric.agent.state import LocalState, to_network, to_record
from netfabric.agent.tasks import TaskRunner
from netfabric.api.types import (
    Availability,
    ClusterInfo,
    ContainerInfo,
    EndpointInfo,
    JoinToken,
    NetworkInfo,
    NodeInfo,
    Role,
)
from netfabric.errors import InvalidArgument, NetfabricError
from netfabric.model import Endpoint, Network, Scope
from netfabric.services import NodeView, ServiceFabric
from netfabric.services.runtime import DatapathFactory
from netfabric.services.tasks import RunSpec
from netfabric.store.etcd import EtcdTls, cluster_prefix

__all__ = [
    "BLOCKS_MIN_PREFIX",
    "DEFAULT_BRIDGE",
    "NOT_A_MANAGER",
    "NOT_IN_CLUSTER",
    "RETRY_INTERVAL",
    "AgentConfig",
    "AgentCore",
    "check_name",
    "to_network",
    "to_record",
]


class AgentCore:
    """The agent; construct with the layers, then ``await start()``."""

    def __init__(self, config: AgentConfig, state: LocalState, *, kernel: Kernel,
                 book: AddressBook, names: NameService, mesh: Mesh,
                 blocks: Callable[[ManagerCall], BlockBook] | None = None,
                 links: LinkFactory = manager_link,
                 service_datapath: DatapathFactory | None = None,
                 records: RecordsFactory | None = None) -> None:
        self.config = config
        if state.cluster is not None and state.cluster.store:
            # the cluster's rows live in etcd: read them there (StoreUnavailable names it)
            book.use_store(state.cluster.store, cluster_prefix(state.cluster.cluster_id))
        self._ctx = ctx = AgentContext(config, Ledger(state, config.data_dir, book), kernel=kernel,
                                       book=book, names=names, mesh=mesh, links=links)
        self._addresses = AddressRouter(ctx, blocks=blocks)
        self._managers = ManagerSet(ctx, records or open_etcd_records)
        self._cluster = ClusterService(ctx, self._addresses, self._managers)
        self._networks = NetworkRegistry(ctx, self._addresses)
        self._manager = ManagerRpc(ctx, self._networks, self._addresses)
        self._peers = PeerSync(ctx)
        self._endpoints = Endpoints(ctx, self._networks, self._addresses, self._peers)
        fabric = None if service_datapath is None else ServiceFabric(
            NodeView(ctx.node_id, {}, config.host_netns), datapath=service_datapath)
        self._services = ServiceRegistry(ctx, self._networks, self._addresses,
                                         self._endpoints, self._peers, fabric=fabric)
        self._tasks = TaskRunner(ctx, self._services, self._endpoints)
        self._managers.on_leader_change(self._tasks.schedule)
        self._restorers: list[Restorer] = []

    # -- who and where ------------------------------------------------------------------------

    @property
    def state(self) -> LocalState:
        """The persisted state, to read (the daemon checks the cluster secret with it)."""
        return self._ctx.ledger.state

    def name_ids(self, text: str) -> str:
        """``text`` with the network and node IDs it names written as names."""
        return self._ctx.ledger.name_ids(text)

    @property
    def role(self) -> Role:
        return self._ctx.role

    @property
    def node_id(self) -> str:
        return self._ctx.node_id

    @property
    def address(self) -> str:
        return self._ctx.address

    @property
    def host_netns(self) -> str:
        return self.config.host_netns

    @property
    def data_dir(self) -> str:
        return self.config.data_dir

    def sandbox_netns(self, sandbox_id: str) -> str:
        return self._endpoints.sandbox_netns(sandbox_id)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover: make the kernel, DNS and gossip match the persisted state, then serve."""
        ctx = self._ctx
        ctx.mesh.subscribe(self._peers.on_mesh_event)
        ctx.mesh.subscribe(self._cluster.on_mesh_event)
        ctx.mesh.subscribe(self._services.on_mesh_event)
        ctx.mesh.subscribe(self._tasks.on_mesh_event)
        async with ctx.lock:
            await self._networks.restore()
        await self._cluster.resume()
        await self._endpoints.recover()
        for restore in self._restorers:   # before the reconcile that removes unknown links
            await restore()
        await self._endpoints.remove_leaked()
        await ctx.thread(ctx.kernel.reconcile)
        self._addresses.resume()
        await self._services.resume()   # after the reconcile: it re-plugs the ingress leg
        self._tasks.schedule()

    async def close(self) -> None:
        ctx = self._ctx
        await self._managers.stop()
        await self._addresses.close()
        await self._tasks.close()
        await self._services.close()
        await self._peers.close()
        await ctx.names.close()
        await ctx.mesh.close()
        await ctx.thread(ctx.kernel.close)
        await ctx.thread(ctx.book.close)

    def set_cluster_endpoint(self, starter: Callable[[str], Awaitable[None]],
                             closer: Callable[[], Awaitable[None]] | None = None) -> None:
        """The daemon's hooks that open the cluster's TCP endpoint on ``HOST:PORT`` (again:
        replaced) and close it (at leave, and when an init or join fails)."""
        self._cluster.set_cluster_endpoint(starter, closer)

    async def handle_cluster(self, verb: str, args: dict[str, Any]) -> Any:
        """One authenticated (except ``join``) call from a node to this manager, or from
        the manager to this node (:data:`~netfabric.agent.context.NODE_VERBS`)."""
        if verb in ROLE_VERBS:
            return await self._cluster.role_verb(verb, args)
        if verb in NODE_VERBS:
            return await self._addresses.node_verb(verb, args)
        return await self._manager.handle(verb, args)

    # -- cluster ------------------------------------------------------------------------------

    async def info(self) -> ClusterInfo:
        ctx = self._ctx
        state = ctx.ledger.state
        cluster = state.cluster
        return ClusterInfo(
            node_id=state.node_id, hostname=state.hostname, role=self.role,
            advertise_addr=self.address, cluster_id=cluster.cluster_id if cluster else "",
            managers=tuple(ctx.manager_order()),
            nodes=len(ctx.mesh.members()) if ctx.mesh.started else 1,
            networks=len(await self.networks()), containers=len(state.sandboxes),
            version=__version__, gossip=ctx.mesh.stats(), ui_url=self.ui_url,
            metrics_url=self.metrics_url)

    ui_url = ""
    """Set by the daemon when it serves the live page (``--ui-addr``)."""
    metrics_url = ""
    """Set by the daemon when it serves ``/metrics`` (``--metrics-addr``)."""

    async def observe(self) -> Observation:
        """What the metrics show, read now (:mod:`netfabric.agent.metrics`)."""
        ctx = self._ctx
        obs_dns: dict[str, int] = {}
        latency = None
        if isinstance(ctx.names, DnsStats):
            parts = ctx.names.dns_counters()
            obs_dns = dns_results(parts.get("resolver", {}), parts.get("pump", {}))
            latency = ctx.names.dns_latency()
        runs: dict[str, int] = {}
        repairs = 0
        if isinstance(ctx.kernel, KernelStats):
            runs, repairs = ctx.kernel.reconcile_stats()
        local: dict[str, int] = {}
        held: dict[str, int] = {}
        for sb in ctx.ledger.state.sandboxes.values():
            for ep in sb.endpoints:
                local[ep.network_id] = local.get(ep.network_id, 0) + 1
                held[ep.network_id] = held.get(ep.network_id, 0) + bool(ep.ipv4) + bool(ep.ipv6)
        usage = []
        for net in sorted(ctx.ledger.networks(), key=lambda n: n.name):
            used = held.get(net.id, 0)
            if net.scope == Scope.LOCAL or self.role == Role.MANAGER:
                with contextlib.suppress(NetfabricError):
                    used = len(await ctx.thread(ctx.book.allocated, net.id))
            total = sum(ipaddress.ip_network(s.cidr, strict=False).num_addresses
                        for s in net.subnets)
            me = ctx.ledger.state.node_id
            remote = sum(1 for e in ctx.mesh.endpoints(net.id) if e.node_id != me)
            usage.append(NetworkUsage(name=net.name, addresses_used=used, addresses_total=total,
                                      endpoints_local=local.get(net.id, 0),
                                      endpoints_remote=remote))
        services = self._services.backend_counts()
        return Observation(gossip=ctx.mesh.stats(), dns_results=obs_dns, dns_latency=latency,
                           networks=tuple(usage), reconcile_runs=runs,
                           reconcile_repairs=repairs, services=services)

    def topology(self) -> dict[str, Any]:
        """The live page's view: hosts with their membership state, networks, endpoints
        (this host's and gossip's), and which names resolve where. Plain JSON data."""
        ctx = self._ctx
        state = ctx.ledger.state
        me = state.node_id
        stats = ctx.mesh.stats()
        hosts = [{"id": me, "address": self.address, "hostname": state.hostname,
                  "state": "alive"}]
        names = {n.id: n.hostname for n in state.nodes.values()}
        for m in ctx.mesh.members():
            if m.node_id != me:
                hosts.append({"id": m.node_id, "address": m.address,
                              "hostname": names.get(m.node_id, ""),
                              "state": "alive" if m.alive else "dead"})
        nets = sorted(ctx.ledger.networks(), key=lambda n: n.name)
        endpoints: list[dict[str, Any]] = []
        for sb in state.sandboxes.values():
            for ep in sb.endpoints:
                endpoints.append({"name": sb.name, "network_id": ep.network_id,
                                  "network": ep.network, "ip": ep.ipv4 or ep.ipv6 or "",
                                  "host": me, "aliases": list(ep.aliases)})
        by_id = {n.id: n.name for n in nets}
        for net in nets:
            for e in ctx.mesh.endpoints(net.id):
                if e.node_id != me:
                    endpoints.append({"name": e.sandbox, "network_id": net.id,
                                      "network": net.name, "ip": e.ipv4 or e.ipv6 or "",
                                      "host": e.node_id, "aliases": list(e.aliases)})
        known = {h["id"] for h in hosts}
        for d in endpoints:
            if d["host"] not in known:
                hosts.append({"id": d["host"], "address": "", "hostname": "",
                              "state": "unknown"})
                known.add(d["host"])
        host_label = {h["id"]: h["hostname"] or h["address"] for h in hosts}
        resolved = sorted(({"name": n, "ip": d["ip"],
                            "network": by_id.get(d["network_id"], d["network"]),
                            "host": host_label.get(d["host"], d["host"])}
                           for d in endpoints for n in (d["name"], *d["aliases"])),
                          key=lambda r: (r["name"], r["network"]))
        return {"node": {"id": me, "hostname": state.hostname, "address": self.address,
                         "health": stats.health if stats else 0},
                "hosts": hosts,
                "networks": [{"id": n.id, "name": n.name, "driver": str(n.driver),
                              "scope": str(n.scope)} for n in nets],
                "endpoints": endpoints, "names": resolved}

    async def doctor(self, source: str, target: str) -> DoctorReport:
        """Walk the path from container ``source`` (on this host) to ``target`` (a container,
        name or address): each step ok, or what is wrong and the fix."""
        facts = await gather_path(self._ctx, self._endpoints.find(source), target)
        return check_path(facts)

    async def doctor_host(self, *, repair: bool = False) -> DoctorReport:
        """This host against the cluster's view: every overlay's FDB, neighbour entries and
        links, and the DNS records of remote endpoints; with ``repair``, the kernel is
        reconciled and the records re-set first, then checked again."""
        ctx = self._ctx
        if repair:
            async with ctx.lock:
                await ctx.thread(ctx.kernel.reconcile)
            me = ctx.ledger.state.node_id
            for net in ctx.ledger.networks():
                for e in ctx.mesh.endpoints(net.id):
                    if e.node_id != me:
                        ctx.names.set_endpoint(e.network_id, e.sandbox, aliases=e.aliases,
                                               ipv4=e.ipv4, ipv6=e.ipv6, owner=e.id)
        facts = await gather_host(ctx)
        return check_host(msgspec.structs.replace(facts, repaired=repair))

    async def init(self, advertise_addr: str, *, listen_addr: str | None = None,
                   store: str | None = None) -> JoinToken:
        await self._cluster.init(advertise_addr, listen_addr=listen_addr, store=store)
        return await self.join_token(Role.WORKER)

    async def join_token(self, role: Role | str, *, rotate: bool = False) -> JoinToken:
        return await self._cluster.join_token(role, rotate=rotate)

    async def join(self, token: str, remote: str, advertise_addr: str | None = None,
                   store_cacert: str | None = None, store_cert: str | None = None,
                   store_key: str | None = None) -> ClusterInfo:
        tls = None
        if store_cacert or store_cert or store_key:
            if not store_cacert:
                raise InvalidArgument("--store-cert/--store-key need --store-cacert (the CA "
                                      "that signed the etcd members' certificates)")
            tls = EtcdTls(ca=store_cacert, cert=store_cert, key=store_key)
        await self._cluster.join(token, remote, advertise_addr=advertise_addr, tls=tls)
        return await self.info()

    async def nodes(self) -> list[NodeInfo]:
        return await self._cluster.nodes()

    async def update_node(self, node: str, *, availability: Availability | str) -> NodeInfo:
        info = await self._cluster.update_node(node, availability=availability)
        self._tasks.schedule()   # a drained node's tasks move, an active one takes new ones
        return info

    async def remove_node(self, node: str, *, force: bool = False) -> None:
        await self._cluster.remove_node(node, force=force)
        self._tasks.schedule()   # its tasks move to the nodes left

    async def promote_node(self, node: str) -> NodeInfo:
        info = await self._cluster.promote_node(node)
        self._tasks.schedule()
        return info

    async def demote_node(self, node: str) -> NodeInfo:
        info = await self._cluster.demote_node(node)
        self._tasks.schedule()
        return info

    async def leave(self, *, force: bool = False) -> None:
        await self._cluster.check_leave(force=force, busy=self._endpoints.cluster_users)
        old = [n for n in self._ctx.ledger.networks() if n.scope == Scope.SWARM]
        await self._endpoints.disconnect_cluster()
        await self._cluster.finish_leave()
        await self._peers.forget_cluster(old)

    # -- networks -----------------------------------------------------------------------------

    async def networks(self) -> list[NetworkInfo]:
        """Local networks, plus cluster ones: all on a manager, on a worker only those with
        a local endpoint (the lab's behaviour)."""
        return await self._networks.networks()

    async def inspect_network(self, name: str) -> NetworkInfo:
        return await self._networks.inspect(name)

    async def create_network(self, name: str, *, driver: str = "bridge",
                             attachable: bool = False, subnet: str | None = None,
                             gateway: str | None = None, ip_range: str | None = None,
                             ipv6: bool = False, internal: bool = False,
                             options: dict[str, str] | None = None,
                             labels: dict[str, str] | None = None) -> NetworkInfo:
        return await self._networks.create(
            name, driver=driver, attachable=attachable, subnet=subnet, gateway=gateway,
            ip_range=ip_range, ipv6=ipv6, internal=internal, options=options, labels=labels)

    async def ensure_network(self, name: str, *, driver: str = "overlay") -> NetworkInfo:
        """The network of that name, created on first use."""
        return await self._networks.ensure(name, driver=driver)

    async def remove_network(self, name: str) -> None:
        await self._networks.remove(name)

    # -- containers ---------------------------------------------------------------------------

    async def containers(self) -> list[ContainerInfo]:
        return await self._endpoints.containers()

    async def inspect_container(self, name: str) -> ContainerInfo:
        return await self._endpoints.inspect(name)

    async def run(self, name: str, *, network: str | None = None, aliases: Sequence[str] = (),
                  ip: str | None = None, netns_path: str | None = None, hostname: str = "",
                  labels: dict[str, str] | None = None) -> ContainerInfo:
        """A new sandbox (its own netns), or an existing netns adopted by ``netns_path``,
        connected to ``network`` (default: the host's ``bridge``). All or nothing."""
        info = await self._endpoints.run(name, network=network, aliases=aliases, ip=ip,
                                         netns_path=netns_path, hostname=hostname,
                                         labels=labels)
        self._services.schedule()   # its VIPs
        return info

    async def remove_container(self, name: str, *, force: bool = False) -> None:
        # A backend leaves its services before its sandbox goes.
        await self._services.forget_container(name)
        await self._endpoints.remove(name, force=force)
        self._services.schedule()

    async def connect(self, network: str, container: str, *, aliases: Sequence[str] = (),
                      ip: str | None = None) -> EndpointInfo:
        info = await self._endpoints.connect(network, container, aliases=aliases, ip=ip)
        self._services.schedule()
        return info

    async def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        await self._services.forget_container(container)
        await self._endpoints.disconnect(network, container, force=force)
        self._services.schedule()

    # -- services -----------------------------------------------------------------------------

    async def create_service(self, name: str, *, networks: Sequence[str] = (),
                             endpoint_mode: str = "vip", publish: Sequence[str] = (),
                             replicas: int | None = None,
                             command: Sequence[str] = ()) -> dict[str, Any]:
        """A service; with ``command``, netfabric runs ``replicas`` (default 1) tasks of it."""
        spec = RunSpec(name, 1 if replicas is None else replicas, tuple(command)) \
            if command else None
        if replicas is not None and not command:
            raise InvalidArgument("--replicas needs a command to run")
        info = await self._services.create_service(name, networks=networks,
                                                   endpoint_mode=endpoint_mode,
                                                   publish=publish)
        if spec is not None:
            await self._tasks.set_spec(spec)
        return info

    async def scale_service(self, name: str, replicas: int) -> None:
        await self._tasks.update(name, replicas=replicas, command=(), failure_action=None,
                           rollback=False)

    async def update_service(self, name: str, *, replicas: int | None = None,
                             command: Sequence[str] = (), failure_action: str | None = None,
                             rollback: bool = False) -> dict[str, Any]:
        """Scale, roll out a new command one task at a time, or roll back."""
        await self._tasks.update(name, replicas=replicas, command=tuple(command),
                           failure_action=failure_action, rollback=rollback)
        return await self.inspect_service(name)

    async def service_ps(self, name: str) -> list[dict[str, Any]]:
        return self._tasks.ps(name)

    async def remove_service(self, name: str) -> None:
        self._ctx.require_manager()
        await self._tasks.drop_spec(name)
        await self._services.remove_service(name)

    async def services(self) -> list[dict[str, Any]]:
        infos = await self._services.services()
        specs = self._tasks.specs()
        for info in infos:
            spec = specs.get(info["name"])
            if spec is not None:
                running = [t for t in self._tasks.ps(info["name"])
                           if t["desired"] == "running" and t["state"] == "running"]
                info.update(replicas=spec.replicas, running=len(running),
                            command=list(spec.command))
        return infos

    async def inspect_service(self, name: str) -> dict[str, Any]:
        info = await self._services.inspect_service(name)
        spec = self._tasks.specs().get(name)
        if spec is not None:
            info.update(replicas=spec.replicas, command=list(spec.command),
                        update_status={"state": str(spec.update), "message": spec.message})
        return info

    async def add_backend(self, service: str, container: str) -> dict[str, Any]:
        return await self._services.add_backend(service, container)

    async def remove_backend(self, service: str, container: str) -> None:
        await self._services.remove_backend(service, container)

    # -- hooks for front ends that plumb their own interfaces ---------------------------------

    def add_restorer(self, restore: Restorer) -> None:
        """See :meth:`AgentFrontend.add_restorer`."""
        self._restorers.append(restore)

    async def resolve_network(self, ref: str) -> Network:
        return await self._networks.resolve(ref)

    def subnets_in_use(self) -> list[str]:
        return self._networks.subnets_in_use()

    async def allocate(self, network: Network, ip: str | None = None) -> Allocation:
        return await self._addresses.allocate(network, ip)

    async def release(self, network: Network, ip: str | None) -> None:
        await self._addresses.release(network, ip)
        await self._endpoints.external_released(network)

    async def attach_endpoint(self, network: Network, endpoint: Endpoint, *, netns_path: str,
                              ifname: str, gateway: str | None) -> None:
        await self._endpoints.attach_external(network, endpoint, netns_path=netns_path,
                                              ifname=ifname, gateway=gateway)

    async def detach_endpoint(self, network: Network, endpoint: Endpoint, *, netns_path: str,
                              ifname: str) -> None:
        await self._endpoints.detach_external(network, endpoint, netns_path=netns_path,
                                              ifname=ifname)

    def publish(self, network: Network, endpoint: Endpoint, *,
                replaces: Endpoint | None = None) -> None:
        self._endpoints.publish(network, endpoint, replaces=replaces)

    def withdraw(self, network: Network, endpoint: Endpoint) -> None:
        self._endpoints.withdraw(network, endpoint)

    async def open_names(self, netns: str, netns_path: str, networks: frozenset[str]) -> None:
        await self._ctx.names.open_sandbox(netns, netns_path, networks)

    async def close_names(self, netns: str) -> None:
        await self._ctx.names.close_sandbox(netns)

    async def open_services(self, netns_path: str, networks: frozenset[str]) -> None:
        await self._services.open_sandbox(netns_path, networks)

    async def close_services(self, netns_path: str) -> None:
        await self._services.close_sandbox(netns_path)


def _implements_frontend(core: AgentCore) -> AgentFrontend:
    return core   # mypy checks that AgentCore is an AgentFrontend
