"""The seams of :mod:`netfabric.agent.ports`, implemented over the real packages.

- :class:`DriverKernel`: the bridge and overlay drivers on one dataplane kernel;
- :class:`IpamBook`: the IPAM manager and the network rows, over the SQLite store in the
  agent's data dir;
- :class:`DnsNames`: the records view and the per-sandbox DNS server.

Each is a thin translation: the rules live in the packages and in AgentCore.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from netfabric.agent.context import AgentConfig
from netfabric.agent.mesh import GossipMesh
from netfabric.agent.ports import Allocation, ManagerCall, Member, Mesh, MeshEvent
from netfabric.agent.rpc import LEASE_BLOCK
from netfabric.dataplane.kernel import Kernel as DataplaneKernel
from netfabric.dataplane.resources import Resource
from netfabric.dns.latency import LatencySnapshot
from netfabric.dns.records import Records, normalize_name
from netfabric.dns.server import DnsServer, ServerConfig
from netfabric.drivers.bridge import BridgeDriver
from netfabric.drivers.overlay import OverlayDriver
from netfabric.errors import (
    AddressOutOfRange,
    ClusterError,
    InvalidArgument,
    ManagerUnreachable,
    NetfabricError,
    NotFound,
    StoreError,
    StoreUnavailable,
)
from netfabric.ipam.addr import IPFamily
from netfabric.ipam.host import HostAllocator
from netfabric.ipam.manager import Ipam
from netfabric.ipam.pools import AddressSpace
from netfabric.ipam.values import BlockLease
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.store.base import Store
from netfabric.store.etcd import EtcdStore, retry_on_conflict
from netfabric.store.sqlite import SqliteStore

__all__ = [
    "STORE_FILE",
    "DnsNames",
    "DriverKernel",
    "HostBlocks",
    "IpamBook",
    "NoMesh",
    "RemoteBlocks",
    "build_layers",
    "sandbox_name",
]

STORE_FILE = "ipam.sqlite"
HOST_STORE_FILE = "host-ipam.sqlite"
T = TypeVar("T")


def sandbox_name(netns_path: str) -> str:
    """The netns name of a sandbox path; only named netns (/run/netns/NAME) are supported."""
    head, _, name = netns_path.rpartition("/")
    if head != "/run/netns" or not name:
        raise InvalidArgument(f"netns {netns_path!r} is not a named netns under /run/netns")
    return name


class DriverKernel:
    """Bridge networks and overlays of one host, sharing one dataplane worker."""

    def __init__(self, *, host_netns: str, advertise_addr: str | None,
                 vxlan_port: int) -> None:
        self._dp = DataplaneKernel(host_netns=host_netns)
        self._host_netns = host_netns
        self.bridge = BridgeDriver(host_netns=host_netns, kernel=self._dp)
        self.overlay = (OverlayDriver(host_netns=host_netns, advertise_addr=advertise_addr,
                                      vxlan_port=vxlan_port, kernel=self._dp)
                        if advertise_addr else None)
        self._runs = {"kernel": 0, "peers": 0}
        self._repairs = 0

    def _overlay(self) -> OverlayDriver:
        if self.overlay is None:
            raise InvalidArgument("overlay networks need the agent's --advertise-addr")
        return self.overlay

    def ensure_network(self, network: Network) -> None:
        if network.driver is Driver.BRIDGE:
            self.bridge.create_network(network)

    def delete_network(self, network: Network) -> None:
        if network.driver is Driver.BRIDGE:
            self.bridge.delete_network(network.id)

    def ensure_sandbox(self, netns: str) -> None:
        self._dp.ensure_netns(netns)

    def delete_sandbox(self, netns: str) -> None:
        self._dp.delete_netns(netns)

    def sandboxes(self, prefix: str) -> list[str]:
        return self._dp.list_netns(prefix)

    def attach(self, network: Network, endpoint: Endpoint, *, netns_path: str, ifname: str,
               gateway: str | None) -> None:
        driver = self.bridge if network.driver is Driver.BRIDGE else self._overlay()
        driver.attach(network, endpoint, sandbox_netns=sandbox_name(netns_path), ifname=ifname)

    def detach(self, network: Network, endpoint: Endpoint, *, netns_path: str,
               ifname: str) -> None:
        if network.driver is Driver.BRIDGE:
            self.bridge.detach(network.id, endpoint.id)
        elif self.overlay is not None:
            self.overlay.detach(network.id, endpoint.id)

    def set_peers(self, network: Network, peers: Sequence[Endpoint]) -> None:
        if network.driver is Driver.OVERLAY and self.overlay is not None:
            self.overlay.set_peers(network.id, peers)
            self._runs["peers"] += 1

    def reconcile(self) -> None:
        repairs = self.bridge.reconcile()
        if self.overlay is not None:
            repairs += self.overlay.reconcile()
        self._runs["kernel"] += 1
        self._repairs += repairs

    def inspect(self, network: Network) -> tuple[list[Resource], tuple[Resource, ...], int]:
        """An overlay's desired and observed kernel objects, and its underlay MTU."""
        if network.driver is Driver.OVERLAY and self.overlay is not None:
            return self.overlay.inspect(network.id)
        return [], (), 0

    def reconcile_stats(self) -> tuple[dict[str, int], int]:
        return dict(self._runs), self._repairs

    def close(self) -> None:
        self.bridge.close()
        if self.overlay is not None:
            self.overlay.close()
        self._dp.close()


