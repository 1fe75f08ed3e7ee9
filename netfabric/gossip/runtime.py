"""The asyncio adapter: UDP datagrams and TCP push/pull streams around a GossipCore.

All protocol decisions are the core's; this file only moves bytes and arms one timer::

    node = await GossipNode.start("198.51.100.1", 7946, seeds=[("198.51.100.2", 7946)],
                                  secret=b"cluster secret")
    node.join_network("net1")
    node.set_entry("endpoints", "net1", "ep1", b"...")
    async for event in node.events(): ...
    await node.leave(); await node.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable

from netfabric.errors import InvalidArgument
from netfabric.gossip.config import GossipConfig
from netfabric.gossip.core import Counters, GossipCore, MemberInfo
from netfabric.gossip.events import Event
from netfabric.gossip.keyring import Keyring
from netfabric.gossip.messages import Addr

__all__ = ["GossipNode"]

log = logging.getLogger(__name__)

_STREAM_TIMEOUT = 10.0


class _Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.node: GossipNode | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.node is not None:
            self.node._datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("gossip udp error: %s", exc)


class GossipNode:
    """One gossip member on real sockets. Create with :meth:`start`."""

    def __init__(self, core: GossipCore, loop: asyncio.AbstractEventLoop) -> None:
        self.core = core
        self._loop = loop
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._queues: list[asyncio.Queue[Event]] = []
        self._callbacks: list[Callable[[Event], None]] = []
        self._closed = False

    @classmethod
    async def start(cls, bind_addr: str, port: int, seeds: Iterable[Addr] = (), *,
                    secret: bytes | str | None = None, keyring: Keyring | None = None,
                    node_id: str | None = None, config: GossipConfig | None = None,
                    advertise_addr: str | None = None) -> GossipNode:
        """Bind UDP and TCP on ``bind_addr:port`` (0 picks a port) and join via ``seeds``."""
        if keyring is None:
            if secret is None:
                raise InvalidArgument("a gossip node needs a secret or a keyring")
            keyring = Keyring.from_secret(secret)
        loop = asyncio.get_running_loop()
        proto = _Udp()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: proto, local_addr=(bind_addr, port))
        port = transport.get_extra_info("sockname")[1]
        addr = (advertise_addr or bind_addr, port)
        core = GossipCore(config or GossipConfig.lan(), node_id=node_id or secrets.token_hex(8),
                          addr=addr, keyring=keyring, rng=random.Random(),
                          now=loop.time(), incarnation=int(time.time()))
        node = cls(core, loop)
        node._udp = transport
        proto.node = node
        try:
            node._server = await asyncio.start_server(node._serve, bind_addr, port)
        except OSError:
            transport.close()
            raise
        core.join(seeds, loop.time())
        node._flush()
        return node

    # ------------------------------------------------------------------ API
    @property
    def node_id(self) -> str:
        return self.core.node_id

    @property
    def addr(self) -> Addr:
        return self.core.addr

    @property
    def counters(self) -> Counters:
        return self.core.counters

    @property
    def keyring(self) -> Keyring:
        """Rotate keys with ``install``, ``use`` and ``remove`` on every node in turn."""
        return self.core.keyring

    def join(self, seeds: Iterable[Addr]) -> None:
        self.core.join(seeds, self._loop.time())
        self._flush()

    def join_network(self, network: str) -> None:
        self.core.join_network(network, self._loop.time())
        self._flush()

    def leave_network(self, network: str) -> None:
        self.core.leave_network(network, self._loop.time())
        self._flush()

    def set_entry(self, table: str, network: str, key: str, value: bytes) -> None:
        self.core.set_entry(table, network, key, value, self._loop.time())
        self._flush()

    def delete_entry(self, table: str, network: str, key: str) -> None:
        self.core.delete_entry(table, network, key, self._loop.time())
        self._flush()

    def entries(self, table: str, network: str) -> dict[str, bytes]:
        return self.core.entries(table, network)

    def members(self) -> list[MemberInfo]:
        return self.core.members_info()

    def on_event(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` for every event from now on."""
        self._callbacks.append(callback)

    async def events(self) -> AsyncIterator[Event]:
        """Every event from the moment of the call, until the node stops."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while not self._closed:
                yield await queue.get()
        finally:
            self._queues.remove(queue)

    async def leave(self, *, linger: float | None = None) -> None:
        """Announce a graceful leave and give the announcement time to spread."""
        self.core.leave(self._loop.time())
        self._flush()
        await asyncio.sleep(linger if linger is not None else 5 * self.core.cfg.gossip_interval)

    async def stop(self) -> None:
        """Close every socket and task. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ------------------------------------------------------------------ plumbing
    def _datagram(self, data: bytes, addr: Addr) -> None:
        if self._closed:
            return
        self.core.receive(data, addr, self._loop.time())
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        self.core.handle_timer(self._loop.time())
        self._flush()

    def _flush(self) -> None:
        if self._closed:
            return
        now = self._loop.time()
        core = self.core
        if self._udp is not None:
            for addr, data in core.datagrams_to_send(now):
                self._udp.sendto(data, addr)
        for addr, data in core.streams_to_send(now):
            self._spawn(self._push_pull(addr, data))
        event = core.next_event()
        while event is not None:
            for queue in self._queues:
                queue.put_nowait(event)
            for cb in self._callbacks:
                cb(event)
            event = core.next_event()
        deadline = core.next_deadline()
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_all(self, reader: asyncio.StreamReader) -> bytes:
        limit = self.core.cfg.max_stream_size
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:
                raise ValueError("push/pull stream over max_stream_size")
            chunks.append(chunk)

    async def _push_pull(self, addr: Addr, data: bytes) -> None:
        writer = None
        try:
            async with asyncio.timeout(_STREAM_TIMEOUT):
                reader, writer = await asyncio.open_connection(addr[0], addr[1])
                writer.write(data)
                await writer.drain()
                writer.write_eof()
                reply = await self._read_all(reader)
        except (OSError, TimeoutError, ValueError) as exc:
            self.core.counters.stream_failed += 1
            log.debug("push/pull with %s failed: %s", addr, exc)
            return
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        if reply and not self._closed:  # a PUSH gets no reply
            self.core.receive_stream(reply, addr, self._loop.time())
            self._flush()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(_STREAM_TIMEOUT):
                data = await self._read_all(reader)
                if self._closed:
                    return
                reply = self.core.receive_stream(data, (peer[0], peer[1]), self._loop.time())
                self._flush()
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (OSError, TimeoutError, ValueError) as exc:
            self.core.counters.stream_failed += 1
            log.debug("push/pull from %s failed: %s", peer, exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
