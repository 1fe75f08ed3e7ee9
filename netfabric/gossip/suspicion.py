"""One suspicion timer with Lifeguard's confirmations (memberlist's suspicion.go, sans-IO).

A lone suspicion waits ``max_timeout``; each *independent* confirmation (another member
suspecting the same incarnation) shrinks the timeout logarithmically towards
``min_timeout``, reached at ``k`` confirmations::

    timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))

So a truly dead node, which everyone suspects, is declared quickly, while a node that one
member with a lossy link suspects has the most time to refute.
"""

from __future__ import annotations

import math

__all__ = ["Suspicion"]


class Suspicion:
    """Timer state for one suspected member; the caller checks :meth:`deadline`."""

    __slots__ = ("_confirmers", "k", "max_timeout", "min_timeout", "resays", "start",
                 "suspector")

    def __init__(self, *, suspector: str, k: int, min_timeout: float, max_timeout: float,
                 start: float) -> None:
        self.k = max(0, k)
        self.min_timeout = min_timeout
        self.max_timeout = max_timeout if self.k > 0 else min_timeout
        self.start = start
        self.suspector = suspector
        self.resays = 0
        """How many times this node has re-said the suspicion (see :meth:`next_resay`)."""
        self._confirmers = {suspector}

    @property
    def confirmations(self) -> int:
        """Independent suspicions beyond the first."""
        return len(self._confirmers) - 1

    def timeout(self) -> float:
        c = self.confirmations
        if self.k == 0 or c >= self.k:
            return self.min_timeout
        frac = math.log(c + 1) / math.log(self.k + 1)
        return max(self.min_timeout, self.max_timeout - (self.max_timeout - self.min_timeout)
                   * frac)

    def deadline(self) -> float:
        return self.start + self.timeout()

    def next_resay(self) -> float:
        """When to gossip the suspicion again: every ``min_timeout`` while it lasts, so a
        node that missed the refutation hears the newer incarnation from its peers."""
        return self.start + (self.resays + 1) * self.min_timeout

    def confirm(self, suspector: str) -> bool:
        """Record a suspicion from ``suspector``; True if it was new (and counted)."""
        if suspector in self._confirmers or self.confirmations >= self.k:
            return False
        self._confirmers.add(suspector)
        return True
