"""Stores: SQLite durability and reopen, corrupt files, network records, transactions.

The tests taking ``make_store`` are the Store contract: tests/kernel/test_store_etcd.py runs
them again against real etcd members (single and 3 members) with its own ``make_store``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from netfabric.errors import AlreadyExists, InvalidArgument, StoreCorrupt, StoreError
from netfabric.ipam import HostAllocator, Ipam, IpamConfig, IPFamily
from netfabric.model import Driver, Network, Scope, SubnetSpec
from netfabric.store import (
    Durability,
    MemoryStore,
    Snapshot,
    SqliteStore,
    Store,
    SubnetRecord,
)
from netfabric.store.base import network_from_record, network_to_record
from netfabric.store.sqlite import SCHEMA_VERSION

NET = Network(id="abc123", name="web", driver=Driver.OVERLAY, scope=Scope.SWARM,
              subnets=(SubnetSpec("10.0.0.0/24", "10.0.0.1", "10.0.0.128/25"),), vni=4097,
              attachable=True, ipv6=True, mtu=1450, options=(("k", "v"),), created=12.5)


def _state(ipam: Ipam) -> object:
    """Everything observable about an Ipam."""
    return (ipam.subnets(), ipam.blocks(),
            {n: ipam.allocated(n) for n in ipam.networks()},
            {n: ipam.allocated(n, host_id="h4") for n in ipam.networks()})


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest,
               tmp_path: Path) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []
    mem = MemoryStore()

    def make() -> Store:
        if request.param == "memory":
            return mem
        store = SqliteStore(tmp_path / "state.db")
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


def _build(ipam: Ipam) -> None:
    ipam.request_subnet("a")
    ipam.request_subnet("a", family=IPFamily.V6)
    ipam.request_subnet("b", cidr="10.7.0.0/16", gateway="10.7.255.254",
                        ip_range="10.7.8.0/22")
    for _ in range(100):
        ipam.allocate("b")
    ipam.allocate("a", family=IPFamily.V6)
    ipam.allocate("a", address="10.0.0.200")
    ipam.release("b", "10.7.8.10")
    ipam.lease_block("b", "h1")
    ipam.lease_block("a", "h2", family=IPFamily.V6)
    ipam.lease_block("a", "h2", address="10.0.0.201")
    ipam.allocate("b", host_id="h4")
    ipam.allocate("a", address="fd6e:6600::99", host_id="h4")


def test_reopen_gives_back_exactly_the_same_state(make_store: Callable[[], Store]) -> None:
    ipam = Ipam(make_store())
    _build(ipam)
    before = _state(ipam)
    reopened = Ipam(make_store())
    assert _state(reopened) == before
    # the serial cursors survived too: the reopened one continues exactly as an allocator
    # that never closed (a replica in memory; a shared store refuses two writers of one row)
    never_closed = Ipam(MemoryStore())
    _build(never_closed)
    for net, fam in (("b", IPFamily.V4), ("a", IPFamily.V6), ("a", IPFamily.V4)):
        assert never_closed.allocate(net, family=fam) == reopened.allocate(net, family=fam)
        assert (never_closed.lease_block(net, "h3", family=fam)
                == reopened.lease_block(net, "h3", family=fam))
    assert never_closed.reclaim_host("h4") == reopened.reclaim_host("h4")
    assert len(reopened.reclaim_host("h3").blocks) == 3


def test_block_lease_cursor_survives_a_returned_block(
        make_store: Callable[[], Store]) -> None:
    ipam = Ipam(make_store())
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    first = ipam.lease_block("n", "h1")
    second = ipam.lease_block("n", "h1")
    ipam.release_block("n", "h1", second.block)  # empty, unowned: yet it keeps the flag
    ipam.release_block("n", "h1", first.block)
    assert Ipam(make_store()).lease_block("n", "h2").block == "10.1.0.128/26"


def test_cursor_survives_when_last_address_was_released(make_store: Callable[[], Store]) -> None:
    ipam = Ipam(make_store())
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    for _ in range(70):
        last = ipam.allocate("n").address
    ipam.release("n", last)
    assert Ipam(make_store()).allocate("n").address == "10.1.0.72"


def test_released_subnets_and_returned_blocks_leave_no_rows_but_cursors(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        ipam = Ipam(store)
        ipam.request_subnet("n", cidr="10.1.0.0/24")
        lease = ipam.lease_block("n", "h")
        ipam.release_block("n", "h", lease.block)
        ipam.request_subnet("m", cidr="10.2.0.0/24")
        ipam.allocate("m")
        ipam.release_network("m")
    conn = sqlite3.connect(path)
    try:
        # only the row that carries the block-lease cursor flag is left
        rows = conn.execute("SELECT network_id, idx, owner, data FROM blocks").fetchall()
        assert rows == [("n", 0, "", b"\x40" + bytes(63))]
        assert conn.execute("SELECT cidr FROM subnets").fetchall() == [("10.1.0.0/24",)]
    finally:
        conn.close()


def test_allocation_is_durable_before_return_even_if_killed(tmp_path: Path) -> None:
    """A child allocates, prints each address, and is SIGKILLed without closing."""
    path = tmp_path / "s.db"
    code = textwrap.dedent(f"""
        import os, sys, signal
        from netfabric.ipam import Ipam
        from netfabric.store import SqliteStore
        ipam = Ipam(SqliteStore({str(path)!r}))
        ipam.request_subnet("n", cidr="10.1.0.0/24")
        ipam.lease_block("n", "h1")
        for _ in range(50):
            print(ipam.allocate("n").address, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    handed_out = proc.stdout.split()
    assert len(handed_out) == 50
    with SqliteStore(path) as store:
        ipam = Ipam(store)
        assert ipam.allocated("n") == handed_out
        assert [b.host_id for b in ipam.blocks()] == ["h1"]
        assert ipam.allocate("n").address not in handed_out


def test_durability_power_mode(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db", durability=Durability.POWER) as store:
        ipam = Ipam(store)
        ipam.request_subnet("n")
        assert ipam.allocate("n").address == "10.0.0.2"
        conn_sync = store._db.execute("PRAGMA synchronous").fetchone()[0]
        assert conn_sync == 2  # FULL
    with SqliteStore(tmp_path / "s.db") as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_garbage_file_is_corrupt_names_the_file_and_is_untouched(
        tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(content)
    with pytest.raises(StoreCorrupt, match=str(path)):
        SqliteStore(path)
    assert path.read_bytes() == content


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="not a netfabric store"):
        SqliteStore(path)


def test_future_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StoreCorrupt, match="schema version 99"):
        SqliteStore(path)
    assert path.exists()


def test_truncated_database_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        ipam = Ipam(store)
        for i in range(300):
            ipam.request_subnet(f"n{i}")
            ipam.allocate(f"n{i}")
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for wal in (tmp_path / "s.db-wal", tmp_path / "s.db-shm"):
        wal.unlink(missing_ok=True)
    with pytest.raises(StoreCorrupt, match=str(path)), SqliteStore(path) as store:
        Ipam(store)


def test_unopenable_path_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "dir.db"
    path.mkdir()
    with pytest.raises(StoreError, match=str(path)):
        SqliteStore(path)
    with pytest.raises(StoreError, match="nowhere"):
        SqliteStore(tmp_path / "nowhere" / "s.db")


@pytest.mark.parametrize(("table", "row"), [
    ("subnets", ("n", "10.0.0.5/24", "global", "10.0.0.1", None, 26)),
    ("subnets", ("n", "10.0.0.0/24", "sideways", "10.0.0.1", None, 26)),
    ("subnets", ("n", "10.0.0.0/24", "global", "10.9.0.1", None, 26)),
    ("subnets", ("n", "10.0.0.0/24", "global", "10.0.0.1", None, 8)),
    ("subnets", ("n", "10.0.0.0/24", "global", "10.0.0.1", None, 40)),
    ("blocks", ("ghost", "10.0.0.0/24", 0, "", b"\x01" * 64)),
    ("blocks", ("n", "10.0.0.0/24", 0, "", b"\x01" * 64)),  # network address marked used
    ("blocks", ("n", "10.0.0.0/24", 0, "", b"\x00" * 10)),
    ("blocks", ("n", "10.0.0.0/24", 9, "", b"\x00" * 64)),
    ("blocks", ("n", "10.0.0.0/24", 1, "", b"\x07" * 64)),
    ("blocks", ("n", "10.0.0.0/24", 1, "", "text, not bytes")),
    ("holders", ("n", "10.0.0.0/24", "10.0.0.7", "h1")),  # not allocated
    ("holders", ("n", "10.0.0.0/24", "10.9.0.7", "h1")),
    ("holders", ("n", "10.0.0.0/24", "nonsense", "h1")),
    ("holders", ("ghost", "10.0.0.0/24", "10.0.0.7", "h1")),
    ("holders", ("n", "10.0.0.0/24", "10.0.0.7", 5)),
])
def test_impossible_rows_are_corrupt_not_reset(tmp_path: Path, table: str,
                                               row: tuple[object, ...]) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        Ipam(store).request_subnet("n", cidr="10.0.0.0/24")
        if table == "subnets":
            store._db.execute("DELETE FROM subnets")
        store._db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
    with SqliteStore(path) as store, pytest.raises(StoreCorrupt, match=str(path)):
        Ipam(store)
    with SqliteStore(path) as store:  # still there: nothing was reset
        assert store._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] >= 1


