"""A set with O(1) add, remove and uniform random choice (gossip target sampling)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

__all__ = ["RandomSet"]


class RandomSet:
    """Members in a list plus an index, so sampling never copies the whole set."""

    __slots__ = ("_index", "_items")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def add(self, item: str) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: str) -> None:
        i = self._index.pop(item, None)
        if i is None:
            return
        last = self._items.pop()
        if i < len(self._items):
            self._items[i] = last
            self._index[last] = i

    def sample(self, rng: random.Random, k: int,
               accept: Callable[[str], bool] | None = None) -> list[str]:
        """Up to ``k`` distinct items, uniformly, that pass ``accept``."""
        items = self._items
        n = len(items)
        if n == 0 or k <= 0:
            return []
        if n <= 2 * k + 2:
            pool = [x for x in items if accept is None or accept(x)]
            return rng.sample(pool, min(k, len(pool)))
        out: list[str] = []
        for _ in range(4 * k + 8):
            x = items[int(rng.random() * n)]
            if x not in out and (accept is None or accept(x)):
                out.append(x)
                if len(out) == k:
                    break
        return out
