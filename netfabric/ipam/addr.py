"""Addresses as ints: parse and format at the edges, integers everywhere inside.

``ipaddress`` objects are correct but cost about a microsecond each; the allocator's hot
path works on ints and only formats an address when it hands one out.
"""

from __future__ import annotations

import ipaddress
from enum import IntEnum

from netfabric.errors import InvalidArgument

__all__ = ["IPFamily", "Prefix", "as_family", "format_addr", "format_cidr", "parse_addr",
           "parse_cidr"]


class IPFamily(IntEnum):
    """IP version of a subnet or request."""

    V4 = 4
    V6 = 6

    @property
    def bits(self) -> int:
        return 32 if self.value == 4 else 128


_OCTETS = {str(i): i for i in range(256)}

def as_family(family: IPFamily | int) -> IPFamily:
    """``IPFamily(family)``, or InvalidArgument for anything but 4 and 6."""
    if type(family) is IPFamily:
        return family
    try:
        return IPFamily(family)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"unknown IP family {family!r}: expected 4 or 6") from exc


Prefix = tuple[IPFamily, int, int]
"""(family, network address as int, prefix length)."""


def parse_addr(text: str) -> tuple[IPFamily, int]:
    """``"10.0.0.5"`` -> (V4, 167772165); InvalidArgument for anything that is not an address."""
    parts = text.split(".") if type(text) is str else ()
    if len(parts) == 4:
        o = _OCTETS
        try:  # only canonical octets ("0".."255", no leading zeros) are keys
            return IPFamily.V4, (o[parts[0]] << 24) | (o[parts[1]] << 16) | (
                o[parts[2]] << 8) | o[parts[3]]
        except KeyError:
            pass
    try:
        if "%" in text:
            raise ValueError("a scope id has no place in IPAM")
        ip = ipaddress.ip_address(text)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid IP address {text!r}") from exc
    return IPFamily(ip.version), int(ip)


def parse_cidr(text: str, *, what: str = "subnet") -> Prefix:
    """``"10.0.0.0/24"`` -> (V4, net, 24); InvalidArgument when malformed or host bits set."""
    try:
        if "%" in text:
            raise ValueError("a scope id has no place in IPAM")
        net = ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid {what} {text!r}: expected a CIDR like 10.1.0.0/24") \
            from exc
    if "/" not in str(text):
        raise InvalidArgument(f"invalid {what} {text!r}: a prefix length is required")
    if int(ipaddress.ip_interface(text).ip) != int(net.network_address):
        raise InvalidArgument(f"invalid {what} {text!r}: host bits set, did you mean {net}?")
    return IPFamily(net.version), int(net.network_address), net.prefixlen


def format_addr(family: IPFamily, value: int) -> str:
    """Dotted quad or RFC 5952 text for one address int."""
    if family is IPFamily.V4:
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(ipaddress.IPv6Address(value))


def format_cidr(family: IPFamily, value: int, prefixlen: int) -> str:
    """``10.0.0.0/24`` for (V4, net, 24)."""
    return f"{format_addr(family, value)}/{prefixlen}"
