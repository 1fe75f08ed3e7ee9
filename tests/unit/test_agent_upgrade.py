"""A data dir of before networks moved to the store is read and upgraded in place."""

import asyncio
import json
import sqlite3
from pathlib import Path

from netfabric.agent.adapters import STORE_FILE, IpamBook
from netfabric.agent.core import AgentConfig, AgentCore
from netfabric.agent.fakes import FakeKernel, FakeMesh, FakeNames
from netfabric.agent.state import STATE_FILE, LocalState, to_network
from netfabric.ipam.manager import Ipam
from netfabric.ipam.pools import AddressSpace
from netfabric.store.sqlite import SCHEMA_VERSION, SqliteStore

NET_ID = "a" * 32
OLD_STATE = {
    "version": 1, "node_id": "n" * 26, "hostname": "node1", "cluster": None, "nodes": {},
    "networks": {NET_ID: {
        "id": NET_ID, "name": "front", "driver": "bridge", "scope": "local",
        "subnets": [["10.42.0.0/24", "10.42.0.1", None]], "vni": None, "attachable": True,
        "internal": False, "ipv6": False, "mtu": 1400, "options": [["mtu", "1400"]],
        "created": 1700000000.0}},
    "sandboxes": {}, "pending_releases": [],
}


def _old_data_dir(path: Path) -> None:
    """The state file of today's agents, and an IPAM store of schema version 1."""
    (path / STATE_FILE).write_text(json.dumps(OLD_STATE))
    store = SqliteStore(path / STORE_FILE)
    Ipam(store).request_subnet(NET_ID, space=AddressSpace.LOCAL, cidr="10.42.0.0/24")
    store.close()
    conn = sqlite3.connect(path / STORE_FILE)
    conn.execute("DROP TABLE holders")          # what schema 2 added
    conn.execute("DROP TABLE objects")          # what schema 3 added
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()


def _core(path: Path) -> tuple[AgentCore, IpamBook]:
    book = IpamBook(str(path))
    config = AgentConfig(data_dir=str(path), socket=str(path / "agent.sock"),
                         hostname="node1", host_netns="nfst-h1")
    core = AgentCore(config, LocalState.load(str(path), hostname="node1"), kernel=FakeKernel(),
                     book=book, names=FakeNames(), mesh=FakeMesh())
    return core, book


def test_an_old_data_dir_is_upgraded_in_place(tmp_path: Path) -> None:
    _old_data_dir(tmp_path)

    async def first() -> None:
        core, _ = _core(tmp_path)
        await core.start()
        front = await core.inspect_network("front")
        assert (front.id, front.subnets, front.mtu) == (NET_ID, ("10.42.0.0/24",), 1400)
        web = await core.run("web", network="front")
        assert web.networks[0].ipv4 == "10.42.0.2"   # the store's subnet, kept
        await core.close()
    asyncio.run(first())

    on_disk = json.loads((tmp_path / STATE_FILE).read_text())
    assert on_disk["networks"] == {}                 # moved out of the state file
    conn = sqlite3.connect(tmp_path / STORE_FILE)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rows = dict(conn.execute("SELECT id, record FROM networks").fetchall())
    conn.close()
    assert json.loads(rows[NET_ID])["name"] == "front"
    assert len(rows) == 2                            # front, and the default bridge

    async def again() -> None:
        core, _ = _core(tmp_path)
        await core.start()
        assert [n.name for n in await core.networks()] == ["bridge", "front"]
        assert [c.name for c in await core.containers()] == ["web"]
        await core.close()
    asyncio.run(again())


def test_a_crash_after_the_rows_and_before_the_state_file_moves_them_again(
        tmp_path: Path) -> None:
    _old_data_dir(tmp_path)
    book = IpamBook(str(tmp_path))
    old = LocalState.load(str(tmp_path), hostname="node1").networks[NET_ID]
    book.save_network(to_network(old))
    book.close()                                     # the state file still lists it

    async def start() -> list[str]:
        core, _ = _core(tmp_path)
        await core.start()
        names = [n.name for n in await core.networks()]
        await core.close()
        return names
    assert asyncio.run(start()) == ["bridge", "front"]
    assert json.loads((tmp_path / STATE_FILE).read_text())["networks"] == {}


def test_book_reloads_and_retries_after_a_lost_compare_and_swap(tmp_path: Path) -> None:
    """Another writer took the next address first (a shared store's CAS lost): the book
    re-reads the store and hands out the one after, never the taken one."""
    from netfabric.errors import StoreConflict
    from netfabric.ipam import Ipam
    from netfabric.model import Driver, Network, Scope
    from netfabric.store import MemoryStore

    shared = MemoryStore()
    book = IpamBook(str(tmp_path))
    try:
        book.attach_shared(shared)   # as if use_store had opened etcd
        net = Network(id="n1", name="ov", driver=Driver.OVERLAY, scope=Scope.SWARM)
        book.create_network(net, subnet="10.9.0.0/24", gateway=None, ip_range=None)
        other = Ipam(shared)
        stale = book.shared_ipam
        taken = other.allocate("n1").address   # another manager, same rows
        real_put = shared.put_block
        lost = []

        def put_block(network_id: str, subnet: str, index: int, owner: str,
                      data: bytes | bytearray) -> None:
            if book.shared_ipam is stale:   # the stale view writes: the CAS a real store would lose
                lost.append(index)
                raise StoreConflict("another manager changed the block first")
            real_put(network_id, subnet, index, owner, data)
        shared.put_block = put_block  # type: ignore[method-assign]
        got = book.allocate("n1", node_id="node1", ip=None)
        assert lost and got.ipv4 != taken and book.shared_ipam is not stale
        assert set(Ipam(shared).allocated("n1")) == {taken, got.ipv4}
    finally:
        book.close()
