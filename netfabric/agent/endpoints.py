"""Sandboxes and their endpoints: run, connect, disconnect, remove, and recovery.

A sandbox is a netns with endpoints on networks: one the agent made (``run``), or an existing
one adopted by path (``external``, e.g. CNI's or Docker's). Every operation is all or nothing:
an endpoint is recorded, addressed, plumbed and published, and a failure at any step undoes
the steps before it. Front ends that plumb interfaces of their own (the Docker plugin) use
:meth:`Endpoints.attach_external` and :meth:`Endpoints.publish`, so that their endpoints
share this host's kernel, names and gossip with the sandboxes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence

from netfabric.agent.addresses import AddressRouter
from netfabric.agent.context import (
    AgentContext,
    check_hostname,
    check_ip,
    check_labels,
    check_name,
)
from netfabric.agent.networks import DEFAULT_BRIDGE, NetworkRegistry
from netfabric.agent.peers import PeerSync
from netfabric.agent.state import EndpointRecord, SandboxRecord, new_id
from netfabric.agent.views import container_info, endpoint, endpoint_info
from netfabric.api.types import ContainerInfo, EndpointInfo, Role
from netfabric.drivers.common import address_mac
from netfabric.errors import AlreadyExists, InvalidArgument, NetfabricError, NotFound
from netfabric.model import Endpoint, Network, Scope

__all__ = ["MAX_IFACES", "Endpoints"]

log = logging.getLogger(__name__)

MAX_IFACES = 16


def _check_fixed_ip(net: Network, ip: str | None) -> None:
    """Docker 25+: ``--ip`` only on user-defined networks, never on the default bridge."""
    if ip is not None and net.name == DEFAULT_BRIDGE and net.scope == Scope.LOCAL:
        raise InvalidArgument("User specified IP address is supported on user defined "
                              "networks only")


def _networks_of(sb: SandboxRecord) -> frozenset[str]:
    return frozenset(ep.network_id for ep in sb.endpoints)


class Endpoints:
    """This host's sandboxes and endpoints."""

    def __init__(self, ctx: AgentContext, networks: NetworkRegistry, addresses: AddressRouter,
                 peers: PeerSync) -> None:
        self._ctx = ctx
        self._networks = networks
        self._addresses = addresses
        self._peers = peers

    def sandbox_netns(self, sandbox_id: str) -> str:
        return f"{self._ctx.config.host_netns}-c{sandbox_id[:8]}"

    def _endpoint(self, sb: SandboxRecord, ep: EndpointRecord) -> Endpoint:
        return endpoint(sb, ep, node_id=self._ctx.node_id, vtep=self._ctx.address)

    def find(self, ref: str) -> SandboxRecord:
        """A local sandbox by name or unique id prefix; NotFound otherwise."""
        return self._find(ref)

    def _find(self, ref: str) -> SandboxRecord:
        sandboxes = self._ctx.ledger.state.sandboxes
        sb = sandboxes.get(ref)
        if sb is not None:
            return sb
        matches = [s for s in sandboxes.values() if ref and s.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"No such container: {ref}")

    def _info(self, sb: SandboxRecord) -> ContainerInfo:
        return container_info(sb, hostname=self._ctx.ledger.state.hostname,
                              node_id=self._ctx.node_id)

    async def _open_names(self, sb: SandboxRecord) -> None:
        await self._ctx.names.open_sandbox(sb.netns, sb.netns_path, _networks_of(sb))

    # -- reading ------------------------------------------------------------------------------

    async def containers(self) -> list[ContainerInfo]:
        return sorted((self._info(sb) for sb in self._ctx.ledger.state.sandboxes.values()),
                      key=lambda c: (-c.created, c.name))

    async def inspect(self, name: str) -> ContainerInfo:
        return self._info(self._find(name))

    # -- run, connect, disconnect, remove ------------------------------------------------------

    async def run(self, name: str, *, network: str | None = None, aliases: Sequence[str] = (),
                  ip: str | None = None, netns_path: str | None = None, hostname: str = "",
                  labels: dict[str, str] | None = None,
                  service_task: bool = False) -> ContainerInfo:
        """A new sandbox (its own netns), or an existing netns adopted by ``netns_path``,
        connected to ``network`` (default: the host's ``bridge``). All or nothing.
        ``service_task``: a service's task, which any overlay takes (see :meth:`connect`)."""
        ctx = self._ctx
        check_name(name, "container")
        aliases = [check_name(a, "alias") for a in aliases]
        ip = check_ip(ip, "address")
        if hostname:
            check_hostname(hostname)
        pairs = check_labels(labels)
        if netns_path is not None and not os.path.exists(netns_path):
            raise NotFound(f"netns {netns_path} does not exist")
        net = await self._networks.resolve(network or DEFAULT_BRIDGE)
        _check_fixed_ip(net, ip)
        if net.scope == Scope.SWARM and not net.attachable and not service_task:
            raise InvalidArgument(
                f"Could not attach to network {net.name}: rpc error: code = PermissionDenied "
                f"desc = network {net.name} not manually attachable")
        async with ctx.lock:
            sandboxes = ctx.ledger.state.sandboxes
            if name in sandboxes:
                raise AlreadyExists(
                    f"Conflict. The container name \"/{name}\" is already in use by container "
                    f"\"{sandboxes[name].id}\". You have to remove (or rename) that "
                    "container to be able to reuse that name.")
            sid = new_id(32)
            netns = self.sandbox_netns(sid)
            sb = SandboxRecord(id=sid, name=name, netns=netns,
                               netns_path=netns_path or f"/run/netns/{netns}",
                               external=netns_path is not None, created=time.time(),
                               hostname=hostname, labels=list(pairs))
            if not sb.external:
                await ctx.thread(ctx.kernel.ensure_sandbox, netns)
            try:
                await self._connect_locked(sb, net, aliases=aliases, ip=ip)
                await self._open_names(sb)
            except BaseException:
                await self._teardown_locked(sb, force=True)
                raise
        return self._info(sb)

    async def connect(self, network: str, container: str, *, aliases: Sequence[str] = (),
                      ip: str | None = None, service_task: bool = False) -> EndpointInfo:
        """``service_task``: a service's task, which any overlay takes (attachable or not:
        that flag is about containers run by hand, as in Docker)."""
        aliases = [check_name(a, "alias") for a in aliases]
        ip = check_ip(ip, "address")
        net = await self._networks.resolve(network)
        _check_fixed_ip(net, ip)
        if net.scope == Scope.SWARM and not net.attachable and not service_task:
            raise InvalidArgument(f"network {net.name} is not manually attachable")
        async with self._ctx.lock:
            sb = self._find(container)
            ep = await self._connect_locked(sb, net, aliases=aliases, ip=ip)
            await self._open_names(sb)
            return endpoint_info(sb, ep, node_id=self._ctx.node_id)

    async def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        """Remove one endpoint. When the kernel refuses, the endpoint stays (and the error
        is raised) unless ``force``: then its record and addresses go all the same, and the
        next start's reconcile removes what the kernel kept."""
        async with self._ctx.lock:
            sb = self._find(container)
            net = self._networks.find(network)
            ep = next((e for e in sb.endpoints if e.network_id == net.id), None)
            if ep is None:
                raise NotFound(f"container {sb.name} is not connected to network {net.name}")
            await self._disconnect_locked(sb, ep, force=force)
            await self._open_names(sb)

    async def remove(self, name: str, *, force: bool = False) -> None:
        """Remove a sandbox and its endpoints. When a step fails, the sandbox stays with
        what is left of it (and the error is raised) unless ``force``: then every step is
        tried, the sandbox goes all the same, and failures are logged."""
        async with self._ctx.lock:
            sb = self._find(name)
            await self._teardown_locked(sb, force=force)

    async def disconnect_cluster(self) -> None:
        """Disconnect every sandbox from every cluster network (this node leaves)."""
        ledger = self._ctx.ledger
        for sb in list(ledger.state.sandboxes.values()):
            for ep in list(sb.endpoints):
                net = ledger.network(ep.network_id)
                if net is not None and net.scope == Scope.SWARM:
                    await self.disconnect(ep.network_id, sb.name, force=True)

    def cluster_users(self) -> list[str]:
        """"container on network" for every endpoint on a cluster network."""
        ledger = self._ctx.ledger
        out = []
        for sb in ledger.state.sandboxes.values():
            for ep in sb.endpoints:
                net = ledger.network(ep.network_id)
                if net is not None and net.scope == Scope.SWARM:
                    out.append(f"{sb.name} on {ep.network}")
        return out

    # -- the steps ----------------------------------------------------------------------------

    async def _connect_locked(self, sb: SandboxRecord, net: Network, *, aliases: Sequence[str],
                              ip: str | None) -> EndpointRecord:
        ctx = self._ctx
        if any(ep.network_id == net.id for ep in sb.endpoints):
            raise AlreadyExists(f"container {sb.name} is already attached to network {net.name}")
        used = {ep.ifname for ep in sb.endpoints}
        ifname = next((f"eth{i}" for i in range(MAX_IFACES) if f"eth{i}" not in used), None)
        if ifname is None:
            raise InvalidArgument(f"container {sb.name} has {MAX_IFACES} interfaces already")
        alloc = await self._addresses.allocate(net, ip)
        ep = EndpointRecord(id=new_id(32), network_id=net.id, network=net.name, ifname=ifname,
                            mac=address_mac(alloc.ipv4, alloc.ipv6), ipv4=alloc.ipv4,
                            prefixlen=alloc.prefixlen,
                            gateway=alloc.gateway, ipv6=alloc.ipv6, aliases=list(aliases))
        try:
            ctx.ledger.add_endpoint(sb, ep, net)
            if net.scope == Scope.SWARM:
                ctx.mesh.join_network(net.id)
            await ctx.thread(ctx.kernel.attach, net, self._endpoint(sb, ep),
                             netns_path=sb.netns_path, ifname=ifname, gateway=alloc.gateway)
            await self._peers.sync(net)
        except BaseException:
            try:
                with contextlib.suppress(NetfabricError):
                    await ctx.thread(ctx.kernel.detach, net, self._endpoint(sb, ep),
                                     netns_path=sb.netns_path, ifname=ifname)
                await self._addresses.release(net, alloc.ipv4)
                await self._addresses.release(net, alloc.ipv6)
            finally:
                ctx.ledger.remove_endpoint(sb, ep)
            raise
        self.publish(net, self._endpoint(sb, ep))
        return ep

    async def _disconnect_locked(self, sb: SandboxRecord, ep: EndpointRecord, *,
                                 force: bool) -> None:
        ctx = self._ctx
        net = self._networks.by_id(ep.network_id)
        self.withdraw(net, self._endpoint(sb, ep))
        try:
            await ctx.thread(ctx.kernel.detach, net, self._endpoint(sb, ep),
                             netns_path=sb.netns_path, ifname=ep.ifname)
        except NetfabricError as exc:
            if not force:
                raise
            log.warning("%s: detaching from %s failed (%s); removed all the same", sb.name,
                        net.name, exc)
        ctx.ledger.remove_endpoint(sb, ep)
        for ip in (ep.ipv4, ep.ipv6):
            try:
                await self._addresses.release(net, ip)
            except NetfabricError as exc:
                if not force:
                    raise
                log.warning("%s: releasing %s failed: %s", sb.name, ip, exc)
        # Not while a front end's endpoint (the Docker plugin's, a node's ingress leg) is
        # still on the network: it needs its blocks and the network's gossip.
        if net.scope == Scope.SWARM and not ctx.ledger.local_endpoints(net.id) and \
                ctx.role is Role.WORKER and not self._peers.holds(net.id):
            await self._addresses.network_left(net)
            ctx.mesh.leave_network(net.id)

    async def _teardown_locked(self, sb: SandboxRecord, *, force: bool) -> None:
        """Remove a sandbox and everything of it; used by rm and (forced) by a failed run."""
        ctx = self._ctx
        for ep in list(sb.endpoints):
            await self._disconnect_locked(sb, ep, force=force)
        await ctx.names.close_sandbox(sb.netns)
        if not sb.external:
            try:
                await ctx.thread(ctx.kernel.delete_sandbox, sb.netns)
            except NetfabricError as exc:
                if not force:
                    raise
                log.warning("%s: deleting netns %s failed: %s", sb.name, sb.netns, exc)
        ctx.ledger.drop_sandbox(sb)

    # -- names and gossip ---------------------------------------------------------------------

    def publish(self, net: Network, ep: Endpoint, *, replaces: Endpoint | None = None) -> None:
        """Make a local endpoint resolvable here and, on a cluster network, known to every
        host. ``replaces``: the same endpoint under its previous name and aliases."""
        ctx = self._ctx
        if replaces is not None:
            ctx.names.remove_endpoint(replaces.network_id, replaces.sandbox, owner=replaces.id)
        ctx.names.set_endpoint(ep.network_id, ep.sandbox, aliases=ep.aliases, ipv4=ep.ipv4,
                               ipv6=ep.ipv6, owner=ep.id)
        if net.scope == Scope.SWARM:
            ctx.mesh.join_network(net.id)
            ctx.mesh.publish(ep)

    def withdraw(self, net: Network, ep: Endpoint) -> None:
        """Undo :meth:`publish`."""
        self._ctx.names.remove_endpoint(ep.network_id, ep.sandbox, owner=ep.id)
        if net.scope == Scope.SWARM:
            self._ctx.mesh.withdraw(ep)

    # -- endpoints front ends plumb themselves ------------------------------------------------

    async def attach_external(self, net: Network, ep: Endpoint, *, netns_path: str, ifname: str,
                              gateway: str | None) -> None:
        """Plumb an endpoint that is not a sandbox's (idempotent), and keep its network's
        remote endpoints programmed while it is there. Publish it with :meth:`publish`."""
        ctx = self._ctx
        async with ctx.lock:
            ctx.ledger.remember_network(net)
            await ctx.thread(ctx.kernel.attach, net, ep, netns_path=netns_path, ifname=ifname,
                             gateway=gateway)
        self._peers.hold(net, ep.id)
        await self._peers.sync(net)

    async def detach_external(self, net: Network, ep: Endpoint, *, netns_path: str,
                              ifname: str) -> None:
        """Undo :meth:`attach_external` (withdraw it first)."""
        ctx = self._ctx
        self._peers.unhold(net.id, ep.id)
        async with ctx.lock:
            await ctx.thread(ctx.kernel.detach, net, ep, netns_path=netns_path, ifname=ifname)

    async def external_released(self, net: Network) -> None:
        """A front end gave back an address (Docker's ReleaseAddress follows DeleteEndpoint):
        with no endpoint of ``net`` left on this worker, its empty blocks go back, as when the
        last sandbox leaves, or the manager could never remove the network."""
        ctx = self._ctx
        if net.scope != Scope.SWARM or ctx.role is not Role.WORKER:
            return
        async with ctx.lock:
            if not ctx.ledger.local_endpoints(net.id) and not self._peers.holds(net.id):
                await self._addresses.network_left(net)

    # -- recovery -----------------------------------------------------------------------------

    async def recover(self) -> None:
        """At start: every sandbox of the state plumbed, named and published again."""
        for sb in list(self._ctx.ledger.state.sandboxes.values()):
            await self._recover(sb)

    async def _recover(self, sb: SandboxRecord) -> None:
        ctx = self._ctx
        if not sb.external:
            await ctx.thread(ctx.kernel.ensure_sandbox, sb.netns)
        elif not os.path.exists(sb.netns_path):
            log.warning("sandbox %s: its netns %s is gone; removing it", sb.name, sb.netns_path)
            for ep in list(sb.endpoints):
                await self._addresses.release(self._networks.by_id(ep.network_id), ep.ipv4)
                await self._addresses.release(self._networks.by_id(ep.network_id), ep.ipv6)
            ctx.ledger.drop_sandbox(sb)
            return
        for ep in sb.endpoints:
            net = self._networks.by_id(ep.network_id)
            await ctx.thread(ctx.kernel.attach, net, self._endpoint(sb, ep),
                             netns_path=sb.netns_path, ifname=ep.ifname, gateway=ep.gateway)
            self.publish(net, self._endpoint(sb, ep))
        await self._open_names(sb)

    async def remove_leaked(self) -> None:
        """Delete sandbox netns a run that a crash cut short made (not in the state)."""
        ctx = self._ctx
        known = {sb.netns for sb in ctx.ledger.state.sandboxes.values()}
        for netns in await ctx.thread(ctx.kernel.sandboxes, f"{ctx.config.host_netns}-c"):
            if netns not in known:
                log.info("removing leaked sandbox netns %s", netns)
                await ctx.thread(ctx.kernel.delete_sandbox, netns)
