"""Service definitions that outlive the manager that wrote them (pure: no I/O).

Definitions (the tables ``services``, ``runspecs`` and ``tasks``) live in the managers'
Store. Every manager *republishes* them into gossip (the Store's rows in, stray entries out:
:func:`republish`) and then announces a *mark*, the :func:`digest` of what the Store holds.
Gossip drops a node's entries when that node dies, so every node *keeps* the last value it
saw of each definition (:class:`Kept`): an entry that went with its dead owner stays in
force until

- a live node deletes it (a tombstone: a real removal), or
- a live manager's mark equals the digest of the live tables: they are complete again, and
  the live tables are the whole truth (this also clears what was deleted while this node
  was away and never heard of).

So a manager's ``kill -9`` (the only one, or one of several) changes nothing on the other
nodes: VIPs, DNS and tasks stay as they were, and the next manager to announce takes over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

__all__ = ["MARKS", "TABLES", "Kept", "digest", "republish"]

TABLES = ("services", "runspecs", "tasks")
"""The definition tables: in the Store, republished by managers, kept by every node."""
MARKS = "svcmarks"
"""Gossip table: per manager (key: its node id), the digest of the Store it republished."""

Tables = Mapping[str, Mapping[str, bytes]]


def digest(tables: Tables) -> bytes:
    """One hash of every definition (table, key, value), in a canonical order."""
    h = hashlib.sha256()
    for table in TABLES:
        rows = tables.get(table, {})
        for key in sorted(rows):
            value = rows[key]
            h.update(f"{table}\0{key}\0{len(value)}\0".encode())
            h.update(value)
    return h.hexdigest().encode()


def republish(store: Tables, live: Tables
              ) -> tuple[list[tuple[str, str, bytes]], list[tuple[str, str]]]:
    """What a manager writes into gossip so that it holds exactly the Store: the entries to
    set (missing or different) and those to delete (no longer in the Store). ``live`` must
    be read *before* ``store``: an entry another manager announced after writing its row is
    then in ``store`` too, and is never deleted by mistake."""
    sets, deletes = [], []
    for table in TABLES:
        want, have = store.get(table, {}), live.get(table, {})
        sets += [(table, k, v) for k, v in sorted(want.items()) if have.get(k) != v]
        deletes += [(table, k) for k in sorted(have) if k not in want]
    return sets, deletes


class Kept:
    """The definitions one node keeps in force: the live tables plus what went with a dead
    owner and was not removed since."""

    def __init__(self, saved: Tables | None = None) -> None:
        self._kept: dict[str, dict[str, bytes]] = {
            t: dict((saved or {}).get(t, {})) for t in TABLES}

    def observe(self, live: Tables, marks: Iterable[bytes]) -> bool:
        """Take in the live tables and the live managers' marks; True if what is kept
        changed (to save it)."""
        before = self._kept
        if digest(live) in set(marks):
            self._kept = {t: dict(live.get(t, {})) for t in TABLES}
        else:
            self._kept = {t: {**before[t], **live.get(t, {})} for t in TABLES}
        return self._kept != before

    def removed(self, table: str, key: str) -> bool:
        """A live node deleted the entry: it is gone for good. True if it was kept."""
        rows = self._kept.get(table)
        return rows is not None and rows.pop(key, None) is not None

    def view(self, table: str, live: Mapping[str, bytes]) -> dict[str, bytes]:
        """The table in force: the live entries over the kept ones."""
        return {**self._kept.get(table, {}), **live}

    def saved(self) -> dict[str, dict[str, bytes]]:
        return {t: dict(rows) for t, rows in self._kept.items()}
