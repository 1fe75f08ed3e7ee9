"""The narrow seams between the agent's logic and the layers it wires.

:class:`AgentCore`'s services only talk to these protocols; :mod:`netfabric.agent.adapters`
implements them over the real packages (drivers/dataplane, dns, gossip, ipam/store), and
:mod:`netfabric.agent.fakes` holds a fake of each for unit tests. Kernel calls are blocking
and run in a worker thread; the rest run on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from netfabric.agent.state import NodeRecord
from netfabric.api.types import GossipInfo
from netfabric.dataplane.resources import Resource
from netfabric.dns.latency import LatencySnapshot
from netfabric.ipam.addr import IPFamily
from netfabric.ipam.values import BlockLease
from netfabric.model import Endpoint, Network, SubnetSpec

__all__ = [
    "AddressBook",
    "Allocation",
    "BlockBook",
    "ClusterRecords",
    "DnsStats",
    "Kernel",
    "KernelInspect",
    "KernelStats",
    "Lease",
    "Link",
    "LinkFactory",
    "ManagerCall",
    "Member",
    "Mesh",
    "MeshEvent",
    "MeshEventKind",
    "MeshStats",
    "NameService",
    "NetworkTable",
    "RecordTable",
    "RecordsFactory",
]


class Kernel(Protocol):
    """The dataplane, as desired state per network. Blocking: called from a worker thread.
    Every call is idempotent, and a failed call leaves nothing half-made."""

    def ensure_network(self, network: Network) -> None:
        """Make the network's host-side objects (a bridge network's bridge)."""

    def delete_network(self, network: Network) -> None: ...

    def ensure_sandbox(self, netns: str) -> None:
        """Create a named netns for a sandbox (with ``lo`` up)."""

    def delete_sandbox(self, netns: str) -> None: ...

    def sandboxes(self, prefix: str) -> list[str]:
        """Names of existing netns starting with ``prefix`` (to find leaked sandboxes)."""

    def reconcile(self) -> None:
        """Repair everything the drivers own to their desired state; remove leftovers."""

    def attach(self, network: Network, endpoint: Endpoint, *, netns_path: str, ifname: str,
               gateway: str | None) -> None:
        """Plumb one endpoint into a sandbox (creates an overlay's netns on first use)."""

    def detach(self, network: Network, endpoint: Endpoint, *, netns_path: str,
               ifname: str) -> None:
        """Remove one endpoint (and an overlay's netns with its last local endpoint)."""

    def set_peers(self, network: Network, peers: Sequence[Endpoint]) -> None:
        """The remote endpoints of an overlay: FDB and neighbour entries follow exactly."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Allocation:
    """An address handed out for one endpoint."""

    ipv4: str
    prefixlen: int
    gateway: str | None
    ipv6: str | None = None
    """Set on networks created with ``--ipv6``."""


class NetworkTable(Protocol):
    """The networks this node knows, with their options and subnets, as rows of the
    :class:`~netfabric.store.base.Store` (``put_network`` and friends). Durable before a
    call returns. Blocking, but quick: called from the event loop. The ledger reads the rows
    once and keeps them; where other writers share the table (several managers on one
    distributed store), call :meth:`~netfabric.agent.ledger.Ledger.reload_networks` when
    they changed it."""

    def load_networks(self) -> list[Network]: ...

    def save_network(self, network: Network) -> None:
        """Insert or replace the row of ``network.id``."""

    def drop_network(self, network_id: str) -> None:
        """Remove a row (nothing if there is none)."""


class AddressBook(NetworkTable, Protocol):
    """IPAM over the persistent store: subnets for networks, addresses for endpoints; and
    the store's network rows. Everything is durable before it returns."""

    def create_network(self, network: Network, *, subnet: str | None, gateway: str | None,
                       ip_range: str | None) -> tuple[SubnetSpec, ...]:
        """The network's subnets: IPv4, plus an IPv6 /64 when ``network.ipv6``; the
        network's row (with them) is written in the same transaction."""

    def delete_network(self, network_id: str) -> None:
        """Give the network's subnets back and drop its row, in one transaction."""

    def allocate(self, network_id: str, *, node_id: str, ip: str | None,
                 lent_by: str | None = None) -> Allocation:
        """An IPv4 address (``ip`` or the next), and an IPv6 one if the network has IPv6.
        ``ip`` inside a block leased to a host is :class:`~netfabric.errors.AddressHosted`
        unless that host, ``lent_by``, has lent it (:meth:`BlockBook.lend`)."""

    def block_owner(self, network_id: str, ip: str) -> str | None:
        """The host whose leased block holds ``ip`` while ``ip`` is free there, else None."""

    def release(self, network_id: str, ip: str, *, node_id: str) -> None:
        """Give back one address (IPv4 or IPv6)."""

    def allocated(self, network_id: str) -> set[str]:
        """Addresses currently held (not the gateway)."""

    def release_node(self, node_id: str) -> None:
        """Reclaim every block and address of a dead or departed node."""

    def lease_block(self, network_id: str, host_id: str, *, address: str | None,
                    family: IPFamily) -> BlockLease:
        """Lease a block of a cluster network to a worker (the manager's side)."""

    def release_block(self, network_id: str, host_id: str, block: str) -> None: ...

    def use_store(self, url: str | None, prefix: str) -> None:
        """Keep the rows in etcd at ``url`` under ``prefix`` from now on (copying this
        node's rows there when the prefix is empty), or back in the embedded file
        (``None``). StoreUnavailable naming etcd when it cannot be reached."""

    def reload(self) -> None:
        """Re-read a shared store's rows (another manager changed them); no-op otherwise."""

    def block_owners(self) -> set[str]:
        """Every host that leases a block of the cluster's networks (read afresh)."""

    def leased(self, network_id: str) -> list[BlockLease]:
        """The blocks of a network leased to hosts."""

    def objects(self, kinds: Sequence[str]) -> dict[str, dict[str, bytes]]:
        """The store's objects of each kind (service definitions), by key."""

    def write_objects(self, writes: Sequence[tuple[str, str, bytes | None]], *,
                      release: Sequence[tuple[str, str]] = ()) -> None:
        """Put (or, ``None``, delete) objects and give back ``(network, address)`` pairs, all
        in one transaction: all of it is durable, or none."""

    def allocate_object(self, kind: str, key: str, network_ids: Sequence[str],
                        make: Callable[[tuple[str, ...]], bytes]) -> bytes:
        """One IPv4 address per network (held for no node: a VIP) and the object
        ``make(addresses)`` under ``(kind, key)``, in one transaction; returns the value."""

    def close(self) -> None: ...


class Lease(Protocol):
    """A key held under a TTL lease in the shared store (:meth:`ClusterRecords.hold`)."""

    def refresh(self) -> bool:
        """Keep it another TTL; False once it expired (someone else may hold it now)."""

    def release(self) -> None: ...


class ClusterRecords(Protocol):
    """The cluster-wide records several managers share (a cluster on etcd): the node
    registry, the role secrets (sealed with the cluster secret), leases for the leader
    and each manager's liveness, and a watch of every change. Blocking calls."""

    def load_nodes(self) -> list[NodeRecord]: ...

    def save_node(self, node: NodeRecord) -> None: ...

    def drop_node(self, node_id: str) -> None: ...

    def load_roles(self) -> dict[str, str]:
        """The role secrets (``worker``, ``manager``); empty if none were saved yet."""

    def save_roles(self, roles: dict[str, str]) -> None: ...

    def hold(self, name: str, value: str, ttl: int) -> Lease | None:
        """Hold ``name`` for ``ttl`` seconds unless someone holds it (then None)."""

    def leases(self) -> dict[str, str]:
        """Who holds each held name now."""

    def watch(self, callback: Callable[[str, bool], None]) -> Callable[[], None]:
        """``callback(key, deleted)`` from another thread for every change; returns the
        stopper."""

    def close(self) -> None: ...


RecordsFactory = Callable[[str, str, str], ClusterRecords]
"""``(store url, prefix, cluster secret)`` -> the cluster's records there."""


class BlockBook(Protocol):
    """A worker's addresses on cluster networks, from blocks it leases from the manager.
    Blocking: called from a worker thread."""

    def allocate(self, network_id: str, *, ip: str | None, ipv6: bool) -> Allocation: ...

    def release(self, network_id: str, ip: str) -> bool:
        """Free an address; False if it is not in this host's blocks."""

    def lend(self, network_id: str, ip: str) -> bool:
        """Let the manager give ``ip`` of this host's blocks to another host (durably never
        handed out here); AddressInUse if used here; False if no block here holds it."""

    def unlend(self, network_id: str, ip: str) -> bool:
        """The manager freed ``ip`` of this host's blocks: it may be handed out here again."""

    def return_empty(self, network_id: str) -> None:
        """Give every block without an address back (the network left this host)."""

    def forget_network(self, network_id: str) -> None: ...

    def close(self) -> None: ...


ManagerCall = Callable[[str, dict[str, Any]], Coroutine[Any, Any, Any]]
"""An authenticated call to the cluster's manager: ``await call(verb, args)``."""


class Link(Protocol):
    """Calls to the cluster's managers (:class:`netfabric.agent.rpc.ManagerLink`)."""

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        """One verb's answer; :class:`~netfabric.errors.AgentUnreachable` when no manager
        answers, the manager's error when it refuses."""


class LinkFactory(Protocol):
    """Opens a :class:`Link` to managers at ``HOST:PORT``, tried in that order, signed with
    the cluster secret (``None``: unsigned, for ``join``); ``on_answer`` is told which
    manager answered and the list of managers its answer carried."""

    def __call__(self, managers: Sequence[str], secret: str | None, *,
                 on_answer: Callable[[str, list[str] | None], None] | None = None) -> Link: ...


class NameService(Protocol):
    """DNS records and the per-sandbox 127.0.0.11 servers."""

    def set_endpoint(self, network_id: str, name: str, *, aliases: Sequence[str],
                     ipv4: str | None, ipv6: str | None, owner: str) -> None: ...

    def remove_endpoint(self, network_id: str, name: str, *, owner: str) -> None: ...

    async def open_sandbox(self, netns: str, netns_path: str,
                           networks: frozenset[str]) -> None: ...

    async def close_sandbox(self, netns: str) -> None: ...

    async def close(self) -> None: ...


class MeshEventKind(StrEnum):
    ENDPOINT_SET = "endpoint-set"
    ENDPOINT_GONE = "endpoint-gone"
    NODE_UP = "node-up"
    NODE_DOWN = "node-down"
    RECORD_SET = "record-set"
    RECORD_GONE = "record-gone"


@dataclass(frozen=True, slots=True)
class MeshEvent:
    kind: MeshEventKind
    node_id: str
    endpoint: Endpoint | None = None
    table: str = ""
    """For RECORD_*: the cluster-wide table (:class:`RecordTable`) and the entry's key."""
    key: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    address: str
    alive: bool


@runtime_checkable
class DnsStats(Protocol):
    """The DNS server's counters for the metrics (optional on a NameService)."""

    def dns_counters(self) -> dict[str, dict[str, int]]:
        """Per part (``resolver``, ``pump``, ...) its counters."""

    def dns_latency(self) -> LatencySnapshot: ...

    def lookup(self, network_ids: Sequence[str], name: str) -> tuple[str, ...] | None:
        """What ``name`` resolves to in the scope of ``network_ids`` (None: no record)."""


@runtime_checkable
class KernelStats(Protocol):
    """Reconcile counters for the metrics (optional on a Kernel)."""

    def reconcile_stats(self) -> tuple[dict[str, int], int]:
        """Runs by kind (``kernel``, ``peers``) and the kernel ops the reconciles ran."""


@runtime_checkable
class KernelInspect(Protocol):
    """Read-only views of a network's kernel objects, for `netfabric doctor`."""

    def inspect(self, network: Network) -> tuple[list[Resource], tuple[Resource, ...], int]:
        """Desired and observed objects of an overlay on this host, and the underlay MTU."""


@runtime_checkable
class MeshStats(Protocol):
    """The gossip view for `netfabric info` and the metrics: members by state, health,
    table sizes and counters, read live."""

    def stats(self) -> GossipInfo: ...


@runtime_checkable
class RecordTable(Protocol):
    """Cluster-wide gossip tables beside the endpoint table (services, their backends):
    every node holds every entry; an entry goes when its owner deletes it or dies."""

    def set_record(self, table: str, key: str, value: bytes) -> None: ...

    def delete_record(self, table: str, key: str) -> None: ...

    def records(self, table: str) -> dict[str, bytes]: ...


class Mesh(Protocol):
    """Gossip: membership and the endpoint table, scoped per network."""

    async def start(self, *, secret: str, seeds: Sequence[str],
                    networks: Sequence[str] = ()) -> None: ...

    def publish(self, endpoint: Endpoint) -> None: ...

    def withdraw(self, endpoint: Endpoint) -> None: ...

    def join_network(self, network_id: str) -> None: ...

    def leave_network(self, network_id: str) -> None: ...

    def endpoints(self, network_id: str) -> list[Endpoint]:
        """Every endpoint of a network the table holds, remote and local."""

    def members(self) -> list[Member]: ...

    def subscribe(self, listener: Callable[[MeshEvent], Awaitable[None]]) -> None: ...

    async def leave(self) -> None: ...

    async def close(self) -> None: ...
