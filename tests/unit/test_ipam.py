"""IPAM manager rules: pools, subnet requests, serial addresses, reservations, blocks."""

from __future__ import annotations

import ipaddress

import pytest

from netfabric.errors import (
    AddressInUse,
    AddressOutOfRange,
    InvalidArgument,
    NotFound,
    PoolExhausted,
    SubnetOverlap,
)
from netfabric.ipam import (
    AddressSpace,
    BlockLease,
    Ipam,
    IpamConfig,
    IPFamily,
    Pool,
    Reclaimed,
    Subnet,
)
from netfabric.ipam.addr import format_addr, parse_addr
from netfabric.store import MemoryStore

GLOBAL, LOCAL = AddressSpace.GLOBAL, AddressSpace.LOCAL


@pytest.fixture
def ipam() -> Ipam:
    return Ipam(MemoryStore())


# ------------------------------------------------------------------ pools


def test_overlay_default_pool_is_10_8_in_24s(ipam: Ipam) -> None:
    assert ipam.request_subnet("a").cidr == "10.0.0.0/24"
    assert ipam.request_subnet("b").cidr == "10.0.1.0/24"
    assert ipam.request_subnet("c", space=GLOBAL).cidr == "10.0.2.0/24"


def test_bridge_default_pools_are_docker_defaults(ipam: Ipam) -> None:
    got = [ipam.request_subnet(f"b{i}", space=LOCAL).cidr for i in range(17)]
    assert got[:15] == [f"172.{n}.0.0/16" for n in range(17, 32)]
    assert got[15:] == ["192.168.0.0/20", "192.168.16.0/20"]


def test_bridge_pools_run_out_after_192_168(ipam: Ipam) -> None:
    for i in range(15 + 16):
        ipam.request_subnet(f"b{i}", space=LOCAL)
    with pytest.raises(PoolExhausted, match=r"b-last.*local"):
        ipam.request_subnet("b-last", space=LOCAL)


def test_ipv6_subnets_are_64s_from_the_ula_pool(ipam: Ipam) -> None:
    a = ipam.request_subnet("a", family=IPFamily.V6)
    b = ipam.request_subnet("b", family=IPFamily.V6)
    c = ipam.request_subnet("c", space=LOCAL, family=IPFamily.V6)
    assert (a.cidr, b.cidr) == ("fd6e:6600::/64", "fd6e:6600:0:1::/64")
    assert c.cidr == "fd6e:6600:1::/64"
    for s in (a, b, c):
        net = ipaddress.ip_network(s.cidr)
        assert net.prefixlen == 64 and net.subnet_of(ipaddress.IPv6Network("fd00::/8"))  # type: ignore[arg-type]
        assert s.gateway == str(net.network_address + 1)


def test_configured_pools_in_order() -> None:
    cfg = IpamConfig(global_pools=(Pool("10.200.0.0/23", 24), Pool("10.100.0.0/16", 25)))
    ipam = Ipam(MemoryStore(), config=cfg)
    got = [ipam.request_subnet(f"n{i}").cidr for i in range(4)]
    assert got == ["10.200.0.0/24", "10.200.1.0/24", "10.100.0.0/25", "10.100.0.128/25"]


def test_pools_from_docker_daemon_json() -> None:
    pools = [Pool.from_dict(d) for d in ({"base": "172.80.0.0/16", "size": 24},
                                         {"base": "fd00:5::/48", "size": 64})]
    ipam = Ipam(MemoryStore(), config=IpamConfig(local_pools=tuple(pools)))
    assert ipam.request_subnet("b", space=LOCAL).cidr == "172.80.0.0/24"
    for bad in ({"base": "172.80.0.0/16"}, {"base": 5, "size": 24}, "nope",
                {"base": "172.80.0.0/16", "size": True}, {"base": "172.80.0.0/16", "size": 12}):
        with pytest.raises(InvalidArgument):
            Pool.from_dict(bad)  # type: ignore[arg-type]


def test_no_v6_pool_configured_is_exhaustion() -> None:
    ipam = Ipam(MemoryStore(), config=IpamConfig(global_pools=(Pool("10.0.0.0/8", 24),)))
    with pytest.raises(PoolExhausted, match="none configured"):
        ipam.request_subnet("x", family=IPFamily.V6)


