"""netfabric: an overlay network fabric for containers.

The library API that orchestrators import. Everything public is re-exported here.
"""

import importlib
import typing

from netfabric.api.types import (
    Availability,
    ClusterInfo,
    ContainerInfo,
    EndpointInfo,
    JoinToken,
    NetworkInfo,
    NodeInfo,
    NodeStatus,
    Role,
)
from netfabric.client import AsyncClient, Client
from netfabric.dns import DnsServer, Records, Resolver, ResolverConfig, ServiceMode
from netfabric.errors import (
    AddressHosted,
    AddressInUse,
    AddressOutOfRange,
    AgentUnreachable,
    AlreadyExists,
    AuthError,
    ClusterError,
    DataplaneError,
    DecodeError,
    GossipError,
    InUse,
    InvalidArgument,
    InvalidToken,
    IPAMError,
    LabError,
    MalformedAnswer,
    ManagerUnreachable,
    NetfabricError,
    NotAManager,
    NotFound,
    NotInCluster,
    PoolExhausted,
    StoreCorrupt,
    StoreError,
    SubnetOverlap,
)
from netfabric.ipam import (
    AddressSpace,
    Allocation,
    BlockLease,
    HostAllocator,
    Ipam,
    IpamConfig,
    IPFamily,
    Pool,
    Reclaimed,
    Subnet,
)
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.store import Durability, MemoryStore, SqliteStore, Store

if typing.TYPE_CHECKING:
    from netfabric.drivers import Attachment, BridgeDriver, OverlayDriver
    from netfabric.gossip import (
        GossipConfig,
        GossipCore,
        GossipNode,
        Keyring,
        MemberInfo,
        MemberState,
    )

# The kernel drivers (pyroute2) and gossip (cryptography, asyncio) load on first use, so that
# `import netfabric` (and every CLI call) stays fast.
_LAZY = {
    **dict.fromkeys(("Attachment", "BridgeDriver", "OverlayDriver"), "netfabric.drivers"),
    **dict.fromkeys(("GossipConfig", "GossipCore", "GossipNode", "Keyring", "MemberInfo",
                     "MemberState"), "netfabric.gossip"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'netfabric' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "AddressHosted",
    "AddressInUse",
    "AddressOutOfRange",
    "AddressSpace",
    "AgentUnreachable",
    "Allocation",
    "AlreadyExists",
    "AsyncClient",
    "Attachment",
    "AuthError",
    "Availability",
    "BlockLease",
    "BridgeDriver",
    "Client",
    "ClusterError",
    "ClusterInfo",
    "ContainerInfo",
    "DataplaneError",
    "DecodeError",
    "DnsServer",
    "Driver",
    "Durability",
    "Endpoint",
    "EndpointInfo",
    "GossipConfig",
    "GossipCore",
    "GossipError",
    "GossipNode",
    "HostAllocator",
    "IPAMError",
    "IPFamily",
    "InUse",
    "InvalidArgument",
    "InvalidToken",
    "Ipam",
    "IpamConfig",
    "JoinToken",
    "Keyring",
    "LabError",
    "MalformedAnswer",
    "ManagerUnreachable",
    "MemberInfo",
    "MemberState",
    "MemoryStore",
    "NetfabricError",
    "Network",
    "NetworkInfo",
    "NodeInfo",
    "NodeStatus",
    "NotAManager",
    "NotFound",
    "NotInCluster",
    "OverlayDriver",
    "Pool",
    "PoolExhausted",
    "Reclaimed",
    "Records",
    "Resolver",
    "ResolverConfig",
    "Role",
    "Scope",
    "ServiceMode",
    "SqliteStore",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "Subnet",
    "SubnetOverlap",
    "SubnetSpec",
    "__version__",
]
