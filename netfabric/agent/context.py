"""What the agent's services share: its flags, its state's writer, the layers and one lock.

Every service of the agent (:mod:`~netfabric.agent.cluster`, :mod:`~netfabric.agent.manager`,
:mod:`~netfabric.agent.networks`, :mod:`~netfabric.agent.addresses`,
:mod:`~netfabric.agent.endpoints`, :mod:`~netfabric.agent.peers`) gets one
:class:`AgentContext`. It holds no rule of its own beyond who this node is and what role it
plays; the layers are the seams of :mod:`netfabric.agent.ports`, so that unit tests build a
context over fakes (:mod:`netfabric.agent.fakes`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from netfabric.agent.ledger import Ledger
from netfabric.agent.ports import (
    AddressBook,
    Kernel,
    Link,
    LinkFactory,
    Member,
    Mesh,
    MeshEvent,
    MeshStats,
    NameService,
    RecordTable,
)
from netfabric.agent.roster import MANAGERS_TABLE, ManagerRoster, merge_managers
from netfabric.agent.rpc import DEFAULT_CLUSTER_PORT, NODE_CALLS, AnswerHook, ManagerLink
from netfabric.agent.state import ClusterRecord
from netfabric.api.types import GossipInfo, Role
from netfabric.errors import InvalidArgument, NotAManager, NotFound, NotInCluster
from netfabric.model import Endpoint

__all__ = [
    "NODE_VERBS",
    "NOT_A_MANAGER",
    "NOT_IN_CLUSTER",
    "AgentConfig",
    "AgentContext",
    "GatedMesh",
    "check_ip",
    "check_name",
    "manager_link",
]

NOT_A_MANAGER = ("This node is not a swarm manager. Worker nodes can't be used to view or "
                 "modify cluster state. Please run this command on a manager node or promote "
                 "the current node to a manager.")
NOT_IN_CLUSTER = ("This node is not a swarm manager. Use \"netfabric init\" or \"netfabric "
                  "join\" to connect this node to a cluster and try again.")
NODE_VERBS = frozenset(NODE_CALLS)
"""Cluster verbs every node answers (a manager asks a block's owner to lend or take back an
address); all other cluster verbs are the manager's."""
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The agent's flags."""

    data_dir: str
    socket: str
    hostname: str
    host_netns: str
    """Name of the netns the agent runs in: sandbox netns names derive from it."""
    advertise_addr: str | None = None
    gossip_port: int = 7946
    vxlan_port: int = 4789
    cluster_port: int = DEFAULT_CLUSTER_PORT


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: use 1-63 of [a-zA-Z0-9_.-], starting with a "
            "letter or digit")
    return name


_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
MAX_LABELS = 64
MAX_LABEL_BYTES = 4096


def check_hostname(value: str) -> str:
    """An RFC 1123 host name, as ``run --hostname`` takes it."""
    if len(value) > 253 or not _HOSTNAME_RE.match(value):
        raise InvalidArgument(f"invalid hostname {value!r}: use letters, digits, '-' and '.' "
                              "(RFC 1123), at most 253 characters")
    return value


