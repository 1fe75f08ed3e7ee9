"""Leader and reachability of managers from the leases they hold (pure)."""

from __future__ import annotations

from netfabric.agent.leadership import (
    LEADER_LEASE,
    ManagerStatus,
    liveness_lease,
    manager_status,
    orphans,
)


def test_the_holder_of_the_leader_lease_is_the_leader() -> None:
    leases = {LEADER_LEASE: "a", liveness_lease("a"): "a", liveness_lease("b"): "b"}
    assert manager_status("a", leases=leases, gossip_alive=True) is ManagerStatus.LEADER
    assert manager_status("b", leases=leases, gossip_alive=True) is ManagerStatus.REACHABLE
    assert manager_status("b", leases=leases, gossip_alive=None) is ManagerStatus.REACHABLE


def test_a_manager_without_its_liveness_lease_or_dead_to_gossip_is_unreachable() -> None:
    leases = {LEADER_LEASE: "a", liveness_lease("a"): "a"}
    assert manager_status("b", leases=leases, gossip_alive=True) is ManagerStatus.UNREACHABLE
    # killed: gossip saw it die before its leases expired
    assert manager_status("a", leases=leases, gossip_alive=False) is \
        ManagerStatus.UNREACHABLE
    assert manager_status("a", leases={}, gossip_alive=True) is ManagerStatus.UNREACHABLE


def test_orphaned_block_owners_are_reclaimed_on_the_second_pass_only() -> None:
    now, seen = orphans({"w1", "gone", ""}, {"w1", "m1"}, set())
    assert (now, seen) == (set(), {"gone"})
    now, seen = orphans({"w1", "gone", "new"}, {"w1", "m1"}, seen)
    assert (now, seen) == ({"gone"}, {"gone", "new"})
    now, seen = orphans({"w1", "new"}, {"w1", "m1", "new"}, seen)   # it joined meanwhile
    assert (now, seen) == (set(), set())
