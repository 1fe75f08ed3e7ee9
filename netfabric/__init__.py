"""netfabric: an overlay network fabric for containers.

The library API that orchestrators import. Everything public is re-exported here.
"""

from netfabric.errors import (
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
    NetfabricError,
    NotAManager,
    NotFound,
    NotInCluster,
    PoolExhausted,
    StoreCorrupt,
    StoreError,
    SubnetOverlap,
)

__version__ = "0.1.0"

__all__ = [
    "AddressInUse",
    "AddressOutOfRange",
    "AgentUnreachable",
    "AlreadyExists",
    "AuthError",
    "ClusterError",
    "DataplaneError",
    "DecodeError",
    "GossipError",
    "IPAMError",
    "InUse",
    "InvalidArgument",
    "InvalidToken",
    "LabError",
    "NetfabricError",
    "NotAManager",
    "NotFound",
    "NotInCluster",
    "PoolExhausted",
    "StoreCorrupt",
    "StoreError",
    "SubnetOverlap",
    "__version__",
]
