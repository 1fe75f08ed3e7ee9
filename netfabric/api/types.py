"""Typed values returned by the agent's API: what `inspect` and `ls` show.

They are frozen and JSON-friendly: :func:`to_wire` turns one into plain dicts/lists and each
class's ``from_wire`` builds it back, refusing malformed input with :class:`InvalidArgument`,
so a client never hands a caller a half-parsed object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from netfabric.errors import InvalidArgument

__all__ = [
    "Availability",
    "ClusterInfo",
    "ContainerInfo",
    "EndpointInfo",
    "JoinToken",
    "NetworkInfo",
    "NodeInfo",
    "NodeStatus",
    "Role",
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
    """Plain JSON data for a dataclass value (recursively), enums as their string."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, tuple | list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    return value


T = TypeVar("T")


def _get(data: Mapping[str, Any], key: str, kind: type[T], default: Any = ...) -> T:
    if key not in data or data[key] is None:
        if default is ...:
            raise InvalidArgument(f"malformed API object: missing {key!r}")
        return default  # type: ignore[no-any-return]
    value = data[key]
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind):
        raise InvalidArgument(f"malformed API object: {key!r} is not {kind.__name__}")
    return value


def _strs(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = _get(data, key, list, [])
    if not all(isinstance(i, str) for i in items):
        raise InvalidArgument(f"malformed API object: {key!r} is not a list of strings")
    return tuple(items)


def _pairs(data: Mapping[str, Any], key: str) -> tuple[tuple[str, str], ...]:
    items = _get(data, key, list, [])
    if not all(isinstance(i, list) and len(i) == 2 and all(isinstance(x, str) for x in i)
               for i in items):
        raise InvalidArgument(f"malformed API object: {key!r} is not a list of string pairs")
    return tuple((str(k), str(v)) for k, v in items)


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgument("malformed API object: expected a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One interface of a container on one network."""

    network: str
    network_id: str
    endpoint_id: str
    container: str
    node: str
    mac: str
    ipv4: str | None = None
    ipv6: str | None = None
    prefixlen: int = 24
    gateway: str | None = None
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, raw: Any) -> EndpointInfo:
        d = _mapping(raw)
        return cls(
            network=_get(d, "network", str), network_id=_get(d, "network_id", str),
            endpoint_id=_get(d, "endpoint_id", str), container=_get(d, "container", str),
            node=_get(d, "node", str, ""), mac=_get(d, "mac", str, ""),
            ipv4=_get(d, "ipv4", str, None), ipv6=_get(d, "ipv6", str, None),
            prefixlen=_get(d, "prefixlen", int, 24), gateway=_get(d, "gateway", str, None),
            aliases=_strs(d, "aliases"))


@dataclass(frozen=True, slots=True)
class NetworkInfo:
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

    @classmethod
    def from_wire(cls, raw: Any) -> NetworkInfo:
        d = _mapping(raw)
        opts = _get(d, "options", list, [])
        if not all(isinstance(o, list) and len(o) == 2 for o in opts):
            raise InvalidArgument("malformed API object: 'options' is not a list of pairs")
        return cls(
            id=_get(d, "id", str), name=_get(d, "name", str), driver=_get(d, "driver", str),
            scope=_get(d, "scope", str), subnets=_strs(d, "subnets"),
            gateways=_strs(d, "gateways"), ip_ranges=_strs(d, "ip_ranges"),
            vni=_get(d, "vni", int, None), attachable=_get(d, "attachable", bool, False),
            internal=_get(d, "internal", bool, False), ipv6=_get(d, "ipv6", bool, False),
            mtu=_get(d, "mtu", int, None),
            options=tuple((str(k), str(v)) for k, v in opts),
            created=_get(d, "created", float, 0.0),
            endpoints=tuple(EndpointInfo.from_wire(e) for e in _get(d, "endpoints", list, [])),
            labels=_pairs(d, "labels"))


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A sandbox (a netns standing for one container) and its endpoints."""

    id: str
    name: str
    netns: str
    netns_path: str
    node: str
    created: float = 0.0
    external: bool = False
    networks: tuple[EndpointInfo, ...] = ()
    hostname: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_wire(cls, raw: Any) -> ContainerInfo:
        d = _mapping(raw)
        return cls(
            id=_get(d, "id", str), name=_get(d, "name", str), netns=_get(d, "netns", str),
            netns_path=_get(d, "netns_path", str), node=_get(d, "node", str, ""),
            created=_get(d, "created", float, 0.0), external=_get(d, "external", bool, False),
            networks=tuple(EndpointInfo.from_wire(e) for e in _get(d, "networks", list, [])),
            hostname=_get(d, "hostname", str, ""), labels=_pairs(d, "labels"))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One row of `node ls`."""

    id: str
    hostname: str
    address: str
    status: NodeStatus
    availability: Availability
    role: Role
    leader: bool = False
    is_self: bool = False

    @property
    def manager_status(self) -> str:
        if self.role is not Role.MANAGER:
            return ""
        return "Leader" if self.leader else "Reachable"

    @classmethod
    def from_wire(cls, raw: Any) -> NodeInfo:
        d = _mapping(raw)
        try:
            return cls(
                id=_get(d, "id", str), hostname=_get(d, "hostname", str),
                address=_get(d, "address", str, ""),
                status=NodeStatus(_get(d, "status", str)),
                availability=Availability(_get(d, "availability", str)),
                role=Role(_get(d, "role", str)), leader=_get(d, "leader", bool, False),
                is_self=_get(d, "is_self", bool, False))
        except ValueError as exc:
            raise InvalidArgument(f"malformed API object: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What `netfabric info` shows: who this node is and how it sees the cluster."""

    node_id: str
    hostname: str
    role: Role
    advertise_addr: str
    cluster_id: str = ""
    managers: tuple[str, ...] = ()
    nodes: int = 0
    networks: int = 0
    containers: int = 0
    version: str = ""

    @classmethod
    def from_wire(cls, raw: Any) -> ClusterInfo:
        d = _mapping(raw)
        try:
            role = Role(_get(d, "role", str))
        except ValueError as exc:
            raise InvalidArgument(f"malformed API object: {exc}") from exc
        return cls(
            node_id=_get(d, "node_id", str), hostname=_get(d, "hostname", str), role=role,
            advertise_addr=_get(d, "advertise_addr", str, ""),
            cluster_id=_get(d, "cluster_id", str, ""), managers=_strs(d, "managers"),
            nodes=_get(d, "nodes", int, 0), networks=_get(d, "networks", int, 0),
            containers=_get(d, "containers", int, 0), version=_get(d, "version", str, ""))


@dataclass(frozen=True, slots=True)
class JoinToken:
    """A join token and the command a new node runs with it."""

    role: Role
    token: str
    address: str

    @property
    def command(self) -> str:
        return f"netfabric join --token {self.token} {self.address}"

    @classmethod
    def from_wire(cls, raw: Any) -> JoinToken:
        d = _mapping(raw)
        try:
            role = Role(_get(d, "role", str))
        except ValueError as exc:
            raise InvalidArgument(f"malformed API object: {exc}") from exc
        return cls(role=role, token=_get(d, "token", str), address=_get(d, "address", str))
