"""The values IPAM hands out: a subnet, an address in it, a block leased to a host.

All strings, so that they cross the agent's API and gossip as JSON without conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netfabric.errors import InvalidArgument
from netfabric.ipam.addr import IPFamily
from netfabric.ipam.pools import AddressSpace

__all__ = ["Allocation", "BlockLease", "Reclaimed", "Subnet", "new_allocation"]


@dataclass(frozen=True, slots=True)
class Subnet:
    """One subnet held by a network: CIDR, gateway, and the ip-range of dynamic addresses."""

    network_id: str
    space: AddressSpace
    cidr: str
    gateway: str
    ip_range: str | None = None

    @property
    def prefixlen(self) -> int:
        return int(self.cidr.rsplit("/", 1)[1])

    @property
    def family(self) -> IPFamily:
        return IPFamily.V6 if ":" in self.cidr else IPFamily.V4

    def to_dict(self) -> dict[str, Any]:
        return {"network_id": self.network_id, "space": self.space.value, "cidr": self.cidr,
                "gateway": self.gateway, "ip_range": self.ip_range}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Subnet:
        try:
            rng = d.get("ip_range")
            return cls(str(d["network_id"]), AddressSpace(d["space"]), str(d["cidr"]),
                       str(d["gateway"]), None if rng is None else str(rng))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidArgument(f"malformed subnet: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Allocation:
    """One address handed out, with the subnet it lies in."""

    address: str
    subnet: Subnet

    @property
    def network_id(self) -> str:
        return self.subnet.network_id

    @property
    def gateway(self) -> str:
        return self.subnet.gateway

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    @property
    def interface(self) -> str:
        """``address/prefixlen``, as an interface is configured (``10.0.0.5/24``)."""
        return f"{self.address}/{self.subnet.prefixlen}"


_new = object.__new__
_set_address = vars(Allocation)["address"].__set__
_set_subnet = vars(Allocation)["subnet"].__set__


def new_allocation(address: str, subnet: Subnet) -> Allocation:
    """``Allocation(address, subnet)`` for the allocator's hot path: a frozen dataclass's
    ``__init__`` costs ~0.8 us (``object.__setattr__`` per field); the slots' own
    descriptors do the same in a quarter of that. The value is the same frozen object."""
    a: Allocation = _new(Allocation)
    _set_address(a, address)
    _set_subnet(a, subnet)
    return a


@dataclass(frozen=True, slots=True)
class BlockLease:
    """A block of a network's subnet leased to one host.

    ``taken``: addresses of the block the manager had already handed out itself when it
    leased the block; the host must not hand them out.
    """

    network_id: str
    host_id: str
    block: str
    subnet: Subnet
    taken: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"network_id": self.network_id, "host_id": self.host_id, "block": self.block,
                "subnet": self.subnet.to_dict(), "taken": list(self.taken)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BlockLease:
        try:
            return cls(str(d["network_id"]), str(d["host_id"]), str(d["block"]),
                       Subnet.from_dict(d["subnet"]), tuple(str(t) for t in d.get("taken", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidArgument(f"malformed block lease: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """What reclaiming a dead host freed: its block leases and the (network id, address)
    pairs the manager had handed out for it."""

    blocks: tuple[BlockLease, ...] = ()
    addresses: tuple[tuple[str, str], ...] = ()
