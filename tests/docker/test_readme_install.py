"""The README's "Install on your hosts", run as written on two machines.

Every ``host-a# ...`` and ``host-b# ...`` line of that section runs, in order, on node1 and
node2 of a lab whose agents were started with nothing but ``--advertise-addr eth0`` (what
the README's systemd unit passes) and whose dockerds run on their defaults. Only what a
reader fills in is replaced: the join token, host-a's address, and ``busybox`` by the
offline test image. A command that a user would see fail fails the test; the two pings by
name may be retried while the new names spread.
"""

from __future__ import annotations

import re
import shlex
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric.lab.dockerd import IMAGE, DockerLab, busybox_rootfs_tar

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Install on your hosts"
HOSTS = {"host-a": "node1", "host-b": "node2"}


def readme_steps() -> list[tuple[str, list[str]]]:
    """``(host, argv)`` of each prompt line of the section, in order."""
    text = README.read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    steps = []
    for line in section.splitlines():
        m = re.match(r"^(host-[ab])# (.+)$", line.strip())
        if m:
            steps.append((m.group(1), shlex.split(m.group(2), comments=True)))
    return steps


@pytest.fixture
def lab() -> Iterator[DockerLab]:
    with tempfile.TemporaryDirectory(prefix="hsreadme-") as state_dir:
        lab = DockerLab.up(2, state_dir=state_dir, agent_args=("--advertise-addr", "eth0"))
        assert isinstance(lab, DockerLab)
        try:
            image = busybox_rootfs_tar()
            for name in HOSTS.values():
                lab.start_dockerd(name, image=image, setup=False)   # the README sets it up
            yield lab
        finally:
            lab.down()


def _run(lab: DockerLab, node: str, argv: list[str]) -> tuple[int, str]:
    if argv[0] == "netfabric":
        proc = lab.run(node, argv)
    elif argv[0] == "docker":
        proc = lab.dockerds[node].docker(*argv[1:], check=False)
    else:
        pytest.fail(f"{shlex.join(argv)}: neither netfabric nor docker")
    return proc.returncode, proc.stdout + proc.stderr


def test_the_readme_install_section_runs_as_written(lab: DockerLab) -> None:
    steps = readme_steps()
    assert len(steps) >= 12, steps
    assert {h for h, _ in steps} == set(HOSTS)
    token = ""
    for host, argv in steps:
        node = HOSTS[host]
        argv = [token if a.startswith("SWMTKN-1-") else a for a in argv]
        argv = [a.replace("192.0.2.10", lab.agent("node1").address) for a in argv]
        argv = [IMAGE if a == "busybox" else a for a in argv]
        # a ping by name may be retried while the new name spreads (45 s at most)
        deadline = time.monotonic() + (45 if "ping" in argv else 0)
        rc, out = _run(lab, node, argv)
        while rc != 0 and time.monotonic() < deadline:
            time.sleep(1)
            rc, out = _run(lab, node, argv)
        assert rc == 0, f"{host}# {shlex.join(argv)}: {out}"
        assert "Traceback" not in out
        if argv[:2] == ["netfabric", "init"]:
            token = next(w for w in out.split() if w.startswith("SWMTKN-1-"))
    assert token, "the section never ran `netfabric init`"
