"""The state of every address of one subnet, as the manager sees it.

One state per address offset (address minus the network address):

- ``FREE``: usable, unused, not in a host's block;
- ``USED``: handed out by the manager itself;
- ``RESERVED``: network, broadcast or gateway address, or outside the ip-range;
- ``HOSTED``: free as far as the manager knows, but inside a block leased to a host (the
  host allocates there; the manager never does).

Two representations behind one interface. :class:`DenseMap` (IPv4) is one byte per address
in a ``bytearray``: the serial "next free after the cursor" is ``bytearray.find``, a memchr,
and a /8 costs 16 MB. :class:`SparseMap` (IPv6, where a /64 cannot be enumerated) keeps sets
of used offsets and owned blocks and steps past them.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FREE", "HOSTED", "RESERVED", "USED", "AddressMap", "DenseMap", "SparseMap"]

FREE, USED, RESERVED, HOSTED = 0, 1, 2, 3

_FREE_TO_HOSTED = bytes(HOSTED if i == FREE else i for i in range(256))
_HOSTED_TO_FREE = bytes(FREE if i == HOSTED else i for i in range(256))
_ONLY_USED = bytes(USED if i == USED else 0 for i in range(256))


class AddressMap(Protocol):
    """Per-offset states of one subnet, with blocks of ``1 << block_bits`` offsets."""

    def get(self, off: int) -> int: ...

    def put(self, off: int, state: int) -> None:
        """Set one offset to USED, FREE or HOSTED (the caller knows the block's owner)."""
        ...

    def next_free(self, after: int) -> int:
        """First FREE offset after ``after``, wrapping once; -1 when none."""
        ...

    def take_next(self, after: int) -> int:
        """:meth:`next_free` and mark it USED, in one call (the hot path)."""
        ...

    def give_back(self, off: int, state: int) -> bool:
        """If ``off`` is USED, set it to ``state`` (FREE or HOSTED) and return True."""
        ...

    def own(self, block: int) -> None:
        """Lease a block to a host: its FREE offsets become HOSTED."""
        ...

    def disown(self, block: int) -> None: ...

    def block_used(self, block: int) -> bytearray:
        """One byte per offset of the block: 1 where USED, else 0."""
        ...

    def used_in(self, block: int) -> list[int]:
        """USED offsets of one block, ascending."""
        ...

    def used_offsets(self) -> list[int]:
        """Every USED offset, ascending."""
        ...


class DenseMap:
    """One state byte per address of the subnet (IPv4)."""

    __slots__ = ("_bb", "_st")

    def __init__(self, size: int, block_bits: int, lo: int, hi: int,
                 reserved: tuple[int, ...]) -> None:
        st = bytearray(b"\x02") * size
        st[lo:hi + 1] = bytes(hi + 1 - lo)
        for off in reserved:
            st[off] = RESERVED
        self._st = st
        self._bb = block_bits

    def get(self, off: int) -> int:
        return self._st[off]

    def put(self, off: int, state: int) -> None:
        self._st[off] = state

    def next_free(self, after: int) -> int:
        st = self._st
        i = st.find(FREE, after + 1)
        if i < 0:
            i = st.find(FREE, 0, after + 1)
        return i

    def take_next(self, after: int) -> int:
        st = self._st
        i = st.find(FREE, after + 1)
        if i < 0:
            i = st.find(FREE, 0, after + 1)
            if i < 0:
                return -1
        st[i] = USED
        return i

    def give_back(self, off: int, state: int) -> bool:
        st = self._st
        if st[off] != USED:
            return False
        st[off] = state
        return True

    def own(self, block: int) -> None:
        a = block << self._bb
        b = a + (1 << self._bb)
        self._st[a:b] = self._st[a:b].translate(_FREE_TO_HOSTED)

    def disown(self, block: int) -> None:
        a = block << self._bb
        b = a + (1 << self._bb)
        self._st[a:b] = self._st[a:b].translate(_HOSTED_TO_FREE)

    def block_used(self, block: int) -> bytearray:
        a = block << self._bb
        return self._st[a:a + (1 << self._bb)].translate(_ONLY_USED)

    def used_in(self, block: int) -> list[int]:
        a = block << self._bb
        return self._scan(a, a + (1 << self._bb))

    def used_offsets(self) -> list[int]:
        return self._scan(0, len(self._st))

    def _scan(self, a: int, b: int) -> list[int]:
        st = self._st
        out = []
        i = st.find(USED, a, b)
        while i >= 0:
            out.append(i)
            i = st.find(USED, i + 1, b)
        return out


class SparseMap:
    """Sets of used offsets and owned blocks over a huge range (IPv6)."""

    __slots__ = ("_bb", "_hi", "_lo", "_owned", "_reserved", "_used")

    def __init__(self, size: int, block_bits: int, lo: int, hi: int,
                 reserved: tuple[int, ...]) -> None:
        self._bb = block_bits
        self._lo = lo
        self._hi = hi
        self._reserved = frozenset(reserved)
        self._used: set[int] = set()
        self._owned: set[int] = set()

    def get(self, off: int) -> int:
        if off in self._used:  # possibly outside the ip-range: asked for by name
            return USED
        if off < self._lo or off > self._hi or off in self._reserved:
            return RESERVED
        if (off >> self._bb) in self._owned:
            return HOSTED
        return FREE

    def put(self, off: int, state: int) -> None:
        if state == USED:
            self._used.add(off)
        else:
            self._used.discard(off)

    def next_free(self, after: int) -> int:
        lo, hi, bb = self._lo, self._hi, self._bb
        used, owned, reserved = self._used, self._owned, self._reserved
        c = after + 1
        budget = hi - lo + 2  # every step advances at least one offset
        while budget > 0:
            budget -= 1
            if c > hi or c < lo:
                c = lo
            blk = c >> bb
            if blk in owned:
                c = (blk + 1) << bb
                continue
            if c in used or c in reserved:
                c += 1
                continue
            return c
        return -1

    def take_next(self, after: int) -> int:
        off = self.next_free(after)
        if off >= 0:
            self._used.add(off)
        return off

    def give_back(self, off: int, state: int) -> bool:
        if off not in self._used:
            return False
        self._used.discard(off)
        return True

    def own(self, block: int) -> None:
        self._owned.add(block)

    def disown(self, block: int) -> None:
        self._owned.discard(block)

    def block_used(self, block: int) -> bytearray:
        a = block << self._bb
        out = bytearray(1 << self._bb)
        for off in self.used_in(block):
            out[off - a] = USED
        return out

    def used_in(self, block: int) -> list[int]:
        a = block << self._bb
        b = a + (1 << self._bb)
        if len(self._used) < (1 << self._bb):
            return sorted(u for u in self._used if a <= u < b)
        return [o for o in range(a, b) if o in self._used]

    def used_offsets(self) -> list[int]:
        return sorted(self._used)
