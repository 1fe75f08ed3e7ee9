"""Fixtures for real-dockerd tests: dockerds inside simulated hosts, always stopped."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from netfabric.lab.dockerd import (
    SBIN_DIRS,
    Dockerd,
    busybox_rootfs_tar,
    docker_programs_missing,
    start_dockerd,
)
from netfabric.lab.machine import Machine

DockerdFactory = Callable[..., Dockerd]


def _must_run() -> bool:
    """In CI, and as root (where every other real-kernel test runs), a missing dockerd is a
    failure: a suite that skips its real peer must not pass."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if docker_programs_missing() and not _must_run():
        for item in items:
            if "tests/docker" in str(item.fspath):
                item.add_marker(pytest.mark.skip(
                    reason="needs docker.io (dockerd 20.10): apt-get install -y docker.io"))


@pytest.fixture(scope="session", autouse=True)
def _real_dockerd() -> None:
    missing = docker_programs_missing()
    if missing:
        pytest.fail(f"{', '.join(missing)} not found on PATH nor in {', '.join(SBIN_DIRS)}: "
                    "install docker.io (./scripts/setup does)", pytrace=False)


@pytest.fixture(scope="session")
def rootfs_tar() -> bytes:
    """The nfbox root filesystem (static busybox and applet links), built once."""
    return busybox_rootfs_tar()


@pytest.fixture
def dockerds() -> Iterator[DockerdFactory]:
    """Factory: ``dockerds(machine, resolv_conf=None)`` starts a dockerd in the machine; every
    one is stopped and its data removed at teardown, whatever the outcome."""
    made: list[Dockerd] = []

    def factory(machine: Machine, *, resolv_conf: str | None = None) -> Dockerd:
        d = start_dockerd(machine, resolv_conf=resolv_conf)
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
        if errors:
            raise errors[0]