@pytest.mark.parametrize("pool", [Pool("10.0.0.0/16", 8), Pool("nonsense", 24),
                                  Pool("10.0.0.1/16", 24)])
def test_bad_pool_is_refused(pool: Pool) -> None:
    with pytest.raises(InvalidArgument):
        IpamConfig(global_pools=(pool,))


def test_bad_block_prefix_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        IpamConfig(block_prefix_v4=12)


# ---------------------------------------------------------- subnet requests


def test_explicit_subnet_overlap_names_the_holder(ipam: Ipam) -> None:
    ipam.request_subnet("web", cidr="10.5.0.0/16")
    for cidr in ("10.5.3.0/24", "10.0.0.0/8", "10.5.0.0/16", "10.5.255.252/30"):
        with pytest.raises(SubnetOverlap, match=r"10\.5\.0\.0/16 of network 'web'"):
            ipam.request_subnet("db", cidr=cidr)
    assert ipam.request_subnet("db", cidr="10.6.0.0/16").cidr == "10.6.0.0/16"


def test_overlap_is_per_address_space(ipam: Ipam) -> None:
    ipam.request_subnet("ov", cidr="172.17.0.0/16", space=GLOBAL)
    assert ipam.request_subnet("br", space=LOCAL).cidr == "172.17.0.0/16"
    with pytest.raises(SubnetOverlap, match="'br'"):
        ipam.request_subnet("br2", cidr="172.17.5.0/24", space=LOCAL)


def test_a_network_lives_in_one_address_space(ipam: Ipam) -> None:
    ipam.request_subnet("n", space=LOCAL)
    with pytest.raises(InvalidArgument, match="local address space"):
        ipam.request_subnet("n", space=GLOBAL)
    ipam.request_subnet("n", space=LOCAL, family=IPFamily.V6)
    assert [s.cidr for s in ipam.subnets("n")] == ["172.17.0.0/16", "fd6e:6600:1::/64"]


def test_a_refused_request_does_not_skip_a_free_subnet(ipam: Ipam) -> None:
    ipam.request_subnet("n", space=LOCAL)
    with pytest.raises(InvalidArgument):
        ipam.request_subnet("n", space=GLOBAL)
    assert ipam.request_subnet("m", space=GLOBAL).cidr == "10.0.0.0/24"


def test_unknown_family_is_invalid(ipam: Ipam) -> None:
    ipam.request_subnet("n")
    for call in (lambda: ipam.request_subnet("x", family=5),  # type: ignore[arg-type]
                 lambda: ipam.allocate("n", family=5),  # type: ignore[arg-type]
                 lambda: ipam.lease_block("n", "h", family=5)):  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="family"):
            call()
    assert ipam.allocate("n", family=4).address == "10.0.0.2"  # type: ignore[arg-type]


def test_next_free_skips_user_subnets_and_reuses_released(ipam: Ipam) -> None:
    ipam.request_subnet("u", cidr="10.0.1.0/24")
    ipam.request_subnet("u2", cidr="10.0.2.128/25")
    assert [ipam.request_subnet(f"n{i}").cidr for i in range(3)] == [
        "10.0.0.0/24", "10.0.3.0/24", "10.0.4.0/24"]
    ipam.release_subnet("u", "10.0.1.0/24")
    assert ipam.request_subnet("n3").cidr == "10.0.1.0/24"


