"""Pure reconcile: ``diff(desired, observed) -> ops``.

The drivers say what should exist; :meth:`Kernel.observe` says what does; this module says
what to do, in an order the kernel accepts: deletions first (deepest first), then creations
and updates (outermost first). It never touches the kernel, so it is unit tested alone, and
running it on an observed state equal to the desired one yields no op at all.
"""

from __future__ import annotations

from collections.abc import Iterable

from netfabric.dataplane.resources import (
    Create,
    Delete,
    Key,
    Netns,
    Op,
    Resource,
    Update,
    Veth,
    Vxlan,
)

__all__ = ["diff", "index"]


def index(resources: Iterable[Resource]) -> dict[Key, Resource]:
    """Resources by key; the last one wins on a duplicate key."""
    return {r.key: r for r in resources}


def _inside(resource: Resource, netns: set[str]) -> bool:
    """Whether deleting one of ``netns`` already removes ``resource``.

    Links that reach outside are the exception, deleted explicitly first, because a netns
    dies asynchronously: a vxlan would hold its VNI on the underlay socket for a while, and
    a veth's inner end would linger in its sandbox.
    """
    if isinstance(resource, Netns | Vxlan | Veth):
        return False
    return resource.netns is not None and resource.netns in netns


def diff(desired: Iterable[Resource], observed: Iterable[Resource]) -> tuple[Op, ...]:
    """The ops that turn ``observed`` into ``desired``, ordered for the kernel."""
    want = index(desired)
    have = index(observed)
    doomed_netns = {r.name for k, r in have.items() if isinstance(r, Netns) and k not in want}
    deletes: list[Delete] = []
    for key, old in have.items():
        if key not in want and not _inside(old, doomed_netns):
            deletes.append(Delete(old))
    changes: list[Create | Update] = []
    for key, new in want.items():
        cur = have.get(key)
        if cur is None:
            changes.append(Create(new))
        elif cur != new:
            changes.append(Update(cur, new))
    deletes.sort(key=lambda op: -op.old.phase)
    changes.sort(key=lambda op: op.new.phase)
    return (*deletes, *changes)

