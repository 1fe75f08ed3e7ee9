"""Who leads the managers and which are reachable, from the leases they hold. Pure.

On a cluster whose managers share etcd, each manager holds two keys under TTL leases
(:class:`~netfabric.agent.ports.ClusterRecords`): its liveness (``manager-<id>``, kept
while it runs and reaches etcd's quorum) and, for one of them, ``leader`` (the first to
take it keeps it while it refreshes it; when it stops, the lease expires and another
manager takes it). Docker's MANAGER STATUS follows: the leader is ``Leader``, a manager
holding its liveness lease and not declared dead by gossip is ``Reachable``, any other
``Unreachable``. Jobs that need one actor run on the leader only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

__all__ = [
    "LEADER_LEASE",
    "LEASE_TTL",
    "ManagerStatus",
    "liveness_lease",
    "manager_status",
    "orphans",
]

LEADER_LEASE = "leader"
LEASE_TTL = 3
"""Seconds a lease outlives its holder's last refresh: how soon another manager takes over
from a leader killed with -9 (refreshes go every third of it)."""


class ManagerStatus(StrEnum):
    LEADER = "Leader"
    REACHABLE = "Reachable"
    UNREACHABLE = "Unreachable"


def liveness_lease(node_id: str) -> str:
    """The lease a manager holds while it runs and reaches the store."""
    return f"manager-{node_id}"


def manager_status(node_id: str, *, leases: Mapping[str, str],
                   gossip_alive: bool | None) -> ManagerStatus:
    """One manager's status from the held leases (name -> holder's node id) and gossip's
    view of it (None: gossip does not know it)."""
    if gossip_alive is False or liveness_lease(node_id) not in leases:
        return ManagerStatus.UNREACHABLE
    if leases.get(LEADER_LEASE) == node_id:
        return ManagerStatus.LEADER
    return ManagerStatus.REACHABLE


def orphans(owners: Iterable[str], registry: Iterable[str], seen_before: set[str]
            ) -> tuple[set[str], set[str]]:
    """Hosts holding address blocks that are not in the node registry: ``(reclaim now,
    seen now)``. A host is reclaimed only when the previous pass saw it orphaned too, so a
    node that is joining through another manager (registry row not yet seen here) keeps
    its first block."""
    known = set(registry)
    seen = {o for o in owners if o and o not in known}
    return seen & seen_before, seen
