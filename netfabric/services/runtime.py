"""ServiceFabric: one node's services, applied to its kernel (the I/O shell of :mod:`plan`).

The caller (an orchestrator through the library, or the agent from its store and gossip)
sets services and backends and tells which sandboxes are local; :meth:`ServiceFabric.apply`
plans the node (:func:`~netfabric.services.plan.plan_node`) and syncs the service table of
each netns whose load balancers changed, one nft transaction each. DNS records come from
:meth:`ServiceFabric.records`.

To take a task out before stopping it: :meth:`set_backend` with ``active=False`` (or
:meth:`remove_backend`), :meth:`apply`, then stop the task: from then on no new connection
is sent to it, while established ones finish.

A sandbox's datapath holds a netlink socket in its netns: call :meth:`remove_sandbox` when
the sandbox goes, so that the netns is freed. Methods block; call them off the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

from netfabric.errors import NotFound
from netfabric.services.lb import LoadBalancer
from netfabric.services.model import Backend, Service
from netfabric.services.nftplan import DEFAULT_TABLE
from netfabric.services.plan import NodePlan, NodeView, ServiceRecord, plan_node, service_records

__all__ = ["Datapath", "DatapathFactory", "ServiceFabric"]


class Datapath(Protocol):
    """The service table of one netns (:class:`netfabric.dataplane.services.ServiceDatapath`)."""

    def sync(self, lbs: Iterable[LoadBalancer]) -> object: ...

    def close(self, *, remove: bool = True) -> None: ...


DatapathFactory = Callable[[str | None, str], Datapath]
"""``factory(netns, table)``."""


def _kernel_datapath(netns: str | None, table: str) -> Datapath:
    from netfabric.dataplane.services import ServiceDatapath
    return ServiceDatapath(netns, table=table)


class ServiceFabric:
    """Services, backends and local sandboxes of one node; thread-safe, blocking."""

    def __init__(self, view: NodeView, *, table: str = DEFAULT_TABLE,
                 datapath: DatapathFactory | None = None) -> None:
        self._view = replace(view, sandboxes=dict(view.sandboxes))
        self._table = table
        self._factory = datapath or _kernel_datapath
        self._services: dict[str, Service] = {}
        self._backends: dict[tuple[str, str], Backend] = {}
        self._datapaths: dict[str | None, Datapath] = {}
        self._applied: dict[str | None, tuple[LoadBalancer, ...]] = {}
        self._lock = threading.RLock()

    # -- state --------------------------------------------------------------------------

    @property
    def view(self) -> NodeView:
        with self._lock:
            return self._view

    def services(self) -> list[Service]:
        with self._lock:
            return sorted(self._services.values(), key=lambda s: s.name)

    def backends(self, service: str | None = None) -> list[Backend]:
        with self._lock:
            return [b for (s, _), b in sorted(self._backends.items())
                    if service is None or s == service]

    def set_service(self, service: Service) -> None:
        with self._lock:
            self._services[service.name] = service

    def remove_service(self, name: str) -> None:
        """Forget a service and its backends; NotFound if unknown."""
        with self._lock:
            if self._services.pop(name, None) is None:
                raise NotFound(f"no service {name!r}")
            for key in [k for k in self._backends if k[0] == name]:
                del self._backends[key]

    def set_backend(self, backend: Backend) -> None:
        with self._lock:
            self._backends[(backend.service, backend.id)] = backend

    def remove_backend(self, service: str, backend_id: str) -> None:
        """Forget a backend; an unknown one is not an error (removal is idempotent)."""
        with self._lock:
            self._backends.pop((service, backend_id), None)

    def remove_node(self, node: str) -> list[Backend]:
        """Forget every backend on ``node`` (it died or left); returns them."""
        with self._lock:
            gone = [b for b in self._backends.values() if b.node == node]
            for b in gone:
                del self._backends[(b.service, b.id)]
            return gone

    def set_ingress(self, network_id: str | None) -> None:
        """The ingress network this node's host netns has a leg on (``None``: none)."""
        with self._lock:
            self._view = replace(self._view, ingress_network=network_id)

    def set_sandbox(self, netns: str, networks: Iterable[str]) -> None:
        with self._lock:
            sandboxes = dict(self._view.sandboxes)
            sandboxes[netns] = frozenset(networks)
            self._view = replace(self._view, sandboxes=sandboxes)

    def remove_sandbox(self, netns: str) -> None:
        """The sandbox is going: drop its table and release its netns."""
        with self._lock:
            sandboxes = dict(self._view.sandboxes)
            sandboxes.pop(netns, None)
            self._view = replace(self._view, sandboxes=sandboxes)
            dp = self._datapaths.pop(netns, None)
            self._applied.pop(netns, None)
        if dp is not None:
            dp.close(remove=True)

    # -- kernel and DNS -----------------------------------------------------------------

    def plan(self) -> NodePlan:
        with self._lock:
            return plan_node(self._view, self._services.values(), self._backends.values())

    def apply(self) -> NodePlan:
        """Sync every netns whose load balancers changed since the last apply."""
        with self._lock:
            plan = self.plan()
            for netns, lbs in plan.tables.items():
                if self._applied.get(netns) == lbs and netns in self._datapaths:
                    continue
                dp = self._datapaths.get(netns)
                if dp is None:
                    dp = self._datapaths[netns] = self._factory(netns, self._table)
                dp.sync(lbs)
                self._applied[netns] = lbs
            for netns in [n for n in self._datapaths if n not in plan.tables]:
                self._datapaths.pop(netns).close(remove=True)
                self._applied.pop(netns, None)
            return plan

    def records(self) -> list[ServiceRecord]:
        with self._lock:
            return service_records(self._services.values(), self._backends.values())

    def close(self) -> None:
        """Remove every table this fabric made."""
        with self._lock:
            datapaths, self._datapaths = self._datapaths, {}
            self._applied.clear()
        for dp in datapaths.values():
            dp.close(remove=True)
