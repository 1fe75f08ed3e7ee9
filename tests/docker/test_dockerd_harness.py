"""The dockerd-in-a-host harness: two dockerds side by side, each with its own plugin dir,
and nothing left once they are stopped."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from netfabric.lab.dockerd import IMAGE, Dockerd, alive
from netfabric.lab.topology import Host
from tests.conftest import HostsFactory
from tests.docker.conftest import DockerdFactory


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _start_both(dockerds: DockerdFactory, topo_hosts: list[Host]) -> list[Dockerd]:
    out: dict[int, Dockerd] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            out[i] = dockerds(topo_hosts[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(topo_hosts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [out[i] for i in range(len(topo_hosts))]


def test_two_dockerds_in_two_hosts_are_removed_cleanly(
        hosts: HostsFactory, dockerds: DockerdFactory, rootfs_tar: bytes) -> None:
    topo = hosts(2)
    a, b = _start_both(dockerds, topo.hosts)
    for d in (a, b):
        # in its host's netns, in a mount namespace of its own
        assert os.stat(f"/proc/{d.pid}/ns/net").st_ino == os.stat(d.host.netns_path()).st_ino
        assert _ns(d.pid, "mnt") != _ns("self", "mnt")
        # it sees its own host's plugin directory, and only that one
        (d.plugins_dir / f"marker-{d.host.name}").write_text("x")
    for d in (a, b):
        seen = os.listdir(f"/proc/{d.pid}/root/run/docker/plugins")
        assert seen == [f"marker-{d.host.name}"], seen
    ids = {d.docker("info", "--format", "{{.ID}}").stdout.strip() for d in (a, b)}
    assert len(ids) == 2, "each dockerd has its own engine id"
    for d in (a, b):
        d.import_image(rootfs_tar)
        out = d.docker("run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                       "ls /bin/ping /bin/nslookup /bin/ip /bin/top /bin/sleep && echo ok")
        assert out.stdout.strip().endswith("ok"), out
        d.docker("run", "-d", "--network", "none", "--name", "sleeper", IMAGE, "sleep", "600")
    pids = {d.host.name: d.leftovers() for d in (a, b)}
    assert all(len(p) >= 3 for p in pids.values()), pids  # dockerd, containerd, shim, sleep
    bases = [a.base, b.base]
    for d in (a, b):
        d.stop()
        assert d.leftovers() == []
        assert not d.base.exists()
        assert not Path("/sys/fs/cgroup/pids", d.cgroup_parent.strip("/")).exists()
    for pid_list in pids.values():
        for pid in pid_list:
            assert not alive(pid), pid
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    for base in bases:
        assert str(base) not in mounts
    for h in topo.hosts:
        # nothing of dockerd's is left in the host netns: only lo and the underlay
        links = topo.exec(h, ["ip", "-o", "link"], check=True).stdout
        assert sorted(line.split(":")[1].strip().split("@")[0]
                      for line in links.splitlines()) == ["eth0", "lo"]
        pids_left = subprocess.run(["ip", "netns", "pids", h.netns], capture_output=True,
                                   text=True, check=True).stdout.split()
        assert pids_left == []
