"""The DNS server adapter: 127.0.0.11:53 inside every sandbox, served by one process.

For each sandbox netns a helper thread enters the netns, brings ``lo`` up and creates a UDP
and a TCP socket bound to 127.0.0.11:53 there; the sockets keep that netns, so the event
loop never calls ``setns``. The server also writes ``/etc/netns/<sandbox>/resolv.conf``
(``nameserver 127.0.0.11``, ``options ndots:0``), which ``ip netns exec`` mounts over
``/etc/resolv.conf``. Removing a sandbox closes its sockets and connections and removes
the file (and the directory if we made it).

UDP is served either by the event loop (:attr:`ServingMode.LOOP`) or by a dedicated thread
batching ``recvmmsg``/``sendmmsg`` that answers cache hits itself and hands every miss to
the loop (:attr:`ServingMode.THREAD`). TCP and forwarding always run on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from time import perf_counter
from typing import Protocol

from netfabric.dns.forwarder import DEFAULT_FORWARD_TIMEOUT, Forwarder, Upstream, read_resolv_conf
from netfabric.dns.latency import Latency, LatencySnapshot
from netfabric.dns.records import Records
from netfabric.dns.resolver import Asker, Forward, Resolver, ResolverConfig, Transport
from netfabric.errors import AlreadyExists, DataplaneError, NotFound
from netfabric.netns import netns_path, run_in_netns_async, up_loopback

__all__ = ["DNS_ADDRESS", "DnsServer", "ServerConfig", "ServerStats", "ServingMode"]

DNS_ADDRESS = "127.0.0.11"
"""Where every sandbox finds its resolver, as in Docker."""

RESOLV_CONF = f"nameserver {DNS_ADDRESS}\noptions ndots:0\n"
_UDP_RCVBUF = 4 << 20
_SO_RCVBUFFORCE = 33
_TCP_BACKLOG = 128
_UDP_DRAIN = 64


class ServingMode(StrEnum):
    """Who reads the UDP sockets."""

    LOOP = "loop"
    """The event loop, one ``recvfrom`` per datagram."""
    THREAD = "thread"
    """A dedicated thread with ``recvmmsg``/``sendmmsg`` batches; misses go to the loop."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Tunables of the server adapter."""

    upstreams: tuple[Upstream, ...] | None = None
    """Upstream resolvers; None reads ``nameserver`` lines of the host's resolv.conf."""
    forward_timeout: float = DEFAULT_FORWARD_TIMEOUT
    """Seconds per forwarded query over all upstreams, then SERVFAIL."""
    forward_netns: str | None = None
    """Netns in which forwarding sockets are opened; None is the server's own netns."""
    etc_netns: str = "/etc/netns"
    """Where ``ip netns exec`` finds per-netns /etc files."""
    port: int = 53
    """Port bound on 127.0.0.11 in each sandbox."""
    mode: ServingMode = ServingMode.THREAD
    """Who serves UDP: see :class:`ServingMode`."""
    tcp_idle_timeout: float = 10.0
    """Seconds a TCP client may stay idle between queries."""


@dataclass(slots=True)
class ServerStats:
    """Counters of the adapter (the resolver and forwarder keep their own)."""

    udp_queries: int = 0
    tcp_queries: int = 0
    send_errors: int = 0
    recv_errors: int = 0


@dataclass(slots=True, eq=False)
class Sandbox:
    """One served sandbox: its netns, networks and sockets."""

    netns: str
    asker: Asker
    udp: socket.socket
    tcp: socket.socket
    resolv_dir: str
    made_dir: bool
    tcp_server: asyncio.Server | None = None
    conns: set[asyncio.StreamWriter] = field(default_factory=set)
    closed: bool = False


