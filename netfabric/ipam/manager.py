"""The IPAM manager: subnets from pools, serial addresses, per-host block leases.

Pure logic over a :class:`~netfabric.store.base.Store`: every change is written through the
store before the call returns (and undone in memory if the write fails), and
``Ipam(store)`` rebuilds exactly the same state from the rows. The manager owns all
cluster-wide decisions; a host allocates inside its leased blocks with
:class:`~netfabric.ipam.host.HostAllocator`.

Blocks are aligned pieces of a subnet (default /26). They are both the unit a host leases
and the unit in which addresses are persisted: one row per block with one byte per
address, so an allocation is one small row write.
"""

from __future__ import annotations

from netfabric.errors import (
    AddressHosted,
    AddressInUse,
    AddressOutOfRange,
    InvalidArgument,
    IPAMError,
    NotFound,
    PoolExhausted,
    StoreCorrupt,
    SubnetOverlap,
)
from netfabric.ipam.addr import (
    IPFamily,
    as_family,
    format_addr,
    format_cidr,
    parse_addr,
    parse_cidr,
)
from netfabric.ipam.addresses import FREE, HOSTED, RESERVED, USED, AddressMap, DenseMap, SparseMap
from netfabric.ipam.geometry import Geometry
from netfabric.ipam.pools import AddressSpace, IpamConfig
from netfabric.ipam.subnets import SpaceIndex
from netfabric.ipam.values import Allocation, BlockLease, Reclaimed, Subnet, new_allocation
from netfabric.store.base import Store, SubnetRecord

__all__ = ["CURSOR_FLAG", "LEASE_FLAG", "Ipam"]

CURSOR_FLAG = 0x80
"""Set in a block row's byte for the last address handed out, so that serial allocation
resumes past it after a restart."""
LEASE_FLAG = 0x40
"""Set in the first byte of the row of the block leased last, so that serial block leases
resume past it after a restart."""
_FLAGS = CURSOR_FLAG | LEASE_FLAG


_PoolSteps = tuple[int, int, int, int, int]
_V4 = IPFamily.V4


class _SubnetState:
    """One subnet of one network, as the manager tracks it."""

    __slots__ = ("_map", "bb", "block_cursor", "cidr", "cursor", "family", "geo", "holders",
                 "net", "network_id", "owners", "size", "space", "subnet")

    def __init__(self, network_id: str, space: AddressSpace, geo: Geometry) -> None:
        self.geo = geo
        self.network_id = network_id
        self.cidr = geo.cidr
        self.bb = geo.block_bits
        self.net = geo.net
        self.family = geo.family
        self.size = geo.size
        self.space = space
        self.subnet = Subnet(network_id, space, geo.cidr, geo.gateway_text, geo.ip_range)
        self.owners: dict[int, str] = {}  # block index -> host leasing it
        self.holders: dict[int, str] = {}  # offset -> host a manager address is held for
        self.cursor = -1  # offset of the last address handed out
        self.block_cursor = -1  # offset just before where the next block search starts
        self._map: AddressMap | None = None

    @property
    def map(self) -> AddressMap:
        m = self._map
        if m is None:
            g = self.geo
            cls = DenseMap if g.family is IPFamily.V4 else SparseMap
            m = cls(g.size, g.block_bits, g.lo - g.net, g.hi - g.net, g.reserved_offsets())
            self._map = m
        return m

    def lease(self, block: int) -> BlockLease:
        g = self.geo
        taken = tuple(format_addr(g.family, g.net + o) for o in self.map.used_in(block))
        return BlockLease(self.subnet.network_id, self.owners[block], g.block_cidr(block),
                          self.subnet, taken)


