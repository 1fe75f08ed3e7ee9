"""netfabric.ipam: the address allocator (pure logic over a :class:`~netfabric.store.Store`).

- :class:`Ipam`: the manager. Subnets from pools per address space, serial addresses it
  hands out itself, per-host block leases, reclaiming a dead host's blocks.
- :class:`HostAllocator`: a host's side. Allocates inside its leased blocks locally.
- Values: :class:`Subnet`, :class:`Allocation`, :class:`BlockLease`; config:
  :class:`IpamConfig`, :class:`Pool`, :class:`AddressSpace`, :class:`IPFamily`.
"""

from netfabric.ipam.addr import IPFamily
from netfabric.ipam.host import BlockSource, HostAllocator, HostStats
from netfabric.ipam.manager import Ipam
from netfabric.ipam.pools import (
    DEFAULT_GLOBAL_POOLS,
    DEFAULT_LOCAL_POOLS,
    ULA_GLOBAL,
    ULA_LOCAL,
    AddressSpace,
    IpamConfig,
    Pool,
)
from netfabric.ipam.values import Allocation, BlockLease, Reclaimed, Subnet

__all__ = [
    "DEFAULT_GLOBAL_POOLS",
    "DEFAULT_LOCAL_POOLS",
    "ULA_GLOBAL",
    "ULA_LOCAL",
    "AddressSpace",
    "Allocation",
    "BlockLease",
    "BlockSource",
    "HostAllocator",
    "HostStats",
    "IPFamily",
    "Ipam",
    "IpamConfig",
    "Pool",
    "Reclaimed",
    "Subnet",
]
