"""netfabric: an overlay network fabric for containers.

The library API that orchestrators import. Everything public is re-exported here.
"""

import importlib

# not typing.TYPE_CHECKING: importing typing (re, enum, collections) would double the
# start-up of the CNI plugin, which podman runs for every command (mypy reads this name)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from netfabric.api.types import (
        Availability,
        ClusterInfo,
        ContainerInfo,
        EndpointInfo,
        GossipInfo,
        JoinToken,
        NetworkInfo,
        NodeInfo,
        NodeStatus,
        Role,
    )
    from netfabric.client import AsyncClient, Client
    from netfabric.dns import DnsServer, Records, Resolver, ResolverConfig, ServiceMode
    from netfabric.drivers import Attachment, BridgeDriver, OverlayDriver
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
        StoreConflict,
        StoreCorrupt,
        StoreError,
        StoreUnavailable,
        SubnetOverlap,
    )
    from netfabric.gossip import (
        GossipConfig,
        GossipCore,
        GossipNode,
        Keyring,
        MemberInfo,
        MemberState,
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

del TYPE_CHECKING

# Everything loads on first use, so that `import netfabric` (every CLI call, and the CNI
# plugin, which podman runs for each command) stays fast.
_LAZY = {
    **dict.fromkeys((
        "Availability", "ClusterInfo", "ContainerInfo", "EndpointInfo", "GossipInfo", "JoinToken",
        "NetworkInfo", "NodeInfo", "NodeStatus", "Role"
    ), "netfabric.api.types"),
    **dict.fromkeys((
        "AsyncClient", "Client"
    ), "netfabric.client"),
    **dict.fromkeys((
        "DnsServer", "Records", "Resolver", "ResolverConfig", "ServiceMode"
    ), "netfabric.dns"),
    **dict.fromkeys((
        "AddressHosted", "AddressInUse", "AddressOutOfRange", "AgentUnreachable",
        "AlreadyExists", "AuthError", "ClusterError", "DataplaneError", "DecodeError",
        "GossipError", "IPAMError", "InUse", "InvalidArgument", "InvalidToken", "LabError",
        "MalformedAnswer", "ManagerUnreachable", "NetfabricError", "NotAManager", "NotFound",
        "NotInCluster",
        "PoolExhausted", "StoreConflict", "StoreCorrupt", "StoreError", "StoreUnavailable",
        "SubnetOverlap"
    ), "netfabric.errors"),
    **dict.fromkeys((
        "AddressSpace", "Allocation", "BlockLease", "HostAllocator", "IPFamily", "Ipam",
        "IpamConfig", "Pool", "Reclaimed", "Subnet"
    ), "netfabric.ipam"),
    **dict.fromkeys((
        "Driver", "Endpoint", "Network", "Scope", "SubnetSpec"
    ), "netfabric.model"),
    **dict.fromkeys((
        "Durability", "MemoryStore", "SqliteStore", "Store"
    ), "netfabric.store"),
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
    "GossipInfo",
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
    "StoreConflict",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "Subnet",
    "SubnetOverlap",
    "SubnetSpec",
    "__version__",
]