class Ipam:
    """The manager side of IPAM over one store.

    Subnets: :meth:`request_subnet`, :meth:`release_subnet`, :meth:`subnets`.
    Addresses handed out by the manager itself (bridge networks, one-host use):
    :meth:`allocate`, :meth:`release`. Per-host blocks: :meth:`lease_block`,
    :meth:`release_block`, :meth:`reclaim_host`, :meth:`blocks`.
    Network records live in the same store: :attr:`store`.
    """

    def __init__(self, store: Store, *, config: IpamConfig | None = None) -> None:
        self._store = store
        self._config = config or IpamConfig()
        self._nets: dict[str, list[_SubnetState]] = {}
        self._index: dict[tuple[AddressSpace, IPFamily], SpaceIndex] = {}
        self._pools = {
            space: [p.parsed() for p in self._config.pools(space)] for space in AddressSpace
        }
        self._hints: dict[tuple[AddressSpace, int], int] = {}
        # per (space, family): [(pool index, (step, base, limit, size, base prefix length))]
        self._steps: dict[tuple[AddressSpace, IPFamily], list[tuple[int, _PoolSteps]]] = {
            (space, fam): [
                (i, (1 << (fam.bits - size), base, base + (1 << (fam.bits - plen)), size, plen))
                for i, (pfam, base, plen, size) in enumerate(self._pools[space]) if pfam is fam
            ]
            for space in AddressSpace for fam in IPFamily
        }
        self._load()

    @property
    def store(self) -> Store:
        """The store, also holding the network records (``put_network`` and friends)."""
        return self._store

    @property
    def config(self) -> IpamConfig:
        return self._config

    # ----------------------------------------------------------------- loading

    def _load(self) -> None:
        where = self._store.location
        snap = self._store.load()
        try:
            for rec in snap.subnets:
                try:
                    space = AddressSpace(rec.space)
                except ValueError as exc:
                    raise InvalidArgument(f"unknown address space {rec.space!r}") from exc
                geo = Geometry.build(rec.cidr, gateway=rec.gateway, ip_range=rec.ip_range,
                                     block_prefix=rec.block_prefix)
                if not geo.family.bits - 16 <= rec.block_prefix <= geo.family.bits:
                    raise InvalidArgument(f"subnet {rec.cidr}: block prefix "
                                          f"/{rec.block_prefix} is too large a block")
                if geo.cidr != rec.cidr:
                    raise InvalidArgument(f"subnet {rec.cidr!r} is not canonical")
                idx = self._space(space, geo.family)
                hit = idx.conflict(geo.net, geo.net + geo.size)
                if hit is not None:
                    raise InvalidArgument(f"subnet {geo.cidr} of network {rec.network_id} "
                                          f"overlaps one of network {hit[2]}")
                idx.add(geo.net, geo.net + geo.size, rec.network_id)
                held = self._nets.get(rec.network_id)
                if held and held[0].space is not space:
                    raise InvalidArgument(f"network {rec.network_id} has subnets in two "
                                          "address spaces")
                self._add_state(_SubnetState(rec.network_id, space, geo))
            by_key = {(st.subnet.network_id, st.geo.cidr): st
                      for sts in self._nets.values() for st in sts}
            for blk in snap.blocks:
                st = by_key.get((blk.network_id, blk.subnet))
                if st is None:
                    raise InvalidArgument(
                        f"block {blk.index} of unknown subnet {blk.subnet} ({blk.network_id})")
                self._load_block(st, blk.index, blk.owner, blk.data)
            for rec_h in snap.holders:
                st = by_key.get((rec_h.network_id, rec_h.subnet))
                fam, a = parse_addr(rec_h.address)
                if st is None or fam is not st.family or not 0 <= a - st.net < st.size \
                        or st.map.get(a - st.net) != USED or not rec_h.holder:
                    raise InvalidArgument(f"holder row of {rec_h.address} in {rec_h.subnet} "
                                          f"({rec_h.network_id}): no such manager address")
                st.holders[a - st.net] = rec_h.holder
        except IPAMError as exc:  # InvalidArgument is not one; catch both below
            raise StoreCorrupt(f"store {where} holds an impossible IPAM state: {exc}") from exc
        except InvalidArgument as exc:
            raise StoreCorrupt(f"store {where} holds an invalid IPAM row: {exc}") from exc

    def _load_block(self, st: _SubnetState, block: int, owner: str, data: bytes) -> None:
        g = st.geo
        if not 0 <= block < g.block_count or len(data) != 1 << g.block_bits:
            raise InvalidArgument(f"block {block} of subnet {g.cidr} has a bad index or size")
        m = st.map
        base = block << g.block_bits
        for i, byte in enumerate(data):
            if not byte:
                continue
            state = byte & ~_FLAGS
            if byte & CURSOR_FLAG:
                st.cursor = base + i
            if byte & LEASE_FLAG:
                if i:
                    raise InvalidArgument(f"block {g.block_cidr(block)}: misplaced flag")
                st.block_cursor = base + (1 << g.block_bits) - 1
            if state == USED:
                if m.get(base + i) != FREE and not outside_range(g, g.net + base + i):
                    raise InvalidArgument(
                        f"{format_addr(g.family, g.net + base + i)} is marked used but "
                        f"is {g.why_reserved(g.net + base + i)}")
                m.put(base + i, USED)
            elif state != FREE:
                raise InvalidArgument(f"block {g.block_cidr(block)}: bad state byte {byte}")
        if owner:
            st.owners[block] = owner
            m.own(block)

    # ----------------------------------------------------------------- subnets

    def _space(self, space: AddressSpace, family: IPFamily) -> SpaceIndex:
        idx = self._index.get((space, family))
        if idx is None:
            idx = self._index[(space, family)] = SpaceIndex()
        return idx

    def request_subnet(self, network_id: str, *, space: AddressSpace = AddressSpace.GLOBAL,
                       cidr: str | None = None, gateway: str | None = None,
                       ip_range: str | None = None,
                       family: IPFamily = IPFamily.V4) -> Subnet:
        """Give ``network_id`` a subnet: ``cidr`` if given (it must not overlap a subnet of
        the same space), else the next free subnet of the space's pools for ``family``.
        ``gateway`` defaults to the first usable address; ``ip_range`` limits dynamic
        addresses. All subnets of one network lie in one address space. Asking again for
        the very same subnet returns it (idempotent)."""
        _check_id(network_id, "network id")
        space = _as_space(space)
        current = self._nets.get(network_id)
        if current and current[0].space is not space:
            raise InvalidArgument(f"network {network_id!r} holds subnets in the "
                                  f"{current[0].space.value} address space, not {space.value}")
        hint: tuple[tuple[AddressSpace, int], int] | None = None
        if cidr is not None:
            fam, net, plen = parse_cidr(cidr)
            block_prefix = self._config.block_prefix(fam)
            geo = Geometry.from_ints(fam, net, plen, gateway=gateway, ip_range=ip_range,
                                     block_prefix=block_prefix)
            idx = self._space(space, fam)
            hit = idx.conflict(net, net + geo.size)
            if hit is not None:
                start, _end, owner = hit
                same = self._find(owner, fam, start)
                if (owner == network_id and same is not None and same.geo == geo
                        and same.space is space):
                    return same.subnet
                held = same.geo.cidr if same is not None else format_addr(fam, start)
                raise SubnetOverlap(f"subnet {geo.cidr} overlaps subnet {held} of network "
                                    f"{owner!r} in the {space.value} address space")
        else:
            if gateway is not None or ip_range is not None:
                raise InvalidArgument("a gateway or ip-range needs an explicit subnet")
            fam = as_family(family)
            block_prefix = self._config.block_prefix(fam)
            idx = self._space(space, fam)
            geo, hint = self._next_from_pools(network_id, space, fam, idx, block_prefix)
        st = _SubnetState(network_id, space, geo)
        idx.add(geo.net, geo.net + geo.size, network_id)
        try:
            self._store.put_subnet(SubnetRecord(network_id, space.value, geo.cidr,
                                                geo.gateway_text, geo.ip_range, block_prefix))
        except BaseException:
            idx.remove(geo.net)
            raise
        if hint is not None:  # only now: every candidate below a hint must be taken
            self._hints[hint[0]] = hint[1]
        self._add_state(st)
        return st.subnet

    def _add_state(self, st: _SubnetState) -> None:
        """Keep each network's subnets sorted (IPv4 first, then by address): allocation
        tries them in this order, the same before and after a reopen."""
        sts = self._nets.get(st.network_id)
        if sts is None:
            self._nets[st.network_id] = [st]
            return
        sts.append(st)
        sts.sort(key=lambda s: (s.family, s.net))

    def _next_from_pools(
            self, network_id: str, space: AddressSpace, fam: IPFamily, idx: SpaceIndex,
            block_prefix: int) -> tuple[Geometry, tuple[tuple[AddressSpace, int], int]]:
        """The next free subnet, and the pool hint to set once it is really taken."""
        hints = self._hints
        for i, (step, base, limit, size, _plen) in self._steps[(space, fam)]:
            key = (space, i)
            start = idx.first_free(base, limit, step, hints.get(key, base))
            if start is not None:
                geo = Geometry.from_ints(fam, start, size, gateway=None, ip_range=None,
                                         block_prefix=block_prefix)
                return geo, (key, start + step)
            hints[key] = limit  # true already: nothing in this pool is free
        pools = ", ".join(f"{format_cidr(fam, base, plen)} in /{size}s"
                          for _, (_, base, _, size, plen) in self._steps[(space, fam)])
        pools = pools or "none configured"
        raise PoolExhausted(f"no free IPv{int(fam)} subnet left for network {network_id!r} "
                            f"in the {space.value} address pools ({pools})")

    def _find(self, network_id: str, family: IPFamily, net: int) -> _SubnetState | None:
        for st in self._nets.get(network_id, ()):
            if st.geo.family is family and st.geo.net == net:
                return st
        return None

    def release_subnet(self, network_id: str, cidr: str) -> None:
        """Give a subnet back, with every address and block lease in it."""
        fam, net, plen = parse_cidr(cidr)
        st = self._find(network_id, fam, net)
        if st is None or st.geo.prefixlen != plen:
            raise NotFound(f"network {network_id!r} holds no subnet {cidr}")
        self._store.delete_subnet(network_id, st.geo.cidr)
        self._drop(st)

    def release_network(self, network_id: str) -> None:
        """Give back every subnet of a network (``network rm``); no error if it has none."""
        sts = list(self._nets.get(network_id, ()))
        with self._store.transaction():
            for st in sts:
                self._store.delete_subnet(network_id, st.geo.cidr)
        for st in sts:
            self._drop(st)

    def _drop(self, st: _SubnetState) -> None:
        g = st.geo
        nid = st.subnet.network_id
        self._space(st.space, g.family).remove(g.net)
        sts = self._nets[nid]
        sts.remove(st)
        if not sts:
            del self._nets[nid]
        end = g.net + g.size
        for i, (pfam, base, plen, size) in enumerate(self._pools[st.space]):
            limit = base + (1 << (pfam.bits - plen))
            key = (st.space, i)
            if pfam is g.family and g.net < limit and end > base and key in self._hints:
                step = 1 << (pfam.bits - size)
                low = base + max(0, g.net - base) // step * step
                self._hints[key] = min(self._hints[key], low)

    def subnets(self, network_id: str | None = None) -> list[Subnet]:
        """Subnets of one network, or of all networks (by network id), IPv4 first."""
        if network_id is not None:
            return [st.subnet for st in self._nets.get(network_id, ())]
        return [st.subnet for nid in sorted(self._nets) for st in self._nets[nid]]

    def networks(self) -> list[str]:
        """Ids of the networks that hold at least one subnet."""
        return sorted(self._nets)

    # --------------------------------------------------------------- addresses

    def _states(self, network_id: str) -> list[_SubnetState]:
        sts = self._nets.get(network_id)
        if sts is None:
            raise NotFound(f"network {network_id!r} has no subnet in IPAM")
        return sts

    def _locate(self, network_id: str, address: str) -> tuple[_SubnetState, int, int]:
        """(subnet, absolute address, offset) for an address of a network's subnets."""
        fam, a = parse_addr(address)
        sts = self._nets.get(network_id)
        if sts is None:
            raise NotFound(f"network {network_id!r} has no subnet in IPAM")
        for st in sts:
            off = a - st.net
            if st.family is fam and 0 <= off < st.size:
                return st, a, off
        raise AddressOutOfRange(
            f"{address} is not inside any subnet of network {network_id!r}")

    def _write_block(self, st: _SubnetState, block: int) -> None:
        bb = st.bb
        data = (st._map or st.map).block_used(block)
        cur = st.cursor
        if cur >> bb == block and cur >= 0:
            data[cur - (block << bb)] |= CURSOR_FLAG
        if st.block_cursor >> bb == block and st.block_cursor >= 0:
            data[0] |= LEASE_FLAG
        owner = st.owners.get(block, "")
        if owner or data.count(0) != len(data):
            self._store.put_block(st.network_id, st.cidr, block, owner, data)
        else:
            self._store.delete_block(st.network_id, st.cidr, block)

    def _write_moved(self, st: _SubnetState, block: int, old_cursor: int) -> None:
        """Persist ``block`` and, when the cursor left another block, that block too."""
        bb = st.geo.block_bits
        if old_cursor >= 0 and old_cursor >> bb != block:
            with self._store.transaction():
                self._write_block(st, block)
                self._write_block(st, old_cursor >> bb)
        else:
            self._write_block(st, block)

    def allocate(self, network_id: str, *, address: str | None = None,
                 family: IPFamily = IPFamily.V4, host_id: str | None = None,
                 lent_by: str | None = None) -> Allocation:
        """Hand out an address of the network, by the manager itself.

        Without ``address``: the next free one after the last handed out (serial, wrapping),
        in the first subnet of ``family`` with room. With ``address``: that address, or
        AddressInUse / AddressOutOfRange. Never inside a block leased to a host, except a
        specific ``address`` that the block's owner ``lent_by`` has agreed to lend (it
        marked it unavailable in its own allocator first: :meth:`HostAllocator.lend`);
        without that agreement such an address is :class:`AddressHosted`.
        ``host_id``: the host the address is for, so that :meth:`reclaim_host` frees it
        when that host dies (a host with a :class:`HostAllocator` needs none of this).
        """
        if host_id is not None:
            _check_id(host_id, "host id")
        if address is not None:
            return self._allocate_exact(network_id, address, host_id, lent_by)
        if type(family) is not IPFamily:
            family = as_family(family)
        sts = self._nets.get(network_id)
        if sts is None:
            raise NotFound(f"network {network_id!r} has no subnet in IPAM")
        for st in sts:
            if st.family is not family:
                continue
            m = st._map or st.map
            old = st.cursor
            off = m.take_next(old)
            if off < 0:
                continue
            st.cursor = off
            bb = st.bb
            block = off >> bb
            try:
                if host_id is not None:
                    self._write_held(st, off, host_id, old)
                elif old >= 0 and (old >> bb) != block:
                    self._write_moved(st, block, old)
                else:  # the hot path: _write_block inlined; the row is not empty
                    data = m.block_used(block)
                    data[off - (block << bb)] |= CURSOR_FLAG
                    if st.block_cursor >> bb == block:
                        data[0] |= LEASE_FLAG
                    self._store.put_block(st.network_id, st.cidr, block,
                                          st.owners.get(block, ""), data)
            except BaseException:
                m.put(off, FREE)
                st.cursor = old
                raise
            a = st.net + off
            if family is _V4:
                return new_allocation(
                    f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}", st.subnet)
            return Allocation(format_addr(family, a), st.subnet)
        cidrs = ", ".join(st.geo.cidr for st in self._nets[network_id]
                          if st.geo.family is family) or f"no IPv{int(family)} subnet"
        raise PoolExhausted(f"no free address left in network {network_id!r} ({cidrs})")

    def _refuse(self, st: _SubnetState, a: int, off: int, state: int, address: str) -> None:
        g = st.geo
        if state == USED:
            raise AddressInUse(f"{address} is already allocated in network "
                               f"{st.subnet.network_id!r}")
        if state == RESERVED:
            if g.lo <= a <= g.hi:
                raise AddressInUse(f"{address} is reserved: {g.why_reserved(a)}")
            raise AddressOutOfRange(f"{address} is {g.why_reserved(a)}")
        if state == HOSTED:
            block = off >> g.block_bits
            raise AddressHosted(f"{address} lies in block {g.block_cidr(block)} leased to host "
                               f"{st.owners.get(block, '?')!r}")

    def _write_held(self, st: _SubnetState, off: int, host_id: str, old_cursor: int) -> None:
        """Persist a new manager address held for a host: block row(s) and holder row."""
        st.holders[off] = host_id
        try:
            with self._store.transaction():
                self._write_moved(st, off >> st.bb, old_cursor)
                self._store.put_holder(st.network_id, st.cidr,
                                       format_addr(st.family, st.net + off), host_id)
        except BaseException:
            del st.holders[off]
            raise

    def _allocate_exact(self, network_id: str, address: str,
                        host_id: str | None, lent_by: str | None = None) -> Allocation:
        st, a, off = self._locate(network_id, address)
        m = st.map
        state = m.get(off)
        lent = (state == HOSTED and lent_by is not None
                and st.owners.get(off >> st.bb) == lent_by)
        # Docker 25+: a requested address may lie outside the ip-range (moby#47120)
        extra = state == RESERVED and outside_range(st.geo, a)
        if state != FREE and not lent and not extra:
            self._refuse(st, a, off, state, address)
        m.put(off, USED)
        try:
            if host_id is not None:
                self._write_held(st, off, host_id, st.cursor)
            else:
                self._write_block(st, off >> st.geo.block_bits)
        except BaseException:
            m.put(off, FREE)
            raise
        return Allocation(format_addr(st.geo.family, a), st.subnet)

    def release(self, network_id: str, address: str) -> None:
        """Give back an address the manager handed out; NotFound if it is not allocated."""
        fam, a = parse_addr(address)
        sts = self._nets.get(network_id)
        if sts is None:
            raise NotFound(f"network {network_id!r} has no subnet in IPAM")
        for st in sts:
            off = a - st.net
            if st.family is fam and 0 <= off < st.size:
                break
        else:
            raise AddressOutOfRange(
                f"{address} is not inside any subnet of network {network_id!r}")
        m = st._map or st.map
        block = off >> st.bb
        back = RESERVED if outside_range(st.geo, a) else HOSTED if block in st.owners else FREE
        if not m.give_back(off, back):
            if a == st.geo.gateway:
                raise InvalidArgument(f"{address} is the gateway of subnet {st.cidr}: it "
                                      "stays reserved until the subnet is released")
            raise NotFound(f"{address} is not allocated by the manager in network "
                           f"{network_id!r}")
        holder = st.holders.pop(off, None) if st.holders else None
        try:
            if holder is None:
                self._write_block(st, block)
            else:
                with self._store.transaction():
                    self._write_block(st, block)
                    self._store.delete_holder(st.network_id, st.cidr, address)
        except BaseException:
            m.put(off, USED)
            if holder is not None:
                st.holders[off] = holder
            raise

    def block_owner(self, network_id: str, address: str) -> str | None:
        """The host whose leased block holds ``address`` while the address is free there
        (only that host can give it: :class:`AddressHosted`); None otherwise."""
        st, _a, off = self._locate(network_id, address)
        if st.map.get(off) != HOSTED:
            return None
        return st.owners.get(off >> st.bb)

    def allocated(self, network_id: str, *, host_id: str | None = None) -> list[str]:
        """Addresses the manager itself holds in the network (not those inside blocks),
        or only those it holds for ``host_id``."""
        sts = self._states(network_id)
        if host_id is None:
            return [format_addr(st.family, st.net + o)
                    for st in sts for o in st.map.used_offsets()]
        return [format_addr(st.family, st.net + o)
                for st in sts for o, h in sorted(st.holders.items()) if h == host_id]

    # ------------------------------------------------------------------ blocks

    def lease_block(self, network_id: str, host_id: str, *, address: str | None = None,
                    family: IPFamily = IPFamily.V4) -> BlockLease:
        """Lease a block of the network to a host.

        Without ``address``: the next block (serially) that has a free address. With
        ``address``: the block that contains it, so that the host can take that address;
        AddressInUse when the address is taken or its block is leased to another host.
        """
        _check_id(host_id, "host id")
        family = as_family(family)
        if address is not None:
            st, a, off = self._locate(network_id, address)
            block = off >> st.geo.block_bits
            state = st.map.get(off)
            if state == HOSTED and st.owners.get(block) == host_id:
                return st.lease(block)
            if state != FREE:
                self._refuse(st, a, off, state, address)
            self._own(st, block, host_id)
            return st.lease(block)
        for st in self._states(network_id):
            if st.family is not family:
                continue
            block = _next_block(st)
            if block < 0:
                continue
            old = st.block_cursor
            st.block_cursor = ((block + 1) << st.bb) - 1
            try:
                self._own(st, block, host_id, previous=old >> st.bb if old >= 0 else -1)
            except BaseException:
                st.block_cursor = old
                raise
            return st.lease(block)
        raise PoolExhausted(f"no block with a free address left in network {network_id!r} "
                            f"for host {host_id!r}")

    def _own(self, st: _SubnetState, block: int, host_id: str, *, previous: int = -1) -> None:
        """Lease ``block``; ``previous``: the block that held the lease flag, rewritten."""
        st.owners[block] = host_id
        try:
            if previous >= 0 and previous != block:
                with self._store.transaction():
                    self._write_block(st, block)
                    self._write_block(st, previous)
            else:
                self._write_block(st, block)
        except BaseException:
            del st.owners[block]
            raise
        st.map.own(block)

    def release_block(self, network_id: str, host_id: str, block: str) -> None:
        """A host gives a block back (it holds no address there any more)."""
        fam, net, plen = parse_cidr(block, what="block")
        for st in self._states(network_id):
            g = st.geo
            if (g.family is fam and g.contains(net)
                    and plen == fam.bits - g.block_bits):
                index = (net - g.net) >> g.block_bits
                if st.owners.get(index) != host_id:
                    break
                self._disown(st, [index])
                return
        raise NotFound(f"block {block} of network {network_id!r} is not leased to host "
                       f"{host_id!r}")

    def _disown(self, st: _SubnetState, blocks: list[int]) -> None:
        self._disown_all([(st, blocks)])

    def _disown_all(self, work: list[tuple[_SubnetState, list[int]]]) -> None:
        """End leases: rows first (one transaction), then memory; nothing changes on error."""
        saved = [(st, {b: st.owners.pop(b) for b in blocks}) for st, blocks in work]
        try:
            with self._store.transaction():
                for st, blocks in work:
                    for b in blocks:
                        self._write_block(st, b)
        except BaseException:
            for st, owners in saved:
                st.owners.update(owners)
            raise
        for st, blocks in work:
            for b in blocks:
                st.map.disown(b)

    def reclaim_host(self, host_id: str) -> Reclaimed:
        """Free everything a (dead) host held: every block leased to it, with every address
        it held there, and every address the manager handed out for it (``host_id=``).
        Durable as one transaction; returns what was freed."""
        blocks: list[BlockLease] = []
        addresses: list[tuple[str, str]] = []
        work = []
        held = []
        for nid in sorted(self._nets):
            for st in self._nets[nid]:
                mine = sorted(b for b, h in st.owners.items() if h == host_id)
                if mine:
                    blocks.extend(st.lease(b) for b in mine)
                    work.append((st, mine))
                offs = sorted(o for o, h in st.holders.items() if h == host_id)
                if offs:
                    held.append((st, offs))
                    addresses.extend((nid, format_addr(st.family, st.net + o)) for o in offs)
        if not held and not work:
            return Reclaimed()
        # memory first (the rows are computed from it), remembered for the undo
        for st, offs in held:
            for o in offs:
                st.map.put(o, HOSTED if (o >> st.bb) in st.owners else FREE)
                del st.holders[o]
        owners = [(st, {b: st.owners.pop(b) for b in mine}) for st, mine in work]
        try:
            with self._store.transaction():
                for st, offs in held:
                    for b in sorted({o >> st.bb for o in offs}):
                        self._write_block(st, b)
                    for o in offs:
                        self._store.delete_holder(st.network_id, st.cidr,
                                                  format_addr(st.family, st.net + o))
                for st, mine in work:
                    for b in mine:
                        self._write_block(st, b)
        except BaseException:
            for st, saved in owners:
                st.owners.update(saved)
            for st, offs in held:
                for o in offs:
                    st.map.put(o, USED)
                    st.holders[o] = host_id
            raise
        for st, mine in work:
            for b in mine:
                st.map.disown(b)
        return Reclaimed(tuple(blocks), tuple(addresses))

    def blocks(self, *, network_id: str | None = None,
               host_id: str | None = None) -> list[BlockLease]:
        """Current leases, optionally of one network and/or one host."""
        out = []
        nets = [network_id] if network_id is not None else sorted(self._nets)
        for nid in nets:
            for st in self._nets.get(nid, ()):
                for b in sorted(st.owners):
                    if host_id is None or st.owners[b] == host_id:
                        out.append(st.lease(b))
        return out


def outside_range(g: Geometry, address: int) -> bool:
    """An address of the subnet outside its ip-range that is not the network, gateway or
    broadcast address: never handed out dynamically, but given when asked for by name."""
    return not g.lo <= address <= g.hi and g.contains(address) and \
        address not in (g.net, g.gateway, g.broadcast)


def _next_block(st: _SubnetState) -> int:
    """The next block after the block cursor with a free address, preferring blocks where
    the manager holds no address (so the host gets the whole block); -1 when none."""
    m = st.map
    bb = st.bb
    first = off = m.next_free(st.block_cursor)
    for _ in range(st.geo.block_count):
        if off < 0:
            break
        block = off >> bb
        if not m.used_in(block):
            return block
        off = m.next_free(((block + 1) << bb) - 1)
        if off >> bb == first >> bb:
            break
    return -1 if first < 0 else first >> bb


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidArgument(f"invalid {what} {value!r}: a non-empty string is required")


def _as_space(space: AddressSpace | str) -> AddressSpace:
    try:
        return AddressSpace(space)
    except ValueError as exc:
        raise InvalidArgument(
            f"unknown address space {space!r}: expected 'local' or 'global'") from exc
