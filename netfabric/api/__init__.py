"""The agent's local API: typed values, wire encoding of errors, request schemas.

The agent serves these over its unix socket (JSON over HTTP); :class:`netfabric.Client`
speaks it; the Docker plugin and CNI call the same methods of the agent's front-end interface
(:class:`netfabric.agent.frontend.AgentFrontend`) directly. Nothing here does I/O.
"""

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
from netfabric.api.wire import error_from_wire, error_to_wire

__all__ = [
    "Availability",
    "ClusterInfo",
    "ContainerInfo",
    "EndpointInfo",
    "GossipInfo",
    "JoinToken",
    "NetworkInfo",
    "NodeInfo",
    "NodeStatus",
    "Role",
    "error_from_wire",
    "error_to_wire",
]
