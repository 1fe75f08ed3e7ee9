"""What both drivers share: names, the sandbox side of an endpoint, the attach result.

Everything here is pure: networks and endpoints in, resources out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass

from netfabric.dataplane.resources import Addr, Placement, Resource, Route, Veth
from netfabric.errors import InvalidArgument
from netfabric.model import Endpoint, Network

__all__ = [
    "Attachment",
    "LocalEndpoint",
    "address_mac",
    "attachment",
    "check_ifname",
    "gateway_cidrs",
    "gateways",
    "mac_for",
    "network_mtu",
    "parked_or",
    "sandbox_side",
    "short_id",
]

MAX_IFNAME = 15
_RANDOM_HEX = re.compile(r"[0-9a-f]{12,}")
_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
MTU_OPTIONS = ("mtu", "com.docker.network.driver.mtu")


def short_id(ident: str, n: int) -> str:
    """``n`` characters naming ``ident`` in a link name: the head of a random hex id
    (Docker's and ours, so names are recognisable), else a digest (any id gives a valid,
    stable, distinct name)."""
    if _RANDOM_HEX.fullmatch(ident) and len(ident) >= n:
        return ident[:n]
    return hashlib.sha256(ident.encode()).hexdigest()[:n]


def address_mac(ipv4: str | None, ipv6: str | None = None) -> str:
    """The MAC of an endpoint: Docker's ``02:42:<the four IPv4 bytes>``; an endpoint with
    only IPv6 takes ``06:`` and the low five bytes of that address.

    Why derived, not random (issue 19, moby#52661): a container that talked to an address
    keeps that address's MAC in its own neighbour table, REACHABLE, for seconds. When the
    address moves to a new endpoint (``rm`` then ``run --ip`` on another host) a new random
    MAC made every such container send into a blackhole until its entry aged out (> 10 s);
    a MAC that follows the address makes the cached entry right at once, for the IPv4
    entry and for the IPv6 entries of the same endpoint, with no message to deliver: the
    overlay only moves the MAC's FDB entry to the new VTEP, as it does for any new
    address. A gratuitous ARP / unsolicited NA was the other way: it needs a sender per
    family and a flood that this overlay does not do (its VXLAN answers ARP/ND itself
    and has no broadcast FDB entry), so it would have to be relayed by every agent into
    every sandbox, after gossip, and is lost when a sandbox's agent is briefly down.
    Two endpoints of one network never share an IPv4 address, so never a MAC.
    """
    if ipv4:
        octets = ipaddress.IPv4Address(ipv4).packed
        return "02:42:" + ":".join(f"{b:02x}" for b in octets)
    if ipv6:
        low = ipaddress.IPv6Address(ipv6).packed[-5:]
        return "06:" + ":".join(f"{b:02x}" for b in low)
    raise InvalidArgument("an endpoint needs an IPv4 or IPv6 address for its MAC")


def mac_for(endpoint: Endpoint) -> str:
    """The endpoint's MAC, normalised; :func:`address_mac` when it gives none."""
    if endpoint.mac:
        mac = endpoint.mac.lower()
        if not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
            raise InvalidArgument(f"endpoint {endpoint.id}: bad unicast MAC {endpoint.mac!r}")
        return mac
    if endpoint.ipv4:
        return address_mac(endpoint.ipv4)
    raise InvalidArgument(f"endpoint {endpoint.id} has neither a MAC nor an IPv4 address")


def gateways(network: Network) -> tuple[str | None, str | None, int | None]:
    """(IPv4 gateway, IPv6 gateway, IPv6 prefix length) of a network's subnets."""
    gw4: str | None = None
    gw6: str | None = None
    plen6: int | None = None
    for sub in network.subnets:
        net = ipaddress.ip_network(sub.cidr, strict=False)
        if net.version == 4 and gw4 is None and sub.gateway:
            gw4 = sub.gateway
        elif net.version == 6:
            plen6 = plen6 or net.prefixlen
            if gw6 is None and sub.gateway:
                gw6 = sub.gateway
    return gw4, gw6, plen6


def gateway_cidrs(network: Network) -> list[str]:
    """``gateway/prefixlen`` of every subnet that has a gateway."""
    out = []
    for sub in network.subnets:
        if sub.gateway:
            net = ipaddress.ip_network(sub.cidr, strict=False)
            out.append(f"{ipaddress.ip_address(sub.gateway)}/{net.prefixlen}")
    return out


def network_mtu(network: Network) -> int | None:
    """The MTU the user asked for (``-o mtu=N`` or the network's field), if any."""
    if network.mtu:
        return _check_mtu(network.mtu)
    for key, value in network.options:
        if key in MTU_OPTIONS:
            try:
                return _check_mtu(int(value))
            except ValueError as exc:
                raise InvalidArgument(f"mtu option {value!r} is not a number") from exc
    return None


def _check_mtu(mtu: int) -> int:
    if not 576 <= mtu <= 65535:
        raise InvalidArgument(f"mtu must be 576..65535, got {mtu}")
    return mtu


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """An endpoint of this host: where its interface goes and under which names.

    ``sandbox=None`` parks the inner end in the host netns under ``ifname`` for a runtime
    to take (Docker's Join: dockerd moves, renames and addresses it)."""

    endpoint: Endpoint
    sandbox: str | None
    ifname: str
    host_ifname: str

    @property
    def parked(self) -> bool:
        return self.sandbox is None


@dataclass(frozen=True, slots=True)
class Attachment:
    """What an attach made, for the caller (Docker's Join, CNI's result, the CLI)."""

    network_id: str
    endpoint_id: str
    sandbox: str | None
    ifname: str
    host_ifname: str
    mac: str
    mtu: int
    ipv4: str | None
    ipv6: str | None
    gateway: str | None
    gateway6: str | None


def check_ifname(name: str) -> str:
    if not name or len(name) > MAX_IFNAME or "/" in name or name.strip() != name:
        raise InvalidArgument(f"bad interface name {name!r} (1..{MAX_IFNAME} chars)")
    return name


def sandbox_side(network: Network, local: LocalEndpoint, *, link_netns: str | None,
                 master: str, mtu: int, default_route: bool) -> list[Resource]:
    """The veth and the sandbox's addresses and default routes for one endpoint."""
    ep = local.endpoint
    if local.sandbox is None:
        return [Veth(link_netns, local.host_ifname, master, mtu, None, local.ifname,
                     mac_for(ep), placement=Placement.PARKED)]
    out: list[Resource] = [Veth(link_netns, local.host_ifname, master, mtu, local.sandbox,
                                local.ifname, mac_for(ep))]
    gw4, gw6, plen6 = gateways(network)
    if ep.ipv4:
        ip4 = ipaddress.IPv4Address(ep.ipv4)
        out.append(Addr(local.sandbox, local.ifname, f"{ip4}/{ep.prefixlen}"))
        if default_route and gw4:
            out.append(Route(local.sandbox, socket.AF_INET, "default",
                             str(ipaddress.IPv4Address(gw4)), local.ifname))
    if ep.ipv6:
        ip6 = ipaddress.IPv6Address(ep.ipv6)
        out.append(Addr(local.sandbox, local.ifname, f"{ip6}/{plen6 or 64}"))
        if default_route and gw6:
            out.append(Route(local.sandbox, socket.AF_INET6, "default",
                             str(ipaddress.IPv6Address(gw6)), local.ifname))
    return out


def attachment(network: Network, local: LocalEndpoint, mtu: int) -> Attachment:
    gw4, gw6, _ = gateways(network)
    ep = local.endpoint
    return Attachment(network.id, ep.id, local.sandbox, local.ifname, local.host_ifname,
                      mac_for(ep), mtu, ep.ipv4, ep.ipv6, gw4, gw6)


def parked_or(sandbox_netns: str | None, host_netns: str | None) -> str | None:
    """``None`` (park for the runtime) when the "sandbox" is the host netns itself."""
    if sandbox_netns is None or sandbox_netns == host_netns:
        return None
    return sandbox_netns