def test_same_request_again_is_idempotent(ipam: Ipam) -> None:
    a = ipam.request_subnet("n", cidr="10.9.0.0/24", gateway="10.9.0.254")
    assert ipam.request_subnet("n", cidr="10.9.0.0/24", gateway="10.9.0.254") == a
    with pytest.raises(SubnetOverlap, match="'n'"):
        ipam.request_subnet("n", cidr="10.9.0.0/24")  # a different gateway
    assert len(ipam.subnets("n")) == 1


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"cidr": "10.0.0.5/24"}, InvalidArgument),
    ({"cidr": "bogus"}, InvalidArgument),
    ({"cidr": "10.0.0.0"}, InvalidArgument),
    ({"cidr": "10.0.0.0/31"}, InvalidArgument),
    ({"cidr": "8.0.0.0/6"}, InvalidArgument),
    ({"cidr": "10.0.0.0/24", "gateway": "10.0.1.1"}, AddressOutOfRange),
    ({"cidr": "10.0.0.0/24", "gateway": "10.0.0.0"}, AddressOutOfRange),
    ({"cidr": "10.0.0.0/24", "gateway": "10.0.0.255"}, AddressOutOfRange),
    ({"cidr": "10.0.0.0/24", "gateway": "fd00::1"}, AddressOutOfRange),
    ({"cidr": "10.0.0.0/24", "ip_range": "10.0.1.0/25"}, AddressOutOfRange),
    ({"cidr": "10.0.0.0/24", "ip_range": "10.0.0.0/23"}, AddressOutOfRange),
    ({"cidr": "10.0.0.0/24", "ip_range": "10.0.0.1/25"}, InvalidArgument),
    ({"gateway": "10.0.0.1"}, InvalidArgument),
    ({"space": "elsewhere"}, InvalidArgument),
])
def test_bad_subnet_requests(ipam: Ipam, kwargs: dict[str, str], error: type) -> None:
    with pytest.raises(error):
        ipam.request_subnet("n", **kwargs)  # type: ignore[arg-type]
    assert ipam.subnets() == []


def test_bad_network_id(ipam: Ipam) -> None:
    with pytest.raises(InvalidArgument):
        ipam.request_subnet("")


