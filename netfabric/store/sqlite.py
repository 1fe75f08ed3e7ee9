"""The embedded :class:`~netfabric.store.base.Store`: one SQLite file in WAL mode.

Every write outside a transaction is its own committed SQLite transaction, so it is durable
when the call returns. The durability level is a choice (:class:`Durability`):

- ``PROCESS`` (default): ``synchronous=NORMAL`` in WAL mode. A commit is in the OS before
  it returns, so a crashed or killed agent never loses a lease or an allocation it handed
  out; a power cut may lose the last commits. This is the failure that matters for "a
  restart never hands out an address twice", and it costs no fsync per allocation.
- ``POWER``: ``synchronous=FULL``: one WAL fsync per commit, also safe against power loss.

A file that exists but is not ours, is not a database, or holds rows that do not parse
raises :class:`~netfabric.errors.StoreCorrupt` naming the file. Nothing is ever reset.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from netfabric.errors import AlreadyExists, InvalidArgument, StoreCorrupt, StoreError
from netfabric.model import Network
from netfabric.store.base import (
    BlockRecord,
    Durability,
    HolderRecord,
    Snapshot,
    SubnetRecord,
    decode_network,
    encode_network,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteStore"]

APPLICATION_ID = 0x6E664E46  # "nfNF": marks a file as a netfabric store
SCHEMA_VERSION = 3

_MIGRATIONS = {
    # 1 -> 2: the host an address handed out by the manager was allocated for
    1: "CREATE TABLE holders (network_id TEXT NOT NULL, subnet TEXT NOT NULL, address TEXT "
       "NOT NULL, holder TEXT NOT NULL, PRIMARY KEY (network_id, subnet, address)) WITHOUT ROWID",
    # 2 -> 3: the layers' objects above IPAM (service definitions)
    2: "CREATE TABLE objects (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
       "PRIMARY KEY (kind, key)) WITHOUT ROWID",
}
"""The statement that brings a store of schema version N to N + 1."""

_SCHEMA = """
CREATE TABLE networks (id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE subnets (
    network_id TEXT NOT NULL, cidr TEXT NOT NULL, space TEXT NOT NULL, gateway TEXT NOT NULL,
    ip_range TEXT, block_prefix INTEGER NOT NULL, PRIMARY KEY (network_id, cidr)
) WITHOUT ROWID;
CREATE TABLE blocks (
    network_id TEXT NOT NULL, subnet TEXT NOT NULL, idx INTEGER NOT NULL, owner TEXT NOT NULL,
    data BLOB NOT NULL, PRIMARY KEY (network_id, subnet, idx)
) WITHOUT ROWID;
""" + "".join(f"{_MIGRATIONS[v]};\n" for v in sorted(_MIGRATIONS))
"""Schema version 1 plus every migration: a new store is created at SCHEMA_VERSION."""


class SqliteStore:
    """Rows in one SQLite file; open with ``SqliteStore(path)``, close with ``close()``."""

    def __init__(self, path: str | os.PathLike[str], *,
                 durability: Durability = Durability.PROCESS) -> None:
        self._path = str(Path(path))
        self._depth = 0
        self._conn: sqlite3.Connection | None = None
        exists = os.path.exists(self._path)
        if exists and not os.access(self._path, os.R_OK | os.W_OK):
            raise StoreCorrupt(f"store file {self._path} exists but cannot be read and written")
        try:
            # One writer at a time is the caller's rule (the agent owns one Ipam); the
            # connection may still move between threads (opened at start-up, used by the
            # event loop or an executor), which sqlite3's own check would refuse.
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store file {self._path}: {exc}") from exc
        self._conn = conn
        try:
            self._open(conn, durability)
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _open(self, conn: sqlite3.Connection, durability: Durability) -> None:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self._corrupt(f"not a readable SQLite database ({exc})", exc)
        if tables == 0 and app_id == 0:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                self._create(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot initialise store file {self._path}: {exc}") from exc
        elif app_id != APPLICATION_ID:
            self._corrupt(f"not a netfabric store (application_id {app_id:#x})")
        elif version != SCHEMA_VERSION:
            if not 1 <= version < SCHEMA_VERSION:
                self._corrupt(f"schema version {version}, this netfabric reads "
                              f"{SCHEMA_VERSION}")
            self._migrate(conn, version)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            sync = "FULL" if durability is Durability.POWER else "NORMAL"
            conn.execute(f"PRAGMA synchronous={sync}")
            conn.execute("PRAGMA foreign_keys=OFF")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self._corrupt(f"unreadable ({exc})", exc)
        if str(mode).lower() != "wal":
            raise StoreError(f"store file {self._path}: cannot switch to WAL mode ({mode})")
        if check != "ok":
            self._corrupt(f"integrity check failed: {check}")

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring an older store up to SCHEMA_VERSION, in one transaction."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for v in range(version, SCHEMA_VERSION):
                    conn.execute(_MIGRATIONS[v])
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot upgrade store file {self._path} from schema "
                             f"{version}: {exc}") from exc

    def _corrupt(self, why: str, exc: BaseException | None = None) -> NoReturn:
        raise StoreCorrupt(f"store file {self._path} is corrupt: {why}; "
                           "it was left untouched (move it aside to start afresh)") from exc

    @property
    def location(self) -> str:
        return self._path

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store file {self._path} is closed")
        return self._conn

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write store file {self._path}: {exc}") from exc

    def load(self) -> Snapshot:
        try:
            subnets = self._db.execute(
                "SELECT network_id, cidr, space, gateway, ip_range, block_prefix FROM subnets"
            ).fetchall()
            blocks = self._db.execute(
                "SELECT network_id, subnet, idx, owner, data FROM blocks").fetchall()
            holders = self._db.execute(
                "SELECT network_id, subnet, address, holder FROM holders").fetchall()
        except sqlite3.DatabaseError as exc:
            self._corrupt(f"unreadable ({exc})", exc)
        out_subnets = []
        for nid, cidr, space, gw, rng, bp in subnets:
            if not (isinstance(nid, str) and isinstance(cidr, str) and isinstance(space, str)
                    and isinstance(gw, str) and (rng is None or isinstance(rng, str))
                    and isinstance(bp, int)):
                self._corrupt(f"malformed subnet row {(nid, cidr)!r}")
            out_subnets.append(SubnetRecord(nid, space, cidr, gw, rng, bp))
        out_blocks = []
        for nid, sub, idx, owner, data in blocks:
            if not (isinstance(nid, str) and isinstance(sub, str) and isinstance(idx, int)
                    and isinstance(owner, str) and isinstance(data, bytes)):
                self._corrupt(f"malformed block row {(nid, sub, idx)!r}")
            out_blocks.append(BlockRecord(nid, sub, idx, owner, data))
        out_holders = []
        for row in holders:
            if not all(isinstance(v, str) for v in row):
                self._corrupt(f"malformed holder row {row!r}")
            out_holders.append(HolderRecord(*row))
        return Snapshot(subnets=tuple(out_subnets), blocks=tuple(out_blocks),
                        holders=tuple(out_holders))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        outer = self._depth == 0
        if outer:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write store file {self._path}: {exc}") from exc
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if outer:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if outer:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot commit to store file {self._path}: {exc}") from exc

    def put_subnet(self, record: SubnetRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO subnets VALUES (?, ?, ?, ?, ?, ?)",
            (record.network_id, record.cidr, record.space, record.gateway, record.ip_range,
             record.block_prefix))

    def delete_subnet(self, network_id: str, cidr: str) -> None:
        with self.transaction():
            self._write("DELETE FROM subnets WHERE network_id=? AND cidr=?", (network_id, cidr))
            self._write("DELETE FROM blocks WHERE network_id=? AND subnet=?", (network_id, cidr))
            self._write("DELETE FROM holders WHERE network_id=? AND subnet=?",
                        (network_id, cidr))

    def put_block(self, network_id: str, subnet: str, index: int, owner: str,
                  data: bytes | bytearray) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)",
                             (network_id, subnet, index, owner, data))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write store file {self._path}: {exc}") from exc

    def delete_block(self, network_id: str, subnet: str, index: int) -> None:
        self._write("DELETE FROM blocks WHERE network_id=? AND subnet=? AND idx=?",
                    (network_id, subnet, index))

    def put_holder(self, network_id: str, subnet: str, address: str, holder: str) -> None:
        self._write("INSERT OR REPLACE INTO holders VALUES (?, ?, ?, ?)",
                    (network_id, subnet, address, holder))

    def delete_holder(self, network_id: str, subnet: str, address: str) -> None:
        self._write("DELETE FROM holders WHERE network_id=? AND subnet=? AND address=?",
                    (network_id, subnet, address))

    def put_network(self, network: Network) -> None:
        """One name, one network of a scope: another row of that name and scope refuses the
        write (Docker's line), checked in the same immediate transaction as the write. A
        worker's file may keep a cluster network of the name of one of its own bridges."""
        with self.transaction():
            try:
                taken = self._db.execute(
                    "SELECT 1 FROM networks WHERE id<>? AND json_extract(record, '$.name')=? "
                    "AND json_extract(record, '$.scope')=? LIMIT 1",
                    (network.id, network.name, network.scope.value)).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read store file {self._path}: {exc}") from exc
            if taken is not None:
                raise AlreadyExists(f"network with name {network.name} already exists")
            self._write("INSERT OR REPLACE INTO networks VALUES (?, ?)",
                        (network.id, encode_network(network)))

    def _decode(self, network_id: object, text: object) -> Network:
        if not isinstance(text, str):
            self._corrupt(f"network row {network_id!r} is not text")
        try:
            return decode_network(text)
        except InvalidArgument as exc:
            self._corrupt(f"network row {network_id!r}: {exc}", exc)

    def get_network(self, network_id: str) -> Network | None:
        try:
            row = self._db.execute("SELECT record FROM networks WHERE id=?",
                                   (network_id,)).fetchone()
        except sqlite3.DatabaseError as exc:
            self._corrupt(f"unreadable ({exc})", exc)
        return None if row is None else self._decode(network_id, row[0])

    def list_networks(self) -> list[Network]:
        try:
            rows = self._db.execute("SELECT id, record FROM networks ORDER BY id").fetchall()
        except sqlite3.DatabaseError as exc:
            self._corrupt(f"unreadable ({exc})", exc)
        return [self._decode(nid, text) for nid, text in rows]

    def delete_network(self, network_id: str) -> bool:
        try:
            cur = self._db.execute("DELETE FROM networks WHERE id=?", (network_id,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write store file {self._path}: {exc}") from exc
        return cur.rowcount > 0

    def put_object(self, kind: str, key: str, value: bytes) -> None:
        self._write("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", (kind, key, bytes(value)))

    def delete_object(self, kind: str, key: str) -> None:
        self._write("DELETE FROM objects WHERE kind=? AND key=?", (kind, key))

    def list_objects(self, kind: str) -> dict[str, bytes]:
        try:
            rows = self._db.execute("SELECT key, value FROM objects WHERE kind=? ORDER BY key",
                                    (kind,)).fetchall()
        except sqlite3.DatabaseError as exc:
            self._corrupt(f"unreadable ({exc})", exc)
        out = {}
        for key, value in rows:
            if not (isinstance(key, str) and isinstance(value, bytes)):
                self._corrupt(f"malformed object row {(kind, key)!r}")
            out[key] = value
        return out

    def object_kinds(self) -> list[str]:
        try:
            rows = self._db.execute("SELECT DISTINCT kind FROM objects ORDER BY kind").fetchall()
        except sqlite3.DatabaseError as exc:
            self._corrupt(f"unreadable ({exc})", exc)
        return [str(k) for (k,) in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