CONFLICT_ATTEMPTS = 50
"""Tries of one book call against writers racing on a shared store (etcd)."""


class IpamBook:
    """Subnets and addresses from the IPAM manager: this host's own networks (bridge) in
    ``DIR/ipam.sqlite``; the cluster's (overlay) there too on a one-manager cluster, or in
    the shared store (etcd) that every manager of the cluster uses (:meth:`use_store`).

    Bridge networks take subnets from the local address space, overlays from the global
    one. Addresses are handed out by this node's IPAM (on a manager, for the whole cluster).
    SQLite connections belong to one thread, so every call runs on the book's own thread.
    A host's local networks never go to the shared store: each host has its own ``bridge``.
    """

    def __init__(self, data_dir: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nf-ipam")
        self._store: Store | None = None
        self._shared: Store | None = None
        self.shared_ipam: Ipam | None = None
        self._stale = False
        self._data_dir = data_dir
        try:
            self.ipam = self._on_thread(lambda: self._open(data_dir))
        except BaseException:
            self.close()
            raise

    def _open(self, data_dir: str) -> Ipam:
        self._store = SqliteStore(os.path.join(data_dir, STORE_FILE))
        return Ipam(self._store)

    def _on_thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the book's thread; after a lost compare-and-swap (another writer of a
        shared store changed a row first, nothing was written) re-read the store, retry."""
        return self._pool.submit(
            lambda: retry_on_conflict(fn, self._reload, attempts=CONFLICT_ATTEMPTS)).result()

    def _reload(self) -> None:
        if self._shared is not None and self.shared_ipam is not None:
            self.shared_ipam = Ipam(self._shared, config=self.shared_ipam.config)
            self._stale = False

    def _fresh_shared(self) -> Ipam | None:
        """The shared IPAM view, re-read first if a write etcd could not confirm left it
        unsure."""
        if self._stale:
            self._reload()
        return self.shared_ipam

    def reload(self) -> None:
        """Re-read the shared store's rows (another manager changed them)."""
        self._on_thread(self._reload)

    def attach_shared(self, store: Store) -> None:
        """Use ``store`` for the cluster's rows (tests; :meth:`use_store` opens etcd)."""
        self._shared, self.shared_ipam = store, Ipam(store)

    def _cluster_ipam(self, network_id: str) -> Ipam:
        """The IPAM that holds ``network_id``: the shared one unless this host's own has
        it (a local network), or has it too while no shared store is in use. A network
        the shared view lacks may be another manager's newest: the view is re-read."""
        if self.shared_ipam is None or network_id in self.ipam.networks():
            return self.ipam
        if network_id not in self.shared_ipam.networks() or self._stale:
            self._reload()
        assert self.shared_ipam is not None
        return self.shared_ipam

    def _for_driver(self, network: Network) -> Ipam:
        if network.driver is Driver.BRIDGE or self.shared_ipam is None:
            return self.ipam
        return self._fresh_shared() or self.ipam

    def create_network(self, network: Network, *, subnet: str | None, gateway: str | None,
                       ip_range: str | None) -> tuple[SubnetSpec, ...]:
        space = AddressSpace.LOCAL if network.driver is Driver.BRIDGE else AddressSpace.GLOBAL
        def run() -> tuple[SubnetSpec, ...]:
            ipam = self._for_driver(network)
            # subnets and the network's row in one transaction (one etcd txn): a store
            # that refuses it keeps neither
            with self._undoing(), ipam.store.transaction():
                got = [ipam.request_subnet(network.id, space=space, cidr=subnet,
                                           gateway=gateway, ip_range=ip_range)]
                if network.ipv6:
                    got.append(ipam.request_subnet(network.id, space=space,
                                                   family=IPFamily.V6))
                specs = tuple(SubnetSpec(cidr=g.cidr, gateway=g.gateway, ip_range=g.ip_range)
                              for g in got)
                ipam.store.put_network(replace(network, subnets=specs))
            return specs
        return self._on_thread(run)

    def delete_network(self, network_id: str) -> None:
        def run() -> None:
            ipam = self._cluster_ipam(network_id)
            with self._undoing(), ipam.store.transaction():
                with contextlib.suppress(NotFound):
                    ipam.release_network(network_id)
                gone = ipam.store.delete_network(network_id)
            if not gone:   # a row without subnets, in the other store
                for store in (self._shared, self._store):
                    if store is not None and store is not ipam.store:
                        store.delete_network(network_id)
        self._on_thread(run)

    def load_networks(self) -> list[Network]:
        def run() -> list[Network]:
            own = self._rows().list_networks()
            if self._shared is None:
                return own
            return [n for n in own if n.scope == Scope.LOCAL] + \
                [n for n in self._shared.list_networks() if n.scope == Scope.SWARM]
        return self._on_thread(run)

    def _table(self, network: Network) -> Store:
        if network.scope == Scope.SWARM and self._shared is not None:
            return self._shared
        return self._rows()

    def save_network(self, network: Network) -> None:
        self._on_thread(lambda: self._table(network).put_network(network))

    def drop_network(self, network_id: str) -> None:
        def run() -> None:
            if self._shared is None or not self._shared.delete_network(network_id):
                self._rows().delete_network(network_id)
        self._on_thread(run)

    def use_store(self, url: str | None, prefix: str) -> None:
        """The cluster's rows (overlay networks, their subnets, blocks, holders) go to the
        etcd store at ``url`` under ``prefix`` (an empty one gets this host's cluster rows
        first), or, with None, back to the embedded file."""
        self._on_thread(lambda: self._use_store(url, prefix))

    def _use_store(self, url: str | None, prefix: str) -> None:
        old = self._shared
        if url is None:
            self._shared, self.shared_ipam = None, None
            if old is not None:
                old.close()
            self.ipam = Ipam(self._rows(), config=self.ipam.config)
            return
        etcd = EtcdStore(url, prefix=prefix)
        try:
            if not etcd.load().subnets and not etcd.list_networks():
                _copy_rows(self._rows(), etcd, Scope.SWARM)
            _move_local_rows(etcd, self._rows())
            self._shared, self.shared_ipam = etcd, Ipam(etcd)
            self.ipam = Ipam(self._rows(), config=self.ipam.config)
        except BaseException:
            etcd.close()
            raise
        if old is not None:
            old.close()

    def _cluster_rows(self) -> Store:
        """Where cluster-wide rows live (service definitions...): the shared store on a
        cluster on etcd, else this host's file."""
        return self._shared if self._shared is not None else self._rows()

    def _rows(self) -> Store:
        if self._store is None:
            raise StoreError("the IPAM store is closed")
        return self._store

    def allocate(self, network_id: str, *, node_id: str, ip: str | None,
                 lent_by: str | None = None) -> Allocation:
        def run() -> Allocation:
            ipam = self._cluster_ipam(network_id)
            got = ipam.allocate(network_id, address=ip, host_id=node_id, lent_by=lent_by)
            v6 = None
            if any(s.family is IPFamily.V6 for s in ipam.subnets(network_id)):
                try:
                    v6 = ipam.allocate(network_id, family=IPFamily.V6, host_id=node_id).address
                except BaseException:
                    ipam.release(network_id, got.address)
                    raise
            return Allocation(ipv4=got.address, prefixlen=got.prefixlen, gateway=got.gateway,
                              ipv6=v6)
        return self._on_thread(run)

    def release(self, network_id: str, ip: str, *, node_id: str) -> None:
        def run() -> None:
            with contextlib.suppress(NotFound):
                self._cluster_ipam(network_id).release(network_id, ip)
        self._on_thread(run)

    def block_owner(self, network_id: str, ip: str) -> str | None:
        def run() -> str | None:
            try:
                return self._cluster_ipam(network_id).block_owner(network_id, ip)
            except (NotFound, AddressOutOfRange):
                return None
        return self._on_thread(run)

    def allocated(self, network_id: str) -> set[str]:
        def run() -> set[str]:
            try:
                return set(self._cluster_ipam(network_id).allocated(network_id))
            except NotFound:
                return set()
        return self._on_thread(run)

    def release_node(self, node_id: str) -> None:
        self._on_thread(lambda: (self.shared_ipam or self.ipam).reclaim_host(node_id))

    def lease_block(self, network_id: str, host_id: str, *, address: str | None,
                    family: IPFamily) -> BlockLease:
        return self._on_thread(lambda: self._cluster_ipam(network_id).lease_block(
            network_id, host_id, address=address, family=family))

    def release_block(self, network_id: str, host_id: str, block: str) -> None:
        self._on_thread(lambda: self._cluster_ipam(network_id).release_block(
            network_id, host_id, block))

    def leased(self, network_id: str) -> list[BlockLease]:
        def run() -> list[BlockLease]:
            try:
                return self._cluster_ipam(network_id).blocks(network_id=network_id)
            except NotFound:
                return []
        return self._on_thread(run)

    def block_owners(self) -> set[str]:
        """Every host that leases a block of the cluster's rows, as the store has them now
        (another manager leased some since this view was read)."""
        def run() -> set[str]:
            self._reload()
            ipam = self.shared_ipam or self.ipam
            return {b.host_id for b in ipam.blocks()}
        return self._on_thread(run)

    def objects(self, kinds: Sequence[str]) -> dict[str, dict[str, bytes]]:
        return self._on_thread(lambda: {k: self._cluster_rows().list_objects(k)
                                        for k in kinds})

    def write_objects(self, writes: Sequence[tuple[str, str, bytes | None]], *,
                      release: Sequence[tuple[str, str]] = ()) -> None:
        def run() -> None:
            store = self._cluster_rows()
            with self._undoing(), store.transaction():
                for network_id, ip in release:
                    with contextlib.suppress(NotFound):
                        self._cluster_ipam(network_id).release(network_id, ip)
                for kind, key, value in writes:
                    if value is None:
                        store.delete_object(kind, key)
                    else:
                        store.put_object(kind, key, value)
        self._on_thread(run)

    def allocate_object(self, kind: str, key: str, network_ids: Sequence[str],
                        make: Callable[[tuple[str, ...]], bytes]) -> bytes:
        def run() -> bytes:
            store = self._cluster_rows()
            with self._undoing(), store.transaction():
                ips = tuple(self._cluster_ipam(n).allocate(n).address for n in network_ids)
                value = make(ips)
                store.put_object(kind, key, value)
            return value
        return self._on_thread(run)

    @contextlib.contextmanager
    def _undoing(self) -> Iterator[None]:
        """Around a store transaction that also changes the IPAM: on failure the rows roll
        back, so the IPAMs' memory is read again from them."""
        try:
            yield
        except BaseException as exc:
            self.ipam = Ipam(self._rows(), config=self.ipam.config)
            if isinstance(exc, StoreUnavailable):   # re-read at the next use, not now
                self._stale = True
            else:
                with contextlib.suppress(NetfabricError):
                    self._reload()
            raise

    def close(self) -> None:
        for attr in ("_shared", "_store"):
            store = getattr(self, attr)
            if store is not None:
                setattr(self, attr, None)
                self._pool.submit(store.close).result()
        self._pool.shutdown(wait=True)


