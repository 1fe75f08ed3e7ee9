"""Replicated tables: LWW on Lamport time, tombstones, scoping, leave-at-L, owner death."""

from __future__ import annotations

from netfabric.gossip.events import EntryCreated, EntryDeleted, EntryUpdated
from netfabric.gossip.messages import Attachment, EntryEvent, EntryState, NetworkEvent
from netfabric.gossip.tables import Tables

LIVE, DELETED = EntryState.LIVE, EntryState.DELETED


def entry(key: str, ltime: int, *, owner: str = "b", value: bytes = b"v",
          state: EntryState = LIVE, network: str = "n1", inc: int = 0) -> EntryEvent:
    return EntryEvent("t", network, key, value, owner, inc, ltime, state)


def attached(me: str = "a") -> Tables:
    t = Tables(me, reap_interval=100.0)
    t.join_network("n1", 0)
    return t


def test_last_writer_wins_and_events() -> None:
    t = attached()
    assert t.apply_entry(entry("k", 5), 0) == ("new", EntryCreated("t", "n1", "k", b"v", "b"))
    assert t.apply_entry(entry("k", 4, value=b"old"), 0)[0] == "stale"
    res = t.apply_entry(entry("k", 6, value=b"w"), 0)
    assert res == ("new", EntryUpdated("t", "n1", "k", b"w", "b"))
    res = t.apply_entry(entry("k", 7, state=DELETED), 0)
    assert res == ("new", EntryDeleted("t", "n1", "k", b"w", "b"))
    assert t.entries("t", "n1") == {}
    assert t.clock >= 7


def test_tombstone_never_shadows_a_local_recreation() -> None:
    t = attached()
    t.apply_entry(entry("k", 50, state=DELETED), 0)  # someone's tombstone, far ahead
    ev, event = t.write("t", "n1", "k", b"again", state=LIVE, incarnation=0, now=1)
    assert ev.ltime > 50
    assert isinstance(event, EntryCreated)
    assert t.entries("t", "n1") == {"k": b"again"}


def test_tombstones_are_reaped() -> None:
    t = attached()
    t.apply_entry(entry("k", 5, state=DELETED), now=10)
    assert t.entry("t", "n1", "k") is not None
    t.reap(109)
    assert t.entry("t", "n1", "k") is not None
    t.reap(111)
    assert t.entry("t", "n1", "k") is None


def test_entries_are_scoped_to_joined_networks() -> None:
    t = attached()
    assert t.apply_entry(entry("k", 5, network="other"), 0) == ("unscoped", None)
    assert t.entries("t", "other") == {}


def test_a_delayed_leave_deletes_only_older_entries() -> None:
    t = attached()
    t.apply_network(NetworkEvent("b", "n1", 3, Attachment.JOINED), 0)
    t.apply_entry(entry("old", 4), 0)
    t.apply_entry(entry("new", 8), 0)  # re-created after b rejoined
    result, events = t.apply_network(NetworkEvent("b", "n1", 6, Attachment.LEFT), 0)
    assert result == "new"
    assert events == [EntryDeleted("t", "n1", "old", b"v", "b")]
    assert t.entries("t", "n1") == {"new": b"v"}
    # and an entry written before the leave, arriving late, is refused
    assert t.apply_entry(entry("late", 5), 0)[0] == "stale"
    # but one written after it is accepted, whatever the attachment record says
    assert t.apply_entry(entry("later", 9), 0)[0] == "new"


def test_owner_removal_leaves_no_tombstone() -> None:
    t = attached()
    t.apply_entry(entry("k", 5), 0)
    assert t.remove_owner("b") == [EntryDeleted("t", "n1", "k", b"v", "b")]
    assert t.entry("t", "n1", "k") is None
    # the owner comes back: the same write is accepted again
    assert t.apply_entry(entry("k", 5, inc=1), 0)[0] == "new"


def test_leaving_a_network_drops_its_entries() -> None:
    t = attached()
    t.apply_entry(entry("k", 5), 0)
    ev, events = t.leave_network("n1", 1)
    assert ev.attachment is Attachment.LEFT and ev.ltime > 5
    assert events == [EntryDeleted("t", "n1", "k", b"v", "b")]
    assert not t.attached("n1")


def test_a_newer_record_in_our_name_is_reasserted() -> None:
    t = attached()
    assert t.apply_network(NetworkEvent("a", "n1", 99, Attachment.LEFT), 0)[0] == "reassert"
    assert t.apply_entry(entry("k", 99, owner="a"), 0)[0] == "reassert"
