"""``--advertise-addr eth0``: an interface name where an address is expected, as Docker takes.

The name is looked up in the netns of the calling process (the agent's), and must carry
exactly one IPv4 address: none or several is an error naming what was found.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netfabric.errors import InvalidArgument

__all__ = ["interface_ipv4", "resolve_addr", "resolve_hostport"]

_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


def interface_ipv4(name: str) -> list[str]:
    """The IPv4 addresses on interface ``name`` of this netns; InvalidArgument if there is no
    such interface."""
    try:
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=name)
            if not index:
                known = sorted(str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links())
                raise InvalidArgument(f"no interface {name!r} on this host "
                                      f"(interfaces: {', '.join(known)})")
            return [str(a.get_attr("IFA_ADDRESS"))
                    for a in ipr.get_addr(family=socket.AF_INET, index=index[0])]
    except NetlinkError as exc:
        raise InvalidArgument(f"interface {name!r}: {exc}") from exc


def resolve_addr(value: str, what: str = "--advertise-addr") -> str:
    """``value`` if it is an IP address, else the one IPv4 address of interface ``value``."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not isinstance(value, str) or not _IFNAME.match(value):
        raise InvalidArgument(f"invalid {what} {value!r}: give an IP address or an interface "
                              "name (e.g. eth0)")
    addrs = interface_ipv4(value)
    if not addrs:
        raise InvalidArgument(f"invalid {what} {value!r}: interface {value} has no IPv4 "
                              "address")
    if len(addrs) > 1:
        raise InvalidArgument(f"invalid {what} {value!r}: interface {value} has more than one "
                              f"IPv4 address ({', '.join(addrs)}): give one of them")
    return addrs[0]


def resolve_hostport(value: str, default_port: int, what: str = "--listen-addr") -> str:
    """``ADDR[:PORT]`` or ``IFACE[:PORT]`` as ``IP:PORT``."""
    host, sep, port = value.rpartition(":")
    if not sep or "]" in port:
        host, port = value, str(default_port)
    host = host.strip("[]")
    return f"{resolve_addr(host, what)}:{port}"
