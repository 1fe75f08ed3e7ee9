"""The cluster's records in etcd, which every manager of a cluster on etcd shares.

:class:`EtcdRecords` implements :class:`~netfabric.agent.ports.ClusterRecords` over an
:class:`~netfabric.store.etcd.EtcdStore` of its own (its own HTTP session, so the leader's
lease refreshes never wait behind an allocation), under the cluster's prefix::

    nodes/<node id>        the node registry: one NodeRecord (JSON) per node
    cluster/roles          the role secrets, sealed with the cluster secret
    leases/leader          the leader's node id, under the leader's TTL lease
    leases/manager-<id>    each manager's liveness, under its own TTL lease

The role secrets never lie in etcd in the clear: whoever reads etcd without the cluster
secret cannot mint a join token.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from netfabric.agent.handshake import open_sealed, seal
from netfabric.agent.ports import Lease
from netfabric.agent.state import NodeRecord
from netfabric.errors import StoreCorrupt
from netfabric.store.etcd import EtcdStore

__all__ = ["EtcdRecords", "open_etcd_records"]


class EtcdRecords:
    """Node registry, sealed role secrets, leases and the watch, in one etcd prefix."""

    def __init__(self, url: str, prefix: str, secret: str) -> None:
        self._store = EtcdStore(url, prefix=prefix)
        self._secret = secret

    def load_nodes(self) -> list[NodeRecord]:
        out = []
        for name, raw in self._store.records("nodes").items():
            try:
                out.append(msgspec.json.decode(raw, type=NodeRecord))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise StoreCorrupt(f"{self._store.location}: node row {name} is malformed: "
                                   f"{exc}") from None
        return out

    def save_node(self, node: NodeRecord) -> None:
        self._store.put_record("nodes", node.id, msgspec.json.encode(node))

    def drop_node(self, node_id: str) -> None:
        self._store.delete_record("nodes", node_id)

    def load_roles(self) -> dict[str, str]:
        raw = self._store.records("cluster").get("roles")
        if raw is None:
            return {}
        try:
            return msgspec.json.decode(open_sealed(self._secret, raw.decode()),
                                       type=dict[str, str])
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise StoreCorrupt(f"{self._store.location}: the role secrets are malformed: "
                               f"{exc}") from None

    def save_roles(self, roles: dict[str, str]) -> None:
        sealed = seal(self._secret, msgspec.json.encode(roles).decode())
        self._store.put_record("cluster", "roles", sealed.encode())

    def hold(self, name: str, value: str, ttl: int) -> Lease | None:
        return self._store.hold(name, value, ttl)

    def leases(self) -> dict[str, str]:
        return {k: v.decode() for k, v in self._store.records("leases").items()}

    def watch(self, callback: Callable[[str, bool], None]) -> Callable[[], None]:
        return self._store.watch(callback)

    def close(self) -> None:
        self._store.close()


def open_etcd_records(url: str, prefix: str, secret: str) -> EtcdRecords:
    """The real :data:`~netfabric.agent.ports.RecordsFactory`."""
    return EtcdRecords(url, prefix, secret)