def _copy_rows(src: Store, dst: EtcdStore, scope: Scope) -> None:
    """Every ``scope`` network of ``src``, with its subnet, block and holder rows, into
    ``dst``, row by row (a large state would exceed etcd's operations per txn); on any
    failure the prefix is emptied again, so a later attempt copies everything."""
    snap = src.load()
    ids = {n.id for n in src.list_networks() if n.scope == scope}
    try:
        for n in src.list_networks():
            if n.id in ids:
                dst.put_network(n)
        for s in snap.subnets:
            if s.network_id in ids:
                dst.put_subnet(s)
        for b in snap.blocks:
            if b.network_id in ids:
                dst.put_block(b.network_id, b.subnet, b.index, b.owner, b.data)
        for h in snap.holders:
            if h.network_id in ids:
                dst.put_holder(h.network_id, h.subnet, h.address, h.holder)
        for kind in src.object_kinds():
            for key, value in src.list_objects(kind).items():
                dst.put_object(kind, key, value)
    except BaseException:
        with contextlib.suppress(StoreError):
            dst.drop_all()
        raise


def _move_local_rows(shared: EtcdStore, own: Store) -> None:
    """A one-manager etcd cluster of before local networks stayed on their host copied its
    manager's bridge networks to etcd: they come back to this host's file (the only
    manager such a cluster had) and leave etcd."""
    local = [n for n in shared.list_networks() if n.scope == Scope.LOCAL]
    if not local:
        return
    snap = shared.load()
    mine = {n.id for n in own.list_networks()}
    for net in local:
        if net.id not in mine and all(n.name != net.name for n in own.list_networks()):
            with own.transaction():
                own.put_network(net)
                for s in snap.subnets:
                    if s.network_id == net.id:
                        own.put_subnet(s)
                for b in snap.blocks:
                    if b.network_id == net.id:
                        own.put_block(b.network_id, b.subnet, b.index, b.owner, b.data)
                for h in snap.holders:
                    if h.network_id == net.id:
                        own.put_holder(h.network_id, h.subnet, h.address, h.holder)
        for s in snap.subnets:
            if s.network_id == net.id:
                shared.delete_subnet(net.id, s.cidr)
        shared.delete_network(net.id)


