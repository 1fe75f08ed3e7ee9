"""GossipMesh: the agent's :class:`~netfabric.agent.ports.Mesh` over the sans-IO gossip core.

The core (:class:`netfabric.gossip.core.GossipCore`) does SWIM, the tables and the crypto;
this adapter only moves bytes and time: one UDP socket and one TCP listener on
``advertise_addr:gossip_port`` in the agent's netns, a timer task that sleeps until the
core's next deadline, and a consumer that turns the core's events into
:class:`MeshEvent` s for AgentCore, in order. Endpoints live in the table ``endpoints``,
scoped per network, valued as compact JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from netfabric.agent.core import AgentConfig
from netfabric.agent.ports import Member, MeshEvent, MeshEventKind
from netfabric.errors import ClusterError, InvalidArgument, NetfabricError, NotFound
from netfabric.gossip import events as gev
from netfabric.gossip.config import GossipConfig
from netfabric.gossip.core import GossipCore
from netfabric.gossip.keyring import Keyring
from netfabric.gossip.messages import MemberState
from netfabric.model import Endpoint

__all__ = ["ENDPOINT_TABLE", "PROFILES", "GossipMesh", "decode_endpoint", "encode_endpoint"]

log = logging.getLogger(__name__)

ENDPOINT_TABLE = "endpoints"
def _local() -> GossipConfig:
    """The gossip package's ``local`` profile with a faster broadcast round: on one machine
    a round costs microseconds, and names reach 20 hosts in ~3 rounds."""
    return GossipConfig.local().with_(gossip_interval=0.02, gossip_nodes=4)


PROFILES: dict[str, Callable[[], GossipConfig]] = {
    "lan": GossipConfig.lan, "local": _local, "wan": GossipConfig.wan}
STREAM_TIMEOUT = 10.0
"""Seconds one push/pull exchange may take."""


def encode_endpoint(ep: Endpoint) -> bytes:
    return json.dumps([ep.id, ep.network_id, ep.sandbox, ep.node_id, ep.mac, ep.ipv4,
                       ep.ipv6, ep.prefixlen, ep.vtep, list(ep.aliases)],
                      separators=(",", ":")).encode()


def decode_endpoint(raw: bytes) -> Endpoint:
    """An endpoint from a table value; malformed values are :class:`InvalidArgument`."""
    try:
        v = json.loads(raw)
        return Endpoint(id=str(v[0]), network_id=str(v[1]), sandbox=str(v[2]),
                        node_id=str(v[3]), mac=str(v[4]),
                        ipv4=None if v[5] is None else str(v[5]),
                        ipv6=None if v[6] is None else str(v[6]), prefixlen=int(v[7]),
                        vtep=str(v[8]), aliases=tuple(str(a) for a in v[9]))
    except (ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"malformed endpoint entry: {exc}") from exc


async def _read_all(reader: asyncio.StreamReader, cap: int) -> bytes:
    """Everything up to EOF, at most ``cap`` bytes (more is a bad stream: dropped)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > cap:
            return b""
        chunks.append(chunk)
    return b"".join(chunks)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, mesh: GossipMesh) -> None:
        self.mesh = mesh

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.mesh._receive(data, (str(addr[0]), int(addr[1])))


