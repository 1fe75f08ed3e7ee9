"""IPAM over a shared store (etcd) used by several managers at once.

:class:`SharedIpam` holds an :class:`~netfabric.ipam.Ipam` over one store and runs each
change through :func:`~netfabric.store.etcd.retry_on_conflict`: a lost compare-and-swap
wrote nothing and left the allocator's memory as it was, so it re-reads the store (a new
``Ipam``) and tries again. It is a :class:`~netfabric.ipam.host.BlockSource`, so a manager
can also allocate its own addresses Calico's way: a :class:`~netfabric.ipam.HostAllocator`
with this as its source and its rows under a prefix of its own leases whole blocks through
the shared rows (CAS, rare) and then allocates inside them without touching shared rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from netfabric.ipam.addr import IPFamily
from netfabric.ipam.manager import Ipam
from netfabric.ipam.values import Allocation, BlockLease
from netfabric.store.base import Store
from netfabric.store.etcd import retry_on_conflict

__all__ = ["SharedIpam"]

T = TypeVar("T")


class SharedIpam:
    """An Ipam that reloads from the store and retries after a StoreConflict."""

    def __init__(self, store: Store, *, attempts: int = 100) -> None:
        self._store = store
        self._attempts = attempts
        self.ipam = Ipam(store)
        self.conflicts = 0

    def reload(self) -> None:
        self.ipam = Ipam(self._store, config=self.ipam.config)

    def _counted(self) -> None:
        self.conflicts += 1

    def run(self, fn: Callable[[Ipam], T]) -> T:
        """``fn(ipam)``, reloading and retrying on a conflict (``attempts`` in all)."""
        return retry_on_conflict(lambda: fn(self.ipam), self.reload, attempts=self._attempts,
                                 on_conflict=self._counted)

    def allocate(self, network_id: str, *, address: str | None = None,
                 family: IPFamily = IPFamily.V4) -> Allocation:
        return self.run(lambda i: i.allocate(network_id, address=address, family=family))

    def release(self, network_id: str, address: str) -> None:
        self.run(lambda i: i.release(network_id, address))

    def lease_block(self, network_id: str, host_id: str, *, address: str | None = None,
                    family: IPFamily = IPFamily.V4) -> BlockLease:
        return self.run(lambda i: i.lease_block(network_id, host_id, address=address,
                                                family=family))

    def release_block(self, network_id: str, host_id: str, block: str) -> None:
        self.run(lambda i: i.release_block(network_id, host_id, block))