class RemoteBlocks:
    """A worker's :class:`BlockSource`: block leases from the manager over the cluster
    endpoint. Called on the host allocator's thread; the RPC runs on the agent's loop."""

    def __init__(self, call: ManagerCall,
                 loop: asyncio.AbstractEventLoop, *, timeout: float = 15.0) -> None:
        self._call = call
        self._loop = loop
        self._timeout = timeout

    def _run(self, verb: str, args: dict[str, Any]) -> Any:
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            self._call(verb, args), self._loop)
        try:
            return future.result(self._timeout)
        except TimeoutError as exc:
            future.cancel()
            raise ManagerUnreachable(f"the manager did not answer {verb} in "
                                   f"{self._timeout:g}s") from exc

    def lease_block(self, network_id: str, host_id: str, *, address: str | None = None,
                    family: IPFamily = IPFamily.V4) -> BlockLease:
        raw = self._run("lease_block", {"network_id": network_id, "host_id": host_id,
                                        "ip": address, "family": int(family)})
        return LEASE_BLOCK.parse_result(raw, peer="the manager")

    def release_block(self, network_id: str, host_id: str, block: str) -> None:
        self._run("release_block", {"network_id": network_id, "host_id": host_id,
                                    "block": block})


class HostBlocks:
    """A worker's addresses on cluster networks, from blocks leased from the manager
    (Calico's model): no round trip per endpoint, and runs go on while the manager is
    down as long as a leased block has room. State in ``DIR/host-ipam.sqlite``, written
    before a call returns; one thread, as SQLite wants."""

    def __init__(self, data_dir: str, *, host_id: str, source: RemoteBlocks) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nf-blocks")
        self._store: SqliteStore | None = None
        try:
            self.alloc = self._pool.submit(self._open, data_dir, host_id, source).result()
        except BaseException:
            self.close()
            raise

    def _open(self, data_dir: str, host_id: str, source: RemoteBlocks) -> HostAllocator:
        self._store = SqliteStore(os.path.join(data_dir, HOST_STORE_FILE))
        return HostAllocator(host_id, source, self._store)

    def allocate(self, network_id: str, *, ip: str | None, ipv6: bool) -> Allocation:
        def run() -> Allocation:
            got = self.alloc.allocate(network_id, address=ip)
            v6 = None
            if ipv6:
                try:
                    v6 = self.alloc.allocate(network_id, family=IPFamily.V6).address
                except BaseException:
                    self.alloc.release(network_id, got.address)
                    raise
            return Allocation(ipv4=got.address, prefixlen=got.prefixlen, gateway=got.gateway,
                              ipv6=v6)
        return self._pool.submit(run).result()

    def release(self, network_id: str, ip: str) -> bool:
        """Free an address of this host's blocks; False if it is not one of them."""
        def run() -> bool:
            try:
                self.alloc.release(network_id, ip)
            except NotFound:
                return False
            return True
        return self._pool.submit(run).result()

    def lend(self, network_id: str, ip: str) -> bool:
        return self._pool.submit(self.alloc.lend, network_id, ip).result()

    def unlend(self, network_id: str, ip: str) -> bool:
        return self._pool.submit(self.alloc.unlend, network_id, ip).result()

    def return_empty(self, network_id: str) -> None:
        def run() -> None:
            with contextlib.suppress(NetfabricError):   # unreachable: returned another time
                self.alloc.return_empty_blocks(network_id)
        self._pool.submit(run).result()

    def forget_network(self, network_id: str) -> None:
        self._pool.submit(self.alloc.forget_network, network_id).result()

    def close(self) -> None:
        store = self._store
        if store is not None:
            self._store = None
            self._pool.submit(store.close).result()
        self._pool.shutdown(wait=True)


