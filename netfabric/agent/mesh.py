"""GossipMesh: the agent's :class:`~netfabric.agent.ports.Mesh` over the gossip runtime.

:class:`netfabric.gossip.runtime.GossipNode` (UDP + TCP push/pull on
``advertise_addr:gossip_port`` in the agent's netns, around the sans-IO core) does SWIM,
the tables and the crypto; this adapter maps endpoints to the table ``endpoints`` (scoped
per network, values as msgpack maps of :class:`~netfabric.model.Endpoint`) and turns the
node's events into :class:`MeshEvent` s that one consumer task hands to AgentCore, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from netfabric.agent.context import AgentConfig
from netfabric.agent.ports import Member, MeshEvent, MeshEventKind
from netfabric.api.types import GossipInfo
from netfabric.errors import ClusterError, InvalidArgument, NetfabricError, NotFound
from netfabric.gossip import events as gev
from netfabric.gossip.config import GossipConfig
from netfabric.gossip.messages import EntryState, MemberState
from netfabric.gossip.runtime import GossipNode
from netfabric.model import Endpoint

__all__ = ["ENDPOINT_TABLE", "PROFILES", "RECORD_SCOPE", "RECORD_TABLES", "GossipMesh",
           "decode_endpoint", "encode_endpoint"]

log = logging.getLogger(__name__)

ENDPOINT_TABLE = "endpoints"
RECORD_SCOPE = "_cluster"
"""The gossip scope of the cluster-wide tables (services, backends): every node joins it."""
RECORD_TABLES = frozenset({"services", "backends", "runspecs", "tasks", "taskstates",
                           "managers", "svcmarks"})
def _local() -> GossipConfig:
    """The gossip package's ``local`` profile with a faster broadcast round: on one machine
    a round costs microseconds, and names reach 20 hosts in ~3 rounds."""
    return GossipConfig.local().with_(gossip_interval=0.02, gossip_nodes=4)


PROFILES: dict[str, Callable[[], GossipConfig]] = {
    "lan": GossipConfig.lan, "local": _local, "wan": GossipConfig.wan}


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Endpoint)


def encode_endpoint(ep: Endpoint) -> bytes:
    """A table value: the endpoint's fields as a msgpack map (named, so fields can be added)."""
    return _ENCODER.encode(ep)


