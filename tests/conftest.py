"""Shared fixtures: simulated hosts on the real kernel, each test with its own prefix.

Tests under tests/kernel, tests/cluster and tests/docker need root and real network
namespaces; a non-root developer sees them skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netfabric.lab.topology import Topology

_ROOT_DIRS = {"kernel": "kernel", "cluster": "cluster", "docker": "docker"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        parts = Path(str(item.fspath)).parts
        for folder, marker in _ROOT_DIRS.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, marker))
        needs_root = any(item.get_closest_marker(m) for m in _ROOT_DIRS.values())
        if needs_root and not is_root:
            item.add_marker(pytest.mark.skip(
                reason="needs root: builds real network namespaces (run ./scripts/test as root)"))


HostsFactory = Callable[..., Topology]


@pytest.fixture
def hosts() -> Iterator[HostsFactory]:
    """Factory fixture: ``hosts(3, mtu=1500)`` builds 3 simulated hosts (named netns, or
    machines with ``machines=True``), removed at teardown whatever the test's outcome."""
    made: list[Topology] = []

    def factory(n: int, *, mtu: int = 1500, machines: bool = False) -> Topology:
        topo = Topology.build(n, mtu=mtu, machines=machines)
        made.append(topo)
        return topo

    try:
        yield factory
    finally:
        for topo in made:
            topo.destroy()
