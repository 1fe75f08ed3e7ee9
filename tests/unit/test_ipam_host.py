"""Host side of IPAM: local allocation in leased blocks, leasing more, returning, reclaim."""

from __future__ import annotations

from pathlib import Path

import pytest

from netfabric.errors import (
    AddressHosted,
    AddressInUse,
    AddressOutOfRange,
    InvalidArgument,
    NotFound,
    PoolExhausted,
    StoreCorrupt,
)
from netfabric.ipam import BlockLease, HostAllocator, Ipam, IpamConfig, IPFamily
from netfabric.store import MemoryStore, SqliteStore


class CountingSource:
    """The manager, counting round trips (what a host saves by allocating locally)."""

    def __init__(self, ipam: Ipam) -> None:
        self.ipam = ipam
        self.leases = 0
        self.returns = 0
        self.fail_returns = False

    def lease_block(self, network_id: str, host_id: str, *, address: str | None = None,
                    family: IPFamily = IPFamily.V4) -> BlockLease:
        self.leases += 1
        return self.ipam.lease_block(network_id, host_id, address=address, family=family)

    def release_block(self, network_id: str, host_id: str, block: str) -> None:
        if self.fail_returns:
            raise NotFound("manager unreachable (simulated)")
        self.returns += 1
        self.ipam.release_block(network_id, host_id, block)


@pytest.fixture
def manager() -> Ipam:
    ipam = Ipam(MemoryStore(), config=IpamConfig(block_prefix_v4=28))
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    return ipam


def test_host_allocates_locally_in_one_block(manager: Ipam) -> None:
    src = CountingSource(manager)
    host = HostAllocator("h1", src, MemoryStore())
    got = [host.allocate("n").address for _ in range(13)]
    # block 10.1.0.0/28: .0 network, .1 gateway; .2-.15 usable (only the subnet's
    # broadcast is reserved)
    assert got == [f"10.1.0.{i}" for i in range(2, 15)]
    assert src.leases == 1
    assert host.allocated("n") == got


def test_host_leases_another_block_when_full_and_returns_empty_ones(manager: Ipam) -> None:
    src = CountingSource(manager)
    host = HostAllocator("h1", src, MemoryStore())
    first = [host.allocate("n").address for _ in range(14)]
    assert src.leases == 1
    extra = [host.allocate("n").address for _ in range(3)]
    assert src.leases == 2 and extra == ["10.1.0.16", "10.1.0.17", "10.1.0.18"]
    assert [b.block for b in manager.blocks(host_id="h1")] == ["10.1.0.0/28", "10.1.0.16/28"]
    for a in extra:
        host.release("n", a)
    assert src.returns == 1 and host.stats.returned == 1
    assert [b.block for b in host.blocks()] == ["10.1.0.0/28"]
    assert [b.block for b in manager.blocks(host_id="h1")] == ["10.1.0.0/28"]
    for a in first:  # the last block is kept: churn does not lease/return each time
        host.release("n", a)
    assert [b.block for b in host.blocks("n")] == ["10.1.0.0/28"]
    assert host.return_empty_blocks() == ["10.1.0.0/28"]
    assert manager.blocks() == [] and host.blocks() == []


def test_host_serial_allocation_moves_on_and_wraps(manager: Ipam) -> None:
    host = HostAllocator("h1", manager, MemoryStore())
    a = host.allocate("n").address
    b = host.allocate("n").address
    host.release("n", a)
    assert host.allocate("n").address == "10.1.0.4"
    for _ in range(11):
        host.allocate("n")
    host.release("n", b)
    # the block is full but for .2 (released long ago) and .3 (just released): serial
    # wraps inside the host's blocks to .2, before leasing anything new
    assert host.allocate("n").address == "10.1.0.2"


def test_two_hosts_never_share_addresses(manager: Ipam) -> None:
    h1 = HostAllocator("h1", manager, MemoryStore())
    h2 = HostAllocator("h2", manager, MemoryStore())
    got = [h.allocate("n").address for _ in range(40) for h in (h1, h2)]
    assert len(set(got)) == len(got)
    assert {b.host_id for b in manager.blocks()} == {"h1", "h2"}


def test_specific_address_outside_blocks_goes_through_the_manager(manager: Ipam) -> None:
    src = CountingSource(manager)
    h1 = HostAllocator("h1", src, MemoryStore())
    h2 = HostAllocator("h2", manager, MemoryStore())
    assert h1.allocate("n", address="10.1.0.100").address == "10.1.0.100"
    assert src.leases == 1 and h1.blocks()[0].block == "10.1.0.96/28"
    assert h1.allocate("n", address="10.1.0.101").address == "10.1.0.101"
    assert src.leases == 1  # inside its own block now: local
    with pytest.raises(AddressInUse, match="already allocated on host 'h1'"):
        h1.allocate("n", address="10.1.0.101")
    with pytest.raises(AddressInUse, match="leased to host 'h1'"):
        h2.allocate("n", address="10.1.0.102")
    with pytest.raises(AddressOutOfRange):
        h2.allocate("n", address="10.9.0.1")