def decode_endpoint(raw: bytes) -> Endpoint:
    """An endpoint from a table value; malformed values are :class:`InvalidArgument` naming
    the field."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise InvalidArgument(f"malformed endpoint entry: {exc}") from None


class GossipMesh:
    """Membership and the endpoint table for one agent."""

    def __init__(self, config: AgentConfig, *, node_id: str, profile: str = "lan") -> None:
        if profile not in PROFILES:
            raise InvalidArgument(f"unknown gossip profile {profile!r}: use lan, local or wan")
        self._config = config
        self._node_id = node_id
        self._gossip_config = PROFILES[profile]()
        self._node: GossipNode | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[MeshEvent] = asyncio.Queue()
        self._listeners: list[Callable[[MeshEvent], Awaitable[None]]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, *, secret: str, seeds: Sequence[str],
                    networks: Sequence[str] = ()) -> None:
        if self._node is not None:
            return
        addr = self._config.advertise_addr
        if not addr:
            raise ClusterError("cluster mode needs the agent's --advertise-addr")
        port = self._config.gossip_port
        parsed = []
        for seed in seeds:
            host, _, p = seed.rpartition(":")
            with contextlib.suppress(ValueError):
                parsed.append((host, int(p)))
        try:
            node = await GossipNode.start(addr, port, (), secret=secret,
                                          node_id=self._node_id, config=self._gossip_config)
        except OSError as exc:
            raise ClusterError(f"cannot open gossip port {addr}:{port}: {exc.strerror}") \
                from exc
        node.on_event(self._on_event)
        # Attached first, then the join: the join exchange names these networks, so the
        # seeds send their entries at once (a restarted node resolves its peers' names
        # without waiting for a periodic push/pull).
        for network in (RECORD_SCOPE, *networks):
            node.join_network(network)
        node.join(parsed)
        self._node = node
        self._consumer = asyncio.get_running_loop().create_task(self._consume())

    async def leave(self) -> None:
        if self._node is not None:
            await self._node.leave()
        await self.close()

    async def close(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        if self._node is not None:
            await self._node.stop()
            self._node = None

    # -- the Mesh seam ------------------------------------------------------------------------

    def publish(self, endpoint: Endpoint) -> None:
        node = self._require()
        node.join_network(endpoint.network_id)
        node.set_entry(ENDPOINT_TABLE, endpoint.network_id, endpoint.id,
                       encode_endpoint(endpoint))

    def withdraw(self, endpoint: Endpoint) -> None:
        node = self._require()
        with contextlib.suppress(NotFound):
            node.delete_entry(ENDPOINT_TABLE, endpoint.network_id, endpoint.id)

    def join_network(self, network_id: str) -> None:
        if self._node is not None:
            self._node.join_network(network_id)

    def leave_network(self, network_id: str) -> None:
        if self._node is not None:
            self._node.leave_network(network_id)

    def endpoints(self, network_id: str) -> list[Endpoint]:
        if self._node is None:
            return []
        out = []
        for raw in self._node.entries(ENDPOINT_TABLE, network_id).values():
            with contextlib.suppress(InvalidArgument):
                out.append(decode_endpoint(raw))
        return out

    # -- cluster-wide tables (RecordTable) -------------------------------------------------

    def set_record(self, table: str, key: str, value: bytes) -> None:
        self._check_table(table)
        self._require().set_entry(table, RECORD_SCOPE, key, value)

    def delete_record(self, table: str, key: str) -> None:
        """Delete an entry, another node's too (a definition another manager announced):
        it is taken over first, then deleted."""
        self._check_table(table)
        node = self._require()
        with contextlib.suppress(NotFound):
            try:
                node.delete_entry(table, RECORD_SCOPE, key)
            except InvalidArgument:   # owned by another node
                value = node.entries(table, RECORD_SCOPE).get(key)
                if value is None:
                    return
                node.set_entry(table, RECORD_SCOPE, key, value)
                node.delete_entry(table, RECORD_SCOPE, key)

    def records(self, table: str) -> dict[str, bytes]:
        self._check_table(table)
        return {} if self._node is None else self._node.entries(table, RECORD_SCOPE)

    @staticmethod
    def _check_table(table: str) -> None:
        if table not in RECORD_TABLES:
            raise InvalidArgument(f"unknown cluster table {table!r}")

    def members(self) -> list[Member]:
        node = self._node
        if node is None:
            return []
        out = [Member(node_id=self._node_id, address=node.addr[0], alive=True)]
        for m in node.members():
            if m.node != self._node_id:
                out.append(Member(node_id=m.node, address=m.addr[0],
                                  alive=m.state in (MemberState.ALIVE, MemberState.SUSPECT)))
        return out

    def subscribe(self, listener: Callable[[MeshEvent], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    def counters(self) -> dict[str, int]:
        return self._node.counters.as_dict() if self._node is not None else {}

    def stats(self) -> GossipInfo:
        """Members by state (this node alive), health, live entries per table, counters."""
        node = self._node
        states = {s.name.lower(): 0 for s in MemberState}
        if node is None:
            return GossipInfo(members=states)
        states["alive"] += 1
        for m in node.members():
            if m.node != self._node_id:
                states[m.state.name.lower()] += 1
        core = node.core
        tables: dict[str, int] = {}
        for (table, _key), entry in core.tables.items():
            if entry.state == EntryState.LIVE:
                tables[table] = tables.get(table, 0) + 1
        return GossipInfo(members=states, health=core.health, tables=tables,
                          networks=len(core.networks()), counters=node.counters.as_dict())

    # -- events -------------------------------------------------------------------------------

    def _require(self) -> GossipNode:
        if self._node is None:
            raise ClusterError("this node is not in a cluster")
        return self._node

    def _on_event(self, event: gev.Event) -> None:
        mesh_event = self._translate(event)
        if mesh_event is not None:
            self._events.put_nowait(mesh_event)

    def _translate(self, event: gev.Event) -> MeshEvent | None:
        if isinstance(event, gev.EntryCreated | gev.EntryUpdated | gev.EntryDeleted):
            if event.table in RECORD_TABLES:
                kind = (MeshEventKind.RECORD_GONE if isinstance(event, gev.EntryDeleted)
                        else MeshEventKind.RECORD_SET)
                return MeshEvent(kind=kind, node_id=event.owner, table=event.table,
                                 key=event.key)
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
