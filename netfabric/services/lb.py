"""What the service datapath of one netns carries: load balancers as plain values.

A :class:`LoadBalancer` is one port of one service as one network namespace sees it: the
frontends that catch connections (VIPs, and optionally every local address for a published
port) and the targets they are spread over. The agent derives these from services and their
backends; :mod:`netfabric.services.nftplan` turns them into nftables text. Nothing here does
I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

from netfabric.errors import InvalidArgument

__all__ = ["MAX_TARGETS", "LoadBalancer", "Proto", "Target"]

MAX_TARGETS = 4096
"""Targets of one load balancer: ``numgen random mod N`` stays one rule up to this size."""

_KEY = re.compile(r"^[A-Za-z0-9_.:/@-]{1,200}$")


class Proto(StrEnum):
    """Layer-4 protocol of a service port."""

    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True, slots=True)
class Target:
    """One backend of a load balancer: a task address and the port it listens on
    (``None``: the port the client asked for, for a load balancer of all ports)."""

    ip: str
    port: int | None = None

    def __post_init__(self) -> None:
        _ipv4(self.ip, "target")
        if self.port is not None:
            _port(self.port, "target port")


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    """One service port in one netns.

    ``key`` names it uniquely within a table (``web/tcp/80`` for instance) and is all that
    ties kernel chains to it across changes. ``vips`` are matched as ``daddr . proto .
    port``, or, with ``proto`` and ``port`` both ``None``, as ``daddr`` alone: every port
    of the VIP, as swarm's VIPs work, with targets of no port (a port-specific load
    balancer on the same VIP takes precedence); ``published`` also catches the port on
    every local, non-loopback address of the netns (the routing mesh and host-mode
    publish). ``masquerade`` source-NATs what is sent
    to a target, so that replies return through this netns (needed when the target is on
    another node or is the client itself). Targets are kept in the order given; with none,
    connections are rejected at once rather than left to time out.
    """

    key: str
    proto: Proto | None
    port: int | None
    targets: tuple[Target, ...] = ()
    vips: tuple[str, ...] = ()
    published: bool = False
    masquerade: bool = False

    @property
    def all_ports(self) -> bool:
        return self.port is None

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise InvalidArgument(f"bad load-balancer key {self.key!r}")
        if self.proto is None and self.port is None:
            if self.published:
                raise InvalidArgument(f"load balancer {self.key}: publishing needs a port")
            if any(t.port is not None for t in self.targets):
                raise InvalidArgument(f"load balancer {self.key}: all ports, so no target port")
        else:
            if not isinstance(self.proto, Proto) or self.port is None:
                raise InvalidArgument(f"bad protocol or port {self.proto!r}/{self.port!r}")
            _port(self.port, "service port")
            if any(t.port is None for t in self.targets):
                raise InvalidArgument(f"load balancer {self.key}: a target without a port")
        for vip in self.vips:
            _ipv4(vip, "VIP")
        if not self.vips and not self.published:
            raise InvalidArgument(f"load balancer {self.key}: no VIP and not published")
        if len(self.targets) > MAX_TARGETS:
            raise InvalidArgument(f"load balancer {self.key}: over {MAX_TARGETS} targets")
        if len(set(self.targets)) != len(self.targets):
            raise InvalidArgument(f"load balancer {self.key}: duplicate target")
        if len(set(self.vips)) != len(self.vips):
            raise InvalidArgument(f"load balancer {self.key}: duplicate VIP")


def _ipv4(value: str, what: str) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(f"bad {what} address {value!r}")
    try:
        ipaddress.IPv4Address(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"bad {what} address {value!r}") from exc


def _port(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InvalidArgument(f"bad {what} {value!r}: must be 1..65535")
