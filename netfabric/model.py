"""The nouns of the Container Network Model, shared by every layer.

A **network** is a broadcast domain with subnets; a **sandbox** is a network namespace that
stands for one container; an **endpoint** is one interface of a sandbox on one network.
These are plain frozen values: the agent stores them, gossip carries endpoints, the drivers
turn them into kernel state and DNS turns them into records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["Driver", "Endpoint", "Network", "Scope", "SubnetSpec"]


class Driver(StrEnum):
    """Which driver builds the network."""

    BRIDGE = "bridge"
    OVERLAY = "overlay"


class Scope(StrEnum):
    """Docker's network scopes: ``local`` lives on one host, ``swarm`` spans the cluster."""

    LOCAL = "local"
    SWARM = "swarm"


@dataclass(frozen=True, slots=True)
class SubnetSpec:
    """One subnet of a network: CIDR, gateway and the sub-range for dynamic addresses."""

    cidr: str
    gateway: str
    ip_range: str | None = None


@dataclass(frozen=True, slots=True)
class Network:
    """A network as the manager records it and every host learns it."""

    id: str
    name: str
    driver: Driver
    scope: Scope
    subnets: tuple[SubnetSpec, ...] = ()
    vni: int | None = None
    attachable: bool = False
    internal: bool = False
    ipv6: bool = False
    mtu: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    created: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One interface of a sandbox on one network, as gossip carries it."""

    id: str
    network_id: str
    sandbox: str
    node_id: str
    mac: str
    ipv4: str | None = None
    ipv6: str | None = None
    prefixlen: int = 24
    vtep: str = ""
    aliases: tuple[str, ...] = field(default=())
