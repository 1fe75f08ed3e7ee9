"""netfabric.gossip: SWIM membership and networkdb-style replicated tables.

The pure core (:class:`GossipCore`) takes bytes, a clock and an RNG; :class:`GossipNode`
runs it on asyncio UDP+TCP sockets; :mod:`netfabric.gossip.sim` runs many cores on a
virtual network. Importing this package opens nothing.
"""

from netfabric.gossip.config import GossipConfig
from netfabric.gossip.core import Counters, GossipCore, MemberInfo
from netfabric.gossip.events import (
    EntryCreated,
    EntryDeleted,
    EntryUpdated,
    Event,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
    NetworkJoined,
    NetworkLeft,
)
from netfabric.gossip.keyring import Keyring, derive_key
from netfabric.gossip.messages import MemberState
from netfabric.gossip.runtime import GossipNode

__all__ = [
    "Counters",
    "EntryCreated",
    "EntryDeleted",
    "EntryUpdated",
    "Event",
    "GossipConfig",
    "GossipCore",
    "GossipNode",
    "Keyring",
    "MemberAlive",
    "MemberDead",
    "MemberInfo",
    "MemberJoined",
    "MemberLeft",
    "MemberState",
    "MemberSuspect",
    "NetworkJoined",
    "NetworkLeft",
    "derive_key",
]