def test_host_respects_taken_reserved_and_ip_range() -> None:
    ipam = Ipam(MemoryStore(), config=IpamConfig(block_prefix_v4=28))
    ipam.request_subnet("n", cidr="10.1.0.0/28", ip_range="10.1.0.0/29", gateway="10.1.0.5")
    ipam.allocate("n", address="10.1.0.3")
    host = HostAllocator("h1", ipam, MemoryStore())
    got = [host.allocate("n").address for _ in range(5)]
    assert got == ["10.1.0.1", "10.1.0.2", "10.1.0.4", "10.1.0.6", "10.1.0.7"]
    with pytest.raises(PoolExhausted):
        host.allocate("n")
    with pytest.raises(AddressInUse, match="manager"):
        host.allocate("n", address="10.1.0.3")
    with pytest.raises(AddressInUse, match="gateway"):
        host.allocate("n", address="10.1.0.5")
    with pytest.raises(AddressOutOfRange, match="ip-range"):
        host.allocate("n", address="10.1.0.9")


def test_dead_host_reclaim_frees_its_addresses(manager: Ipam) -> None:
    h1 = HostAllocator("h1", manager, MemoryStore())
    got = [h1.allocate("n").address for _ in range(20)]
    reclaimed = manager.reclaim_host("h1")
    assert [r.block for r in reclaimed.blocks] == ["10.1.0.0/28", "10.1.0.16/28"]
    assert manager.blocks() == []
    h2 = HostAllocator("h2", manager, MemoryStore())
    assert h2.allocate("n", address=got[0]).address == got[0]  # free again
    assert manager.allocate("n", address=got[-1]).address == got[-1]


def test_host_release_errors_and_failed_returns_are_counted(manager: Ipam) -> None:
    src = CountingSource(manager)
    host = HostAllocator("h1", src, MemoryStore())
    with pytest.raises(NotFound):
        host.release("n", "10.1.0.2")
    got = [host.allocate("n").address for _ in range(15)]
    src.fail_returns = True
    host.release("n", got[-1])
    assert host.stats.return_failures == 1
    assert len(host.blocks()) == 2  # kept, not lost
    with pytest.raises(NotFound):
        host.release("n", got[-1])


def test_host_v6_blocks(manager: Ipam) -> None:
    manager.request_subnet("n", family=IPFamily.V6)
    host = HostAllocator("h1", manager, MemoryStore())
    a = host.allocate("n", family=IPFamily.V6)
    assert a.address == "fd6e:6600::2" and a.prefixlen == 64
    assert host.allocate("n").address == "10.1.0.2"
    assert [b.block for b in manager.blocks(host_id="h1")] == ["10.1.0.0/28", "fd6e:6600::/122"]


def test_host_state_survives_restart(tmp_path: Path, manager: Ipam) -> None:
    path = tmp_path / "host.db"
    with SqliteStore(path) as store:
        host = HostAllocator("h1", manager, store)
        got = [host.allocate("n").address for _ in range(16)]
        host.release("n", got[5])
        before = (host.blocks(), host.allocated("n"))
        expect_next = host.allocate("n").address
        host.release("n", expect_next)
        host.allocate("n", address=expect_next)
        host.release("n", expect_next)
    with SqliteStore(path) as store:
        host = HostAllocator("h1", manager, store)
        assert [b.block for b in host.blocks()] == [b.block for b in before[0]]
        assert host.allocated("n") == before[1]
        assert host.allocate("n").address != got[5]  # the serial cursor survived
        host.forget_network("n")
        assert host.blocks() == []
    with SqliteStore(path) as store:
        assert HostAllocator("h1", manager, store).blocks() == []


def test_host_store_of_another_host_is_refused(tmp_path: Path, manager: Ipam) -> None:
    store = MemoryStore()
    HostAllocator("h1", manager, store).allocate("n")
    with pytest.raises(StoreCorrupt, match="h1"):
        HostAllocator("h2", manager, store)
    with pytest.raises(InvalidArgument):
        HostAllocator("", manager, MemoryStore())


def test_a_lease_for_another_host_is_refused(manager: Ipam) -> None:
    class Wrong(CountingSource):
        def lease_block(self, network_id: str, host_id: str, *, address: str | None = None,
                        family: IPFamily = IPFamily.V4) -> BlockLease:
            return self.ipam.lease_block(network_id, "other", address=address, family=family)

    with pytest.raises(InvalidArgument, match="other"):
        HostAllocator("h1", Wrong(manager), MemoryStore()).allocate("n")


def test_resync_drops_blocks_reclaimed_while_the_host_was_away(manager: Ipam) -> None:
    h1 = HostAllocator("h1", manager, MemoryStore())
    got = [h1.allocate("n").address for _ in range(16)]  # two /28 blocks
    manager.reclaim_host("h1")  # declared dead ...
    manager.lease_block("n", "h1", address="10.1.0.40")  # ... and back, with a new lease
    lost = h1.resync(manager.blocks(host_id="h1"))
    assert lost == [("n", a) for a in got]
    # the lease it never heard of is adopted, empty
    assert [b.block for b in h1.blocks()] == ["10.1.0.32/28"]
    assert h1.resync(manager.blocks(host_id="h1")) == []
    h2 = HostAllocator("h2", manager, MemoryStore())
    assert h2.allocate("n", address=got[0]).address == got[0]
    assert h1.allocate("n").address == "10.1.0.32"


