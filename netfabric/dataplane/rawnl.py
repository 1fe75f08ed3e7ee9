"""A minimal rtnetlink client for the attach hot path.

pyroute2 speaks every netlink message but pays an event-loop turn and a full decode per
request (about a millisecond here). The few requests an attach makes many times (look up
an interface, bring it up, add an address, set the default route) are fixed C structs
plus a handful of attributes, so this module packs them with ``struct`` and reads the
kernel's acknowledgement itself: a round trip costs tens of microseconds. Everything else
(creating devices, dumps, FDB) stays with pyroute2.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["AddrEntry", "Link", "NeighEntry", "RouteEntry", "Rtnl", "RtnlError"]

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_NDMSG = struct.Struct("=BBHiHBB")

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTM_DELNEIGH = 29
RTM_GETADDR = 22
RTM_GETROUTE = 26
RTM_GETNEIGH = 30
NLM_F_DUMP = 0x300
NDA_DST = 1
NDA_LLADDR = 2
AF_BRIDGE = 7

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
NLA_F_NESTED = 0x8000
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
IFF_UP = 0x1


class RtnlError(OSError):
    """The kernel answered a request with an error (``errno`` says which)."""


@dataclass(frozen=True, slots=True)
class Link:
    """The facts of an interface reconcile reads (``info`` is IFLA_INFO_DATA's attributes,
    e.g. a vxlan's VNI)."""

    index: int
    flags: int
    mtu: int | None
    link: int | None
    master: int | None
    address: str | None
    name: str = ""
    kind: str | None = None
    info: dict[int, bytes] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class AddrEntry:
    index: int
    family: int
    prefixlen: int
    scope: int
    ip: str


@dataclass(frozen=True, slots=True)
class RouteEntry:
    family: int
    dst_len: int
    table: int
    oif: int | None
    gateway: str | None


@dataclass(frozen=True, slots=True)
class NeighEntry:
    """A neighbour (ARP/ND) or, with family AF_BRIDGE, an FDB entry."""

    family: int
    index: int
    state: int
    flags: int
    ip: str | None
    mac: str | None


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _RTA.pack(_RTA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    off = 0
    while off + _RTA.size <= len(data):
        length, kind = _RTA.unpack_from(data, off)
        if length < _RTA.size:
            break
        out[kind & 0x3FFF] = data[off + _RTA.size: off + length]
        off += (length + 3) & ~3
    return out


def _u32(raw: bytes | None) -> int | None:
    return None if raw is None or len(raw) < 4 else int(struct.unpack("=I", raw[:4])[0])


def _mac(raw: bytes | None) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw else None


def _ip(raw: bytes | None) -> str | None:
    if raw is None or len(raw) not in (4, 16):
        return None
    return str(ipaddress.ip_address(raw))


def _str(raw: bytes | None) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw else ""


def parse_link(payload: bytes) -> Link:
    _, _, index, flags, _ = _IFINFO.unpack_from(payload)
    attrs = _attrs(payload[_IFINFO.size:])
    info = _attrs(attrs.get(IFLA_LINKINFO, b""))
    kind = _str(info.get(IFLA_INFO_KIND)) or None
    return Link(index=index, flags=flags, mtu=_u32(attrs.get(IFLA_MTU)),
                link=_u32(attrs.get(IFLA_LINK)), master=_u32(attrs.get(IFLA_MASTER)),
                address=_mac(attrs.get(IFLA_ADDRESS)), name=_str(attrs.get(IFLA_IFNAME)),
                kind=kind, info=_attrs(info.get(IFLA_INFO_DATA, b"")))


class Rtnl:
    """Blocking rtnetlink requests on one socket (which fixes the netns). Not thread-safe:
    the dataplane worker thread is its only user."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> bytes | None:
        """Send one request; return the reply payload of a GET, ``None`` for an ack."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        self._sock.send(_HDR.pack(_HDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0)
                        + body)
        while True:
            data = self._sock.recv(65536)
            if not data:
                raise RtnlError(errno.EPROTO, "netlink socket closed")
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, _, mseq, _ = _HDR.unpack_from(data, off)
                payload = data[off + _HDR.size: off + length]
                off += (length + 3) & ~3
                if mseq != seq:
                    continue  # a late answer to an earlier request
                if mtype == NLMSG_ERROR:
                    code = -int(struct.unpack_from("=i", payload)[0])
                    if code:
                        raise RtnlError(code, os.strerror(code))
                    return None
                if mtype == NLMSG_DONE:
                    return None
                return payload

    def link(self, name: str) -> Link | None:
        """The interface called ``name``, or ``None``."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME,
                                                                   name.encode() + b"\0")
        try:
            payload = self._request(RTM_GETLINK, 0, body)
        except RtnlError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        if payload is None:
            return None
        return parse_link(payload)

    def _dump(self, kind: int, body: bytes) -> list[bytes]:
        """All answers to a dump request (until NLMSG_DONE)."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        self._sock.send(_HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP,
                                  seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self._sock.recv(1 << 20)
            if not data:
                raise RtnlError(errno.EPROTO, "netlink socket closed")
            off = 0
            while off + _HDR.size <= len(data):
                length, mtype, _, mseq, _ = _HDR.unpack_from(data, off)
                payload = data[off + _HDR.size: off + length]
                off += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    code = -int(struct.unpack_from("=i", payload)[0])
                    if code:
                        raise RtnlError(code, os.strerror(code))
                    return out
                out.append(payload)

    def links(self) -> list[Link]:
        return [parse_link(p) for p in self._dump(
            RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0))]

    def addrs(self) -> list[AddrEntry]:
        out = []
        for p in self._dump(RTM_GETADDR, _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, plen, _, scope, index = _IFADDR.unpack_from(p)
            attrs = _attrs(p[_IFADDR.size:])
            ip = _ip(attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS))
            if ip is not None:
                out.append(AddrEntry(index, family, plen, scope, ip))
        return out

    def routes(self, family: int) -> list[RouteEntry]:
        out = []
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        for p in self._dump(RTM_GETROUTE, body):
            fam, dst_len, _, _, table, _, _, _, _ = _RTMSG.unpack_from(p)
            attrs = _attrs(p[_RTMSG.size:])
            out.append(RouteEntry(fam, dst_len, _u32(attrs.get(RTA_TABLE)) or table,
                                  _u32(attrs.get(RTA_OIF)), _ip(attrs.get(RTA_GATEWAY))))
        return out

    def neighbours(self, family: int) -> list[NeighEntry]:
        """ARP/ND entries (AF_INET, AF_INET6) or FDB entries (AF_BRIDGE)."""
        out = []
        for p in self._dump(RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0, 0, 0)):
            fam, _, _, index, state, flags, _ = _NDMSG.unpack_from(p)
            attrs = _attrs(p[_NDMSG.size:])
            out.append(NeighEntry(fam, index, state, flags, _ip(attrs.get(NDA_DST)),
                                  _mac(attrs.get(NDA_LLADDR))))
        return out

    def add_veth(self, name: str, *, mtu: int, master: int | None, peer: str,
                 peer_mac: str | None, peer_netns_fd: int | None) -> None:
        """Create a veth pair, this end up and enslaved to ``master``, the peer (down:
        the kernel ignores its flags) in the netns of ``peer_netns_fd``."""
        peer_attrs = _attr(IFLA_IFNAME, peer.encode() + b"\0") + _attr(
            IFLA_MTU, struct.pack("=I", mtu))
        if peer_mac:
            peer_attrs += _attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
        if peer_netns_fd is not None:
            peer_attrs += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
        peer_msg = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + peer_attrs
        info = _attr(IFLA_INFO_KIND, b"veth") + _attr(
            IFLA_INFO_DATA | NLA_F_NESTED, _attr(VETH_INFO_PEER, peer_msg))
        body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
                + _attr(IFLA_IFNAME, name.encode() + b"\0")
                + _attr(IFLA_MTU, struct.pack("=I", mtu))
                + _attr(IFLA_LINKINFO | NLA_F_NESTED, info))
        if master is not None:
            body += _attr(IFLA_MASTER, struct.pack("=I", master))
        self._request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def set_up(self, index: int, *, mtu: int | None = None) -> None:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
        if mtu is not None:
            body += _attr(IFLA_MTU, struct.pack("=I", mtu))
        self._request(RTM_NEWLINK, NLM_F_ACK, body)

    def add_addr(self, index: int, cidr: str) -> bool:
        """Add ``cidr`` to the interface; ``False`` if it was there already. IPv6 skips
        duplicate address detection: the IPAM owns uniqueness, and DAD would hold the
        address unusable for a second."""
        iface = ipaddress.ip_interface(cidr)
        family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
        flags = IFA_F_NODAD if iface.version == 6 else 0
        packed = iface.ip.packed
        body = (_IFADDR.pack(family, iface.network.prefixlen, flags, 0, index)
                + _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
                + _attr(IFA_FLAGS, struct.pack("=I", flags)))
        try:
            self._request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
        except RtnlError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def replace_default_route(self, gateway: str, oif: int) -> None:
        gw = ipaddress.ip_address(gateway)
        family = socket.AF_INET6 if gw.version == 6 else socket.AF_INET
        body = (_RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
                + _attr(RTA_TABLE, struct.pack("=I", RT_TABLE_MAIN))
                + _attr(RTA_GATEWAY, gw.packed) + _attr(RTA_OIF, struct.pack("=I", oif)))
        self._request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, body)

    def del_neigh(self, index: int, ip: str) -> bool:
        """Drop a neighbour (ARP/ND cache) entry; ``False`` if there was none."""
        addr = ipaddress.ip_address(ip)
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        body = _NDMSG.pack(family, 0, 0, index, 0, 0, 0) + _attr(NDA_DST, addr.packed)
        try:
            self._request(RTM_DELNEIGH, NLM_F_ACK, body)
        except RtnlError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ESRCH):
                return False
            raise
        return True
