"""The underlay probe of `netfabric doctor`: a VXLAN-encapsulated ICMP echo request from
SOURCE's MAC and address to TARGET's, sent over UDP to the peer's VTEP port; the peer's
kernel decapsulates it, TARGET answers, and the echo reply comes back encapsulated to this
host's VXLAN port, where a packet socket on the underlay sees it. An answer proves UDP 4789
passes both ways and the peer's vxlan, bridge and FDB carry the frame; silence is the
symptom of swarmkit#1434 (4789 blocked). Runs in the agent's (host) netns."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
import struct

__all__ = ["echo_frame", "is_answer", "probe"]

_ETH_P_IP = 0x0800
_VXLAN_FLAGS = 0x08000000


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_frame(vni: int, src_mac: str, src_ip: str, dst_mac: str, dst_ip: str,
               ident: int) -> bytes:
    """VXLAN header + Ethernet + IPv4 + ICMP echo request ``ident``."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"netfabric doctor"
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), ident, 0, 64,
                       socket.IPPROTO_ICMP, 0, ipaddress.IPv4Address(src_ip).packed,
                       ipaddress.IPv4Address(dst_ip).packed)
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    eth = _mac(dst_mac) + _mac(src_mac) + struct.pack("!H", _ETH_P_IP)
    return struct.pack("!II", _VXLAN_FLAGS, vni << 8) + eth + head + icmp


def is_answer(packet: bytes, *, vtep: str, port: int, vni: int, target_ip: str,
              ident: int) -> bool:
    """Whether an IPv4 packet (from the IP header on) is VXLAN from ``vtep`` to ``port``
    carrying the echo reply ``ident`` from ``target_ip``."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_UDP:
        return False
    ihl = (packet[0] & 0x0F) * 4
    if packet[12:16] != ipaddress.IPv4Address(vtep).packed:
        return False
    udp = packet[ihl:]
    if len(udp) < 8 + 8 + 14 + 20 + 8 or struct.unpack("!H", udp[2:4])[0] != port:
        return False
    if struct.unpack("!I", udp[12:16])[0] >> 8 != vni:
        return False
    eth = udp[16:]
    if struct.unpack("!H", eth[12:14])[0] != _ETH_P_IP:
        return False
    inner = eth[14:]
    if inner[9] != socket.IPPROTO_ICMP or inner[12:16] != ipaddress.IPv4Address(
            target_ip).packed:
        return False
    icmp = inner[(inner[0] & 0x0F) * 4:]
    return icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident


async def probe(*, vtep: str, port: int, vni: int, src_mac: str, src_ip: str,
                dst_mac: str, dst_ip: str, timeout: float = 1.5, tries: int = 3) -> bool:
    """True when the peer's side answers within ``timeout`` (sent ``tries`` times)."""
    loop = asyncio.get_running_loop()
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
    send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sniff.setblocking(False)
    send.setblocking(False)
    ident = secrets.randbelow(0xFFFF) + 1
    frame = echo_frame(vni, src_mac, src_ip, dst_mac, dst_ip, ident)
    deadline = loop.time() + timeout
    try:
        for i in range(tries):
            with contextlib.suppress(OSError):
                send.sendto(frame, (vtep, port))
            step = deadline - (timeout * (tries - i - 1) / tries)
            while loop.time() < step:
                try:
                    data = await asyncio.wait_for(loop.sock_recv(sniff, 65535),
                                                  max(0.01, step - loop.time()))
                except TimeoutError:
                    break
                if is_answer(data, vtep=vtep, port=port, vni=vni, target_ip=dst_ip,
                             ident=ident):
                    return True
        return False
    finally:
        sniff.close()
        send.close()
