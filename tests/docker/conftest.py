"""Fixtures for real-dockerd tests: dockerds inside simulated hosts, always stopped."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netfabric.lab.dockerd import Dockerd, busybox_rootfs_tar, start_dockerd
from netfabric.lab.topology import Host

DockerdFactory = Callable[..., Dockerd]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        for item in items:
            if "tests/docker" in str(item.fspath):
                item.add_marker(pytest.mark.skip(
                    reason="needs docker.io (dockerd 20.10): apt-get install -y docker.io"))


@pytest.fixture(scope="session")
def rootfs_tar() -> bytes:
    """The nfbox root filesystem (static busybox and applet links), built once."""
    return busybox_rootfs_tar()


@pytest.fixture
def dockerds() -> Iterator[DockerdFactory]:
    """Factory: ``dockerds(host, resolv_conf=None)`` starts a dockerd in the host; every one
    is stopped and its directory removed at teardown, whatever the outcome."""
    made: list[Dockerd] = []
    base = Path(tempfile.mkdtemp(prefix="nfdockerd-"))

    def factory(host: Host, *, resolv_conf: str | None = None) -> Dockerd:
        d = start_dockerd(host, base / host.netns, resolv_conf=resolv_conf)
        made.append(d)
        return d

    try:
        yield factory
    finally:
        errors = []
        for d in made:
            try:
                d.stop()
            except Exception as exc:  # stop every one, then report
                errors.append(exc)
        shutil.rmtree(base, ignore_errors=True)
        if errors:
            raise errors[0]
