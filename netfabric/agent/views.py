"""Pure translations from the agent's records to the model and to the API's answers."""

from __future__ import annotations

from collections.abc import Iterable

from netfabric.agent.state import EndpointRecord, SandboxRecord
from netfabric.api.types import ContainerInfo, EndpointInfo, NetworkInfo
from netfabric.model import Endpoint, Network

__all__ = ["container_info", "endpoint", "endpoint_info", "network_info", "remote_info"]


def endpoint(sb: SandboxRecord, ep: EndpointRecord, *, node_id: str, vtep: str) -> Endpoint:
    """A local sandbox's endpoint as drivers and gossip see it."""
    return Endpoint(id=ep.id, network_id=ep.network_id, sandbox=sb.name, node_id=node_id,
                    mac=ep.mac, ipv4=ep.ipv4, ipv6=ep.ipv6, prefixlen=ep.prefixlen, vtep=vtep,
                    aliases=tuple(ep.aliases))


def endpoint_info(sb: SandboxRecord, ep: EndpointRecord, *, node_id: str) -> EndpointInfo:
    return EndpointInfo(network=ep.network, network_id=ep.network_id, endpoint_id=ep.id,
                        container=sb.name, node=node_id, mac=ep.mac, ipv4=ep.ipv4,
                        ipv6=ep.ipv6, prefixlen=ep.prefixlen, gateway=ep.gateway,
                        aliases=tuple(ep.aliases))


def remote_info(net: Network, remote: Endpoint) -> EndpointInfo:
    """Another host's endpoint, as gossip tells it."""
    return EndpointInfo(network=net.name, network_id=net.id, endpoint_id=remote.id,
                        container=remote.sandbox, node=remote.node_id, mac=remote.mac,
                        ipv4=remote.ipv4, ipv6=remote.ipv6, prefixlen=remote.prefixlen,
                        aliases=remote.aliases)


def container_info(sb: SandboxRecord, *, hostname: str, node_id: str) -> ContainerInfo:
    return ContainerInfo(id=sb.id, name=sb.name, netns=sb.netns, netns_path=sb.netns_path,
                         node=hostname, created=sb.created, external=sb.external,
                         hostname=sb.hostname, labels=tuple(sb.labels),
                         networks=tuple(endpoint_info(sb, ep, node_id=node_id)
                                        for ep in sb.endpoints))


def network_info(net: Network, endpoints: Iterable[EndpointInfo]) -> NetworkInfo:
    return NetworkInfo(
        id=net.id, name=net.name, driver=str(net.driver), scope=str(net.scope),
        subnets=tuple(s.cidr for s in net.subnets),
        gateways=tuple(s.gateway for s in net.subnets),
        ip_ranges=tuple(s.ip_range or "" for s in net.subnets), vni=net.vni,
        attachable=net.attachable, internal=net.internal, ipv6=net.ipv6, mtu=net.mtu,
        options=net.options, created=net.created, labels=net.labels,
        endpoints=tuple(sorted(endpoints, key=lambda e: (e.container, e.endpoint_id))))
