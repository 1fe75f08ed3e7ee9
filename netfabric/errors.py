"""The one exception hierarchy of netfabric.

Every error that netfabric raises on purpose is a :class:`NetfabricError`. Callers that
only want to know "did netfabric refuse this" catch the base; the CLI turns any of them
into one line and exit code 1 (2 for :class:`InvalidArgument`), and the Docker and CNI
plugins map them to ``{"Err": ...}`` and CNI error codes.

Malformed input from peers (gossip datagrams, DNS packets) never raises out of a protocol
core: it is counted and dropped. :class:`DecodeError` and :class:`AuthError` exist for the
codec layers below the cores, which catch them.

The tree::

    NetfabricError
    ├── InvalidArgument          bad user input: a CIDR, a name, a flag  (also ValueError)
    ├── NotFound                 an unknown network, container, node, address
    ├── AlreadyExists            a duplicate name or id
    ├── InUse                    refused while something depends on it (network rm)
    ├── IPAMError
    │   ├── SubnetOverlap        a requested subnet overlaps one held by another network
    │   ├── AddressInUse         a requested address is already allocated
    │   │   └── AddressHosted    free, but in a block leased to another host: it must lend it
    │   ├── AddressOutOfRange    an address outside the subnet or its ip-range
    │   └── PoolExhausted        no subnet, block or address left
    ├── StoreError               the persisted state cannot be read or written
    │   ├── StoreCorrupt         state exists but is unreadable: never silently reset
    │   ├── StoreConflict        another manager changed the row first (etcd CAS): reload, retry
    │   └── StoreUnavailable     the store (etcd) cannot be reached or has no quorum
    ├── DataplaneError           the kernel refused an operation (netlink, nft)
    ├── GossipError
    │   ├── DecodeError          a datagram or frame that does not parse
    │   └── AuthError            a datagram or frame that fails to authenticate
    ├── ClusterError
    │   ├── NotAManager          cluster state asked of a worker
    │   ├── InvalidToken         a wrong, forged or rotated-out join token
    │   └── NotInCluster         a cluster verb on a node that has not joined
    ├── AgentUnreachable         the local API socket does not answer
    │   ├── ManagerUnreachable   a worker's agent answers, but no manager does
    │   └── MalformedAnswer      the other side answered, but not in the protocol
    └── LabError                 simulated hosts could not be built or removed
"""

from __future__ import annotations

__all__ = [
    "AddressHosted",
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
    "MalformedAnswer",
    "ManagerUnreachable",
    "NetfabricError",
    "NotAManager",
    "NotFound",
    "NotInCluster",
    "PoolExhausted",
    "StoreConflict",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "SubnetOverlap",
]


class NetfabricError(Exception):
    """Base of every error netfabric raises on purpose."""


class InvalidArgument(NetfabricError, ValueError):
    """Bad user input: a malformed CIDR, name, option or request body."""


class NotFound(NetfabricError):
    """An unknown network, container, node or address."""


class AlreadyExists(NetfabricError):
    """A duplicate name or id."""


class InUse(NetfabricError):
    """Refused while something still depends on the object."""


class IPAMError(NetfabricError):
    """The address allocator refused a request."""


class SubnetOverlap(IPAMError):
    """A requested subnet overlaps one already held in the same address space."""


class AddressInUse(IPAMError):
    """A requested address is already allocated."""


class AddressHosted(AddressInUse):
    """A requested address is free but lies in a block leased to another host: only that
    host can give it (see :meth:`netfabric.ipam.host.HostAllocator.lend`)."""


class AddressOutOfRange(IPAMError):
    """An address lies outside its subnet or ip-range."""


class PoolExhausted(IPAMError):
    """No subnet, block or address is left."""


class StoreError(NetfabricError):
    """Persisted state cannot be read or written."""


class StoreCorrupt(StoreError):
    """Persisted state exists but is unreadable; it is never silently reset."""


class StoreConflict(StoreError):
    """A compare-and-swap lost: another manager changed the row first. Nothing was written;
    reload from the store and retry."""


class StoreUnavailable(StoreError):
    """The shared store (etcd) cannot be reached or has no quorum; nothing was written."""


class DataplaneError(NetfabricError):
    """The kernel refused an operation (netlink or nftables)."""


class GossipError(NetfabricError):
    """Base of gossip codec errors; the core catches these and counts a drop."""


class DecodeError(GossipError):
    """A datagram or stream frame that does not parse."""


class AuthError(GossipError):
    """A datagram or stream frame that fails to authenticate."""


class ClusterError(NetfabricError):
    """A cluster-membership operation was refused."""


class NotAManager(ClusterError):
    """Cluster-wide state was asked of a worker."""


class InvalidToken(ClusterError):
    """A wrong, forged or rotated-out join token."""


class NotInCluster(ClusterError):
    """A cluster verb on a node that has not joined a cluster."""


class AgentUnreachable(NetfabricError):
    """The agent's local API socket does not answer."""


class ManagerUnreachable(AgentUnreachable):
    """A worker's agent answered, but none of the cluster's managers did (a block lease, an
    address of a cluster network, a cluster verb): the worker itself is fine."""


class MalformedAnswer(AgentUnreachable):
    """The agent, a manager or dockerd answered, but not in the protocol: a broken HTTP
    answer or a body that does not match the verb's response schema. Not the caller's
    fault (unlike :class:`InvalidArgument`); a client may try another peer."""


class LabError(NetfabricError):
    """Simulated hosts could not be built or removed."""
