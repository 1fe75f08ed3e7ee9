"""``--filter KEY=VALUE`` as Docker's ``ls`` verbs read it: a pure predicate per listing.

Values of one key are alternatives (any may match); different keys must all match.
Unknown keys are refused with Docker's words, so a typo never lists everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from netfabric.api.types import ContainerInfo, NetworkInfo, NodeInfo
from netfabric.errors import InvalidArgument

__all__ = [
    "CONTAINER_KEYS",
    "NETWORK_KEYS",
    "NODE_KEYS",
    "Filters",
    "parse_filters",
    "select",
]

Filters = dict[str, list[str]]

PREDEFINED = frozenset({"bridge", "host", "none"})


def parse_filters(raw: Sequence[str], known: Mapping[str, Any]) -> Filters:
    """``["driver=overlay", "label=a=b"]`` -> ``{"driver": ["overlay"], "label": ["a=b"]}``."""
    out: Filters = {}
    for item in raw:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item!r}")
        if key not in known:
            raise InvalidArgument(f"invalid filter '{key}' (known: {', '.join(sorted(known))})")
        out.setdefault(key, []).append(value)
    return out


def _labels_match(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def _labels(obj: Any) -> dict[str, str]:
    return dict(getattr(obj, "labels", ()) or ())


def _net_scope(n: NetworkInfo, v: str) -> bool:
    return n.scope == v or (v == "global" and n.scope == "global")


NETWORK_KEYS: dict[str, Callable[[NetworkInfo, str], bool]] = {
    "driver": lambda n, v: n.driver == v,
    "id": lambda n, v: v in n.id,
    "name": lambda n, v: v in n.name,
    "label": lambda n, v: _labels_match(_labels(n), v),
    "scope": _net_scope,
    "type": lambda n, v: (n.name in PREDEFINED and n.scope == "local") == (v == "builtin"),
}


def _on_network(c: ContainerInfo, v: str) -> bool:
    return any(e.network == v or e.network_id.startswith(v) for e in c.networks)


CONTAINER_KEYS: dict[str, Callable[[ContainerInfo, str], bool]] = {
    "id": lambda c, v: c.id.startswith(v),
    "name": lambda c, v: v in c.name,
    "label": lambda c, v: _labels_match(_labels(c), v),
    "network": _on_network,
    "node": lambda c, v: c.node == v,
    "status": lambda c, v: v == "running",
}

NODE_KEYS: dict[str, Callable[[NodeInfo, str], bool]] = {
    "id": lambda n, v: n.id.startswith(v),
    "name": lambda n, v: v in n.hostname,
    "role": lambda n, v: str(n.role) == v,
    "membership": lambda n, v: v == "accepted",
    "label": lambda n, v: _labels_match(_labels(n), v),
}


def select(items: Sequence[Any], filters: Filters,
           keys: Mapping[str, Callable[[Any, str], bool]]) -> list[Any]:
    """The items every filter key matches (one of its values each)."""
    return [item for item in items
            if all(any(keys[k](item, v) for v in values) for k, values in filters.items())]