def check_labels(labels: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``--label`` pairs, sorted by key; keys non-empty, everything of bounded size."""
    pairs = tuple(sorted((labels or {}).items()))
    if len(pairs) > MAX_LABELS:
        raise InvalidArgument(f"too many labels ({len(pairs)}; at most {MAX_LABELS})")
    for key, value in pairs:
        if not key or len(key) + len(value) > MAX_LABEL_BYTES or "\n" in key + value:
            raise InvalidArgument(f"invalid label {key!r}: a key of 1 or more characters, "
                                  f"no newline, key and value together at most "
                                  f"{MAX_LABEL_BYTES} characters")
    return pairs


def check_ip(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what} {value!r}: not an IP address") from exc


def manager_link(managers: Sequence[str], secret: str | None, *,
                 on_answer: AnswerHook | None = None) -> Link:
    """The real :class:`~netfabric.agent.ports.LinkFactory`: HTTP to the cluster endpoint."""
    return ManagerLink(managers, secret=secret, on_answer=on_answer)


class GatedMesh:
    """The gossip mesh, silent until this node is in a cluster and gossip runs: before
    :meth:`start` (and after :meth:`leave`) table writes are dropped and reads are empty."""

    def __init__(self, mesh: Mesh) -> None:
        self._mesh = mesh
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def start(self, *, secret: str, seeds: Sequence[str],
                    networks: Sequence[str] = ()) -> None:
        await self._mesh.start(secret=secret, seeds=seeds, networks=networks)
        self._started = True

    def publish(self, endpoint: Endpoint) -> None:
        if self._started:
            self._mesh.publish(endpoint)

    def withdraw(self, endpoint: Endpoint) -> None:
        if self._started:
            self._mesh.withdraw(endpoint)

    def join_network(self, network_id: str) -> None:
        if self._started:
            self._mesh.join_network(network_id)

    def leave_network(self, network_id: str) -> None:
        if self._started:
            self._mesh.leave_network(network_id)

    def endpoints(self, network_id: str) -> list[Endpoint]:
        return self._mesh.endpoints(network_id) if self._started else []

    def members(self) -> list[Member]:
        return self._mesh.members() if self._started else []

    # Cluster-wide tables, where the mesh has them (RecordTable); silent like the rest.

    def set_record(self, table: str, key: str, value: bytes) -> None:
        if self._started and isinstance(self._mesh, RecordTable):
            self._mesh.set_record(table, key, value)

    def delete_record(self, table: str, key: str) -> None:
        if self._started and isinstance(self._mesh, RecordTable):
            self._mesh.delete_record(table, key)

    def records(self, table: str) -> dict[str, bytes]:
        if self._started and isinstance(self._mesh, RecordTable):
            return self._mesh.records(table)
        return {}

    def stats(self) -> GossipInfo | None:
        """The gossip view, or None before :meth:`start` (or where the mesh has none)."""
        if self._started and isinstance(self._mesh, MeshStats):
            return self._mesh.stats()
        return None

    def subscribe(self, listener: Callable[[MeshEvent], Awaitable[None]]) -> None:
        self._mesh.subscribe(listener)

    async def leave(self) -> None:
        await self._mesh.leave()
        self._started = False

    async def close(self) -> None:
        await self._mesh.close()


class AgentContext:
    """Config, state writer, layers and the one lock that serialises mutations."""

    def __init__(self, config: AgentConfig, ledger: Ledger, *, kernel: Kernel,
                 book: AddressBook, names: NameService, mesh: Mesh,
                 links: LinkFactory = manager_link) -> None:
        self.config = config
        self.links = links
        self.ledger = ledger
        self.kernel = kernel
        self.book = book
        self.names = names
        self.mesh = GatedMesh(mesh)
        self.lock = asyncio.Lock()
        self.roster = ManagerRoster()
        self.leader_id = ""
        """The leading manager's node id, on a cluster whose managers share etcd
        (:class:`~netfabric.agent.managerset.ManagerSet` keeps it)."""

    async def thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Blocking work (kernel, SQLite) off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    @property
    def node_id(self) -> str:
        return self.ledger.state.node_id

    @property
    def role(self) -> Role:
        cluster = self.ledger.state.cluster
        return cluster.role if cluster else Role.STANDALONE

    @property
    def address(self) -> str:
        """This node's underlay address (its VTEP), "" without --advertise-addr."""
        return self.config.advertise_addr or ""

    @property
    def is_leader(self) -> bool:
        """Whether this node runs the jobs that need one actor: the leader of several
        managers on etcd; the only manager of a cluster on the embedded store."""
        cluster = self.ledger.state.cluster
        if cluster is None or cluster.role is not Role.MANAGER:
            return False
        return not cluster.store or self.leader_id == self.node_id

    def require_manager(self) -> ClusterRecord:
        cluster = self.ledger.state.cluster
        if cluster is None:
            raise NotInCluster(NOT_IN_CLUSTER)
        if cluster.role is not Role.MANAGER:
            raise NotAManager(NOT_A_MANAGER)
        return cluster

    def link(self) -> Link:
        """The cluster's managers, the one that answered last first and those gossip says
        are dead last (:mod:`netfabric.agent.roster`)."""
        cluster = self.ledger.state.cluster
        if cluster is None:
            raise NotInCluster(NOT_IN_CLUSTER)
        return self.links(self.manager_order(), cluster.secret,
                          on_answer=self._manager_answered)

    def manager_order(self) -> list[str]:
        """The managers in the order this node asks them next: the one that answered last
        first, those gossip says are dead last."""
        cluster = self.ledger.state.cluster
        if cluster is None:
            return []
        dead = {m.address for m in self.mesh.members() if not m.alive}
        return self.roster.order(cluster.managers, dead)

    def _manager_answered(self, addr: str, managers: list[str] | None) -> None:
        self.roster.answered(addr)
        self.update_managers(managers)

    def update_managers(self, answered: list[str] | None = None) -> None:
        """A worker's list of managers: the one a manager's answer carried (``answered``:
        it drops a demoted or removed manager) or else the one it had, plus every manager
        announced in gossip (one that joined since). Kept across restarts. A manager's own
        list is kept by the cluster service."""
        cluster = self.ledger.state.cluster
        if cluster is None or cluster.role is not Role.WORKER:
            return
        announced = [raw.decode(errors="replace")
                     for raw in self.mesh.records(MANAGERS_TABLE).values()]
        merged = merge_managers(answered or cluster.managers, announced)
        if merged != cluster.managers:
            self.ledger.set_managers(merged)

    async def call_manager(self, verb: str, args: dict[str, Any]) -> Any:
        """An authenticated call to the cluster's managers, failing over among them."""
        return await self.link().call(verb, args)

    async def call_node(self, node_id: str, verb: str, args: dict[str, Any]) -> Any:
        """An authenticated call to another node's cluster endpoint (every node of a
        cluster serves one on its address and this node's ``cluster_port``), for the
        verbs of :data:`NODE_VERBS`."""
        cluster = self.ledger.state.cluster
        if cluster is None:
            raise NotInCluster(NOT_IN_CLUSTER)
        node = self.ledger.state.nodes.get(node_id)
        if node is None:
            raise NotFound(f"node {node_id} is not in this cluster")
        return await self.links([f"{node.address}:{self.config.cluster_port}"],
                                cluster.secret).call(verb, args)
