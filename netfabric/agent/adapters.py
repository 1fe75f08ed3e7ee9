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
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
)
from netfabric.ipam.addr import IPFamily
from netfabric.ipam.host import HostAllocator
from netfabric.ipam.manager import Ipam
from netfabric.ipam.pools import AddressSpace
from netfabric.ipam.values import BlockLease
from netfabric.model import Driver, Endpoint, Network, SubnetSpec
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
    """Subnets and addresses from the IPAM manager, persisted in ``DIR/ipam.sqlite``.

    Bridge networks take subnets from the local address space, overlays from the global
    one. Addresses are handed out by this node's IPAM (on a manager, for the whole cluster).
    SQLite connections belong to one thread, so every call runs on the book's own thread.
    """

    def __init__(self, data_dir: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nf-ipam")
        self._store: Store | None = None
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
        if self._store is not None:
            self.ipam = Ipam(self._store, config=self.ipam.config)

    def create_network(self, network: Network, *, subnet: str | None, gateway: str | None,
                       ip_range: str | None) -> tuple[SubnetSpec, ...]:
        space = AddressSpace.LOCAL if network.driver is Driver.BRIDGE else AddressSpace.GLOBAL
        def run() -> tuple[SubnetSpec, ...]:
            got = [self.ipam.request_subnet(network.id, space=space, cidr=subnet,
                                            gateway=gateway, ip_range=ip_range)]
            if network.ipv6:
                try:
                    got.append(self.ipam.request_subnet(network.id, space=space,
                                                        family=IPFamily.V6))
                except BaseException:
                    self.ipam.release_network(network.id)
                    raise
            return tuple(SubnetSpec(cidr=g.cidr, gateway=g.gateway, ip_range=g.ip_range)
                         for g in got)
        return self._on_thread(run)

    def delete_network(self, network_id: str) -> None:
        def run() -> None:
            with contextlib.suppress(NotFound):
                self.ipam.release_network(network_id)
        self._on_thread(run)

    def load_networks(self) -> list[Network]:
        return self._on_thread(lambda: self._rows().list_networks())

    def save_network(self, network: Network) -> None:
        self._on_thread(lambda: self._rows().put_network(network))

    def drop_network(self, network_id: str) -> None:
        self._on_thread(lambda: self._rows().delete_network(network_id))

    def use_store(self, url: str | None, prefix: str) -> None:
        self._on_thread(lambda: self._use_store(url, prefix))

    def _use_store(self, url: str | None, prefix: str) -> None:
        old = self._rows()
        new: Store
        if url is None:
            new = SqliteStore(os.path.join(self._data_dir, STORE_FILE))
        else:
            etcd = EtcdStore(url, prefix=prefix)
            try:
                if not etcd.load().subnets and not etcd.list_networks():
                    _copy_rows(old, etcd)
                self.ipam = Ipam(etcd)
            except BaseException:
                etcd.close()
                raise
            new = etcd
        if url is None:
            self.ipam = Ipam(new)
        self._store = new
        old.close()

    def _rows(self) -> Store:
        if self._store is None:
            raise StoreError("the IPAM store is closed")
        return self._store

    def allocate(self, network_id: str, *, node_id: str, ip: str | None,
                 lent_by: str | None = None) -> Allocation:
        def run() -> Allocation:
            got = self.ipam.allocate(network_id, address=ip, host_id=node_id,
                                     lent_by=lent_by)
            v6 = None
            if any(s.family is IPFamily.V6 for s in self.ipam.subnets(network_id)):
                try:
                    v6 = self.ipam.allocate(network_id, family=IPFamily.V6, host_id=node_id).address
                except BaseException:
                    self.ipam.release(network_id, got.address)
                    raise
            return Allocation(ipv4=got.address, prefixlen=got.prefixlen, gateway=got.gateway,
                              ipv6=v6)
        return self._on_thread(run)

    def release(self, network_id: str, ip: str, *, node_id: str) -> None:
        def run() -> None:
            with contextlib.suppress(NotFound):
                self.ipam.release(network_id, ip)
        self._on_thread(run)

    def block_owner(self, network_id: str, ip: str) -> str | None:
        def run() -> str | None:
            try:
                return self.ipam.block_owner(network_id, ip)
            except (NotFound, AddressOutOfRange):
                return None
        return self._on_thread(run)

    def allocated(self, network_id: str) -> set[str]:
        def run() -> set[str]:
            try:
                return set(self.ipam.allocated(network_id))
            except NotFound:
                return set()
        return self._on_thread(run)

    def release_node(self, node_id: str) -> None:
        self._on_thread(lambda: self.ipam.reclaim_host(node_id))

    def lease_block(self, network_id: str, host_id: str, *, address: str | None,
                    family: IPFamily) -> BlockLease:
        return self._on_thread(lambda: self.ipam.lease_block(network_id, host_id,
                                                             address=address, family=family))

    def release_block(self, network_id: str, host_id: str, block: str) -> None:
        self._on_thread(lambda: self.ipam.release_block(network_id, host_id, block))

    def leased(self, network_id: str) -> list[BlockLease]:
        def run() -> list[BlockLease]:
            try:
                return self.ipam.blocks(network_id=network_id)
            except NotFound:
                return []
        return self._on_thread(run)

    def close(self) -> None:
        store = self._store
        if store is not None:
            self._store = None
            self._on_thread(store.close)
        self._pool.shutdown(wait=True)


def _copy_rows(src: Store, dst: EtcdStore) -> None:
    """Every network, subnet, block, holder and object row of ``src`` into ``dst``, row by row (a
    large state would exceed etcd's operations per txn); on any failure the prefix is
    emptied again, so a later attempt copies everything."""
    snap = src.load()
    try:
        for n in src.list_networks():
            dst.put_network(n)
        for s in snap.subnets:
            dst.put_subnet(s)
        for b in snap.blocks:
            dst.put_block(b.network_id, b.subnet, b.index, b.owner, b.data)
        for h in snap.holders:
            dst.put_holder(h.network_id, h.subnet, h.address, h.holder)
        for kind in src.object_kinds():
            for key, value in src.list_objects(kind).items():
                dst.put_object(kind, key, value)
    except BaseException:
        with contextlib.suppress(StoreError):
            dst.drop_all()
        raise


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
