"""A fixed-bucket latency histogram for the DNS server's answers (pure, no clock).

Each serving path (the loop, the UDP fast-path thread) keeps its own :class:`Latency`, so
no counter is written by two threads; :meth:`merged` adds them up for the metrics."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["BUCKETS", "Latency", "LatencySnapshot"]

BUCKETS: tuple[float, ...] = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                              0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds in seconds (a cache hit is tens of microseconds, a forward milliseconds)."""


@dataclass(frozen=True, slots=True)
class LatencySnapshot:
    """Counts per bucket (not cumulative; the last one is above every bound), and the sum."""

    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` pairs, ending with ``inf``: Prometheus'."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(slots=True)
class Latency:
    """Observations of one serving path."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float, n: int = 1) -> None:
        """``n`` answers that each took ``seconds`` (a batch answered together)."""
        if n <= 0:
            return
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += n
        self.total += seconds * n

    def snapshot(self) -> LatencySnapshot:
        return LatencySnapshot(tuple(self.counts), self.total)

    @staticmethod
    def merged(parts: list[LatencySnapshot]) -> LatencySnapshot:
        counts = [0] * (len(BUCKETS) + 1)
        total = 0.0
        for p in parts:
            for i, n in enumerate(p.counts):
                counts[i] += n
            total += p.total
        return LatencySnapshot(tuple(counts), total)
