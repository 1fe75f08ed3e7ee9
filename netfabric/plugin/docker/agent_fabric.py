"""The :class:`Fabric` seam over the running agent's public interface (:class:`AgentFrontend`).

Networks come from the agent (one netfabric network per name across the cluster, a worker
asking its manager), addresses from its IPAM (so Docker containers, netfabric sandboxes and
CNI pods never collide), and the data path from its drivers. A Docker endpoint is a veth
whose inner end waits in this host's netns, named ``nfd<endpoint id>``, for dockerd to move
it into the container (Docker sets the address and routes there); the outer end sits on the
network's bridge (``br0`` in an overlay's netns, or the local bridge). It is published to
gossip like any endpoint, first under its id and then, once dockerd lists the container,
under the container's name and aliases, so every host resolves it.

Names across hosts: dockerd's embedded resolver (127.0.0.11 in each container) answers
same-host names and forwards the rest from dockerd's netns to the ``nameserver`` of the
resolv.conf dockerd reads. The plugin opens netfabric's resolver at 127.0.0.11:53 in this
host's netns, scoped to the networks that have Docker endpoints here, so the one setting per
host is ``nameserver 127.0.0.11`` in dockerd's resolv.conf.

Endpoints of this module are not sandboxes of the agent's state. After an agent restart
the plugin's own records still list them, and the plugin re-attaches them (``attach`` is
idempotent; the inner end is *parked* for the drivers, so only the outer end is checked)
from ``AgentFrontend.add_restorer``, before the agent's reconcile would delete their veths
as unknown. The agent keeps the overlays of attached endpoints' networks programmed with
their remote endpoints (``attach_endpoint``), as it does for its own sandboxes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from netfabric.agent.frontend import AgentFrontend
from netfabric.errors import (
    AlreadyExists,
    InUse,
    InvalidArgument,
    NetfabricError,
    NotAManager,
    NotFound,
    PoolExhausted,
)
from netfabric.model import Driver, Endpoint, Network
from netfabric.plugin.docker.backend import Attachment, FabricNetwork

__all__ = ["DNS_ADDRESS", "AgentFabric", "docker_ifname"]

log = logging.getLogger(__name__)

DNS_ADDRESS: Final = "127.0.0.11"
"""Where the plugin serves netfabric's resolver in the host netns (dockerd's upstream)."""
_PROPOSAL_BASE: Final = ipaddress.IPv4Network("10.0.0.0/8")
_OPTION_KEYS: Final = frozenset({"mtu", "com.docker.network.driver.mtu"})


def docker_ifname(endpoint_id: str) -> str:
    """The veth end handed to dockerd: ``nfd`` + 12 characters of the endpoint id."""
    return "nfd" + endpoint_id[:12]


@dataclass(frozen=True, slots=True)
class _DockerEndpoint:
    network: Network
    endpoint: Endpoint
    ifname: str
    published: bool = True
    sandbox_key: str = ""
    """The container's netns (Join's SandboxKey): it gets the services' VIP tables."""


def _view(net: Network) -> FabricNetwork:
    v4 = [s for s in net.subnets if ipaddress.ip_network(s.cidr).version == 4]
    if not v4:
        raise InvalidArgument(f"network {net.name} has no IPv4 subnet")
    return FabricNetwork(name=net.name, driver=net.driver, subnet=v4[0].cidr,
                         gateway=v4[0].gateway)


