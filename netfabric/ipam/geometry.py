"""The arithmetic of one subnet: bounds, gateway, ip-range, reserved offsets, blocks.

Validated once from strings (a request, a stored row or a lease), then all ints.
"""

from __future__ import annotations

from dataclasses import dataclass

from netfabric.errors import AddressOutOfRange, InvalidArgument
from netfabric.ipam.addr import IPFamily, format_addr, format_cidr, parse_addr, parse_cidr

__all__ = ["MAX_V4_HOST_BITS", "Geometry"]

MAX_V4_HOST_BITS = 24
"""IPv4 subnets are at most /8: the manager keeps one byte per IPv4 address (16 MB)."""


@dataclass(frozen=True, slots=True)
class Geometry:
    """A subnet as ints: ``net``/``prefixlen``, the gateway, the dynamic range ``lo..hi``
    (absolute, inclusive), and blocks of ``1 << block_bits`` addresses aligned to ``net``."""

    family: IPFamily
    net: int
    prefixlen: int
    gateway: int
    lo: int
    hi: int
    block_bits: int
    cidr: str
    gateway_text: str
    ip_range: str | None
    size: int

    @classmethod
    def build(cls, cidr: str, *, gateway: str | None, ip_range: str | None,
              block_prefix: int) -> Geometry:
        family, net, plen = parse_cidr(cidr)
        return cls.from_ints(family, net, plen, gateway=gateway, ip_range=ip_range,
                             block_prefix=block_prefix)

    @classmethod
    def from_ints(cls, family: IPFamily, net: int, plen: int, *, gateway: str | None,
                  ip_range: str | None, block_prefix: int) -> Geometry:
        bits = 32 if family is IPFamily.V4 else 128
        host_bits = bits - plen
        cidr = format_cidr(family, net, plen)
        if family is IPFamily.V4 and not 2 <= host_bits <= MAX_V4_HOST_BITS:
            raise InvalidArgument(f"subnet {cidr}: IPv4 subnets must be /8 to /30")
        if family is IPFamily.V6 and host_bits < 2:
            raise InvalidArgument(f"subnet {cidr}: IPv6 subnets must be /126 or larger")
        size = 1 << host_bits
        last = net + size - 1
        if gateway is None:
            gw = net + 1
        else:
            gfam, gw = parse_addr(gateway)
            if gfam is not family or not net < gw < (last if family is IPFamily.V4 else last + 1):
                raise AddressOutOfRange(
                    f"gateway {gateway} is not a usable address of subnet {cidr}")
        lo, hi = net, last
        range_text = None
        if ip_range is not None:
            rfam, rnet, rplen = parse_cidr(ip_range, what="ip-range")
            rlast = rnet + (1 << (bits - rplen)) - 1
            if rfam is not family or rnet < net or rlast > last:
                raise AddressOutOfRange(f"ip-range {ip_range} is not inside subnet {cidr}")
            lo, hi = rnet, rlast
            range_text = format_cidr(family, rnet, rplen)
        block_bits = min(host_bits, bits - block_prefix)
        return cls(family, net, plen, gw, lo, hi, block_bits, cidr,
                   format_addr(family, gw), range_text, size)

    @property
    def broadcast(self) -> int | None:
        """The IPv4 broadcast address; IPv6 has none."""
        return self.net + self.size - 1 if self.family is IPFamily.V4 else None

    def reserved_offsets(self) -> tuple[int, ...]:
        """Network address, broadcast (IPv4) and gateway, as offsets."""
        out = [0, self.gateway - self.net]
        if self.family is IPFamily.V4:
            out.append(self.size - 1)
        return tuple(sorted(set(out)))

    @property
    def block_count(self) -> int:
        return self.size >> self.block_bits

    def block_cidr(self, block: int) -> str:
        return format_cidr(self.family, self.net + (block << self.block_bits),
                           self.family.bits - self.block_bits)

    def contains(self, address: int) -> bool:
        return self.net <= address < self.net + self.size

    def why_reserved(self, address: int) -> str:
        """Human words for an address that may not be handed out."""
        if address == self.gateway:
            return f"the gateway of subnet {self.cidr}"
        if address == self.net:
            return f"the network address of subnet {self.cidr}"
        if address == self.broadcast:
            return f"the broadcast address of subnet {self.cidr}"
        return f"outside the ip-range {self.ip_range} of subnet {self.cidr}"
