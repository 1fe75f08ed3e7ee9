"""An in-memory :class:`~netfabric.store.base.Store`: the fake beside the SQLite store.

Rows live in dicts. Block rows are small byte strings (one byte per address of a block),
so a million addresses cost a few megabytes here, not a dict entry each.
Transactions are honoured: on an exception the rows written inside are rolled back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from netfabric.errors import AlreadyExists
from netfabric.model import Network
from netfabric.store.base import BlockRecord, HolderRecord, Snapshot, SubnetRecord

__all__ = ["MemoryStore"]

_BlockKey = tuple[str, str, int]
_BlockRow = tuple[str, bytes | bytearray]


class MemoryStore:
    """Rows in dicts, for tests and for single-process use without a file."""

    def __init__(self) -> None:
        self._subnets: dict[tuple[str, str], SubnetRecord] = {}
        self._blocks: dict[_BlockKey, _BlockRow] = {}
        self._networks: dict[str, Network] = {}
        self._holders: dict[tuple[str, str, str], str] = {}
        self._objects: dict[tuple[str, str], bytes] = {}
        self._depth = 0
        self._undo: list[tuple[dict[object, object], object, object]] | None = None

    @property
    def location(self) -> str:
        return ":memory:"

    def load(self) -> Snapshot:
        return Snapshot(
            subnets=tuple(self._subnets.values()),
            blocks=tuple(BlockRecord(k[0], k[1], k[2], owner, bytes(data))
                         for k, (owner, data) in self._blocks.items()),
            holders=tuple(HolderRecord(k[0], k[1], k[2], h) for k, h in self._holders.items()),
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        outer = self._depth == 0
        if outer:
            self._undo = []
        self._depth += 1
        try:
            yield
        except BaseException:
            if outer and self._undo is not None:
                for table, key, old in reversed(self._undo):
                    if old is _MISSING:
                        table.pop(key, None)
                    else:
                        table[key] = old
            raise
        finally:
            self._depth -= 1
            if outer:
                self._undo = None

    def _remember(self, table: dict[object, object], key: object) -> None:
        if self._undo is not None:
            self._undo.append((table, key, table.get(key, _MISSING)))

    def put_subnet(self, record: SubnetRecord) -> None:
        key = (record.network_id, record.cidr)
        self._remember(self._subnets, key)  # type: ignore[arg-type]
        self._subnets[key] = record

    def delete_subnet(self, network_id: str, cidr: str) -> None:
        key = (network_id, cidr)
        self._remember(self._subnets, key)  # type: ignore[arg-type]
        self._subnets.pop(key, None)
        for bkey in [k for k in self._blocks if k[0] == network_id and k[1] == cidr]:
            self._remember(self._blocks, bkey)  # type: ignore[arg-type]
            del self._blocks[bkey]
        for hkey in [k for k in self._holders if k[0] == network_id and k[1] == cidr]:
            self._remember(self._holders, hkey)  # type: ignore[arg-type]
            del self._holders[hkey]

    def put_block(self, network_id: str, subnet: str, index: int, owner: str,
                  data: bytes | bytearray) -> None:
        key = (network_id, subnet, index)
        if self._undo is not None:
            self._remember(self._blocks, key)  # type: ignore[arg-type]
        self._blocks[key] = (owner, data)

    def delete_block(self, network_id: str, subnet: str, index: int) -> None:
        key = (network_id, subnet, index)
        self._remember(self._blocks, key)  # type: ignore[arg-type]
        self._blocks.pop(key, None)

    def put_holder(self, network_id: str, subnet: str, address: str, holder: str) -> None:
        key = (network_id, subnet, address)
        self._remember(self._holders, key)  # type: ignore[arg-type]
        self._holders[key] = holder

    def delete_holder(self, network_id: str, subnet: str, address: str) -> None:
        key = (network_id, subnet, address)
        self._remember(self._holders, key)  # type: ignore[arg-type]
        self._holders.pop(key, None)

    def put_network(self, network: Network) -> None:
        if any(n.name == network.name and n.scope == network.scope and n.id != network.id
               for n in self._networks.values()):
            raise AlreadyExists(f"network with name {network.name} already exists")
        self._remember(self._networks, network.id)  # type: ignore[arg-type]
        self._networks[network.id] = network

    def get_network(self, network_id: str) -> Network | None:
        return self._networks.get(network_id)

    def list_networks(self) -> list[Network]:
        return sorted(self._networks.values(), key=lambda n: n.id)

    def delete_network(self, network_id: str) -> bool:
        if network_id not in self._networks:
            return False
        self._remember(self._networks, network_id)  # type: ignore[arg-type]
        del self._networks[network_id]
        return True

    def put_object(self, kind: str, key: str, value: bytes) -> None:
        self._remember(self._objects, (kind, key))  # type: ignore[arg-type]
        self._objects[(kind, key)] = bytes(value)

    def delete_object(self, kind: str, key: str) -> None:
        self._remember(self._objects, (kind, key))  # type: ignore[arg-type]
        self._objects.pop((kind, key), None)

    def list_objects(self, kind: str) -> dict[str, bytes]:
        return {k: v for (t, k), v in sorted(self._objects.items()) if t == kind}

    def object_kinds(self) -> list[str]:
        return sorted({t for t, _ in self._objects})

    def close(self) -> None:
        """Nothing to release; the rows stay readable (a reopen of the same object)."""


_MISSING = object()