def test_schema_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        ipam = Ipam(store)
        ipam.request_subnet("n", cidr="10.0.0.0/24")
        ipam.allocate("n")
        store._db.execute("DROP TABLE holders")
        store._db.execute("DROP TABLE objects")
        store._db.execute("PRAGMA user_version=1")
    with SqliteStore(path) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        ipam = Ipam(store)
        assert ipam.allocated("n") == ["10.0.0.2"]
        ipam.allocate("n", host_id="h1")
    with SqliteStore(path) as store:
        assert Ipam(store).allocated("n", host_id="h1") == ["10.0.0.3"]


def test_schema_2_store_gains_objects_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        Ipam(store).request_subnet("n", cidr="10.0.0.0/24")
        store._db.execute("DROP TABLE objects")
        store._db.execute("PRAGMA user_version=2")
    with SqliteStore(path) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [s.cidr for s in Ipam(store).subnets()] == ["10.0.0.0/24"]
        store.put_object("services", "web", b"v")
    with SqliteStore(path) as store:
        assert store.list_objects("services") == {"web": b"v"}


def test_overlapping_stored_subnets_are_corrupt() -> None:
    store = MemoryStore()
    store.put_subnet(SubnetRecord("a", "global", "10.0.0.0/16", "10.0.0.1", None, 26))
    store.put_subnet(SubnetRecord("b", "global", "10.0.1.0/24", "10.0.1.1", None, 26))
    with pytest.raises(StoreCorrupt, match="overlaps"):
        Ipam(store)


