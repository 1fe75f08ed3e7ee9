"""From services and backends to what one node programs: load balancers per netns, and DNS.

Pure functions of values (:class:`NodeView`, :class:`~netfabric.services.model.Service`,
:class:`~netfabric.services.model.Backend`); every node computes its own part from the same
cluster-wide state, as kube-proxy does on each node.

- **VIP mode**: every local sandbox on one of a service's networks gets a load balancer of
  all ports of the service's VIP on that network, over the active backends' addresses on
  that network. The client's own netns does the DNAT, so replies need no source NAT and
  the task sees the client's address.
- **Published ports** are caught in the node's host netns on every local address:
  ``ingress`` mode on every node, over every active backend's address on the ingress
  network; ``host`` mode only on nodes running an active backend, over those. Both source-
  NAT, so that replies come back through the node that took the connection.
- **DNS**: on each network of a service, its name resolves to the VIP (or, dnsrr, to every
  active backend's address) and ``tasks.NAME`` to every active backend's address.

A backend with ``active=False`` is in none of these: it leaves them before its task stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netfabric.services.lb import LoadBalancer, Proto, Target
from netfabric.services.model import Backend, EndpointMode, PublishMode, Service

__all__ = ["NodePlan", "NodeView", "ServiceRecord", "plan_node", "service_records"]


@dataclass(frozen=True, slots=True)
class NodeView:
    """What one node has: its id, its local sandboxes (netns name -> ids of the networks it
    is attached to), the netns holding its underlay address (``None``: the caller's own),
    and the ingress network its host netns has a leg on (``None``: no routing mesh)."""

    node: str
    sandboxes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    host_netns: str | None = None
    ingress_network: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """What a service publishes in DNS on one network (``Records.set_service``)."""

    network_id: str
    name: str
    mode: EndpointMode
    vip: str | None
    tasks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodePlan:
    """Load balancers per netns (the host netns under ``host_netns``), and the published
    ports that lost to an earlier service publishing the same port (never programmed)."""

    host_netns: str | None
    tables: dict[str | None, tuple[LoadBalancer, ...]]
    conflicts: tuple[str, ...] = ()


def _active(backends: Iterable[Backend]) -> dict[str, list[Backend]]:
    out: dict[str, list[Backend]] = {}
    for b in sorted(backends, key=lambda b: (b.service, b.id)):
        if b.active:
            out.setdefault(b.service, []).append(b)
    return out


def _addresses(backends: Iterable[Backend], network_id: str) -> list[str]:
    seen: dict[str, None] = {}
    for b in backends:
        ip = b.address(network_id)
        if ip is not None:
            seen[ip] = None
    return list(seen)


def plan_node(view: NodeView, services: Iterable[Service],
              backends: Iterable[Backend]) -> NodePlan:
    """The load balancers ``view.node`` programs for ``services`` and their ``backends``."""
    svcs = sorted(services, key=lambda s: s.name)
    live = _active(backends)
    tables: dict[str | None, list[LoadBalancer]] = {view.host_netns: []}
    for netns, nets in sorted(view.sandboxes.items()):
        lbs = tables.setdefault(netns, [])
        for svc in svcs:
            if svc.mode is not EndpointMode.VIP:
                continue
            for net in svc.networks:
                vip = svc.vip(net)
                if net not in nets or vip is None:
                    continue
                targets = tuple(Target(ip) for ip in _addresses(live.get(svc.name, ()), net))
                lbs.append(LoadBalancer(f"{svc.name}@{net}", None, None, targets,
                                        vips=(vip,)))
    taken: dict[tuple[int, Proto], str] = {}
    conflicts: list[str] = []
    host = tables[view.host_netns]
    for svc in svcs:
        mine = live.get(svc.name, [])
        local = [b for b in mine if b.node == view.node]
        for port in svc.ports:
            ingress = view.ingress_network
            if ingress is None:
                continue  # no leg on the ingress network: nothing to forward over
            if port.mode is PublishMode.HOST and not local:
                continue  # host mode: bound only where a task runs
            if (port.published, port.proto) in taken:
                conflicts.append(f"{svc.name}:{port} (taken by "
                                 f"{taken[(port.published, port.proto)]})")
                continue
            taken[(port.published, port.proto)] = svc.name
            over = mine if port.mode is PublishMode.INGRESS else local
            targets = tuple(Target(ip, port.target) for ip in _addresses(over, ingress))
            host.append(LoadBalancer(f"{svc.name}/{port.proto}/{port.published}", port.proto,
                                     port.published, targets, published=True,
                                     masquerade=True))
    return NodePlan(view.host_netns, {k: tuple(v) for k, v in tables.items()},
                    tuple(conflicts))


def service_records(services: Iterable[Service],
                    backends: Iterable[Backend]) -> list[ServiceRecord]:
    """The DNS records of ``services`` on each of their networks."""
    live = _active(backends)
    out = []
    for svc in sorted(services, key=lambda s: s.name):
        for net in svc.networks:
            tasks = tuple(_addresses(live.get(svc.name, ()), net))
            out.append(ServiceRecord(net, svc.name, svc.mode, svc.vip(net), tasks))
    return out