class GossipMesh:
    """Membership and the endpoint table for one agent."""

    def __init__(self, config: AgentConfig, *, node_id: str, profile: str = "lan") -> None:
        if profile not in PROFILES:
            raise InvalidArgument(f"unknown gossip profile {profile!r}: use lan, local or wan")
        self._config = config
        self._node_id = node_id
        self._gossip_config = PROFILES[profile]()
        self._core: GossipCore | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._events: asyncio.Queue[MeshEvent] = asyncio.Queue()
        self._listeners: list[Callable[[MeshEvent], Awaitable[None]]] = []
        self._streams: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, *, secret: str, seeds: Sequence[str]) -> None:
        if self._core is not None:
            return
        addr = self._config.advertise_addr
        if not addr:
            raise ClusterError("cluster mode needs the agent's --advertise-addr")
        port = self._config.gossip_port
        loop = asyncio.get_running_loop()
        core = GossipCore(self._gossip_config, node_id=self._node_id, addr=(addr, port),
                          keyring=Keyring.from_secret(secret), rng=random.Random(),
                          now=loop.time(), incarnation=int(time.time()))
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(addr, port), reuse_port=False)
            self._tcp = await asyncio.start_server(self._serve_stream, host=addr, port=port,
                                                   reuse_address=True)
        except OSError as exc:
            await self._close_sockets()
            raise ClusterError(f"cannot open gossip port {addr}:{port}: {exc.strerror}") \
                from exc
        self._core = core
        parsed = []
        for seed in seeds:
            host, _, p = seed.rpartition(":")
            with contextlib.suppress(ValueError):
                parsed.append((host, int(p)))
        core.join(parsed, loop.time())
        self._timer = loop.create_task(self._run_timers())
        self._consumer = loop.create_task(self._consume())
        self._flush()

    async def leave(self) -> None:
        core = self._core
        if core is None:
            return
        core.leave(asyncio.get_running_loop().time())
        self._flush()
        await asyncio.sleep(0.2)   # let the announcement leave before the sockets close
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for task in (self._timer, self._consumer, *self._streams):
            if task is not None:
                task.cancel()
        for task in (self._timer, self._consumer, *self._streams):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._timer = self._consumer = None
        self._streams.clear()
        await self._close_sockets()
        self._core = None
        self._closed = False

    async def _close_sockets(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    # -- the Mesh seam ------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def publish(self, endpoint: Endpoint) -> None:
        core = self._require()
        core.join_network(endpoint.network_id, self._now())
        core.set_entry(ENDPOINT_TABLE, endpoint.network_id, endpoint.id,
                       encode_endpoint(endpoint), self._now())
        self._flush()

    def withdraw(self, endpoint: Endpoint) -> None:
        core = self._require()
        with contextlib.suppress(NotFound):
            core.delete_entry(ENDPOINT_TABLE, endpoint.network_id, endpoint.id, self._now())
        self._flush()

    def join_network(self, network_id: str) -> None:
        if self._core is not None:
            self._core.join_network(network_id, self._now())
            self._flush()

    def leave_network(self, network_id: str) -> None:
        if self._core is not None:
            self._core.leave_network(network_id, self._now())
            self._flush()

    def endpoints(self, network_id: str) -> list[Endpoint]:
        if self._core is None:
            return []
        out = []
        for raw in self._core.entries(ENDPOINT_TABLE, network_id).values():
            with contextlib.suppress(InvalidArgument):
                out.append(decode_endpoint(raw))
        return out

    def members(self) -> list[Member]:
        core = self._core
        if core is None:
            return []
        out = [Member(node_id=self._node_id, address=core.addr[0], alive=True)]
        for m in core.members_info():
            if m.node != self._node_id:
                out.append(Member(node_id=m.node, address=m.addr[0],
                                  alive=m.state in (MemberState.ALIVE, MemberState.SUSPECT)))
        return out

    def subscribe(self, listener: Callable[[MeshEvent], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    def counters(self) -> dict[str, int]:
        return self._core.counters.as_dict() if self._core is not None else {}

    # -- driving the core ---------------------------------------------------------------------

    def _require(self) -> GossipCore:
        if self._core is None:
            raise ClusterError("this node is not in a cluster")
        return self._core

    def _receive(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._core is not None:
            self._core.receive(data, addr, self._now())
            self._flush()

    def _flush(self) -> None:
        """Send what the core has to send, drain its events, re-arm the timer."""
        core = self._core
        if core is None:
            return
        now = self._now()
        if self._udp is not None:
            for addr, data in core.datagrams_to_send(now):
                with contextlib.suppress(OSError):
                    self._udp.sendto(data, addr)
        for addr, request in core.streams_to_send(now):
            task = asyncio.get_running_loop().create_task(self._push_pull(addr, request))
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)
        while (event := core.next_event()) is not None:
            mesh_event = self._translate(event)
            if mesh_event is not None:
                self._events.put_nowait(mesh_event)
        self._wake.set()

    def _translate(self, event: gev.Event) -> MeshEvent | None:
        if isinstance(event, gev.EntryCreated | gev.EntryUpdated | gev.EntryDeleted):
            if event.table != ENDPOINT_TABLE:
                return None
            try:
                ep = decode_endpoint(event.value)
            except InvalidArgument:
                log.warning("dropped a malformed endpoint entry from %s", event.owner)
                return None
            kind = (MeshEventKind.ENDPOINT_GONE if isinstance(event, gev.EntryDeleted)
                    else MeshEventKind.ENDPOINT_SET)
            return MeshEvent(kind=kind, node_id=event.owner, endpoint=ep)
        if isinstance(event, gev.MemberDead | gev.MemberLeft):
            return MeshEvent(kind=MeshEventKind.NODE_DOWN, node_id=event.node)
        if isinstance(event, gev.MemberJoined | gev.MemberAlive):
            return MeshEvent(kind=MeshEventKind.NODE_UP, node_id=event.node)
        return None

    async def _run_timers(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            core = self._core
            if core is None:
                return
            delay = max(0.0, core.next_deadline() - loop.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 1.0))
            if self._core is None:
                return
            if loop.time() >= self._core.next_deadline():
                self._core.handle_timer(loop.time())
                self._flush()

    async def _consume(self) -> None:
        while True:
            event = await self._events.get()
            for listener in self._listeners:
                try:
                    await listener(event)
                except NetfabricError as exc:
                    log.warning("mesh event %s: %s", event.kind, exc)
                except Exception:
                    log.exception("mesh event %s failed", event.kind)

    async def _push_pull(self, addr: tuple[str, int], request: bytes) -> None:
        try:
            async with asyncio.timeout(STREAM_TIMEOUT):
                reader, writer = await asyncio.open_connection(addr[0], addr[1])
                try:
                    writer.write(request)
                    writer.write_eof()
                    await writer.drain()
                    reply = await _read_all(reader, self._gossip_config.max_stream_size)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError):
            return
        if reply and self._core is not None:
            self._core.receive_stream(reply, addr, self._now())
            self._flush()

    async def _serve_stream(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peername")
            async with asyncio.timeout(STREAM_TIMEOUT):
                data = await _read_all(reader, self._gossip_config.max_stream_size)
                if self._core is None or not data:
                    return
                reply = self._core.receive_stream(data, (str(peer[0]), int(peer[1])),
                                                  self._now())
                self._flush()
                if reply:
                    writer.write(reply)
                    await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