def test_network_records(make_store: Callable[[], Store]) -> None:
    store = make_store()
    other = Network(id="b2", name="br", driver=Driver.BRIDGE, scope=Scope.LOCAL)
    store.put_network(NET)
    store.put_network(other)
    store = make_store()
    assert store.get_network("abc123") == NET
    assert store.list_networks() == [NET, other]
    assert store.get_network("zzz") is None
    assert store.delete_network("b2") is True
    assert store.delete_network("b2") is False
    store = make_store()
    assert store.list_networks() == [NET]


def test_network_names_are_unique(make_store: Callable[[], Store]) -> None:
    """A second network of a taken name is refused with Docker's line and writes nothing;
    the name is free again once its network is removed; a rewrite of the owner is fine."""
    store = make_store()
    store.put_network(NET)
    store.put_network(replace(NET, attachable=not NET.attachable))   # same id: an update
    twin = replace(NET, id="twin9")
    with pytest.raises(AlreadyExists, match=f"^network with name {NET.name} already exists$"):
        store.put_network(twin)
    store = make_store()
    assert [n.id for n in store.list_networks()] == [NET.id]
    assert store.delete_network(NET.id) is True
    store.put_network(twin)
    assert [n.id for n in make_store().list_networks()] == ["twin9"]


def test_a_bridge_and_a_cluster_network_may_share_a_name(
        make_store: Callable[[], Store]) -> None:
    """A worker's own file keeps the cluster's network "web" beside its own bridge "web"
    (as before name rows): uniqueness is per scope in one file."""
    store = make_store()
    store.put_network(NET)
    store.put_network(Network(id="b7", name=NET.name, driver=Driver.BRIDGE, scope=Scope.LOCAL))
    assert sorted(n.id for n in make_store().list_networks()) == [NET.id, "b7"]


