"""netfabric.store: the persistence seam (:class:`Store`) and its implementations.

:class:`SqliteStore` is the embedded default (one file in the manager's data dir);
:class:`MemoryStore` is the fake beside it. Both keep IPAM rows and network records.
:class:`EtcdStore` keeps them in etcd 3.4 for several managers (compare-and-swap per row).
"""

from netfabric.store.base import (
    BlockRecord,
    Durability,
    HolderRecord,
    Snapshot,
    Store,
    SubnetRecord,
    network_from_record,
    network_to_record,
)
from netfabric.store.etcd import EtcdStore, EtcdTls
from netfabric.store.memory import MemoryStore
from netfabric.store.sqlite import SqliteStore

__all__ = [
    "BlockRecord",
    "Durability",
    "EtcdStore",
    "EtcdTls",
    "HolderRecord",
    "MemoryStore",
    "Snapshot",
    "SqliteStore",
    "Store",
    "SubnetRecord",
    "network_from_record",
    "network_to_record",
]