class AgentFabric:
    """netfabric as the Docker plugin sees it, over a running agent."""

    def __init__(self, agent: AgentFrontend) -> None:
        self.agent = agent
        self._eps: dict[str, _DockerEndpoint] = {}
        self._dns_networks: frozenset[str] | None = None

    @property
    def host_netns_path(self) -> str:
        return f"/run/netns/{self.agent.host_netns}"

    # -- networks -----------------------------------------------------------------------------

    async def lookup_network(self, name: str) -> FabricNetwork | None:
        try:
            return _view(await self.agent.resolve_network(name))
        except NotFound:
            return None

    async def ensure_network(self, name: str, *, driver: Driver, subnet: str | None,
                             gateway: str | None, ip_range: str | None,
                             options: Mapping[str, str]) -> FabricNetwork:
        unknown = sorted(set(options) - _OPTION_KEYS)
        if unknown:
            raise InvalidArgument(f"unknown option(s) {', '.join(unknown)} for network {name}: "
                                  "netfabric knows -o type=overlay|bridge and -o mtu=N")
        mtu = next((v for k, v in sorted(options.items()) if k in _OPTION_KEYS), None)
        opts = {"mtu": mtu} if mtu else {}
        try:
            await self.agent.create_network(name, driver=driver.value, attachable=True,
                                            subnet=subnet, gateway=gateway if subnet else None,
                                            ip_range=ip_range if subnet else None, options=opts)
        except AlreadyExists:
            pass
        except NotAManager as exc:
            raise NotAManager(f"netfabric network {name!r} does not exist yet and this node is "
                              "a worker: create it (or run its first container) on a manager"
                              ) from exc
        return _view(await self.agent.resolve_network(name))

    async def release_network(self, name: str) -> None:
        """The last Docker network of this host named ``name`` is gone: remove the netfabric
        network unless it is still wanted. Kept, silently: :class:`InUse` (a container on
        another host, a netfabric sandbox or a leased block still uses it), :class:`NotFound`
        (already removed: a retried DeleteNetwork), :class:`NotAManager` (a cluster network
        belongs to the managers; a worker's Docker network going changes nothing there).
        Anything else (a pre-defined network, the kernel, the store) is an error for dockerd."""
        with contextlib.suppress(InUse, NotFound, NotAManager):
            await self.agent.remove_network(name)

    async def propose_subnet(self, *, exclude: frozenset[str]) -> str:
        taken = [ipaddress.ip_network(c) for c in (*exclude, *self.agent.subnets_in_use())]
        for cand in _PROPOSAL_BASE.subnets(new_prefix=24):
            if not any(cand.overlaps(t) for t in taken):
                return str(cand)
        raise PoolExhausted("no free /24 left in 10.0.0.0/8 to propose")

    # -- addresses ----------------------------------------------------------------------------

    async def allocate_address(self, network: str, *, address: str | None) -> str:
        net = await self.agent.resolve_network(network)
        return (await self.agent.allocate(net, address)).ipv4

    async def release_address(self, network: str, address: str) -> None:
        await self.agent.release(await self.agent.resolve_network(network), address)

    # -- endpoints ----------------------------------------------------------------------------

    async def attach(self, network: str, *, endpoint_id: str, address: str,
                     mac: str, sandbox_key: str = "") -> Attachment:
        agent = self.agent
        net = await agent.resolve_network(network)
        view = _view(net)
        ep = Endpoint(id=endpoint_id, network_id=net.id, sandbox=endpoint_id[:12],
                      node_id=agent.node_id, mac=mac, ipv4=address,
                      prefixlen=ipaddress.ip_network(view.subnet).prefixlen, vtep=agent.address)
        ifname = docker_ifname(endpoint_id)
        await agent.attach_endpoint(net, ep, netns_path=self.host_netns_path, ifname=ifname,
                                    gateway=view.gateway)
        self._eps[endpoint_id] = _DockerEndpoint(net, ep, ifname, sandbox_key=sandbox_key)
        agent.publish(net, ep)
        await self._update_dns()
        await self._update_services(sandbox_key)
        return Attachment(ifname=ifname, gateway=view.gateway)

    async def set_names(self, network: str, *, endpoint_id: str,
                        names: tuple[str, ...]) -> None:
        d = self._eps.get(endpoint_id)
        if d is None or not d.published or not names:
            return
        new = replace(d, endpoint=replace(d.endpoint, sandbox=names[0],
                                          aliases=tuple(a for a in names[1:] if a != names[0])))
        self._eps[endpoint_id] = new
        self.agent.publish(new.network, new.endpoint, replaces=d.endpoint)

    async def leave(self, network: str, *, endpoint_id: str) -> None:
        d = self._eps.get(endpoint_id)
        if d is not None and d.published:
            self.agent.withdraw(d.network, d.endpoint)
            self._eps[endpoint_id] = replace(d, published=False, sandbox_key="")
            await self._update_services(d.sandbox_key)

    async def detach(self, network: str, *, endpoint_id: str) -> None:
        d = self._eps.pop(endpoint_id, None)
        if d is None:
            return
        if d.published:
            self.agent.withdraw(d.network, d.endpoint)
        await self._update_services(d.sandbox_key)
        await self.agent.detach_endpoint(d.network, d.endpoint,
                                         netns_path=self.host_netns_path, ifname=d.ifname)
        await self._update_dns()

    async def _update_services(self, sandbox_key: str) -> None:
        """The container netns ``sandbox_key`` balances to the services of the networks it
        still has an endpoint on (none: its tables go, before Docker removes the netns)."""
        if not sandbox_key:
            return
        nets = frozenset(d.network.id for d in self._eps.values()
                         if d.sandbox_key == sandbox_key)
        if nets:
            await self.agent.open_services(sandbox_key, nets)
        else:
            await self.agent.close_services(sandbox_key)

    # -- DNS ----------------------------------------------------------------------------------

    async def _update_dns(self) -> None:
        """Serve 127.0.0.11 in the host netns for the networks with Docker endpoints."""
        nets = frozenset(d.network.id for d in self._eps.values())
        if nets == self._dns_networks:
            return
        netns = self.agent.host_netns
        if nets:
            await self.agent.open_names(netns, self.host_netns_path, nets)
        else:
            await self.agent.close_names(netns)
        self._dns_networks = nets or None

    async def close(self) -> None:
        if self._dns_networks:
            with contextlib.suppress(NetfabricError):
                await self.agent.close_names(self.agent.host_netns)
            self._dns_networks = None
