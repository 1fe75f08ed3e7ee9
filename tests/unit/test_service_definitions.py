"""Definitions that outlive their manager (pure parts): what a manager republishes, what a
node keeps in force, and when a mark ends the keeping."""

from __future__ import annotations

from netfabric.services.definitions import Kept, digest, republish

WEB = {"services": {"web": b"w1"}, "runspecs": {"web": b"r1"}, "tasks": {"t1": b"a"}}


def test_republish_sets_what_the_store_has_and_withdraws_the_rest() -> None:
    live = {"services": {"web": b"old", "gone": b"g"}, "tasks": {"t1": b"a"}}
    sets, deletes = republish(WEB, live)
    assert sets == [("services", "web", b"w1"), ("runspecs", "web", b"r1")]
    assert deletes == [("services", "gone")]
    assert republish(WEB, WEB) == ([], [])


def test_digest_is_canonical_and_sees_every_byte() -> None:
    assert digest(WEB) == digest({k: dict(reversed(v.items())) for k, v in WEB.items()})
    assert digest(WEB) != digest({**WEB, "tasks": {"t1": b"b"}})
    assert digest(WEB) != digest({**WEB, "tasks": {"t": b"1a"}})   # no ambiguous joins
    assert digest({}) == digest({"services": {}})


def test_a_dead_managers_definitions_stay_in_force_until_a_mark_matches() -> None:
    kept = Kept()
    assert kept.observe(WEB, marks=[])
    # The manager dies: gossip drops its entries; the node keeps them.
    empty: dict[str, dict[str, bytes]] = {}
    assert not kept.observe(empty, marks=[])
    assert kept.view("services", {}) == {"web": b"w1"}
    assert kept.view("tasks", {}) == {"t1": b"a"}
    # A restarted manager announces part of its Store: newer values win, nothing dropped.
    partial = {"services": {"web": b"w2"}}
    kept.observe(partial, marks=[digest({**WEB, "services": {"web": b"w2"}})])
    assert kept.view("tasks", {}) == {"t1": b"a"}
    # Its mark now matches the live tables: they are the whole truth (t1 went meanwhile).
    store = {"services": {"web": b"w2"}, "runspecs": {"web": b"r1"}}
    assert kept.observe(store, marks=[digest(store)])
    assert kept.view("tasks", {}) == {}
    assert kept.saved() == {"services": {"web": b"w2"}, "runspecs": {"web": b"r1"},
                            "tasks": {}}


def test_a_deletion_by_a_live_node_ends_the_keeping_at_once() -> None:
    kept = Kept(WEB)          # as loaded from the state file after a restart
    assert kept.view("services", {}) == {"web": b"w1"}
    assert kept.removed("services", "web")
    assert not kept.removed("services", "web")
    assert not kept.removed("backends", "x")
    assert kept.view("services", {}) == {}
    assert kept.view("services", {"db": b"d"}) == {"db": b"d"}
