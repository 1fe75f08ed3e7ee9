"""The narrow persistence seam under IPAM and the network table.

The allocator keeps its indexes in memory and writes every change through a :class:`Store`
before it returns, so a store only needs to keep rows and hand them back at start-up
(:meth:`Store.load`). Four kinds of rows:

- **networks**: one :class:`~netfabric.model.Network` per id, with its options and
  subnets: the networks the agent knows (its :class:`~netfabric.agent.ports.NetworkTable`);
- **subnets**: one :class:`SubnetRecord` per (network, CIDR);
- **blocks**: one :class:`BlockRecord` per (network, subnet, block index). A block is the
  unit of address persistence and of host leases: ``owner`` is the host holding its lease
  ("" for none) and ``data`` has one byte per address of the block. Rows that would say
  "nobody, nothing" are deleted rather than kept.
- **holders**: the host an address handed out by the manager itself was allocated for
  (:class:`HolderRecord`), so that reclaiming a dead host frees it. Untagged addresses
  have no row.
- **objects**: opaque values of the layers above IPAM by (kind, key): the service fabric's
  definitions (``services``, ``runspecs``, ``tasks``), so that every manager sharing the
  store sees them and a restarted one has them. A VIP and its service are written in one
  transaction.

Writes outside :meth:`Store.transaction` are durable when they return; inside it, when the
outermost block exits without an exception (and rolled back otherwise).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import msgspec

from netfabric.errors import InvalidArgument
from netfabric.model import Network

__all__ = [
    "BlockRecord",
    "Durability",
    "HolderRecord",
    "Snapshot",
    "Store",
    "SubnetRecord",
    "decode_network",
    "encode_network",
    "network_from_record",
    "network_to_record",
]

class Durability(Enum):
    """How far a committed write has travelled before the call returns.

    ``PROCESS``: in the OS (SQLite WAL with ``synchronous=NORMAL``): survives a crash or kill
    of the process, may lose the last commits on power loss. ``POWER``: fsync'd
    (``synchronous=FULL``): survives power loss, about one disk flush per commit.
    """

    PROCESS = "process"
    POWER = "power"


@dataclass(frozen=True, slots=True)
class SubnetRecord:
    """One subnet held by one network, as persisted."""

    network_id: str
    space: str
    cidr: str
    gateway: str
    ip_range: str | None
    block_prefix: int


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One block row: who leases it and one state byte per address."""

    network_id: str
    subnet: str
    index: int
    owner: str
    data: bytes


@dataclass(frozen=True, slots=True)
class HolderRecord:
    """The host for which the manager handed out one address."""

    network_id: str
    subnet: str
    address: str
    holder: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a store holds about IPAM, as read at start-up."""

    subnets: tuple[SubnetRecord, ...] = ()
    blocks: tuple[BlockRecord, ...] = field(default=())
    holders: tuple[HolderRecord, ...] = field(default=())


class Store(Protocol):
    """Rows of networks, subnets and blocks; durable when a write returns."""

    @property
    def location(self) -> str:
        """Where the state lives (a file path, or ``":memory:"``), for error messages."""
        ...

    def load(self) -> Snapshot:
        """Every subnet and block row; raises StoreCorrupt naming the file if unreadable."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes: all of them are durable together at exit, or none on error."""
        ...

    def put_subnet(self, record: SubnetRecord) -> None: ...

    def delete_subnet(self, network_id: str, cidr: str) -> None:
        """Drop the subnet row and every block and holder row under it."""
        ...

    def put_block(self, network_id: str, subnet: str, index: int, owner: str,
                  data: bytes | bytearray) -> None:
        """Write one block row. ``data`` is handed over: the caller never mutates it."""
        ...

    def delete_block(self, network_id: str, subnet: str, index: int) -> None: ...

    def put_holder(self, network_id: str, subnet: str, address: str, holder: str) -> None: ...

    def delete_holder(self, network_id: str, subnet: str, address: str) -> None: ...

    def put_network(self, network: Network) -> None: ...

    def get_network(self, network_id: str) -> Network | None: ...

    def list_networks(self) -> list[Network]: ...

    def delete_network(self, network_id: str) -> bool:
        """Remove one network record; False when there was none."""
        ...

    def put_object(self, kind: str, key: str, value: bytes) -> None: ...

    def delete_object(self, kind: str, key: str) -> None:
        """Remove one object; nothing when there is none."""
        ...

    def list_objects(self, kind: str) -> dict[str, bytes]:
        """Every object of one kind, by key."""
        ...

    def object_kinds(self) -> list[str]:
        """The kinds that have at least one object (to copy a store)."""
        ...

    def close(self) -> None: ...


def network_to_record(network: Network) -> dict[str, Any]:
    """A JSON-able dict for one network (enums as their values, tuples as lists): its
    dataclass is the schema."""
    result: dict[str, Any] = msgspec.to_builtins(network)
    return result


def network_from_record(record: Any) -> Network:
    """The inverse of :func:`network_to_record`: every field checked by msgspec against
    :class:`~netfabric.model.Network`; InvalidArgument naming the field when it does not fit."""
    try:
        return msgspec.convert(record, Network)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"malformed network record: {exc}") from None


def encode_network(network: Network) -> str:
    """Canonical JSON text of one network record (keys sorted)."""
    return msgspec.json.encode(network, order="sorted").decode()


def decode_network(text: str | bytes) -> Network:
    """Parse :func:`encode_network` output; InvalidArgument when it does not parse."""
    try:
        return msgspec.json.decode(text, type=Network)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"malformed network record: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"network record is not JSON: {exc}") from None