def test_release_subnet_errors_and_release_network(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    ipam.request_subnet("n", family=IPFamily.V6)
    with pytest.raises(NotFound):
        ipam.release_subnet("n", "10.1.0.0/25")
    with pytest.raises(NotFound):
        ipam.release_subnet("m", "10.1.0.0/24")
    ipam.allocate("n")
    ipam.release_network("n")
    assert ipam.subnets() == [] and ipam.networks() == []
    with pytest.raises(NotFound):
        ipam.allocate("n")
    ipam.release_network("n")  # nothing left: no error


# ---------------------------------------------------------------- addresses


def test_first_address_is_after_the_gateway(ipam: Ipam) -> None:
    s = ipam.request_subnet("n", cidr="10.1.0.0/24")
    assert s.gateway == "10.1.0.1"
    a = ipam.allocate("n")
    assert (a.address, a.interface, a.gateway, a.network_id) == (
        "10.1.0.2", "10.1.0.2/24", "10.1.0.1", "n")


def test_serial_allocation_does_not_reuse_released_at_once(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    a = [ipam.allocate("n").address for _ in range(3)]
    ipam.release("n", a[0])
    ipam.release("n", a[2])
    assert ipam.allocate("n").address == "10.1.0.5"


def test_serial_allocation_wraps_and_skips_reserved(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/29")  # .1 gw, .2-.6 usable, .7 broadcast
    got = [ipam.allocate("n").address for _ in range(5)]
    assert got == [f"10.1.0.{i}" for i in range(2, 7)]
    with pytest.raises(PoolExhausted, match=r"'n'.*10\.1\.0\.0/29"):
        ipam.allocate("n")
    ipam.release("n", "10.1.0.4")
    ipam.release("n", "10.1.0.3")
    assert ipam.allocate("n").address == "10.1.0.3"  # wrapped past .7, .0, .1, .2
    assert ipam.allocate("n").address == "10.1.0.4"


def test_custom_gateway_is_reserved_and_first_usable_is_handed_out(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/29", gateway="10.1.0.6")
    got = {ipam.allocate("n").address for _ in range(5)}
    assert got == {f"10.1.0.{i}" for i in range(1, 6)}
    with pytest.raises(AddressInUse, match="gateway"):
        ipam.allocate("n", address="10.1.0.6")


def test_ip_range_limits_dynamic_addresses(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24", ip_range="10.1.0.128/29")
    got = [ipam.allocate("n").address for _ in range(8)]
    assert got == [f"10.1.0.{i}" for i in range(128, 136)]
    with pytest.raises(PoolExhausted):
        ipam.allocate("n")
    # Docker 25+ (moby#47120): a requested address outside the ip-range is given...
    assert ipam.allocate("n", address="10.1.0.20").address == "10.1.0.20"
    with pytest.raises(AddressInUse):
        ipam.allocate("n", address="10.1.0.20")
    # ...but never handed out dynamically, not even once released
    ipam.release("n", "10.1.0.20")
    with pytest.raises(PoolExhausted):
        ipam.allocate("n")
    assert ipam.allocate("n", address="10.1.0.20").address == "10.1.0.20"
    for reserved in ("10.1.0.0", "10.1.0.1", "10.1.0.255"):
        with pytest.raises((AddressInUse, AddressOutOfRange),
                           match=r"network address|gateway|broadcast"):
            ipam.allocate("n", address=reserved)


def test_an_address_outside_the_ip_range_survives_a_reopen() -> None:
    store = MemoryStore()
    ipam = Ipam(store)
    ipam.request_subnet("n", cidr="10.1.0.0/24", ip_range="10.1.0.128/29")
    ipam.allocate("n", address="10.1.0.20")
    again = Ipam(store)
    with pytest.raises(AddressInUse, match="already allocated"):
        again.allocate("n", address="10.1.0.20")
    again.release("n", "10.1.0.20")
    assert [again.allocate("n").address for _ in range(8)] == \
        [f"10.1.0.{i}" for i in range(128, 136)]


def test_ipv6_address_outside_the_ip_range(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="fd00:1::/64", ip_range="fd00:1::/120")
    assert ipam.allocate("n", address="fd00:1::1:5").address == "fd00:1::1:5"
    with pytest.raises(AddressInUse):
        ipam.allocate("n", address="fd00:1::1:5")


def test_gateway_outside_ip_range(ipam: Ipam) -> None:
    s = ipam.request_subnet("n", cidr="10.1.0.0/24", ip_range="10.1.0.0/30")
    assert s.gateway == "10.1.0.1"
    assert [ipam.allocate("n").address for _ in range(2)] == ["10.1.0.2", "10.1.0.3"]
    with pytest.raises(PoolExhausted):
        ipam.allocate("n")


def test_specific_addresses(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    assert ipam.allocate("n", address="10.1.0.77").address == "10.1.0.77"
    with pytest.raises(AddressInUse, match="already allocated"):
        ipam.allocate("n", address="10.1.0.77")
    for reserved in ("10.1.0.0", "10.1.0.1", "10.1.0.255"):
        with pytest.raises(AddressInUse, match="reserved"):
            ipam.allocate("n", address=reserved)
    with pytest.raises(AddressOutOfRange, match="not inside any subnet"):
        ipam.allocate("n", address="10.2.0.1")
    with pytest.raises(InvalidArgument):
        ipam.allocate("n", address="10.1.0.300")
    # a specific request does not move the serial cursor
    assert ipam.allocate("n").address == "10.1.0.2"


def test_release_errors(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    with pytest.raises(NotFound):
        ipam.release("n", "10.1.0.9")
    with pytest.raises(InvalidArgument, match="gateway"):
        ipam.release("n", "10.1.0.1")
    with pytest.raises(AddressOutOfRange):
        ipam.release("n", "10.3.0.1")
    with pytest.raises(NotFound):
        ipam.release("nope", "10.1.0.9")
    with pytest.raises(InvalidArgument):
        ipam.release("n", "not-an-ip")


def test_network_with_two_v4_subnets_spills_over(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/30")
    ipam.request_subnet("n", cidr="10.1.1.0/30")
    got = [ipam.allocate("n").address for _ in range(2)]
    assert got == ["10.1.0.2", "10.1.1.2"]
    assert ipam.allocated("n") == got


def test_ipv6_addresses(ipam: Ipam) -> None:
    s = ipam.request_subnet("n", family=IPFamily.V6)
    a = ipam.allocate("n", family=IPFamily.V6)
    assert a.address == "fd6e:6600::2" and a.subnet == s and a.prefixlen == 64
    b = ipam.allocate("n", family=IPFamily.V6)
    ipam.release("n", a.address)
    assert ipam.allocate("n", family=IPFamily.V6).address == "fd6e:6600::4"
    assert ipam.allocate("n", address="fd6e:6600::ffff:1").address == "fd6e:6600::ffff:1"
    with pytest.raises(AddressInUse):
        ipam.allocate("n", address=b.address)
    with pytest.raises(AddressInUse, match="gateway"):
        ipam.allocate("n", address="fd6e:6600::1")
    with pytest.raises(PoolExhausted, match="no IPv4 subnet"):
        ipam.allocate("n")


def test_ipv6_ip_range_serial_wrap_and_blocks() -> None:
    ipam = Ipam(MemoryStore(), config=IpamConfig(block_prefix_v6=126))
    ipam.request_subnet("n", cidr="fd00:9::/64", ip_range="fd00:9::10/124")
    got = [ipam.allocate("n", family=IPFamily.V6).address for _ in range(4)]
    assert got == ["fd00:9::10", "fd00:9::11", "fd00:9::12", "fd00:9::13"]
    assert ipam.lease_block("n", "h", family=IPFamily.V6).block == "fd00:9::14/126"
    rest = [ipam.allocate("n", family=IPFamily.V6).address for _ in range(8)]
    assert rest == [f"fd00:9::{i:x}" for i in range(0x18, 0x20)]
    with pytest.raises(PoolExhausted):
        ipam.allocate("n", family=IPFamily.V6)
    ipam.release("n", "fd00:9::11")
    ipam.release("n", "fd00:9::1c")
    assert ipam.allocate("n", family=IPFamily.V6).address == "fd00:9::11"  # wrapped
    # outside the ip-range: given when asked for by name (Docker 25+), never dynamically
    assert ipam.allocate("n", address="fd00:9::20").address == "fd00:9::20"
    ipam.release("n", "fd00:9::20")
    ipam.release("n", "fd00:9::12")
    assert ipam.allocate("n", family=IPFamily.V6).address == "fd00:9::12"
    with pytest.raises(AddressInUse, match="'h'"):
        ipam.allocate("n", address="fd00:9::15")


def test_small_ipv6_subnet_exhausts(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="fd00:1::/126")  # ::0 net, ::1 gw, ::2, ::3 (no broadcast)
    got = [ipam.allocate("n", family=IPFamily.V6).address for _ in range(2)]
    assert got == ["fd00:1::2", "fd00:1::3"]
    with pytest.raises(PoolExhausted):
        ipam.allocate("n", family=IPFamily.V6)


# ------------------------------------------------------------------- blocks


def test_lease_block_is_a_26_the_manager_never_allocates_in(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    lease = ipam.lease_block("n", "h1")
    assert lease == BlockLease("n", "h1", "10.1.0.0/26", ipam.subnets("n")[0], ())
    assert ipam.allocate("n").address == "10.1.0.64"
    with pytest.raises(AddressInUse, match=r"10\.1\.0\.0/26 leased to host 'h1'"):
        ipam.allocate("n", address="10.1.0.10")
    assert ipam.lease_block("n", "h2").block == "10.1.0.128/26"  # .64/26 has a manager addr
    assert [b.block for b in ipam.blocks(host_id="h1")] == ["10.1.0.0/26"]


def test_lease_prefers_empty_blocks_then_shares_with_taken(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/25")
    ipam.allocate("n", address="10.1.0.5")
    assert ipam.lease_block("n", "h1").block == "10.1.0.64/26"
    lease = ipam.lease_block("n", "h2")
    assert (lease.block, lease.taken) == ("10.1.0.0/26", ("10.1.0.5",))
    with pytest.raises(PoolExhausted, match="h3"):
        ipam.lease_block("n", "h3")
    ipam.release("n", "10.1.0.5")  # still inside h2's block: not manager-free
    with pytest.raises(PoolExhausted):
        ipam.allocate("n")


def test_lease_block_for_a_specific_address(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    assert ipam.lease_block("n", "h1", address="10.1.0.200").block == "10.1.0.192/26"
    assert ipam.lease_block("n", "h1", address="10.1.0.201").block == "10.1.0.192/26"
    with pytest.raises(AddressInUse, match="'h1'"):
        ipam.lease_block("n", "h2", address="10.1.0.201")
    with pytest.raises(AddressInUse, match="reserved"):
        ipam.lease_block("n", "h2", address="10.1.0.1")
    ipam.allocate("n", address="10.1.0.70")
    with pytest.raises(AddressInUse, match="already allocated"):
        ipam.lease_block("n", "h2", address="10.1.0.70")


def test_release_block_and_reclaim(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    ipam.request_subnet("m", cidr="10.2.0.0/24")
    a = ipam.lease_block("n", "h1")
    ipam.lease_block("n", "h1")
    ipam.lease_block("m", "h1")
    ipam.lease_block("n", "h2")
    with pytest.raises(NotFound, match="not leased to host 'h2'"):
        ipam.release_block("n", "h2", a.block)
    with pytest.raises(NotFound):
        ipam.release_block("n", "h1", "10.1.0.0/25")
    ipam.release_block("n", "h1", a.block)
    reclaimed = ipam.reclaim_host("h1")
    assert sorted(r.block for r in reclaimed.blocks) == ["10.1.0.64/26", "10.2.0.0/26"]
    assert [b.host_id for b in ipam.blocks()] == ["h2"]
    assert ipam.reclaim_host("h1") == Reclaimed()
    # freed addresses can be handed out again by the manager
    assert ipam.allocate("n", address="10.1.0.70").address == "10.1.0.70"


def test_manager_addresses_held_for_a_host_are_freed_when_it_dies(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    ipam.request_subnet("m", cidr="10.2.0.0/24")
    a = ipam.allocate("n", host_id="h1").address
    b = ipam.allocate("m", address="10.2.0.9", host_id="h1").address
    c = ipam.allocate("n", host_id="h2").address
    d = ipam.allocate("n").address
    ipam.lease_block("n", "h1")
    assert ipam.allocated("n", host_id="h1") == [a]
    assert ipam.allocated("n") == [a, c, d]
    got = ipam.reclaim_host("h1")
    assert got.addresses == (("m", b), ("n", a))
    assert [lease.block for lease in got.blocks] == ["10.1.0.64/26"]
    assert ipam.allocated("n") == [c, d] and ipam.allocated("m") == []
    ipam.release("n", c)
    assert ipam.reclaim_host("h2") == Reclaimed()
    with pytest.raises(InvalidArgument):
        ipam.allocate("n", host_id="")


def test_pool_of_blocks_exhausts(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/26")
    ipam.lease_block("n", "h1")
    with pytest.raises(PoolExhausted):
        ipam.lease_block("n", "h2")


def test_configurable_block_size_and_v6_blocks() -> None:
    ipam = Ipam(MemoryStore(), config=IpamConfig(block_prefix_v4=28, block_prefix_v6=120))
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    ipam.request_subnet("n", family=IPFamily.V6)
    assert ipam.lease_block("n", "h").block == "10.1.0.0/28"
    assert ipam.lease_block("n", "h", family=IPFamily.V6).block == "fd6e:6600::/120"
    ipam.request_subnet("small", cidr="10.2.0.0/30")
    assert ipam.lease_block("small", "h").block == "10.2.0.0/30"  # clipped to the subnet


def test_values_round_trip_as_dicts(ipam: Ipam) -> None:
    ipam.request_subnet("n", cidr="10.1.0.0/24", ip_range="10.1.0.0/25")
    ipam.allocate("n", address="10.1.0.3")
    lease = ipam.lease_block("n", "h1")
    assert BlockLease.from_dict(lease.to_dict()) == lease
    assert Subnet.from_dict(lease.subnet.to_dict()) == lease.subnet
    with pytest.raises(InvalidArgument):
        BlockLease.from_dict({"block": "x"})


@pytest.mark.parametrize("text", ["256.1.1.1", "01.1.1.1", "1.1.1", "1.1.1.1.1", " 1.1.1.1",
                                  "1.1.1.1\n", "\uff11.1.1.1", "1.1.1.1000", "", "fe80::1%eth0x"])
def test_address_parsing_is_strict(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_addr(text)


def test_address_parsing_and_formatting_round_trip() -> None:
    for text in ("0.0.0.0", "10.1.2.3", "255.255.255.255", "fd6e:6600::1", "::"):
        fam, value = parse_addr(text)
        assert format_addr(fam, value) == text
        assert value == int(ipaddress.ip_address(text))
