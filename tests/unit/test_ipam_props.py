"""hypothesis: random sequences of subnet, block, allocate, release, specific requests, host
death and store reopen never break the IPAM invariants.

- no address or subnet is ever held twice;
- every address lies inside its subnet and ip-range;
- the gateway, network and broadcast addresses are never handed out;
- no two subnets in one address space overlap;
- and reopening every store gives back exactly the same state.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from netfabric.errors import InvalidArgument, IPAMError, NotFound
from netfabric.ipam import AddressSpace, HostAllocator, Ipam, IpamConfig, IPFamily, Pool
from netfabric.ipam.values import Subnet
from netfabric.store import SqliteStore

NETS = ["n0", "n1", "n2", "n3"]
HOSTS = ["h0", "h1", "h2"]
# Small pools and blocks so that exhaustion, wrap-around and block churn happen often.
CONFIG = IpamConfig(
    global_pools=(Pool("10.0.0.0/23", 26), Pool("fd00:1::/118", 120)),
    local_pools=(Pool("10.0.0.0/24", 25), Pool("fd00:1::/120", 122)),
    block_prefix_v4=29,
    block_prefix_v6=124,
)
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _explicit_subnets() -> st.SearchStrategy[tuple[str, str | None, str | None]]:
    """(cidr, gateway, ip_range) inside 10.0.0.0/22, sometimes with options."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str | None, str | None]:
        plen = draw(st.integers(24, 29))
        size = 1 << (32 - plen)
        base = (10 << 24) + draw(st.integers(0, (1024 // size) - 1)) * size
        net = ipaddress.IPv4Network((base, plen))
        gateway = None
        if draw(st.booleans()):
            gateway = str(net.network_address + draw(st.integers(1, size - 2)))
        ip_range = None
        if draw(st.booleans()):
            rplen = draw(st.integers(plen, 30))
            rsize = 1 << (32 - rplen)
            rbase = base + draw(st.integers(0, size // rsize - 1)) * rsize
            ip_range = str(ipaddress.IPv4Network((rbase, rplen)))
        return str(net), gateway, ip_range

    return build()


class IpamMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # tmpfs when there is one: this checks logic, not the disk (durability is tested
        # in test_store.py), and fsync on a shared disk would dominate the run time
        shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self.dir = Path(tempfile.mkdtemp(prefix="nf-ipam-props-", dir=shm))
        self.mstore = SqliteStore(self.dir / "manager.db")
        self.ipam = Ipam(self.mstore, config=CONFIG)
        self.hosts: dict[str, HostAllocator] = {}
        self.hstores: dict[str, SqliteStore] = {}
        # model: (network, address) -> holder ("" = the manager itself)
        self.held: dict[tuple[str, str], str] = {}
        self.exact: set[tuple[str, str]] = set()  # asked for by name of the manager
        # model: manager addresses handed out for a host: (network, address) -> host
        self.tags: dict[tuple[str, str], str] = {}

    def teardown(self) -> None:
        self.mstore.close()
        for s in self.hstores.values():
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _record(self, network_id: str, address: str, holder: str, *,
                tag: str | None = None) -> None:
        key = (network_id, address)
        assert key not in self.held, f"{address} handed out twice ({self.held[key]!r})"
        self.held[key] = holder
        if tag is not None:
            self.tags[key] = tag

    def _forget(self, host: str) -> list[tuple[str, str]]:
        """A host's addresses leave the model (its own and those the manager held for it);
        returns the manager ones."""
        for key in [k for k, h in self.held.items() if h == host]:
            del self.held[key]
        tagged = sorted(k for k, h in self.tags.items() if h == host)
        for key in tagged:
            del self.tags[key], self.held[key]
        return tagged

    @initialize(networks=st.lists(st.tuples(st.sampled_from(NETS),
                                            st.sampled_from(list(AddressSpace)),
                                            st.sampled_from(list(IPFamily))), max_size=5),
                hosts=st.integers(0, len(HOSTS)))
    def start(self, networks: list[tuple[str, AddressSpace, IPFamily]], hosts: int) -> None:
        """Begin with some subnets and hosts, so short programs reach the interesting parts."""
        for network, space, family in networks:
            self.request_from_pool(network, space, family)
        for host in HOSTS[:hosts]:
            self.host_starts(host)

    # ------------------------------------------------------------ subnets

    @rule(network=st.sampled_from(NETS), space=st.sampled_from(list(AddressSpace)),
          family=st.sampled_from(list(IPFamily)))
    def request_from_pool(self, network: str, space: AddressSpace, family: IPFamily) -> None:
        with contextlib.suppress(IPAMError, InvalidArgument):
            self.ipam.request_subnet(network, space=space, family=family)

    @rule(network=st.sampled_from(NETS), space=st.sampled_from(list(AddressSpace)),
          spec=_explicit_subnets())
    def request_explicit(self, network: str, space: AddressSpace,
                         spec: tuple[str, str | None, str | None]) -> None:
        cidr, gateway, ip_range = spec
        with contextlib.suppress(IPAMError, InvalidArgument):
            self.ipam.request_subnet(network, space=space, cidr=cidr, gateway=gateway,
                                     ip_range=ip_range)

    @rule(network=st.sampled_from(NETS), dice=st.integers(0, 3))
    def release_network(self, network: str, dice: int) -> None:
        if dice:  # one time in four: otherwise it empties the state too often
            return
        self.ipam.release_network(network)
        for host in self.hosts.values():
            host.forget_network(network)
        for key in [k for k in self.held if k[0] == network]:
            del self.held[key]
            self.tags.pop(key, None)

    # ---------------------------------------------------------- addresses

    @rule(network=st.sampled_from(NETS), family=st.sampled_from(list(IPFamily)),
          host=st.none() | st.sampled_from(HOSTS))
    def manager_allocate(self, network: str, family: IPFamily, host: str | None) -> None:
        try:
            a = self.ipam.allocate(network, family=family, host_id=host)
        except (IPAMError, NotFound):
            return
        self._record(network, a.address, "", tag=host)

    @rule(network=st.sampled_from(NETS), offset=st.integers(0, 300),
          host=st.none() | st.sampled_from(HOSTS))
    def manager_allocate_specific(self, network: str, offset: int, host: str | None) -> None:
        address = self._address_in(network, offset)
        if address is None:
            return
        try:
            a = self.ipam.allocate(network, address=address, host_id=host)
        except IPAMError:
            return
        assert a.address == address
        self.exact.add((network, address))  # Docker 25+: may lie outside the ip-range
        self._record(network, address, "", tag=host)

    @rule(data=st.data())
    def manager_release(self, data: st.DataObject) -> None:
        mine = sorted(k for k, h in self.held.items() if h == "")
        if mine:
            network, address = data.draw(st.sampled_from(mine))
            self.ipam.release(network, address)
            del self.held[(network, address)]
            self.tags.pop((network, address), None)

    # -------------------------------------------------------------- hosts

    @precondition(lambda self: len(self.hosts) < len(HOSTS))
    @rule(host=st.sampled_from(HOSTS))
    def host_starts(self, host: str) -> None:
        if host in self.hosts or len(self.hosts) >= len(HOSTS):
            return
        self.hstores[host] = SqliteStore(self.dir / f"{host}.db")
        self.hosts[host] = HostAllocator(host, self.ipam, self.hstores[host])

    @rule(host=st.sampled_from(HOSTS), network=st.sampled_from(NETS),
          family=st.sampled_from(list(IPFamily)), count=st.integers(1, 10))
    def host_allocate(self, host: str, network: str, family: IPFamily, count: int) -> None:
        h = self.hosts.get(host)
        if h is None:
            return
        for _ in range(count):
            try:
                a = h.allocate(network, family=family)
            except (IPAMError, NotFound):
                return
            self._record(network, a.address, host)

    @rule(host=st.sampled_from(HOSTS), network=st.sampled_from(NETS),
          offset=st.integers(0, 300))
    def host_allocate_specific(self, host: str, network: str, offset: int) -> None:
        h = self.hosts.get(host)
        address = self._address_in(network, offset)
        if h is None or address is None:
            return
        try:
            a = h.allocate(network, address=address)
        except IPAMError:
            return
        assert a.address == address
        self._record(network, address, host)

    @rule(data=st.data())
    def host_release(self, data: st.DataObject) -> None:
        theirs = sorted((*k, h) for k, h in self.held.items() if h)
        if theirs:
            network, address, host = data.draw(st.sampled_from(theirs))
            self.hosts[host].release(network, address)
            del self.held[(network, address)]

    @rule(host=st.sampled_from(HOSTS))
    def host_returns_empty_blocks(self, host: str) -> None:
        if host in self.hosts:
            self.hosts[host].return_empty_blocks()

    @rule(host=st.sampled_from(HOSTS))
    def host_dies(self, host: str) -> None:
        if host not in self.hosts:  # a host that never ran an allocator may still be tagged
            got = self.ipam.reclaim_host(host)
            assert got.blocks == () and sorted(got.addresses) == self._forget(host)
            return
        del self.hosts[host]
        self.hstores.pop(host).close()
        (self.dir / f"{host}.db").unlink()
        got = self.ipam.reclaim_host(host)
        assert sorted(got.addresses) == self._forget(host)

    @rule(host=st.sampled_from(HOSTS))
    def host_reclaimed_while_alive_then_resyncs(self, host: str) -> None:
        h = self.hosts.get(host)
        if h is None:
            return
        assert h.resync(self.ipam.blocks(host_id=host)) == []  # in sync: nothing to drop
        got = self.ipam.reclaim_host(host)
        lost = h.resync(self.ipam.blocks(host_id=host))
        mine = sorted(k for k, holder in self.held.items() if holder == host)
        assert sorted(lost) == mine
        assert sorted(got.addresses) == self._forget(host)

    @rule(dice=st.integers(0, 2))
    def reopen_everything(self, dice: int) -> None:
        if dice:  # one time in three: it is the slowest step
            return
        before = self._snapshot()
        self.mstore.close()
        self.mstore = SqliteStore(self.dir / "manager.db")
        self.ipam = Ipam(self.mstore, config=CONFIG)
        for host in list(self.hosts):
            self.hstores[host].close()
            self.hstores[host] = SqliteStore(self.dir / f"{host}.db")
            self.hosts[host] = HostAllocator(host, self.ipam, self.hstores[host])
        assert self._snapshot() == before

    # ---------------------------------------------------------- helpers

    def _address_in(self, network: str, offset: int) -> str | None:
        subnets = self.ipam.subnets(network)
        if not subnets:
            return None
        net = ipaddress.ip_network(subnets[offset % len(subnets)].cidr)
        return str(net.network_address + offset % net.num_addresses)

    def _snapshot(self) -> object:
        return (
            self.ipam.subnets(), self.ipam.blocks(),
            {n: self.ipam.allocated(n) for n in self.ipam.networks()},
            {(n, h): self.ipam.allocated(n, host_id=h)
             for n in self.ipam.networks() for h in HOSTS},
            {h: ([b.block for b in a.blocks()], {n: a.allocated(n) for n in NETS})
             for h, a in self.hosts.items()},
            # the serial cursors (addresses and block leases) are state too
            sorted((st.network_id, st.cidr, st.cursor, st.block_cursor)
                   for sts in self.ipam._nets.values() for st in sts),
            {h: sorted(a._cursor.items()) for h, a in self.hosts.items()},
        )

    def _holdings(self) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        for n in self.ipam.networks():
            for a in self.ipam.allocated(n):
                assert (n, a) not in out
                out[(n, a)] = ""
        for host, h in self.hosts.items():
            for n in NETS:
                for a in h.allocated(n):
                    assert (n, a) not in out, f"{a} held by {host!r} and {out[(n, a)]!r}"
                    out[(n, a)] = host
        return out

    # -------------------------------------------------------- invariants

    @invariant()
    def subnets_never_overlap_in_a_space(self) -> None:
        seen: dict[tuple[AddressSpace, int], list[tuple[Net, str]]] = {}
        for s in self.ipam.subnets():
            net = ipaddress.ip_network(s.cidr)
            bucket = seen.setdefault((s.space, net.version), [])
            for other, owner in bucket:
                assert not net.overlaps(other), f"{s.cidr} ({s.network_id}) vs {other} ({owner})"
            bucket.append((net, s.network_id))

    @invariant()
    def addresses_are_held_once_inside_subnet_and_range_never_reserved(self) -> None:
        actual = self._holdings()
        assert actual == self.held
        per_space: dict[tuple[AddressSpace, str], str] = {}
        for (n, a), _holder in actual.items():
            subnet = self._subnet_of(n, a)
            key = (subnet.space, a)
            assert key not in per_space, f"{a} held in {n} and {per_space[key]}"
            per_space[key] = n
            net = ipaddress.ip_network(subnet.cidr)
            ip = ipaddress.ip_address(a)
            if subnet.ip_range is not None and (n, a) not in self.exact:
                assert ip in ipaddress.ip_network(subnet.ip_range)
            assert ip != net.network_address
            assert a != subnet.gateway
            if net.version == 4:
                assert ip != net.broadcast_address

    @invariant()
    def manager_addresses_held_for_hosts_match(self) -> None:
        actual = {(n, a): h for h in HOSTS for n in self.ipam.networks()
                  for a in self.ipam.allocated(n, host_id=h)}
        assert actual == self.tags

    @invariant()
    def host_blocks_are_leased_to_them_on_the_manager(self) -> None:
        leased = {(b.network_id, b.block): b.host_id for b in self.ipam.blocks()}
        for host, h in self.hosts.items():
            for b in h.blocks():
                assert leased.get((b.network_id, b.block)) == host
        assert set(leased.values()) <= set(self.hosts)

    def _subnet_of(self, network: str, address: str) -> Subnet:
        ip = ipaddress.ip_address(address)
        for s in self.ipam.subnets(network):
            if ip in ipaddress.ip_network(s.cidr):
                return s
        raise AssertionError(f"{address} lies in no subnet of {network}")


IpamMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestIpamProperties = IpamMachine.TestCase