class DnsNames:
    """DNS records plus the 127.0.0.11 server of every sandbox on this host."""

    def __init__(self, *, upstreams: Sequence[str] | None) -> None:
        from netfabric.dns.forwarder import parse_upstream

        self.records = Records()
        ups = None if upstreams is None else tuple(parse_upstream(u) for u in upstreams)
        self.server = DnsServer(self.records, config=ServerConfig(upstreams=ups))

    def set_endpoint(self, network_id: str, name: str, *, aliases: Sequence[str],
                     ipv4: str | None, ipv6: str | None, owner: str) -> None:
        self.records.set_endpoint(network_id, name, aliases=aliases, ipv4=ipv4, ipv6=ipv6,
                                  endpoint_id=owner)

    def remove_endpoint(self, network_id: str, name: str, *, owner: str) -> None:
        with contextlib.suppress(NotFound):
            self.records.remove_endpoint(network_id, name, endpoint_id=owner)

    async def open_sandbox(self, netns: str, netns_path: str,
                           networks: frozenset[str]) -> None:
        name = sandbox_name(netns_path)
        if name in self.server.sandboxes():
            self.server.update_sandbox_networks(name, networks)
        else:
            await self.server.add_sandbox(name, networks)

    async def close_sandbox(self, netns: str) -> None:
        with contextlib.suppress(NotFound):
            await self.server.remove_sandbox(netns)

    async def close(self) -> None:
        await self.server.close()

    def dns_counters(self) -> dict[str, dict[str, int]]:
        return self.server.counters()

    def dns_latency(self) -> LatencySnapshot:
        return self.server.latency_snapshot()

    def lookup(self, network_ids: Sequence[str], name: str) -> tuple[str, ...] | None:
        """The addresses ``name`` resolves to in the scope of ``network_ids`` (None: no
        record), as the resolver would answer."""
        try:
            target = self.records.lookup(network_ids, normalize_name(name))
        except InvalidArgument:
            return None
        if target is None:
            return None
        return tuple(str(a) for a in (*target.ipv4, *target.ipv6))


