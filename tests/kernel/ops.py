"""What a driver's reconcile did, op by op: tests pin the exact repairs, not a count (a count
``>= N`` also passes when reconcile tears down and rebuilds everything)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from netfabric.dataplane.resources import Create, Delete, Op, Update


class _Driver(Protocol):
    kernel: Any

    def reconcile(self) -> int: ...


def reconcile_ops(driver: _Driver) -> list[tuple[Any, ...]]:
    """Run ``driver.reconcile()`` and return its ops as ``(verb, *resource key)``, sorted:
    ``("create", "link", netns, name)``, ``("update", "sysctl", netns, path)``..."""
    kernel = driver.kernel
    seen: list[Op] = []
    real: Callable[..., int] = kernel.apply

    def spy(ops: Any) -> int:
        ops = list(ops)
        seen.extend(ops)
        return real(ops)

    kernel.apply = spy
    try:
        ran = driver.reconcile()
    finally:
        del kernel.apply
    assert ran == len(seen), (ran, seen)
    out: list[tuple[Any, ...]] = []
    for op in seen:
        if isinstance(op, Create):
            out.append(("create", *op.new.key))
        elif isinstance(op, Update):
            out.append(("update", *op.new.key))
        elif isinstance(op, Delete):
            out.append(("delete", *op.old.key))
    return sorted(out, key=repr)