def test_objects(make_store: Callable[[], Store]) -> None:
    """Opaque (kind, key) values: kept across a reopen, written with IPAM rows atomically."""
    store = make_store()
    store.put_object("services", "web", b'{"name":"web"}')
    store.put_object("services", "db", b"\x00raw")
    store.put_object("tasks", "t1", b"1")
    store.put_object("tasks", "t1", b"2")
    store = make_store()
    assert store.list_objects("services") == {"db": b"\x00raw", "web": b'{"name":"web"}'}
    assert store.list_objects("tasks") == {"t1": b"2"}
    assert store.list_objects("nothing") == {}
    assert store.object_kinds() == ["services", "tasks"]
    store.delete_object("services", "web")
    store.delete_object("services", "never-was")
    with pytest.raises(RuntimeError), store.transaction():
        store.put_subnet(SubnetRecord("a", "global", "10.0.0.0/24", "10.0.0.1", None, 26))
        store.put_object("services", "half", b"x")
        store.delete_object("tasks", "t1")
        raise RuntimeError("abort")
    store = make_store()
    assert store.list_objects("services") == {"db": b"\x00raw"}
    assert store.list_objects("tasks") == {"t1": b"2"}
    assert store.load() == Snapshot()


def test_network_record_dicts_round_trip() -> None:
    assert network_from_record(network_to_record(NET)) == NET
    labelled = replace(NET, labels=(("env", "test"), ("team", "")))
    assert network_from_record(network_to_record(labelled)) == labelled


def test_corrupt_network_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        store.put_network(NET)
        store._db.execute("INSERT INTO networks VALUES ('bad', '{not json')")
        store._db.execute("INSERT INTO networks VALUES ('bad2', '{\"id\": \"x\"}')")
    with SqliteStore(path) as store:
        with pytest.raises(StoreCorrupt, match="'bad'"):
            store.list_networks()
        with pytest.raises(StoreCorrupt, match="'bad2'"):
            store.get_network("bad2")
        assert store.get_network("abc123") == NET


def test_transaction_rolls_back_on_error(make_store: Callable[[], Store]) -> None:
    store = make_store()
    store.put_network(NET)
    with pytest.raises(RuntimeError), store.transaction():
        store.delete_network(NET.id)
        store.put_subnet(SubnetRecord("a", "global", "10.0.0.0/24", "10.0.0.1", None, 26))
        store.put_block("a", "10.0.0.0/24", 0, "h", b"\x00" * 64)
        store.put_holder("a", "10.0.0.0/24", "10.0.0.3", "h")
        with store.transaction():  # nested: part of the outer one
            store.put_block("a", "10.0.0.0/24", 1, "h", b"\x00" * 64)
        raise RuntimeError("abort")
    store = make_store()
    assert store.get_network(NET.id) == NET
    assert store.load() == Snapshot()


