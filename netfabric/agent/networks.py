"""The network registry: creating, finding, listing and removing networks.

Local (bridge) networks belong to this host; cluster (overlay) networks to the manager,
which gives them their subnet and VNI. A worker learns a cluster network from the manager
on first use and keeps it (so it restarts without a manager), refreshing its copy while it
has no endpoint on it, as the network may have been removed meanwhile.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import replace

from netfabric.agent.addresses import AddressRouter
from netfabric.agent.context import NOT_IN_CLUSTER, AgentContext, check_labels, check_name
from netfabric.agent.rpc import GET_NETWORK
from netfabric.agent.state import new_id
from netfabric.agent.views import endpoint_info, network_info, remote_info
from netfabric.api.types import EndpointInfo, NetworkInfo, Role
from netfabric.errors import (
    AgentUnreachable,
    AlreadyExists,
    InUse,
    InvalidArgument,
    NetfabricError,
    NotAManager,
    NotFound,
    NotInCluster,
)
from netfabric.model import Driver, Network, Scope

__all__ = ["DEFAULT_BRIDGE", "NetworkRegistry"]

DEFAULT_BRIDGE = "bridge"
_MTU_RANGE = (576, 65000)


def _check_options(options: dict[str, str]) -> None:
    for key, value in options.items():
        if key == "mtu":
            try:
                mtu = int(value)
            except ValueError as exc:
                raise InvalidArgument(f"invalid mtu {value!r}: not a number") from exc
            if not _MTU_RANGE[0] <= mtu <= _MTU_RANGE[1]:
                raise InvalidArgument(f"invalid mtu {mtu}: must be 576..65000")
        elif key not in ("com.docker.network.bridge.name",):
            raise InvalidArgument(f"unknown network option {key!r} (known: mtu)")


class NetworkRegistry:
    """Networks of this host and, on a manager, of the cluster."""

    def __init__(self, ctx: AgentContext, addresses: AddressRouter) -> None:
        self._ctx = ctx
        self._addresses = addresses

    # -- finding ------------------------------------------------------------------------------

    def by_id(self, network_id: str) -> Network:
        net = self._ctx.ledger.network(network_id)
        if net is None and self._ctx.ledger.network_missed():   # another manager's newest?
            net = self._ctx.ledger.network(network_id)
        if net is None:
            raise NotFound(f"network {network_id} not found")
        return net

    def find(self, ref: str) -> Network:
        """A known network by ID, name or ID prefix (on a manager sharing etcd, one not
        known yet is looked for there: another manager may have just made it)."""
        try:
            return self._find(ref)
        except NotFound:
            if not self._ctx.ledger.network_missed():
                raise
        return self._find(ref)

    def _find(self, ref: str) -> Network:
        nets = self._ctx.ledger.networks()
        for match in ([n for n in nets if n.id == ref], [n for n in nets if n.name == ref],
                      [n for n in nets if ref and n.id.startswith(ref)]):
            if len(match) == 1:
                return match[0]
            if len(match) > 1:
                raise InvalidArgument(f"network {ref!r} is ambiguous: use its ID")
        raise NotFound(f"network {ref} not found")

    async def resolve(self, ref: str) -> Network:
        """A network by name or ID; a worker asks a manager for cluster networks it lacks,
        and refreshes a cached one it has no endpoint on (it may have been removed)."""
        ctx = self._ctx
        try:
            net = self.find(ref)
        except NotFound:
            if ctx.role is not Role.WORKER:
                raise
        else:
            if ctx.role is not Role.WORKER or net.scope != Scope.SWARM or \
                    ctx.ledger.local_endpoints(net.id):
                return net
            try:
                fresh = await self._fetch(net.name)
            except NotFound:
                ctx.ledger.drop_network(net.id)
                await self._addresses.forget(net)
                raise
            except AgentUnreachable:
                return net   # the manager is down: the cached record is the best we have
            if fresh.id != net.id:
                ctx.ledger.drop_network(net.id)
            return fresh
        return await self._fetch(ref)

    async def _fetch(self, ref: str) -> Network:
        raw = await self._ctx.call_manager(GET_NETWORK.name, {"name": ref})
        return GET_NETWORK.parse_result(raw, peer="the manager")

    def subnets_in_use(self) -> list[str]:
        """The CIDRs of every network this host knows."""
        return [s.cidr for net in self._ctx.ledger.networks() for s in net.subnets]

    # -- listing ------------------------------------------------------------------------------

    def info(self, net: Network) -> NetworkInfo:
        ctx = self._ctx
        eps: list[EndpointInfo] = [endpoint_info(sb, ep, node_id=ctx.node_id)
                                   for sb, ep in ctx.ledger.local_endpoints(net.id)]
        if net.scope == Scope.SWARM:
            eps += [remote_info(net, remote) for remote in ctx.mesh.endpoints(net.id)
                    if remote.node_id != ctx.node_id]
        return network_info(net, eps)

    def _shown(self, net: Network) -> bool:
        """A worker shows a cluster network only while it has a local endpoint on it."""
        return net.scope != Scope.SWARM or self._ctx.role is not Role.WORKER or \
            bool(self._ctx.ledger.local_endpoints(net.id))

    async def networks(self) -> list[NetworkInfo]:
        """Local networks, plus cluster ones: all on a manager, on a worker only those with
        a local endpoint (the lab's behaviour)."""
        ctx = self._ctx
        out = []
        for net in ctx.ledger.networks():
            if net.scope == Scope.SWARM and ctx.role is not Role.MANAGER and \
                    not ctx.ledger.local_endpoints(net.id):
                continue
            out.append(self.info(net))
        return sorted(out, key=lambda n: n.name)

    async def inspect(self, name: str) -> NetworkInfo:
        net = self.find(name)
        if not self._shown(net):
            raise NotFound(f"network {name} not found")
        return self.info(net)

    # -- creating and removing ----------------------------------------------------------------

    async def create(self, name: str, *, driver: str = "bridge", attachable: bool = False,
                     subnet: str | None = None, gateway: str | None = None,
                     ip_range: str | None = None, ipv6: bool = False, internal: bool = False,
                     options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None) -> NetworkInfo:
        check_name(name, "network")
        try:
            drv = Driver(driver)
        except ValueError as exc:
            raise InvalidArgument(f"unknown driver {driver!r}: use bridge or overlay") from exc
        if drv is Driver.OVERLAY:
            cluster = self._ctx.ledger.state.cluster
            if cluster is None:
                raise NotInCluster(NOT_IN_CLUSTER)
            if cluster.role is not Role.MANAGER:
                raise NotAManager("Cannot create a multi-host network from a worker node. "
                                  "Please create the network from a manager node.")
        _check_options(options or {})
        if subnet is not None and ":" in subnet:
            raise InvalidArgument(
                f"IPv6 subnet {subnet} refused: a network here has one IPv4 subnet, and "
                "--ipv6 gives its endpoints IPv6 addresses from a prefix the network derives")
        if ip_range is not None and subnet is None:
            raise InvalidArgument("--ip-range needs --subnet")
        if gateway is not None and subnet is None:
            raise InvalidArgument("--gateway needs --subnet")
        async with self._ctx.lock:
            net = await self.create_locked(
                name, driver=drv, attachable=attachable or drv is Driver.BRIDGE, subnet=subnet,
                gateway=gateway, ip_range=ip_range, ipv6=ipv6, internal=internal,
                options=dict(options or {}), labels=check_labels(labels))
        return self.info(net)

    async def create_locked(self, name: str, *, driver: Driver, attachable: bool,
                            subnet: str | None = None, gateway: str | None = None,
                            ip_range: str | None = None, ipv6: bool = False,
                            internal: bool = False,
                            options: dict[str, str] | None = None,
                            labels: tuple[tuple[str, str], ...] = ()) -> Network:
        """Create a checked network; the caller holds the lock."""
        ctx = self._ctx
        options = options or {}
        if any(n.name == name for n in ctx.ledger.networks()):
            raise AlreadyExists(f"network with name {name} already exists")
        scope = Scope.SWARM if driver is Driver.OVERLAY else Scope.LOCAL
        mtu = int(options["mtu"]) if "mtu" in options else None
        net = Network(id=new_id(16), name=name, driver=driver, scope=scope,
                      attachable=attachable, internal=internal, ipv6=ipv6, mtu=mtu,
                      options=tuple(sorted(options.items())), created=time.time(),
                      labels=labels)
        if driver is Driver.OVERLAY:
            used = {n.vni for n in ctx.ledger.networks()}
            vni = 4096 + secrets.randbelow(1 << 23)
            while vni in used:
                vni = 4096 + secrets.randbelow(1 << 23)
            net = replace(net, vni=vni)
        # subnets and row in one transaction: a store that refuses it (etcd without
        # quorum) keeps neither, so no half-made network is left
        subnets = await ctx.thread(ctx.book.create_network, net, subnet=subnet,
                                   gateway=gateway, ip_range=ip_range)
        net = replace(net, subnets=subnets)
        try:
            if scope == Scope.LOCAL:
                await ctx.thread(ctx.kernel.ensure_network, net)
        except BaseException:
            with contextlib.suppress(NetfabricError):
                await ctx.thread(ctx.book.delete_network, net.id)
            raise
        ctx.ledger.cache_network(net)
        if scope == Scope.SWARM:
            ctx.mesh.join_network(net.id)
        return net

    async def ensure(self, name: str, *, driver: str = "overlay") -> NetworkInfo:
        """The network of that name, created on first use (the Docker plugin's mapping)."""
        try:
            return await self.inspect(name)
        except NotFound:
            pass
        try:
            return await self.create(name, driver=driver, attachable=True)
        except AlreadyExists:
            return await self.inspect(name)

    async def remove(self, name: str) -> None:
        ctx = self._ctx
        async with ctx.lock:
            net = self.find(name)
            if net.name == DEFAULT_BRIDGE and net.scope == Scope.LOCAL:
                raise InvalidArgument("bridge is a pre-defined network and cannot be removed")
            if net.scope == Scope.SWARM:
                ctx.require_manager()
            users = sorted({sb.name for sb, _ in ctx.ledger.local_endpoints(net.id)})
            if net.scope == Scope.SWARM:
                users += sorted({f"{e.sandbox} (node {e.node_id[:12]})"
                                 for e in ctx.mesh.endpoints(net.id)
                                 if e.node_id != ctx.node_id})
            if ctx.ledger.records is not None:   # what the other managers handed out
                await ctx.thread(ctx.book.reload)
            held = await ctx.thread(ctx.book.allocated, net.id)
            leases = await ctx.thread(ctx.book.leased, net.id)
            if leases and not users:
                nodes = ctx.ledger.state.nodes
                hosts = sorted({nodes[lease.host_id].hostname if lease.host_id in nodes
                                else lease.host_id for lease in leases})
                users = [f"address blocks leased to {', '.join(hosts)}"]
            if users or held:
                who = ", ".join(users) if users else f"{len(held)} endpoint address(es)"
                raise InUse(f"error while removing network: network {net.name} id {net.id} "
                            f"has active endpoints: {who}")
            if net.scope == Scope.LOCAL:
                await ctx.thread(ctx.kernel.delete_network, net)
            await ctx.thread(ctx.book.delete_network, net.id)   # subnets and row at once
            ctx.ledger.forget_network(net.id)
            if net.scope == Scope.SWARM:
                ctx.mesh.leave_network(net.id)

    async def restore(self) -> None:
        """At start: the default bridge exists, and every local network's kernel objects."""
        ctx = self._ctx
        if DEFAULT_BRIDGE not in {n.name for n in ctx.ledger.networks()}:
            await self.create_locked(DEFAULT_BRIDGE, driver=Driver.BRIDGE, attachable=True)
        for net in ctx.ledger.networks():
            if net.scope == Scope.LOCAL:
                await ctx.thread(ctx.kernel.ensure_network, net)
