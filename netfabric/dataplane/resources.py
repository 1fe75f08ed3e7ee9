"""Kernel objects as plain values: what a driver wants and what :func:`observe` reads back.

Every resource has a ``key`` (its identity: which netns, which name) and other fields (its
wanted attributes). Two resources with the same key but different fields mean "update".
Reconcile never looks inside the kernel: it compares these values.

A ``netns`` of ``None`` means the netns of the host (the one the caller names as its host,
or the process's own when the caller names none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

__all__ = [
    "Addr",
    "Bridge",
    "Create",
    "Delete",
    "Fdb",
    "Key",
    "LinkKind",
    "LinkState",
    "Neigh",
    "Netns",
    "NftTable",
    "Op",
    "Phase",
    "Placement",
    "Resource",
    "Route",
    "Sysctl",
    "Update",
    "Veth",
    "Vxlan",
]

Key = tuple[object, ...]


class Phase(IntEnum):
    """Creation order; deletion runs in the reverse order."""

    NETNS = 0
    SYSCTL = 1
    BRIDGE = 2
    VXLAN = 3
    VETH = 4
    ADDR = 5
    ROUTE = 6
    FDB = 7
    NEIGH = 8
    NFT = 9


class LinkState(StrEnum):
    """Administrative state of a link (for a veth: of both ends)."""

    UP = "up"
    DOWN = "down"


class Placement(StrEnum):
    """Where a veth's inner end is and who configures it."""

    SANDBOX = "sandbox"
    """In ``peer_netns``, configured by us (addresses, routes)."""
    PARKED = "parked"
    """Left in ``peer_netns`` for a runtime to take (dockerd moves and configures it); only
    the outer end is ours to check."""


class LinkKind(StrEnum):
    BRIDGE = "bridge"
    VXLAN = "vxlan"
    VETH = "veth"


@dataclass(frozen=True, slots=True)
class Netns:
    """A named network namespace under /run/netns."""

    name: str
    phase = Phase.NETNS

    @property
    def key(self) -> Key:
        return ("netns", self.name)

    @property
    def netns(self) -> str | None:
        return self.name


@dataclass(frozen=True, slots=True)
class Sysctl:
    """One ``/proc/sys`` value inside a netns (e.g. ``net/ipv4/ip_forward``); never removed."""

    netns: str | None
    path: str
    value: str
    phase = Phase.SYSCTL

    @property
    def key(self) -> Key:
        return ("sysctl", self.netns, self.path)


@dataclass(frozen=True, slots=True)
class Bridge:
    """A Linux bridge, up."""

    netns: str | None
    name: str
    mtu: int
    state: LinkState = LinkState.UP
    phase = Phase.BRIDGE

    @property
    def key(self) -> Key:
        return ("link", self.netns, self.name)


@dataclass(frozen=True, slots=True)
class Vxlan:
    """A VXLAN device made in ``underlay_netns`` (its UDP socket lives there), then moved to
    ``netns`` and enslaved to ``master``. No learning; ARP/ND answered from the neighbour
    table (``proxy``)."""

    netns: str | None
    name: str
    vni: int
    local: str
    port: int
    mtu: int
    master: str
    state: LinkState = LinkState.UP
    underlay_netns: str | None = field(default=None, compare=False)
    phase = Phase.VXLAN

    @property
    def key(self) -> Key:
        return ("link", self.netns, self.name)


@dataclass(frozen=True, slots=True)
class Veth:
    """A veth pair: ``name`` in ``netns`` (enslaved to ``master``) and ``peer`` in
    ``peer_netns`` with the given MAC; both ends up, both with ``mtu``.

    An observed pair whose peer is missing has ``peer_netns`` and ``peer`` set to ``None``.
    """

    netns: str | None
    name: str
    master: str | None
    mtu: int
    peer_netns: str | None
    peer: str | None
    peer_mac: str | None
    state: LinkState = LinkState.UP
    placement: Placement = Placement.SANDBOX
    phase = Phase.VETH

    @property
    def key(self) -> Key:
        return ("link", self.netns, self.name)


@dataclass(frozen=True, slots=True)
class Addr:
    """An address ``cidr`` (``ip/prefixlen``) on ``dev``."""

    netns: str | None
    dev: str
    cidr: str
    phase = Phase.ADDR

    @property
    def key(self) -> Key:
        return ("addr", self.netns, self.dev, self.cidr)


@dataclass(frozen=True, slots=True)
class Route:
    """A route in the main table: ``dst`` (``default`` or a CIDR) via ``gateway`` on ``dev``."""

    netns: str | None
    family: int
    dst: str
    gateway: str
    dev: str
    phase = Phase.ROUTE

    @property
    def key(self) -> Key:
        return ("route", self.netns, self.family, self.dst)


@dataclass(frozen=True, slots=True)
class Fdb:
    """A static forwarding entry on a vxlan device: inner ``mac`` lives behind VTEP ``dst``."""

    netns: str | None
    dev: str
    mac: str
    dst: str
    phase = Phase.FDB

    @property
    def key(self) -> Key:
        return ("fdb", self.netns, self.dev, self.mac)


@dataclass(frozen=True, slots=True)
class Neigh:
    """A permanent neighbour entry ``ip`` → ``mac`` on ``dev``."""

    netns: str | None
    dev: str
    ip: str
    mac: str
    phase = Phase.NEIGH

    @property
    def key(self) -> Key:
        return ("neigh", self.netns, self.dev, self.ip)


@dataclass(frozen=True, slots=True)
class NftTable:
    """One nftables table of ours, whole: ``body`` is its rendered content and ``marker``
    (``nft.digest(body)``) what is compared, since the kernel's listing is not our text."""

    netns: str | None
    family: str
    name: str
    marker: str
    body: str = field(default="", compare=False)
    phase = Phase.NFT

    @property
    def key(self) -> Key:
        return ("nft", self.netns, self.family, self.name)


Resource = Netns | Sysctl | Bridge | Vxlan | Veth | Addr | Route | Fdb | Neigh | NftTable


@dataclass(frozen=True, slots=True)
class Create:
    """Make ``new``; nothing with its key exists."""

    new: Resource


@dataclass(frozen=True, slots=True)
class Update:
    """Make ``old`` (observed) into ``new`` (desired): same key, other attributes."""

    old: Resource
    new: Resource


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``old``."""

    old: Resource


Op = Create | Update | Delete
