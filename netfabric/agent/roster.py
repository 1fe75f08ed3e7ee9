"""Which managers a node knows, and in which order it asks them (pure: no I/O).

A node keeps the cluster's manager addresses (``HOST:PORT`` of their cluster endpoints) in
its state (:attr:`~netfabric.agent.state.ClusterRecord.managers`), so that it restarts
knowing them. It learns of changes two ways:

- **announcements** in the gossip table :data:`MANAGERS_TABLE` (each manager puts its own
  address under its node id): a worker hears of a manager that joins or is promoted at
  once, even if it never calls a manager meanwhile. Gossip cannot say that a manager is
  gone for good (a dead node's entries vanish too), so announcements only ever *add*;
- **every manager's answer** carries the whole current list (the header
  :data:`MANAGERS_HEADER`, from the manager's own record, which the Store's node registry
  keeps current), so a manager that was demoted or left is dropped at the next answer.

The order: the manager that answered last first (it is likely still up, and its caches are
warm), the others as listed, the ones gossip says are dead last (a restarted manager may be
back before gossip knows it, so they are still tried).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

__all__ = [
    "MANAGERS_HEADER",
    "MANAGERS_TABLE",
    "ManagerRoster",
    "merge_managers",
    "order_managers",
    "parse_managers",
]

MANAGERS_TABLE = "managers"
"""The cluster-wide gossip table where each manager announces ``node id -> HOST:PORT``."""
MANAGERS_HEADER = "x-netfabric-managers"
"""The response header of a manager's cluster answers: every manager, comma-separated."""


def _host(addr: str) -> str:
    host, sep, _ = addr.rpartition(":")
    return host if sep else addr


def order_managers(known: Sequence[str], *, last: str | None,
                   dead_hosts: Collection[str]) -> list[str]:
    """``known`` in the order to try them: ``last`` (the one that answered last) first, the
    others as listed, those on a host in ``dead_hosts`` last; no address twice."""
    unique = list(dict.fromkeys(known))
    alive = [a for a in unique if _host(a) not in dead_hosts]
    dead = [a for a in unique if _host(a) in dead_hosts]
    if last in alive:
        alive.remove(last)
        alive.insert(0, last)
    return alive + dead


def merge_managers(known: Sequence[str], announced: Iterable[str]) -> list[str]:
    """``known`` plus the announced addresses it lacks (appended in sorted order)."""
    have = set(known)
    return list(known) + sorted({a for a in announced if a and a not in have})


def parse_managers(header: str | None) -> list[str] | None:
    """The list a manager's answer carries, or None when it carries none or a malformed
    one (then the node keeps what it knows)."""
    if not header:
        return None
    out = []
    for part in header.split(","):
        addr = part.strip()
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            return None
        out.append(addr)
    return list(dict.fromkeys(out)) or None


class ManagerRoster:
    """What a node remembers between calls: the manager that answered last."""

    def __init__(self) -> None:
        self.last: str | None = None

    def order(self, known: Sequence[str], dead_hosts: Collection[str]) -> list[str]:
        return order_managers(known, last=self.last, dead_hosts=dead_hosts)

    def answered(self, addr: str) -> None:
        self.last = addr
