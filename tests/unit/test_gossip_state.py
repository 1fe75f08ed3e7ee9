"""The small state machines: broadcast queue, suspicion timer, membership rules, config."""

from __future__ import annotations

import math

import pytest

from netfabric.errors import InvalidArgument
from netfabric.gossip.broadcast import BroadcastQueue, Origin
from netfabric.gossip.config import (
    GossipConfig,
    push_pull_scale,
    retransmit_limit,
    suspicion_timeouts,
)
from netfabric.gossip.membership import Change, Membership
from netfabric.gossip.messages import MemberState
from netfabric.gossip.suspicion import Suspicion

A = ("198.51.100.1", 7946)
B = ("198.51.100.2", 7946)


# -- broadcast queue ------------------------------------------------------------------------
def test_newer_broadcast_invalidates_older_one() -> None:
    q = BroadcastQueue()
    q.queue("m:a", b"old", origin=Origin.RELAYED)
    q.queue("m:a", b"new", origin=Origin.RELAYED)
    assert q.take(1000, 3) == [b"new"]
    assert len(q) == 1


def test_transmit_limit_retires_broadcasts() -> None:
    q = BroadcastQueue()
    q.queue("k", b"x", origin=Origin.OWN)
    assert [q.take(100, 3) for _ in range(4)] == [[b"x"], [b"x"], [b"x"], []]
    assert len(q) == 0


def test_own_broadcasts_are_never_starved_by_relayed_ones() -> None:
    q = BroadcastQueue()
    for i in range(50):
        q.queue(("relay", i), b"r" * 20, origin=Origin.RELAYED, ltime=i)
    q.queue("mine", b"m" * 20, origin=Origin.OWN, ltime=1000)
    first = q.take(25, 10)  # room for one: ours goes first despite newer ltime
    assert first == [b"m" * 20]


def test_relayed_broadcasts_go_in_lamport_order() -> None:
    q = BroadcastQueue()
    for lt in (5, 3, 9, 1):
        q.queue(("e", lt), bytes([lt]) * 10, origin=Origin.RELAYED, ltime=lt)
    assert q.take(25, 10) == [bytes([1]) * 10, bytes([3]) * 10]
    # fewest transmissions first: the two not yet sent, oldest first
    assert q.take(25, 10) == [bytes([5]) * 10, bytes([9]) * 10]


def test_budget_skips_large_items_and_fits_small_ones() -> None:
    q = BroadcastQueue()
    q.queue("big", b"B" * 500, origin=Origin.RELAYED, ltime=1)
    q.queue("small", b"s" * 10, origin=Origin.RELAYED, ltime=2)
    assert q.take(100, 5) == [b"s" * 10]


# -- suspicion ------------------------------------------------------------------------------
def test_suspicion_shrinks_with_independent_confirmations() -> None:
    s = Suspicion(suspector="a", k=3, min_timeout=2.0, max_timeout=12.0, start=100.0)
    assert s.deadline() == 112.0
    assert s.confirm("b")
    t1 = s.timeout()
    assert not s.confirm("b")  # the same member again is not independent
    assert s.timeout() == t1
    assert 2.0 < t1 < 12.0
    assert math.isclose(t1, 12 - 10 * math.log(2) / math.log(4))
    assert s.confirm("c") and s.confirm("d")
    assert s.timeout() == 2.0
    assert not s.confirm("e")  # capped at k


def test_suspicion_without_confirmations_needed_uses_minimum() -> None:
    s = Suspicion(suspector="a", k=0, min_timeout=2.0, max_timeout=12.0, start=0.0)
    assert s.deadline() == 2.0


# -- membership -----------------------------------------------------------------------------
def test_member_lifecycle_and_incarnation_rules() -> None:
    m = Membership("me", A, incarnation=0, now=0)
    assert m.apply_alive("b", 1, B, 0) is Change.JOINED
    assert m.apply_alive("b", 1, B, 0) is Change.NONE
    assert m.apply_suspect("b", 0, 1) is Change.NONE          # older incarnation
    assert m.apply_suspect("b", 1, 1) is Change.SUSPECTED
    assert m.apply_suspect("b", 1, 1) is Change.CONFIRMED
    assert m.apply_suspect("b", 2, 1) is Change.SUSPECTED     # newer inc: a new suspicion
    assert m.apply_alive("b", 2, B, 2) is Change.NONE
    assert m.apply_alive("b", 3, B, 2) is Change.RECOVERED
    assert m.apply_suspect("b", 3, 1) is Change.SUSPECTED
    assert m.apply_alive("b", 3, B, 2) is Change.NONE          # same inc cannot refute
    assert m.apply_alive("b", 4, B, 2) is Change.RECOVERED
    assert m.apply_dead("b", 4, "me", 3) is Change.DIED
    assert not m.is_live("b") and "b" in m.dead_members()
    assert m.apply_alive("b", 4, B, 4) is Change.NONE          # dead needs a higher inc
    assert m.apply_alive("b", 5, B, 4) is Change.REVIVED
    assert m.apply_dead("b", 5, "b", 5) is Change.LEFT
    assert m.get("b").state is MemberState.LEFT  # type: ignore[union-attr]
    assert "b" not in m.dead_members()


def test_messages_about_us_are_refuted() -> None:
    m = Membership("me", A, incarnation=5, now=0)
    assert m.apply_suspect("me", 4, 0) is Change.NONE
    assert m.apply_suspect("me", 5, 0) is Change.REFUTE
    assert m.apply_dead("me", 5, "x", 0) is Change.REFUTE
    assert m.refute(5) == 6
    assert m.apply_dead("me", 5, "x", 0) is Change.NONE
    m.leave(1)
    assert m.apply_dead("me", 9, "x", 0) is Change.NONE        # leaving: no refutation


def test_dead_members_expire() -> None:
    m = Membership("me", A, incarnation=0, now=0)
    m.apply_alive("b", 0, B, 0)
    m.apply_dead("b", 0, "me", 10)
    assert m.expire(20, keep=30) == []
    assert m.expire(41, keep=30) == ["b"]
    assert m.get("b") is None


# -- config ---------------------------------------------------------------------------------
def test_profiles_validate_and_formulas() -> None:
    for cfg in (GossipConfig.lan(), GossipConfig.local(), GossipConfig.wan()):
        cfg.validate()
    assert retransmit_limit(4, 1000) == 16
    assert retransmit_limit(4, 9) == 4
    assert push_pull_scale(32) == 1 and push_pull_scale(1000) == 6
    lo, hi = suspicion_timeouts(GossipConfig.lan(), 1000)
    assert math.isclose(lo, 1.5 * 3 * 0.5) and math.isclose(hi, 10 * lo)
    with pytest.raises(InvalidArgument):
        GossipConfig.lan().with_(probe_timeout=2.0)
    with pytest.raises(InvalidArgument):
        GossipConfig.lan().with_(no_such_field=1)
