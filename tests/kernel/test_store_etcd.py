"""The Store contract on real etcd 3.4 members in lab hosts (1 and 3 members), plus what only
a shared store has: CAS conflicts between managers, concurrent allocators never holding an
address twice, leases that expire, watches, an unreachable etcd named in the error.

The test thread enters the first etcd host's netns for each test (etcd never listens in the
root netns); threads it starts inherit that netns.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from netfabric.errors import AlreadyExists, StoreConflict, StoreUnavailable
from netfabric.ipam import AddressSpace, HostAllocator, Ipam
from netfabric.ipam.shared import SharedIpam
from netfabric.lab.etcd import EtcdLab
from netfabric.lab.topology import Topology, wait_for
from netfabric.model import Driver, Network, Scope
from netfabric.netns import entered
from netfabric.store import Store
from netfabric.store.base import encode_network
from netfabric.store.etcd import EtcdStore, EtcdTls, retry_on_conflict
from tests.unit.test_store import (  # the shared Store contract, run here against etcd
    test_block_lease_cursor_survives_a_returned_block,
    test_cursor_survives_when_last_address_was_released,
    test_network_names_are_unique,
    test_network_records,
    test_objects,
    test_reopen_gives_back_exactly_the_same_state,
    test_transaction_rolls_back_on_error,
)

__all__ = [
    "test_block_lease_cursor_survives_a_returned_block",
    "test_cursor_survives_when_last_address_was_released",
    "test_network_names_are_unique",
    "test_network_records",
    "test_objects",
    "test_reopen_gives_back_exactly_the_same_state",
    "test_transaction_rolls_back_on_error",
]


@pytest.fixture(scope="module", params=[1, 3], ids=["1member", "3members"])
def etcd(request: pytest.FixtureRequest) -> Iterator[tuple[Topology, EtcdLab]]:
    with Topology.build(request.param) as topo, EtcdLab(topo.hosts).start() as lab:
        yield topo, lab


@pytest.fixture
def url(etcd: tuple[Topology, EtcdLab]) -> Iterator[str]:
    topo, lab = etcd
    with entered(topo.hosts[0].netns):
        yield lab.url


@pytest.fixture
def prefix() -> str:
    return f"/ha-test-{secrets.token_hex(4)}/"


@pytest.fixture
def make_store(url: str, prefix: str) -> Iterator[Callable[[], Store]]:
    opened: list[EtcdStore] = []

    def make() -> Store:
        store = EtcdStore(url, prefix=prefix)
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


def test_stale_manager_conflicts_writes_nothing_and_retries(url: str, prefix: str) -> None:
    with EtcdStore(url, prefix=prefix) as sa, EtcdStore(url, prefix=prefix) as sb:
        a = Ipam(sa)
        a.request_subnet("n", cidr="10.1.0.0/24")
        b = Ipam(sb)
        assert a.allocate("n").address == "10.1.0.2"
        before = b.allocated("n")
        with pytest.raises(StoreConflict, match="another manager"):
            b.allocate("n")  # b believes .2 is free: its block write loses the CAS
        assert b.allocated("n") == before
        assert Ipam(EtcdStore(url, prefix=prefix)).allocated("n") == a.allocated("n")
        ref = [b]

        def reload() -> None:
            ref[0] = Ipam(sb)
        got = retry_on_conflict(lambda: ref[0].allocate("n"), reload)
        assert got.address == "10.1.0.3"


def test_concurrent_managers_never_hold_an_address_twice(url: str, prefix: str) -> None:
    with EtcdStore(url, prefix=prefix) as s0:
        Ipam(s0).request_subnet("n", cidr="10.2.0.0/24")
    per_thread, managers = 25, 3
    got: list[list[str]] = [[] for _ in range(managers)]
    conflicts = [0] * managers
    errors: list[BaseException] = []
    start = threading.Barrier(managers)

    def manager(i: int) -> None:
        try:
            with EtcdStore(url, prefix=prefix) as store:
                ref = [Ipam(store)]

                def reload() -> None:
                    ref[0] = Ipam(store)

                def counted() -> None:
                    conflicts[i] += 1
                start.wait()
                for _ in range(per_thread):
                    got[i].append(retry_on_conflict(lambda: ref[0].allocate("n"), reload,
                                                    attempts=100, on_conflict=counted).address)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=manager, args=(i,)) for i in range(managers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = [a for g in got for a in g]
    assert len(every) == per_thread * managers
    assert len(set(every)) == len(every), "an address was handed out twice"
    assert sum(conflicts) > 0, "three managers on one block never conflicted: no CAS?"
    with EtcdStore(url, prefix=prefix) as s1:
        assert sorted(Ipam(s1).allocated("n")) == sorted(every)


def test_two_managers_never_take_overlapping_subnets(url: str, prefix: str) -> None:
    """Each read the pool before the other wrote: the later subnet loses the CAS on the
    space's pool key and, re-read, takes the next subnet (they used to share no key and both
    took the first /24)."""
    with EtcdStore(url, prefix=prefix) as sa, EtcdStore(url, prefix=prefix) as sb:
        a, b = Ipam(sa), Ipam(sb)
        first = a.request_subnet("na").cidr
        with pytest.raises(StoreConflict):
            b.request_subnet("nb")
        second = Ipam(sb).request_subnet("nb").cidr
        assert first != second
        with EtcdStore(url, prefix=prefix) as sc:
            assert len(Ipam(sc).networks()) == 2


def test_lease_is_exclusive_and_expires(url: str, prefix: str) -> None:
    with EtcdStore(url, prefix=prefix) as sa, EtcdStore(url, prefix=prefix) as sb:
        held = sa.hold("leader", "m1", ttl=2)
        assert held is not None
        assert sb.hold("leader", "m2", ttl=2) is None
        assert sb.holder("leader") == "m1"
        for _ in range(3):  # refreshed: still held after longer than the TTL
            time.sleep(1)
            assert held.refresh()
        assert sb.holder("leader") == "m1"
        wait_for(lambda: sb.holder("leader") is None, timeout=8)  # m1 stopped refreshing
        assert not held.refresh()
        taken = sb.hold("leader", "m2", ttl=2)
        assert taken is not None and sa.holder("leader") == "m2"
        taken.release()
        assert sa.holder("leader") is None


def test_watch_sees_another_managers_change_at_once(url: str, prefix: str) -> None:
    seen: list[tuple[str, bool]] = []
    with EtcdStore(url, prefix=prefix) as sa, EtcdStore(url, prefix=prefix) as sb:
        stop = sa.watch(lambda key, deleted: seen.append((key, deleted)))
        time.sleep(0.3)  # the watch stream is set up
        ipam = Ipam(sb)
        t0 = time.monotonic()
        ipam.request_subnet("n", cidr="10.3.0.0/24")
        assert wait_for(lambda: ("s/n/10.3.0.0/24", False) in seen, timeout=5), seen
        assert time.monotonic() - t0 < 2
        ipam.release_network("n")
        assert wait_for(lambda: ("s/n/10.3.0.0/24", True) in seen, timeout=5), seen
        t1 = time.monotonic()
        stop()   # at once, not after the stream's idle timeout
        assert time.monotonic() - t1 < 2, f"stopping the watch took {time.monotonic() - t1:.1f}s"


def test_unreachable_etcd_is_named_and_a_live_member_is_used(url: str, prefix: str) -> None:
    dead = "etcd://127.0.0.1:1"
    with (EtcdStore(dead, prefix=prefix) as store,
          pytest.raises(StoreUnavailable, match=r"etcd etcd://127\.0\.0\.1:1.*unavailable")):
        store.load()
    live = url.removeprefix("etcd://")
    with EtcdStore(f"{dead},{live}", prefix=prefix) as store:
        Ipam(store).request_subnet("n", cidr="10.4.0.0/24")
        assert Ipam(store).subnets("n")[0].cidr == "10.4.0.0/24"


def test_tls_with_client_certificates(hosts: Callable[..., Topology], prefix: str) -> None:
    topo = hosts(1)
    with EtcdLab(topo.hosts, tls=True).start() as lab, entered(topo.hosts[0].netns):
        tls = lab.client_tls
        with EtcdStore(lab.url, prefix=prefix, tls=tls) as store:
            Ipam(store).request_subnet("n", cidr="10.5.0.0/24")
            assert Ipam(store).allocate("n").address == "10.5.0.2"
        with EtcdStore(lab.url, prefix=prefix, tls=EtcdTls(ca=tls.ca)) as anonymous, \
                pytest.raises(StoreUnavailable, match=r"TLS handshake failed.*--store-cert"):
            anonymous.load()  # the server asks for a client certificate
        with EtcdStore(lab.url, prefix=prefix) as plain, \
                pytest.raises(StoreUnavailable, match="serves TLS"):
            plain.load()


def _leader(lab: EtcdLab) -> int:
    import requests

    for i, h in enumerate(lab.hosts):
        with contextlib.suppress(requests.RequestException):
            st = requests.post(f"http://{h.address}:2379/v3/maintenance/status", json={},
                               timeout=2).json()
            if st.get("leader") == st.get("header", {}).get("member_id"):
                return i
    raise AssertionError("no etcd leader")


def test_leader_kill_and_quorum_loss(hosts: Callable[..., Topology], prefix: str) -> None:
    """kill -9 of the etcd leader during a stream of allocations: each one succeeds or fails
    with StoreUnavailable naming etcd, none is handed out twice; with 2 of 3 members gone,
    writes are refused by name and nothing is half-made; restarted, every row is there."""
    topo = hosts(3)
    with EtcdLab(topo.hosts).start() as lab, entered(topo.hosts[0].netns), \
            EtcdStore(lab.url, prefix=prefix, timeout=1.0) as store:
        ref = [Ipam(store)]
        ref[0].request_subnet("n", cidr="10.6.0.0/24")

        def reload() -> None:
            ref[0] = Ipam(store)
        got: list[str] = []
        refused = 0
        killed_at = None
        for i in range(120):
            if i == 20:
                killed = lab.hosts[_leader(lab)]
                lab.kill(killed)
                killed_at = time.monotonic()
            try:
                got.append(retry_on_conflict(lambda: ref[0].allocate("n"), reload).address)
            except StoreUnavailable as exc:
                # sent and never answered: "not confirmed" (it may hold one more, below)
                assert "etcd" in str(exc) and ("nothing was changed" in str(exc) or
                                               "not confirmed" in str(exc)), exc
                refused += 1
        assert killed_at is not None and len(got) + refused == 120 and len(got) > 100
        assert len(set(got)) == len(got)
        stored = set(Ipam(store).allocated("n"))
        assert set(got) <= stored   # a lost answer may hold one more, never one less
        # quorum lost: a second member goes; a write is refused by name, nothing changes
        other = next(h for h in lab.hosts if h.name in lab.procs)
        lab.kill(other)
        with pytest.raises(StoreUnavailable, match=r"etcd etcd://.*unavailable"):
            Ipam(store).allocate("n")
        for h in lab.hosts:
            if h.name not in lab.procs:
                lab.start_member(h)
        lab.wait_healthy()
        wait_for(lambda: _quiet_load(store), timeout=15)
        assert set(Ipam(store).allocated("n")) == stored


def _quiet_load(store: EtcdStore) -> bool:
    try:
        store.load()
    except StoreUnavailable:
        return False
    return True


def test_managers_with_block_affinity_conflict_only_on_leases(url: str, prefix: str) -> None:
    """Calico's way: each manager leases whole blocks through the shared rows (CAS) and
    allocates inside its own blocks, whose rows live under its own prefix."""
    with EtcdStore(url, prefix=prefix) as s0:
        Ipam(s0).request_subnet("n", cidr="10.8.0.0/22")
    managers, per_manager = 3, 40
    got: list[list[str]] = [[] for _ in range(managers)]
    shared: list[SharedIpam] = []
    errors: list[BaseException] = []
    start = threading.Barrier(managers)

    def manager(i: int) -> None:
        try:
            with EtcdStore(url, prefix=prefix) as store, \
                    EtcdStore(url, prefix=f"{prefix}hosts/m{i}/") as own:
                source = SharedIpam(store)
                shared.append(source)
                alloc = HostAllocator(f"m{i}", source, own)
                start.wait()
                for _ in range(per_manager):
                    got[i].append(alloc.allocate("n").address)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=manager, args=(i,)) for i in range(managers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = [a for g in got for a in g]
    assert len(set(every)) == len(every) == managers * per_manager
    # 40 addresses need one /26 each: conflicts only among the 3 first leases
    assert sum(s.conflicts for s in shared) <= managers
    with EtcdStore(url, prefix=prefix) as s1:
        owners = {b.host_id for b in Ipam(s1).blocks(network_id="n")}
        assert owners == {"m0", "m1", "m2"}


def test_two_managers_creating_one_name_at_once_one_wins(url: str, prefix: str) -> None:
    """Two clients create a network of the same name at the same instant, as a manager does
    (subnet and row in one txn, retried on a lost CAS), many times: exactly one wins each
    time, the other gets Docker's line, and the loser leaves no subnet behind."""
    rounds = 15
    start = threading.Barrier(2)
    outcome: list[list[str]] = [[], []]
    errors: list[BaseException] = []

    def manager(i: int) -> None:
        try:
            with EtcdStore(url, prefix=prefix) as store:
                ref = [Ipam(store)]

                def reload() -> None:
                    ref[0] = Ipam(store)
                for r in range(rounds):
                    net = Network(id=f"m{i}r{r}", name=f"nm-race-{r}", driver=Driver.OVERLAY,
                                  scope=Scope.SWARM)

                    def create(net: Network = net) -> None:
                        with store.transaction():
                            ref[0].request_subnet(net.id, space=AddressSpace.GLOBAL)
                            store.put_network(net)
                    start.wait(timeout=30)
                    try:
                        retry_on_conflict(create, reload)
                        outcome[i].append("won")
                    except AlreadyExists as exc:
                        assert str(exc) == f"network with name nm-race-{r} already exists"
                        outcome[i].append("lost")
                        reload()   # the loser's in-memory subnet is dropped with its view
        except BaseException as exc:   # reported by the main thread
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=manager, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert [sorted((a, b)) for a, b in zip(*outcome, strict=True)] == [["lost", "won"]] * rounds
    with EtcdStore(url, prefix=prefix) as store:
        names = [n.name for n in store.list_networks()]
        assert sorted(names) == sorted(f"nm-race-{r}" for r in range(rounds))
        winners = {n.id for n in store.list_networks()}
        assert {s.network_id for s in store.load().subnets} == winners   # no half-made one
        store.drop_all()


def test_a_network_of_before_name_rows_keeps_its_name(url: str, prefix: str) -> None:
    """A network row written before name rows existed still owns its name."""
    with EtcdStore(url, prefix=prefix) as store:
        old = Network(id="old1", name="nm-legacy", driver=Driver.OVERLAY, scope=Scope.SWARM)
        store._write(store._key("n", old.id), encode_network(old).encode())
        with pytest.raises(AlreadyExists, match="network with name nm-legacy already exists"):
            store.put_network(Network(id="new1", name="nm-legacy", driver=Driver.OVERLAY,
                                      scope=Scope.SWARM))
        store.put_network(old)   # its next write gives it its name row
        assert store.records("N") == {"nm-legacy": b"old1"}
        assert store.delete_network(old.id) and store.records("N") == {}
        store.drop_all()
