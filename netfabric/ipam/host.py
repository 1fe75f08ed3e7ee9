"""The host side of IPAM: allocate inside leased blocks, without a round trip per endpoint.

A :class:`HostAllocator` holds the blocks its host leased from the manager (a
:class:`BlockSource`: the in-process :class:`~netfabric.ipam.manager.Ipam`, or the agent's
RPC to it) and hands out addresses from them serially. It leases another block when its
blocks are full, gives a block back when a release empties it (keeping at least one per
network, so that churn does not lease and return the same block), and sends a request
for a specific address outside its blocks to the manager, which leases the block holding
that address. Its own state is written through its own store (the host's data dir, never
the manager's store) before a call returns, so a restarted host keeps its addresses.
:meth:`HostAllocator.resync`, given the manager's view of this host's leases, drops the
blocks the manager reclaimed meanwhile (the agent does not call it yet).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from netfabric.errors import (
    AddressInUse,
    AddressOutOfRange,
    InvalidArgument,
    NetfabricError,
    NotFound,
    PoolExhausted,
    StoreCorrupt,
)
from netfabric.ipam.addr import IPFamily, as_family, format_addr, parse_addr, parse_cidr
from netfabric.ipam.geometry import Geometry
from netfabric.ipam.manager import CURSOR_FLAG
from netfabric.ipam.pools import AddressSpace
from netfabric.ipam.values import Allocation, BlockLease, Subnet, new_allocation
from netfabric.store.base import Store, SubnetRecord

__all__ = ["BlockSource", "HostAllocator", "HostStats"]

_FREE, _USED, _UNAVAILABLE = 0, 1, 2


def _refuse_reserved(g: Geometry, a: int, address: str) -> None:
    """Raise for an address of the block that no one may take: outside the usable range,
    or the network, gateway or broadcast address. Returns for any other unavailable one."""
    if a < g.lo or a > g.hi:
        raise AddressOutOfRange(f"{address} is {g.why_reserved(a)}")
    if a in (g.net, g.gateway, g.broadcast):
        raise AddressInUse(f"{address} is reserved: {g.why_reserved(a)}")


class BlockSource(Protocol):
    """What a host needs from the manager (``Ipam`` implements it)."""

    def lease_block(self, network_id: str, host_id: str, *, address: str | None = None,
                    family: IPFamily = IPFamily.V4) -> BlockLease: ...

    def release_block(self, network_id: str, host_id: str, block: str) -> None: ...


@dataclass(slots=True)
class HostStats:
    """Counters: blocks leased and returned, and returns the manager refused (kept)."""

    leased: int = 0
    returned: int = 0
    return_failures: int = 0


class _Block:
    """One leased block: one state byte per address (free, used, unavailable)."""

    __slots__ = ("family", "geo", "index", "lease", "size", "start", "state", "used")

    def __init__(self, lease: BlockLease, geo: Geometry, index: int, state: bytearray) -> None:
        self.lease = lease
        self.geo = geo
        self.family = geo.family
        self.index = index
        self.start = geo.net + (index << geo.block_bits)
        self.size = 1 << geo.block_bits
        self.state = state
        self.used = state.count(_USED)


def _geometry(subnet: Subnet, block_prefix: int) -> Geometry:
    return Geometry.build(subnet.cidr, gateway=subnet.gateway, ip_range=subnet.ip_range,
                          block_prefix=block_prefix)


class HostAllocator:
    """Addresses for one host's endpoints, from the blocks it leases."""

    def __init__(self, host_id: str, source: BlockSource, store: Store) -> None:
        if not isinstance(host_id, str) or not host_id:
            raise InvalidArgument(f"invalid host id {host_id!r}")
        self._host = host_id
        self._source = source
        self._store = store
        self._nets: dict[str, list[_Block]] = {}
        self._starts: dict[str, list[tuple[int, int]]] = {}
        self._cursor: dict[tuple[str, IPFamily], int] = {}
        self.stats = HostStats()
        self._load()

    @property
    def host_id(self) -> str:
        return self._host

    # ----------------------------------------------------------------- loading

    def _load(self) -> None:
        snap = self._store.load()
        where = self._store.location
        subnets = {(r.network_id, r.cidr): r for r in snap.subnets}
        try:
            for row in snap.blocks:
                if row.owner != self._host:
                    raise InvalidArgument(f"a block row of host {row.owner!r}, not of this "
                                          f"host {self._host!r}")
                rec = subnets.get((row.network_id, row.subnet))
                if rec is None:
                    raise InvalidArgument(f"block of unknown subnet {row.subnet}")
                subnet = Subnet(rec.network_id, AddressSpace(rec.space), rec.cidr, rec.gateway,
                                rec.ip_range)
                geo = _geometry(subnet, rec.block_prefix)
                if len(row.data) != 1 << geo.block_bits or not 0 <= row.index < geo.block_count:
                    raise InvalidArgument(f"block {row.index} of {row.subnet}: bad size/index")
                state = bytearray(row.data)
                for i, byte in enumerate(state):
                    if byte & CURSOR_FLAG:
                        self._cursor[(row.network_id, geo.family)] = (
                            geo.net + (row.index << geo.block_bits) + i)
                        state[i] = byte & ~CURSOR_FLAG
                    if state[i] > _UNAVAILABLE:
                        raise InvalidArgument(f"bad state byte {byte} in {row.subnet}")
                lease = BlockLease(row.network_id, self._host, geo.block_cidr(row.index),
                                   subnet, ())
                self._insert(_Block(lease, geo, row.index, state))
        except (InvalidArgument, ValueError, NetfabricError) as exc:
            raise StoreCorrupt(f"host IPAM store {where} is unreadable: {exc}") from exc

    def _insert(self, b: _Block) -> None:
        nid = b.lease.network_id
        blocks = self._nets.setdefault(nid, [])
        keys = self._starts.setdefault(nid, [])
        key = (int(b.family), b.start)
        i = bisect_right(keys, key)
        keys.insert(i, key)
        blocks.insert(i, b)

    def _remove(self, b: _Block) -> None:
        """Forget a block; a serial cursor inside it restarts from the first block, as it
        would after a restart (its flag went with the block's row)."""
        nid = b.lease.network_id
        key = (nid, b.family)
        if b.start <= self._cursor.get(key, -1) < b.start + b.size:
            del self._cursor[key]
        i = self._nets[nid].index(b)
        del self._nets[nid][i], self._starts[nid][i]
        if not self._nets[nid]:
            del self._nets[nid], self._starts[nid]

    # ------------------------------------------------------------- persistence

    def _write(self, b: _Block) -> None:
        data = bytearray(b.state)
        cur = self._cursor.get((b.lease.network_id, b.family), -1)
        if b.start <= cur < b.start + b.size:
            data[cur - b.start] |= CURSOR_FLAG
        self._store.put_block(b.lease.network_id, b.geo.cidr, b.index, self._host, data)

    def _adopt(self, lease: BlockLease) -> _Block:
        """Take a lease from the manager into local state (durably)."""
        if lease.host_id != self._host:
            raise InvalidArgument(f"lease {lease.block} is for host {lease.host_id!r}, "
                                  f"not {self._host!r}")
        fam, bnet, bplen = parse_cidr(lease.block, what="block")
        if fam.bits - bplen > 16:
            raise InvalidArgument(f"block {lease.block} is larger than 65,536 addresses")
        geo = _geometry(lease.subnet, bplen)
        if fam is not geo.family or not geo.contains(bnet) or \
                bplen != fam.bits - geo.block_bits:
            raise InvalidArgument(f"block {lease.block} is not a block of {lease.subnet.cidr}")
        for b in self._nets.get(lease.network_id, ()):
            if b.family is fam and b.start == bnet:
                return b
        taken = {parse_addr(t)[1] for t in lease.taken}
        reserved = {geo.net + o for o in geo.reserved_offsets()} | taken
        state = bytearray(1 << geo.block_bits)
        for i in range(len(state)):
            a = bnet + i
            if a < geo.lo or a > geo.hi or a in reserved:
                state[i] = _UNAVAILABLE
        b = _Block(lease, geo, (bnet - geo.net) >> geo.block_bits, state)
        with self._store.transaction():
            self._store.put_subnet(SubnetRecord(
                lease.network_id, lease.subnet.space.value, geo.cidr, geo.gateway_text,
                geo.ip_range, bplen))
            self._write(b)
        self._insert(b)
        self.stats.leased += 1
        return b

    # --------------------------------------------------------------- addresses

    def allocate(self, network_id: str, *, address: str | None = None,
                 family: IPFamily = IPFamily.V4) -> Allocation:
        """An address for a local endpoint: serial inside this host's blocks, leasing a new
        block when they are full; a specific ``address`` locally if it lies in one of
        them, else through the manager."""
        if address is not None:
            return self._allocate_exact(network_id, address)
        family = as_family(family)
        key = (network_id, family)
        cur = self._cursor.get(key, -1)
        blocks = self._nets.get(network_id, ())
        n = len(blocks)
        if n:
            i = bisect_right(self._starts[network_id], (int(family), cur))
            if i and blocks[i - 1].start + blocks[i - 1].size > cur:
                i -= 1
            for k in range(n + 1):
                b = blocks[(i + k) % n]
                if b.family is not family:
                    continue
                st = b.state
                lo = max(0, cur + 1 - b.start) if k == 0 else 0
                hi = b.size if k < n else max(0, cur + 1 - b.start)
                j = st.find(_FREE, lo, hi)
                if j >= 0:
                    return self._take(b, j, key, cur)
        lease = self._source.lease_block(network_id, self._host, family=family)
        b = self._adopt(lease)
        j = b.state.find(_FREE)
        if j < 0:
            raise PoolExhausted(f"block {lease.block} leased for network {network_id!r} "
                                "has no free address")
        return self._take(b, j, key, cur)

    def _take(self, b: _Block, j: int, key: tuple[str, IPFamily], old: int) -> Allocation:
        b.state[j] = _USED
        b.used += 1
        self._cursor[key] = b.start + j
        try:
            if old >= 0 and not b.start <= old < b.start + b.size:
                prev = self._block_of(key[0], key[1], old)
                with self._store.transaction():
                    self._write(b)
                    if prev is not None:
                        self._write(prev)
            else:
                self._write(b)
        except BaseException:
            b.state[j] = _FREE
            b.used -= 1
            self._cursor[key] = old
            raise
        return new_allocation(format_addr(b.family, b.start + j), b.lease.subnet)

    def _block_of(self, network_id: str, family: IPFamily, a: int) -> _Block | None:
        keys = self._starts.get(network_id)
        if not keys:
            return None
        i = bisect_right(keys, (int(family), a)) - 1
        if i >= 0:
            b = self._nets[network_id][i]
            if b.family is family and b.start <= a < b.start + b.size:
                return b
        return None

    def _allocate_exact(self, network_id: str, address: str) -> Allocation:
        fam, a = parse_addr(address)
        b = self._block_of(network_id, fam, a)
        if b is None:
            b = self._adopt(self._source.lease_block(network_id, self._host, address=address))
        j = a - b.start
        if not 0 <= j < b.size:
            raise InvalidArgument(f"the manager leased {b.lease.block} for {address}")
        state = b.state[j]
        if state == _USED:
            raise AddressInUse(f"{address} is already allocated on host {self._host!r}")
        if state == _UNAVAILABLE:
            _refuse_reserved(b.geo, a, address)
            raise AddressInUse(f"{address} is already allocated by the manager")
        b.state[j] = _USED  # a specific request does not move the serial cursor
        b.used += 1
        try:
            self._write(b)
        except BaseException:
            b.state[j] = _FREE
            b.used -= 1
            raise
        return Allocation(format_addr(fam, a), b.lease.subnet)

    def lend(self, network_id: str, address: str) -> bool:
        """Let the manager give a free address of one of this host's blocks to another host
        (a fixed address, ``run --ip``): it becomes unavailable here, durably, before this
        returns, so this host never hands it out (nor after a restart) until
        :meth:`unlend`. AddressInUse if this host uses it or it is reserved; False when no
        block of this host holds it (nothing to do: a block leased later lists it as taken).
        Lending an address already lent is fine (a retried call)."""
        fam, a = parse_addr(address)
        b = self._block_of(network_id, fam, a)
        if b is None:
            return False
        j = a - b.start
        state = b.state[j]
        if state == _USED:
            raise AddressInUse(f"{address} is already allocated on host {self._host!r}")
        if state == _UNAVAILABLE:
            _refuse_reserved(b.geo, a, address)
            return True   # lent already (or held by the manager since the lease)
        b.state[j] = _UNAVAILABLE
        try:
            self._write(b)
        except BaseException:
            b.state[j] = _FREE
            raise
        return True

    def unlend(self, network_id: str, address: str) -> bool:
        """The manager freed an address it held in one of this host's blocks (a lent one,
        or one it held since the lease): this host may hand it out again. False when it is
        not such an address (not in a block here, used here, or reserved)."""
        fam, a = parse_addr(address)
        b = self._block_of(network_id, fam, a)
        if b is None:
            return False
        j = a - b.start
        g = b.geo
        if b.state[j] != _UNAVAILABLE or a < g.lo or a > g.hi or \
                a in (g.net, g.gateway, g.broadcast):
            return False
        b.state[j] = _FREE
        try:
            self._write(b)
        except BaseException:
            b.state[j] = _UNAVAILABLE
            raise
        return True

    def release(self, network_id: str, address: str) -> None:
        """Free an address of this host; returns its block to the manager when it empties
        and the host still holds another block of the network."""
        fam, a = parse_addr(address)
        b = self._block_of(network_id, fam, a)
        if b is None or b.state[a - b.start] != _USED:
            raise NotFound(f"{address} is not allocated on host {self._host!r} in network "
                           f"{network_id!r}")
        j = a - b.start
        b.state[j] = _FREE
        b.used -= 1
        try:
            self._write(b)
        except BaseException:
            b.state[j] = _USED
            b.used += 1
            raise
        if b.used == 0 and len(self._nets[network_id]) > 1:
            try:
                self._return(b)
            except NetfabricError:
                self.stats.return_failures += 1  # kept: harmless, returned later

    def _return(self, b: _Block) -> None:
        self._source.release_block(b.lease.network_id, self._host, b.lease.block)
        self._store.delete_block(b.lease.network_id, b.geo.cidr, b.index)
        self._remove(b)
        self.stats.returned += 1

    def return_empty_blocks(self, network_id: str | None = None) -> list[str]:
        """Give every block without a local address back to the manager (e.g. when the
        last endpoint of a network leaves this host). Returns the blocks given back."""
        out = []
        nets = [network_id] if network_id is not None else list(self._nets)
        for nid in nets:
            for b in list(self._nets.get(nid, ())):
                if b.used == 0:
                    self._return(b)
                    out.append(b.lease.block)
        return out

    def forget_network(self, network_id: str) -> None:
        """Drop local state of a network the manager removed (its leases went with it)."""
        blocks = list(self._nets.get(network_id, ()))
        with self._store.transaction():
            for cidr in sorted({b.geo.cidr for b in blocks}):
                self._store.delete_subnet(network_id, cidr)
        for b in blocks:
            self._remove(b)
        for key in [k for k in self._cursor if k[0] == network_id]:
            del self._cursor[key]

    def resync(self, leases: Iterable[BlockLease]) -> list[tuple[str, str]]:
        """Drop every local block the manager no longer leases to this host.

        ``leases``: the manager's current leases of this host (``Ipam.blocks(host_id=...)``,
        over the agent's RPC). A host that was declared dead and reclaimed, then came
        back, must not go on handing out addresses in blocks now free on the manager.
        Leases the manager holds for this host that the host does not know (the answer
        to a lease request was lost) are adopted, empty. Returns the (network id, address)
        pairs that were allocated in dropped blocks, so that the agent can tear those
        endpoints down.
        """
        mine = {(lease.network_id, lease.block): lease for lease in leases
                if lease.host_id == self._host}
        stale = [b for nid in sorted(self._nets) for b in self._nets[nid]
                 if (nid, b.lease.block) not in mine]
        known = {(b.lease.network_id, b.lease.block) for bs in self._nets.values() for b in bs}
        lost: list[tuple[str, str]] = []
        with self._store.transaction():
            for b in stale:
                self._store.delete_block(b.lease.network_id, b.geo.cidr, b.index)
        for b in stale:
            st = b.state
            i = st.find(_USED)
            while i >= 0:
                lost.append((b.lease.network_id, format_addr(b.family, b.start + i)))
                i = st.find(_USED, i + 1)
            self._remove(b)
        for key in sorted(set(mine) - known):  # granted, but the answer never got here
            self._adopt(mine[key])
        return lost

    def blocks(self, network_id: str | None = None) -> list[BlockLease]:
        """The leases this host holds."""
        nets = [network_id] if network_id is not None else sorted(self._nets)
        return [b.lease for nid in nets for b in self._nets.get(nid, ())]

    def allocated(self, network_id: str) -> list[str]:
        """Addresses this host has handed out in a network."""
        out = []
        for b in self._nets.get(network_id, ()):
            st = b.state
            i = st.find(_USED)
            while i >= 0:
                out.append(format_addr(b.family, b.start + i))
                i = st.find(_USED, i + 1)
        return out