def test_failed_write_leaves_memory_unchanged() -> None:
    """A store that refuses writes: the allocator's state does not move either."""

    class Refusing(MemoryStore):
        refuse = False

        def put_block(self, *args: object) -> None:
            if self.refuse:
                raise StoreError("disk full (simulated)")
            super().put_block(*args)  # type: ignore[arg-type]

    store = Refusing()
    ipam = Ipam(store, config=IpamConfig(block_prefix_v4=28))
    ipam.request_subnet("n", cidr="10.1.0.0/24")
    ipam.allocate("n")
    before = _state(ipam)
    store.refuse = True
    for call in (lambda: ipam.allocate("n"), lambda: ipam.allocate("n", address="10.1.0.9"),
                 lambda: ipam.release("n", "10.1.0.2"), lambda: ipam.lease_block("n", "h"),
                 lambda: HostAllocator("h", ipam, store).allocate("n")):
        with pytest.raises(StoreError):
            call()
        assert _state(ipam) == before
    store.refuse = False
    assert ipam.allocate("n").address == "10.1.0.3"


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.put_network(NET)


def test_store_file_permissions_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    os.chmod(path, 0o600)
    with SqliteStore(path) as store:
        assert store.location == str(path)
    assert (os.stat(path).st_mode & 0o777) == 0o600


def test_store_can_be_used_from_another_thread(tmp_path: Path) -> None:
    import threading

    with SqliteStore(tmp_path / "s.db") as store:
        ipam = Ipam(store)
        ipam.request_subnet("n")
        got: list[str] = []
        worker = threading.Thread(target=lambda: got.append(ipam.allocate("n").address))
        worker.start()
        worker.join()
        assert got == ["10.0.0.2"]


def test_a_network_row_keeps_every_field_of_the_model(tmp_path: Path) -> None:
    # Networks live in the store: a field the row forgets is lost at the agent's restart.
    full = Network(id="n1", name="full", driver=Driver.OVERLAY, scope=Scope.SWARM,
                   subnets=(SubnetSpec(cidr="10.0.9.0/24", gateway="10.0.9.1",
                                       ip_range="10.0.9.128/25"),),
                   vni=4100, attachable=True, internal=True, ipv6=True, mtu=1400,
                   options=(("mtu", "1400"),), created=1.5, labels=(("env", "test"),))
    assert set(network_to_record(full)) == {f.name for f in dataclasses.fields(Network)}
    store = SqliteStore(tmp_path / "s.sqlite")
    store.put_network(full)
    store.close()
    again = SqliteStore(tmp_path / "s.sqlite")
    assert again.list_networks() == [full]
    again.close()


def test_a_store_url_carries_its_tls_files() -> None:
    from netfabric.store.etcd import EtcdTls, parse_etcd_url, store_tls, with_tls

    url = with_tls("etcd://a:2379,b:2379", EtcdTls(ca="/e/ca.pem", cert="/e/c.pem",
                                                    key="/e/c.key"))
    assert url == "etcd://a:2379,b:2379?cacert=/e/ca.pem&cert=/e/c.pem&key=/e/c.key"
    assert parse_etcd_url(url) == [("a", 2379), ("b", 2379)]
    assert store_tls(url) == EtcdTls(ca="/e/ca.pem", cert="/e/c.pem", key="/e/c.key")
    assert store_tls("etcd://a:2379") is None
    assert with_tls(url, None) == "etcd://a:2379,b:2379"
    for bad, words in (("etcd://a?cert=/c&key=/k", "needs cacert="),
                       ("etcd://a?cacert=/ca&cert=/c", "both cert= and key="),
                       ("etcd://a?cacert=/ca&sslmode=x", "unknown parameter 'sslmode'"),
                       ("etcd://a?cacert", "malformed query")):
        with pytest.raises(InvalidArgument, match=words):
            store_tls(bad)


def test_tls_files_are_checked_before_use(tmp_path: Path) -> None:
    from netfabric.store.etcd import EtcdTls, check_tls_files

    (tmp_path / "junk.pem").write_text("junk\n")
    with pytest.raises(InvalidArgument, match="No such file"):
        check_tls_files(EtcdTls(ca=str(tmp_path / "none.pem")))
    with pytest.raises(InvalidArgument, match="not a PEM certificate"):
        check_tls_files(EtcdTls(ca=str(tmp_path / "junk.pem")))
    with pytest.raises(InvalidArgument, match="absolute path"):
        check_tls_files(EtcdTls(ca="ca.pem"))