def test_int_family_and_oversized_lease(manager: Ipam) -> None:
    src = CountingSource(manager)
    host = HostAllocator("h1", src, MemoryStore())
    got = [host.allocate("n", family=4).address for _ in range(3)]  # type: ignore[arg-type]
    assert got == ["10.1.0.2", "10.1.0.3", "10.1.0.4"] and src.leases == 1
    with pytest.raises(InvalidArgument, match="family"):
        host.allocate("n", family=5)  # type: ignore[arg-type]

    class Huge(CountingSource):
        def lease_block(self, network_id: str, host_id: str, *, address: str | None = None,
                        family: IPFamily = IPFamily.V4) -> BlockLease:
            lease = self.ipam.lease_block(network_id, host_id, address=address, family=family)
            return BlockLease(lease.network_id, host_id, "10.0.0.0/8", lease.subnet)

    with pytest.raises(InvalidArgument, match="larger"):
        HostAllocator("h1", Huge(manager), MemoryStore()).allocate("n")


def test_a_fixed_address_in_another_hosts_block_is_lent(tmp_path: Path) -> None:
    """Issue 19 item 1: ``run --ip`` of a free address in host h3's block. h3 lends it
    (durably), the manager holds it for the asking host, h3 never hands it out (nor after
    a restart of h3 or of the manager), and once freed h3 may use it again."""
    mstore = SqliteStore(str(tmp_path / "m.sqlite"))
    manager = Ipam(mstore, config=IpamConfig(block_prefix_v4=28))
    manager.request_subnet("n", cidr="10.1.0.0/24")
    h3_path = str(tmp_path / "h3.sqlite")
    h3 = HostAllocator("h3", CountingSource(manager), SqliteStore(h3_path))
    assert h3.allocate("n").address == "10.1.0.2"      # h3 leases 10.1.0.0/28

    with pytest.raises(AddressInUse) as refused:       # not without the owner's consent
        manager.allocate("n", address="10.1.0.3", host_id="h1")
    assert type(refused.value) is AddressHosted
    assert manager.block_owner("n", "10.1.0.3") == "h3"
    h1 = HostAllocator("h1", CountingSource(manager), MemoryStore())
    with pytest.raises(AddressHosted):                 # a worker's lease request: the same
        h1.allocate("n", address="10.1.0.3")
    with pytest.raises(AddressHosted):                 # lent by someone else than the owner
        manager.allocate("n", address="10.1.0.3", host_id="h1", lent_by="h2")

    assert h3.lend("n", "10.1.0.3") is True
    assert h3.lend("n", "10.1.0.3") is True            # a retry is fine
    got = manager.allocate("n", address="10.1.0.3", host_id="h1", lent_by="h3")
    assert got.address == "10.1.0.3"
    assert manager.block_owner("n", "10.1.0.3") is None
    with pytest.raises(AddressInUse):
        manager.allocate("n", address="10.1.0.3", host_id="h2", lent_by="h3")
    with pytest.raises(AddressInUse):                  # h3 uses .2 itself: not lendable
        h3.lend("n", "10.1.0.2")
    with pytest.raises(AddressInUse):
        h3.lend("n", "10.1.0.1")                       # the gateway
    assert h3.lend("n", "10.1.0.99") is False          # not h3's block

    def fill(h: HostAllocator) -> list[str]:
        out = []
        while True:
            a = h.allocate("n").address
            if not a.startswith("10.1.0.") or int(a.rsplit(".", 1)[1]) >= 16:
                return out
            out.append(a)

    assert fill(h3) == [f"10.1.0.{i}" for i in range(4, 16)]
    # restarts of both: the lend is kept on each side
    mstore.close()
    mstore = SqliteStore(str(tmp_path / "m.sqlite"))
    manager = Ipam(mstore, config=IpamConfig(block_prefix_v4=28))
    h3 = HostAllocator("h3", CountingSource(manager), SqliteStore(h3_path))
    with pytest.raises(AddressInUse, match="by the manager"):
        h3.allocate("n", address="10.1.0.3")
    assert manager.allocated("n", host_id="h1") == ["10.1.0.3"]
    assert manager.blocks(host_id="h3")[0].taken == ("10.1.0.3",)

    # moved: freed by h1's container, asked by the owner itself
    manager.release("n", "10.1.0.3")
    assert manager.block_owner("n", "10.1.0.3") == "h3"
    with pytest.raises(AddressInUse):                  # still lent until h3 is told
        h3.allocate("n", address="10.1.0.3")
    assert h3.unlend("n", "10.1.0.3") is True
    assert h3.unlend("n", "10.1.0.3") is False
    assert h3.unlend("n", "10.1.0.1") is False         # the gateway stays reserved
    assert h3.allocate("n", address="10.1.0.3").address == "10.1.0.3"
    mstore.close()