class DnsServer:
    """Serves the embedded DNS of every sandbox of this host from one process."""

    def __init__(self, records: Records, *, rng: random.Random | None = None,
                 resolver_config: ResolverConfig | None = None,
                 config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.records = records
        self.resolver = Resolver(records, rng=rng or random.Random(),
                                 config=resolver_config)
        upstreams = self.config.upstreams
        if upstreams is None:
            upstreams = read_resolv_conf()
        self.forwarder = Forwarder(upstreams, timeout=self.config.forward_timeout,
                                   netns=self.config.forward_netns)
        self.stats = ServerStats()
        self.latency = Latency()
        """Answers of the loop's paths (misses, forwards, TCP); the pump keeps its own."""
        self._sandboxes: dict[str, Sandbox] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump: _PumpLike | None = None

    # --- the agent's API ---------------------------------------------------------------

    def counters(self) -> dict[str, dict[str, int]]:
        """Every counter of the server, resolver, forwarder and serving thread."""
        out = {"server": dataclasses.asdict(self.stats),
               "resolver": dataclasses.asdict(self.resolver.stats),
               "forwarder": dataclasses.asdict(self.forwarder.stats)}
        if self._pump is not None:
            out["pump"] = self._pump.counters()
        return out

    def latency_snapshot(self) -> LatencySnapshot:
        """Seconds from a query's arrival to its answer, over every serving path."""
        parts = [self.latency.snapshot()]
        if self._pump is not None:
            parts.append(self._pump.latency.snapshot())
        return Latency.merged(parts)

    def sandboxes(self) -> dict[str, frozenset[str]]:
        """Served sandbox netns names and their networks."""
        return {name: sb.asker.networks for name, sb in self._sandboxes.items()}

    async def add_sandbox(self, netns: str, networks: Iterable[str]) -> None:
        """Serve 127.0.0.11:53 inside ``netns`` for a sandbox on ``networks``."""
        netns_path(netns)
        if netns in self._sandboxes:
            raise AlreadyExists(f"DNS already serves sandbox {netns!r}")
        asker = Asker(frozenset(networks))
        port = self.config.port
        try:
            udp, tcp = await run_in_netns_async(netns, lambda: _open_sockets(port))
        except OSError as exc:
            raise DataplaneError(f"cannot serve DNS in {netns!r}: {exc}") from exc
        resolv_dir = os.path.join(self.config.etc_netns, netns)
        try:
            made_dir = _write_resolv_conf(resolv_dir)
        except OSError as exc:
            udp.close()
            tcp.close()
            raise DataplaneError(f"cannot write {resolv_dir}/resolv.conf: {exc}") from exc
        sb = Sandbox(netns=netns, asker=asker, udp=udp, tcp=tcp, resolv_dir=resolv_dir,
                     made_dir=made_dir)
        self._sandboxes[netns] = sb
        try:
            sb.tcp_server = await asyncio.start_server(
                lambda r, w: self._tcp_client(sb, r, w), sock=tcp)
            if self.config.mode is ServingMode.THREAD:
                self._ensure_pump().add(sb)
            else:
                asyncio.get_running_loop().add_reader(udp.fileno(), self._on_udp, sb)
        except BaseException:
            await self.remove_sandbox(netns)
            raise

    def update_sandbox_networks(self, netns: str, networks: Iterable[str]) -> None:
        """The sandbox joined or left a network: it now resolves names of ``networks``."""
        sb = self._get(netns)
        old = sb.asker.networks
        sb.asker = Asker(frozenset(networks))
        if self._pump is not None:
            self._pump.update(sb)
        self._forget_if_unused(old)

    async def remove_sandbox(self, netns: str) -> None:
        """Stop serving the sandbox: close its sockets and connections, remove its file."""
        sb = self._get(netns)
        del self._sandboxes[netns]
        sb.closed = True
        if self._pump is not None:
            self._pump.remove(sb)
        else:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(sb.udp.fileno())
        if sb.tcp_server is not None:
            sb.tcp_server.close()
        for writer in list(sb.conns):
            writer.close()
        if sb.tcp_server is not None:
            await sb.tcp_server.wait_closed()
        sb.udp.close()
        sb.tcp.close()
        _remove_resolv_conf(sb.resolv_dir, made_dir=sb.made_dir)
        self._forget_if_unused(sb.asker.networks)

    async def close(self) -> None:
        """Remove every sandbox, stop forwarding and the serving thread."""
        for netns in list(self._sandboxes):
            await self.remove_sandbox(netns)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pump is not None:
            self._pump.close()
            self._pump = None
        self.forwarder.close()
        self.resolver.close()

    # --- UDP ---------------------------------------------------------------------------

    def _on_udp(self, sb: Sandbox) -> None:
        sock = sb.udp
        for _ in range(_UDP_DRAIN):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.recv_errors += 1
                return
            self.udp_query(sb, data, addr)

    def udp_query(self, sb: Sandbox, data: bytes, addr: tuple[str, int]) -> None:
        """Answer one UDP datagram (called by the loop reader or for a pump miss)."""
        self.stats.udp_queries += 1
        if sb.closed:
            return
        started = perf_counter()
        out = self.resolver.answer(data, sb.asker)
        if out is None:
            return
        if isinstance(out, Forward):
            self._spawn(self._forward_udp(sb, out.query, addr, started))
            return
        self._sendto(sb, out, addr)
        self.latency.observe(perf_counter() - started)

    def _sendto(self, sb: Sandbox, data: bytes, addr: tuple[str, int]) -> None:
        if sb.closed:
            return
        try:
            sb.udp.sendto(data, addr)
        except OSError:
            self.stats.send_errors += 1

    async def _forward_udp(self, sb: Sandbox, query: bytes, addr: tuple[str, int],
                           started: float) -> None:
        reply = await self.forwarder.resolve(query, transport=Transport.UDP)
        if reply is not None:
            self._sendto(sb, reply, addr)
            self.latency.observe(perf_counter() - started)

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- TCP ---------------------------------------------------------------------------

    async def _tcp_client(self, sb: Sandbox, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        sb.conns.add(writer)
        idle = self.config.tcp_idle_timeout
        try:
            while not sb.closed:
                try:
                    async with asyncio.timeout(idle):
                        size = struct.unpack("!H", await reader.readexactly(2))[0]
                        query = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    break
                self.stats.tcp_queries += 1
                started = perf_counter()
                out = self.resolver.answer(query, sb.asker, transport=Transport.TCP)
                if isinstance(out, Forward):
                    out = await self.forwarder.resolve(out.query, transport=Transport.TCP)
                if out is None:
                    break  # a datagram we drop ends the stream: nothing sane follows
                writer.write(struct.pack("!H", len(out)) + out)
                self.latency.observe(perf_counter() - started)
                try:
                    await writer.drain()
                except ConnectionError:
                    break
        finally:
            sb.conns.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # --- helpers -----------------------------------------------------------------------

    def _get(self, netns: str) -> Sandbox:
        try:
            return self._sandboxes[netns]
        except KeyError:
            raise NotFound(f"DNS serves no sandbox {netns!r}") from None

    def _forget_if_unused(self, networks: frozenset[str]) -> None:
        if all(sb.asker.networks != networks for sb in self._sandboxes.values()):
            self.resolver.forget(networks)

    def _ensure_pump(self) -> _PumpLike:
        if self._pump is None:
            from netfabric.dns.pump import UdpPump

            self._pump = UdpPump(self.resolver.peek_cache, self.udp_query,
                                 asyncio.get_running_loop())
        return self._pump


class _PumpLike(Protocol):
    """What the server needs of the serving thread (see :mod:`netfabric.dns.pump`)."""

    def add(self, sb: Sandbox) -> None: ...

    def update(self, sb: Sandbox) -> None: ...

    def remove(self, sb: Sandbox) -> None: ...

    def close(self) -> None: ...

    def counters(self) -> dict[str, int]: ...

    @property
    def latency(self) -> Latency: ...


def _open_sockets(port: int) -> tuple[socket.socket, socket.socket]:
    """Runs inside the sandbox netns: lo up, then UDP and TCP on 127.0.0.11:port."""
    up_loopback()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:  # root may exceed net.core.rmem_max: bursts must not be dropped here
            udp.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _UDP_RCVBUF)
        except OSError:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
        udp.bind((DNS_ADDRESS, port))
        udp.setblocking(False)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((DNS_ADDRESS, port))
        tcp.listen(_TCP_BACKLOG)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def _write_resolv_conf(directory: str) -> bool:
    """Write resolv.conf atomically; True if we created the directory."""
    made = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".resolv.conf.netfabric")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(RESOLV_CONF)
    os.replace(tmp, os.path.join(directory, "resolv.conf"))
    return made


def _remove_resolv_conf(directory: str, *, made_dir: bool) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, "resolv.conf"))
    if made_dir:
        with contextlib.suppress(OSError):
            os.rmdir(directory)
