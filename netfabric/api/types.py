"""Typed values returned by the agent's API: what `inspect` and `ls` show.

They are frozen msgspec Structs: :func:`to_wire` turns one into plain dicts/lists (enums as
their string) and each class's ``from_wire`` builds it back with every field checked,
refusing malformed input with :class:`InvalidArgument` naming the field path, so a caller
never gets a half-parsed object. The verbs that return them are in :mod:`netfabric.api.verbs`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

import msgspec

from netfabric.errors import InvalidArgument

__all__ = [
    "Availability",
    "ClusterInfo",
    "ContainerInfo",
    "DoctorReport",
    "DoctorStep",
    "EndpointInfo",
    "GossipInfo",
    "JoinToken",
    "NetworkInfo",
    "NodeInfo",
    "NodeStatus",
    "Role",
    "Value",
    "to_wire",
]


class Role(StrEnum):
    """A node's role in the cluster; ``standalone`` before init/join."""

    STANDALONE = "standalone"
    MANAGER = "manager"
    WORKER = "worker"


class NodeStatus(StrEnum):
    """Liveness as gossip sees it (Docker's STATUS column)."""

    READY = "Ready"
    DOWN = "Down"


class Availability(StrEnum):
    """Whether new work may be placed on a node (Docker's AVAILABILITY column)."""

    ACTIVE = "active"
    PAUSE = "pause"
    DRAIN = "drain"


def to_wire(value: Any) -> Any:
    """Plain JSON data for a Struct or dataclass value (recursively), enums as their string."""
    return msgspec.to_builtins(value, str_keys=True)


class Value(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the API's values (built by keyword): ``from_wire`` checks every field; fields
    it does not know are ignored, so an older client reads a newer agent's answers."""

    @classmethod
    def from_wire(cls, raw: Any) -> Self:
        try:
            return msgspec.convert(raw, cls)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(f"malformed API object {cls.__name__}: {exc}") from None


class EndpointInfo(Value, frozen=True, kw_only=True):
    """One interface of a container on one network."""

    network: str
    network_id: str
    endpoint_id: str
    container: str
    node: str = ""
    mac: str = ""
    ipv4: str | None = None
    ipv6: str | None = None
    prefixlen: int = 24
    gateway: str | None = None
    aliases: tuple[str, ...] = ()


class NetworkInfo(Value, frozen=True, kw_only=True):
    """A network as `network inspect` shows it; ``endpoints`` are this host's view."""

    id: str
    name: str
    driver: str
    scope: str
    subnets: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    ip_ranges: tuple[str, ...] = ()
    vni: int | None = None
    attachable: bool = False
    internal: bool = False
    ipv6: bool = False
    mtu: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    created: float = 0.0
    endpoints: tuple[EndpointInfo, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()


class ContainerInfo(Value, frozen=True, kw_only=True):
    """A sandbox (a netns standing for one container) and its endpoints."""

    id: str
    name: str
    netns: str
    netns_path: str
    node: str = ""
    created: float = 0.0
    external: bool = False
    networks: tuple[EndpointInfo, ...] = ()
    hostname: str = ""
    labels: tuple[tuple[str, str], ...] = ()


class NodeInfo(Value, frozen=True, kw_only=True):
    """One row of `node ls`."""

    id: str
    hostname: str
    address: str = ""
    status: NodeStatus
    availability: Availability
    role: Role
    leader: bool = False
    is_self: bool = False
    reachability: str = ""
    """A manager's, as Docker says it: ``reachable`` (up, and reaching the cluster's store)
    or ``unreachable``; "" for a worker."""

    @property
    def manager_status(self) -> str:
        """Docker's MANAGER STATUS column: Leader, Reachable or Unreachable."""
        if self.role is not Role.MANAGER:
            return ""
        if self.reachability == "unreachable":
            return "Unreachable"
        return "Leader" if self.leader else "Reachable"


class DoctorStep(Value, frozen=True, kw_only=True):
    """One step of `netfabric doctor`."""

    name: str
    status: str
    """``ok``, ``fail`` or ``skip``."""
    detail: str = ""
    fix: str = ""


class DoctorReport(Value, frozen=True, kw_only=True):
    """`netfabric doctor SOURCE TARGET`: the path's steps in order."""

    source: str
    target: str
    steps: tuple[DoctorStep, ...]

    @property
    def ok(self) -> bool:
        return all(s.status == "ok" for s in self.steps)


class GossipInfo(Value, frozen=True, kw_only=True):
    """The gossip view of one node (`netfabric info`): members by state (this node counted
    alive), its Lifeguard health score (0 is healthy), live entries per table, the networks it
    is attached to, and the gossip counters (drops, unauthenticated packets, traffic)."""

    members: dict[str, int]
    health: int = 0
    tables: dict[str, int] = msgspec.field(default_factory=dict)
    networks: int = 0
    counters: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def dropped(self) -> int:
        """Packets and streams thrown away: undecodable, stream failures, rejected entries."""
        c = self.counters
        return (c.get("decode_failed", 0) + c.get("stream_failed", 0)
                + c.get("entries_rejected", 0) + c.get("entries_unscoped", 0))

    @property
    def unauthenticated(self) -> int:
        return self.counters.get("auth_failed", 0)


class ClusterInfo(Value, frozen=True, kw_only=True):
    """What `netfabric info` shows: who this node is and how it sees the cluster."""

    node_id: str
    hostname: str
    role: Role
    advertise_addr: str = ""
    cluster_id: str = ""
    managers: tuple[str, ...] = ()
    """In the order this node asks them: the one that answered last first (the manager it
    talks to), those gossip says are dead last."""
    nodes: int = 0
    networks: int = 0
    containers: int = 0
    version: str = ""
    gossip: GossipInfo | None = None
    """None while the node is in no cluster (gossip is not running)."""
    ui_url: str = ""
    """The live page (``--ui-addr``), if the agent serves it."""
    metrics_url: str = ""
    """``/metrics`` (``--metrics-addr``), if the agent serves it."""


class JoinToken(Value, frozen=True, kw_only=True):
    """A join token and the command a new node runs with it."""

    role: Role
    token: str
    address: str

    @property
    def command(self) -> str:
        return f"netfabric join --token {self.token} {self.address}"
