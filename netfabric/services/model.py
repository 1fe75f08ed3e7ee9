"""Services as an orchestrator hands them to netfabric: plain, validated values.

A :class:`Service` is a name, its networks with one VIP each (VIP mode), an endpoint mode
and published ports; a :class:`Backend` is one task of it, with its address on each network,
that the caller adds and removes. :func:`parse_publish` reads Docker's ``--publish`` syntax.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

from netfabric.errors import InvalidArgument
from netfabric.services.lb import Proto

__all__ = ["Backend", "EndpointMode", "PortConfig", "PublishMode", "Service", "parse_publish"]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


class EndpointMode(StrEnum):
    """How clients reach the tasks: one virtual IP load-balanced over them, or DNS round
    robin over their addresses."""

    VIP = "vip"
    DNSRR = "dnsrr"


class PublishMode(StrEnum):
    """``ingress``: the port answers on every node (the routing mesh); ``host``: only on
    nodes where a task runs, and only to those tasks."""

    INGRESS = "ingress"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class PortConfig:
    """One published port: ``published`` on the nodes to ``target`` in the tasks."""

    target: int
    published: int
    proto: Proto = Proto.TCP
    mode: PublishMode = PublishMode.INGRESS

    def __post_init__(self) -> None:
        for value, what in ((self.target, "target"), (self.published, "published")):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                raise InvalidArgument(f"bad {what} port {value!r}: must be 1..65535")
        if not isinstance(self.proto, Proto) or not isinstance(self.mode, PublishMode):
            raise InvalidArgument(f"bad port protocol or mode {self.proto!r}/{self.mode!r}")

    def __str__(self) -> str:
        star = "*" if self.mode is PublishMode.INGRESS else "host"
        return f"{star}:{self.published}->{self.target}/{self.proto}"


def _port(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidArgument(f"bad {what} port {text!r}") from exc
    if not 1 <= value <= 65535:
        raise InvalidArgument(f"bad {what} port {text!r}: must be 1..65535")
    return value


def _proto(text: str) -> Proto:
    try:
        return Proto(text.lower())
    except ValueError as exc:
        raise InvalidArgument(f"bad protocol {text!r}: tcp or udp") from exc


def parse_publish(text: str) -> PortConfig:
    """Docker's ``--publish``: ``P:T[/proto]``, or ``mode=host,target=T[,published=P]
    [,protocol=udp]``. Without a published port, host mode publishes the target port
    (Docker picks a random one); ingress mode needs one."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("empty --publish")
    text = text.strip()
    if "=" in text:
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in ("mode", "target", "published", "protocol"):
                raise InvalidArgument(f"bad --publish field {part!r} in {text!r}")
            fields[key.strip()] = value.strip()
        if "target" not in fields:
            raise InvalidArgument(f"--publish {text!r} has no target")
        try:
            mode = PublishMode(fields.get("mode", "ingress"))
        except ValueError as exc:
            raise InvalidArgument(f"bad publish mode {fields['mode']!r}: ingress or host") \
                from exc
        target = _port(fields["target"], "target")
        if "published" in fields:
            published = _port(fields["published"], "published")
        elif mode is PublishMode.HOST:
            published = target
        else:
            raise InvalidArgument(f"--publish {text!r}: ingress mode needs a published port")
        return PortConfig(target, published, _proto(fields.get("protocol", "tcp")), mode)
    spec, _, proto = text.partition("/")
    published_s, sep, target_s = spec.partition(":")
    if not sep:
        raise InvalidArgument(f"--publish {text!r}: use PUBLISHED:TARGET[/tcp|udp]")
    return PortConfig(_port(target_s, "target"), _port(published_s, "published"),
                      _proto(proto or "tcp"))


def _check_ipv4(value: str, what: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"bad {what} {value!r}") from exc


@dataclass(frozen=True, slots=True)
class Service:
    """A service as every node knows it.

    ``networks`` are network ids; in VIP mode ``vips`` gives each one its VIP (from that
    network's IPAM), in DNSRR mode there is none. Two ports may not publish the same
    port and protocol.
    """

    name: str
    networks: tuple[str, ...] = ()
    mode: EndpointMode = EndpointMode.VIP
    vips: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortConfig, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidArgument(f"invalid service name {self.name!r}")
        if not isinstance(self.mode, EndpointMode):
            raise InvalidArgument(f"bad endpoint mode {self.mode!r}: vip or dnsrr")
        if len(set(self.networks)) != len(self.networks):
            raise InvalidArgument(f"service {self.name}: a network twice")
        vip_nets = [n for n, _ in self.vips]
        for _, vip in self.vips:
            _check_ipv4(vip, f"VIP of {self.name}")
        if self.mode is EndpointMode.DNSRR and self.vips:
            raise InvalidArgument(f"service {self.name} in dnsrr mode has no VIP")
        if self.mode is EndpointMode.VIP and sorted(vip_nets) != sorted(self.networks):
            raise InvalidArgument(f"service {self.name}: one VIP per network is needed")
        seen = [(p.published, p.proto) for p in self.ports]
        if len(set(seen)) != len(seen):
            raise InvalidArgument(f"service {self.name}: a port published twice")

    def vip(self, network_id: str) -> str | None:
        for net, vip in self.vips:
            if net == network_id:
                return vip
        return None


@dataclass(frozen=True, slots=True)
class Backend:
    """One task of a service: its address on each network it is attached to.

    ``active=False`` is a task about to stop: it has left every VIP and name already, so that
    no new connection is sent to it, while its established ones finish.
    """

    service: str
    id: str
    node: str
    addresses: tuple[tuple[str, str], ...]
    active: bool = True

    def __post_init__(self) -> None:
        if not self.id or not self.node:
            raise InvalidArgument("a backend needs an id and a node")
        for _, ip in self.addresses:
            _check_ipv4(ip, f"address of backend {self.id}")

    def address(self, network_id: str) -> str | None:
        for net, ip in self.addresses:
            if net == network_id:
                return ip
        return None
