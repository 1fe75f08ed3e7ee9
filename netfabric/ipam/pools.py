"""Address spaces and the pools subnets are carved from, with Docker's defaults.

Docker's ``default-address-pools`` model: a pool is a base CIDR and the size of the subnets
cut from it. Overlays draw from the global space (10.0.0.0/8 in /24s); bridges from the local
space (172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/16 in /20s). IPv6 subnets are /64s
from a ULA /48 per space. Subnets never overlap within one space; the two spaces are
separate because a bridge only exists on one host while an overlay spans the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netfabric.errors import InvalidArgument
from netfabric.ipam.addr import IPFamily, parse_cidr

__all__ = [
    "DEFAULT_BLOCK_PREFIX_V4",
    "DEFAULT_BLOCK_PREFIX_V6",
    "DEFAULT_GLOBAL_POOLS",
    "DEFAULT_LOCAL_POOLS",
    "ULA_GLOBAL",
    "ULA_LOCAL",
    "AddressSpace",
    "IpamConfig",
    "Pool",
]


class AddressSpace(StrEnum):
    """Docker's two IPAM address spaces (``LocalDefault`` / ``GlobalDefault``)."""

    LOCAL = "local"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Pool:
    """A base CIDR and the prefix length of the subnets cut from it (``size``)."""

    base: str
    size: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pool:
        """A pool from Docker's ``default-address-pools`` form: ``{"base": "10.10.0.0/16",
        "size": 24}``; InvalidArgument when malformed."""
        try:
            base, size = d["base"], d["size"]
        except (KeyError, TypeError) as exc:
            raise InvalidArgument(f"pool {d!r}: expected {{'base': CIDR, 'size': N}}") from exc
        if not isinstance(base, str) or not isinstance(size, int) or isinstance(size, bool):
            raise InvalidArgument(f"pool {d!r}: base must be a CIDR string, size an integer")
        pool = cls(base, size)
        pool.parsed()
        return pool

    def parsed(self) -> tuple[IPFamily, int, int, int]:
        """(family, base int, base prefix length, subnet size); InvalidArgument if invalid."""
        family, net, plen = parse_cidr(self.base, what="pool base")
        if not plen <= self.size <= family.bits:
            raise InvalidArgument(
                f"pool {self.base} size /{self.size}: must lie between /{plen} "
                f"and /{family.bits}")
        return family, net, plen, self.size


ULA_GLOBAL = "fd6e:6600::/48"
"""IPv6 pool of overlays: a ULA /48 whose global ID starts with 6e66 ("nf")."""
ULA_LOCAL = "fd6e:6600:1::/48"
"""IPv6 pool of bridges: the next /48, so that a bridge never shadows an overlay."""

DEFAULT_GLOBAL_POOLS: tuple[Pool, ...] = (Pool("10.0.0.0/8", 24), Pool(ULA_GLOBAL, 64))
DEFAULT_LOCAL_POOLS: tuple[Pool, ...] = (
    *(Pool(f"172.{n}.0.0/16", 16) for n in range(17, 32)),
    Pool("192.168.0.0/16", 20),
    Pool(ULA_LOCAL, 64),
)
DEFAULT_BLOCK_PREFIX_V4 = 26
"""Per-host blocks are /26 (64 addresses), as Calico's default."""
DEFAULT_BLOCK_PREFIX_V6 = 122
"""IPv6 blocks are /122 (64 addresses), as Calico's default."""


@dataclass(frozen=True, slots=True)
class IpamConfig:
    """How the allocator carves subnets and blocks.

    ``local_pools`` / ``global_pools``: tried in order when a subnet is requested without a
    CIDR; IPv4 and IPv6 pools may be mixed, a request takes the pools of its family.
    ``block_prefix_v4`` / ``block_prefix_v6``: prefix length of per-host blocks and of the
    unit in which addresses are persisted (clipped to the subnet when the subnet is smaller);
    at most 65,536 addresses, since a host keeps one byte per address of its blocks.
    """

    local_pools: tuple[Pool, ...] = DEFAULT_LOCAL_POOLS
    global_pools: tuple[Pool, ...] = DEFAULT_GLOBAL_POOLS
    block_prefix_v4: int = DEFAULT_BLOCK_PREFIX_V4
    block_prefix_v6: int = DEFAULT_BLOCK_PREFIX_V6

    def __post_init__(self) -> None:
        for pool in (*self.local_pools, *self.global_pools):
            pool.parsed()
        if not 16 <= self.block_prefix_v4 <= 32:
            raise InvalidArgument(f"block prefix /{self.block_prefix_v4}: must be /16../32")
        if not 112 <= self.block_prefix_v6 <= 128:
            raise InvalidArgument(f"block prefix /{self.block_prefix_v6}: must be /112../128")

    def pools(self, space: AddressSpace) -> tuple[Pool, ...]:
        return self.local_pools if space is AddressSpace.LOCAL else self.global_pools

    def block_prefix(self, family: IPFamily) -> int:
        return self.block_prefix_v4 if family is IPFamily.V4 else self.block_prefix_v6
