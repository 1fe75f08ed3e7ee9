"""The subnets held in one address space: sorted, non-overlapping intervals of ints.

Overlap checks are two ``bisect`` probes. Finding the next free subnet in a pool is first
fit from a hint (every candidate below it is known taken), so carving all 65,536 /24s of
10.0.0.0/8 is linear, not quadratic.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["SpaceIndex"]


class SpaceIndex:
    """Intervals ``[start, end)`` of one (space, family), each held by one network."""

    __slots__ = ("_ends", "_owners", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._owners: list[str] = []

    def __len__(self) -> int:
        return len(self._starts)

    def conflict(self, start: int, end: int) -> tuple[int, int, str] | None:
        """One held interval overlapping ``[start, end)``, as (start, end, owner), or None."""
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return self._starts[i], self._ends[i], self._owners[i]
        i += 1
        if i < len(self._starts) and self._starts[i] < end:
            return self._starts[i], self._ends[i], self._owners[i]
        return None

    def add(self, start: int, end: int, owner: str) -> None:
        """Record an interval; the caller has checked :meth:`conflict`."""
        i = bisect_right(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._owners.insert(i, owner)

    def remove(self, start: int) -> None:
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._starts[i] == start:
            del self._starts[i], self._ends[i], self._owners[i]

    def first_free(self, base: int, limit: int, step: int, hint: int) -> int | None:
        """Lowest aligned ``[c, c+step)`` inside ``[max(base, hint), limit)`` that overlaps
        nothing held, or None. ``step`` is a power of two and ``base`` is aligned to it."""
        starts, ends = self._starts, self._ends
        c = max(base, hint)
        n = len(starts)
        while c + step <= limit:
            i = bisect_right(starts, c) - 1
            if i >= 0 and ends[i] > c:
                c = base + -(-(ends[i] - base) // step) * step
                continue
            i += 1
            if i < n and starts[i] < c + step:
                c = base + -(-(ends[i] - base) // step) * step
                continue
            return c
        return None

    def owners(self) -> list[tuple[int, int, str]]:
        return list(zip(self._starts, self._ends, self._owners, strict=True))
