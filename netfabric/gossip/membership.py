"""Member states and incarnation rules (SWIM + memberlist), and nothing else.

States: alive, suspect, dead, left. Rules, for a message about member ``m``:

- ``alive(inc)``: a new member joins; a known one moves to alive only with a higher
  incarnation (so a dead member comes back only by refuting with a higher incarnation);
- ``suspect(inc)``: an alive member with ``inc >= m.inc`` becomes suspect; for a suspect
  one it is a confirmation;
- ``dead(inc)``: any live member with ``inc >= m.inc`` becomes dead, or left when the
  sender is the member itself;
- about ourselves: suspect or dead (not from us) with ``inc >= ours`` is *refuted*: we
  bump our incarnation past it and broadcast alive.

The caller (the core) turns each :class:`Change` into broadcasts, timers and events.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from netfabric.gossip.messages import Addr, MemberState
from netfabric.gossip.sampling import RandomSet

__all__ = ["Change", "Member", "Membership"]


class Change(enum.Enum):
    NONE = "none"
    JOINED = "joined"          # a new member, alive
    REVIVED = "revived"        # dead or left -> alive with a higher incarnation
    RECOVERED = "recovered"    # suspect -> alive (refuted)
    UPDATED = "updated"        # alive, newer incarnation (e.g. new address)
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"    # another suspicion of a suspect member
    DIED = "died"
    LEFT = "left"
    REFUTE = "refute"          # about us: the caller must refute


@dataclass(slots=True)
class Member:
    node: str
    addr: Addr
    incarnation: int
    state: MemberState
    since: float

    @property
    def live(self) -> bool:
        return self.state <= MemberState.SUSPECT


class Membership:
    """The member table of one node, itself included."""

    __slots__ = ("_dead", "addr", "leaving", "live", "me", "members")

    def __init__(self, me: str, addr: Addr, *, incarnation: int, now: float) -> None:
        self.me = me
        self.addr = addr
        self.leaving = False
        self.members: dict[str, Member] = {
            me: Member(me, addr, incarnation, MemberState.ALIVE, now)}
        self.live = RandomSet()
        """Live (alive or suspect) members other than us."""
        self._dead = RandomSet()
        """Dead (not left) members, candidates for reconnect."""

    @property
    def local(self) -> Member:
        return self.members[self.me]

    @property
    def incarnation(self) -> int:
        return self.members[self.me].incarnation

    def size(self) -> int:
        """N for the formulas: live members including us."""
        return len(self.live) + 1

    def get(self, node: str) -> Member | None:
        return self.members.get(node)

    def is_live(self, node: str) -> bool:
        return node in self.live

    def dead_members(self) -> RandomSet:
        return self._dead

    def _set(self, m: Member, state: MemberState, now: float) -> None:
        m.state = state
        m.since = now
        if m.node == self.me:
            return
        if state <= MemberState.SUSPECT:
            self.live.add(m.node)
            self._dead.discard(m.node)
        else:
            self.live.discard(m.node)
            if state == MemberState.DEAD:
                self._dead.add(m.node)
            else:
                self._dead.discard(m.node)

    def bulk_alive(self, roster: Iterable[tuple[str, Addr, int]], now: float) -> None:
        """Add members known alive, without the per-message rules (a warm start)."""
        members, live = self.members, self.live
        for node, addr, inc in roster:
            if node != self.me and node not in members:
                members[node] = Member(node, addr, inc, MemberState.ALIVE, now)
                live.add(node)

    def apply_alive(self, node: str, incarnation: int, addr: Addr, now: float) -> Change:
        if node == self.me:
            return Change.REFUTE if incarnation > self.incarnation else Change.NONE
        m = self.members.get(node)
        if m is None:
            m = Member(node, addr, incarnation, MemberState.ALIVE, now)
            self.members[node] = m
            self._set(m, MemberState.ALIVE, now)
            return Change.JOINED
        if incarnation <= m.incarnation:
            return Change.NONE
        old = m.state
        m.incarnation = incarnation
        m.addr = addr
        self._set(m, MemberState.ALIVE, now)
        if old >= MemberState.DEAD:
            return Change.REVIVED
        return Change.RECOVERED if old == MemberState.SUSPECT else Change.UPDATED

    def apply_suspect(self, node: str, incarnation: int, now: float) -> Change:
        if node == self.me:
            if self.leaving:
                return Change.NONE
            return Change.REFUTE if incarnation >= self.incarnation else Change.NONE
        m = self.members.get(node)
        if m is None or not m.live or incarnation < m.incarnation:
            return Change.NONE
        if m.state == MemberState.SUSPECT and incarnation == m.incarnation:
            return Change.CONFIRMED
        # a suspicion of a newer incarnation is a new suspicion (its refutation of the old
        # one may never reach us: newer broadcasts about a member replace older ones)
        m.incarnation = incarnation
        self._set(m, MemberState.SUSPECT, now)
        return Change.SUSPECTED

    def apply_dead(self, node: str, incarnation: int, sender: str, now: float) -> Change:
        if node == self.me:
            if self.leaving or sender == self.me:
                return Change.NONE
            return Change.REFUTE if incarnation >= self.incarnation else Change.NONE
        m = self.members.get(node)
        if m is None or incarnation < m.incarnation:
            return Change.NONE
        if not m.live:
            if m.state == MemberState.DEAD and sender == node and incarnation >= m.incarnation:
                self._set(m, MemberState.LEFT, now)  # a leave overrides a death
            return Change.NONE
        m.incarnation = incarnation
        if sender == node:
            self._set(m, MemberState.LEFT, now)
            return Change.LEFT
        self._set(m, MemberState.DEAD, now)
        return Change.DIED

    def refute(self, incarnation: int) -> int:
        """Bump our incarnation past ``incarnation``; the new one is returned."""
        m = self.local
        m.incarnation = max(m.incarnation, incarnation) + 1
        return m.incarnation

    def leave(self, now: float) -> int:
        """Mark ourselves left; the incarnation to announce is returned."""
        self.leaving = True
        self.local.state = MemberState.LEFT
        self.local.since = now
        return self.incarnation

    def expire(self, now: float, keep: float) -> list[str]:
        """Forget members dead or left for longer than ``keep`` seconds."""
        gone = [m.node for m in self.members.values()
                if not m.live and m.node != self.me and now - m.since > keep]
        for node in gone:
            del self.members[node]
            self._dead.discard(node)
        return gone

    def at_address(self, addr: Addr) -> list[Member]:
        """Members (other than us) believed to be at ``addr``."""
        return [m for m in self.members.values() if m.addr == addr and m.node != self.me]