class NoMesh:
    """The mesh of a node in no cluster: no peers, no entries. ``start`` (init or join)
    refuses, naming what is missing, when this build has no gossip runtime."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def start(self, *, secret: str, seeds: Sequence[str],
                    networks: Sequence[str] = ()) -> None:
        raise ClusterError(f"cluster mode is unavailable: {self.reason}")

    def publish(self, endpoint: Endpoint) -> None:
        pass

    def withdraw(self, endpoint: Endpoint) -> None:
        pass

    def join_network(self, network_id: str) -> None:
        pass

    def leave_network(self, network_id: str) -> None:
        pass

    def endpoints(self, network_id: str) -> list[Endpoint]:
        return []

    def members(self) -> list[Member]:
        return []

    def subscribe(self, listener: Callable[[MeshEvent], Awaitable[None]]) -> None:
        pass

    async def leave(self) -> None:
        pass

    async def close(self) -> None:
        pass


def build_layers(config: AgentConfig, *, node_id: str,
                 dns_upstreams: Sequence[str] | None = None, gossip_profile: str = "lan"
                 ) -> tuple[DriverKernel, IpamBook, DnsNames, Mesh]:
    """The real layers for one agent; whatever was built is closed if a later one fails."""
    kernel = DriverKernel(host_netns=config.host_netns, advertise_addr=config.advertise_addr,
                          vxlan_port=config.vxlan_port)
    try:
        book = IpamBook(config.data_dir)
        try:
            names = DnsNames(upstreams=dns_upstreams)
            mesh = GossipMesh(config, node_id=node_id, profile=gossip_profile)
        except BaseException:
            book.close()
            raise
    except BaseException:
        kernel.close()
        raise
    return kernel, book, names, mesh
