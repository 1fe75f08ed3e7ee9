"""Forwarding names we do not own to the upstream resolvers (asyncio adapter).

Each query gets its own socket (a fresh source port) and a fresh random ID, so replies
cannot be confused or easily spoofed, and there is no concurrency cap beyond file
descriptors: a thousand queries in flight are a thousand sockets (Docker once capped this
at 100 and dropped the rest). Upstreams are tried in order, each with its share of one deadline;
a truncated UDP reply is retried over TCP; when every upstream fails the client gets
SERVFAIL. Sockets are created in the agent's netns, or in ``netns`` through a parked
thread, so forwarding works as Docker's does: from the host side, not from the sandbox.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from netfabric.dns.resolver import Transport, fit_udp, servfail
from netfabric.errors import InvalidArgument
from netfabric.netns import NetnsThread

__all__ = ["DEFAULT_FORWARD_TIMEOUT", "Forwarder", "ForwarderStats", "Upstream",
           "parse_upstream", "read_resolv_conf"]

DEFAULT_FORWARD_TIMEOUT = 3.0
"""Seconds for one forwarded query, shared out over the upstreams; then SERVFAIL."""

_MAX_REPLY = 65535
_OUR_ADDRESS = "127.0.0.11"
_RETRANSMIT = 0.4  # seconds before a UDP query is sent again (same socket, same ID)


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream resolver."""

    host: str
    port: int = 53

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


@dataclass(slots=True)
class ForwarderStats:
    """Counters of forwarding outcomes."""

    queries: int = 0
    answered: int = 0
    tcp_retries: int = 0
    retransmits: int = 0
    upstream_errors: int = 0
    servfail: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


def parse_upstream(text: str) -> Upstream:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``fd00::1`` or ``[fd00::1]:5353``."""
    text = text.strip()
    host, port = text, 53
    try:
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                port = int(rest.removeprefix(":"))
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = int(port_text)
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidArgument(f"invalid upstream resolver {text!r}") from exc
    if not 0 < port < 65536:
        raise InvalidArgument(f"invalid upstream port in {text!r}")
    return Upstream(str(addr), port)


def read_resolv_conf(path: str = "/etc/resolv.conf") -> tuple[Upstream, ...]:
    """The ``nameserver`` lines of a resolv.conf, minus ourselves (127.0.0.11)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ()
    out: list[Upstream] = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                up = parse_upstream(words[1].split("%")[0])
            except InvalidArgument:
                continue
            if up.host != _OUR_ADDRESS:
                out.append(up)
    return tuple(out)


SocketFactory = Callable[[int, int], socket.socket]


def _local_socket(family: int, kind: int) -> socket.socket:
    s = socket.socket(family, kind)
    s.setblocking(False)
    return s


class Forwarder:
    """Sends one client query upstream and returns the reply to relay (never raises)."""

    def __init__(self, upstreams: Sequence[Upstream], *,
                 timeout: float = DEFAULT_FORWARD_TIMEOUT, netns: str | None = None) -> None:
        if timeout <= 0:
            raise InvalidArgument(f"forward timeout must be > 0, got {timeout}")
        self.upstreams = tuple(upstreams)
        self.timeout = timeout
        self.stats = ForwarderStats()
        self._netns = NetnsThread(netns) if netns else None
        self._factory: SocketFactory = self._netns.socket if self._netns else _local_socket

    def close(self) -> None:
        if self._netns is not None:
            self._netns.close()
            self._netns = None

    async def resolve(self, query: bytes, *, transport: Transport) -> bytes | None:
        """The upstream reply with the client's ID, SERVFAIL on failure, None to drop."""
        if len(query) < 12:
            return None
        stats = self.stats
        stats.queries += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        each = self.timeout / max(1, len(self.upstreams))
        try:
            for upstream in self.upstreams:
                try:
                    async with asyncio.timeout(each):
                        reply = await self._one(upstream, query, transport)
                except (OSError, EOFError, TimeoutError, ValueError):
                    stats.upstream_errors += 1
                    continue
                stats.answered += 1
                return reply
        finally:
            stats.in_flight -= 1
        stats.servfail += 1
        return servfail(query)

    async def _one(self, upstream: Upstream, query: bytes, transport: Transport) -> bytes:
        qid = secrets.randbelow(65536)
        ours = struct.pack("!H", qid) + query[2:]
        if transport is Transport.UDP:
            reply = await self._udp(upstream, ours, qid)
            if not reply[2] & 0x02:
                return query[:2] + reply[2:]
            self.stats.tcp_retries += 1
        reply = await self._tcp(upstream, ours, qid)
        reply = query[:2] + reply[2:]
        if transport is Transport.UDP:
            return fit_udp(reply, query)
        return reply

    async def _udp(self, upstream: Upstream, query: bytes, qid: int) -> bytes:
        loop = asyncio.get_running_loop()
        with self._factory(upstream.family, socket.SOCK_DGRAM) as sock:
            await loop.sock_connect(sock, (upstream.host, upstream.port))
            while True:  # UDP may lose either datagram: resend until the deadline
                await loop.sock_sendall(sock, query)
                try:
                    async with asyncio.timeout(_RETRANSMIT):
                        while True:  # connected: only the upstream's datagrams arrive
                            reply = await loop.sock_recv(sock, _MAX_REPLY)
                            if _matches(reply, qid, query):
                                return reply
                except TimeoutError:
                    self.stats.retransmits += 1

    async def _tcp(self, upstream: Upstream, query: bytes, qid: int) -> bytes:
        loop = asyncio.get_running_loop()
        with self._factory(upstream.family, socket.SOCK_STREAM) as sock:
            await loop.sock_connect(sock, (upstream.host, upstream.port))
            await loop.sock_sendall(sock, struct.pack("!H", len(query)) + query)
            size = struct.unpack("!H", await _recv_exactly(loop, sock, 2))[0]
            reply = await _recv_exactly(loop, sock, size)
        if not _matches(reply, qid, query):
            raise ValueError("upstream TCP reply does not match the query")
        return reply


def _matches(reply: bytes, qid: int, query: bytes) -> bool:
    return (len(reply) >= 12 and reply[0] == qid >> 8 and reply[1] == qid & 0xFF
            and bool(reply[2] & 0x80) and reply[4:6] == query[4:6])


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise EOFError("upstream closed the TCP connection")
        buf += chunk
    return bytes(buf)
