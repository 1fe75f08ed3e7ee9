"""The dockerd-in-a-machine harness: two dockerds side by side on their own defaults, each
finding only its own machine's plugin directory, and nothing left once they are stopped."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from netfabric.lab.dockerd import IMAGE, Dockerd, alive
from netfabric.lab.machine import Machine
from tests.conftest import HostsFactory
from tests.docker.conftest import DockerdFactory


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _start_both(dockerds: DockerdFactory, machines: list[Machine]) -> list[Dockerd]:
    out: dict[int, Dockerd] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            out[i] = dockerds(machines[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(machines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [out[i] for i in range(len(machines))]


def test_two_dockerds_in_two_machines_are_removed_cleanly(
        hosts: HostsFactory, dockerds: DockerdFactory, rootfs_tar: bytes) -> None:
    topo = hosts(2, machines=True)
    machines = [topo.machine(h) for h in topo.hosts]
    a, b = _start_both(dockerds, machines)
    for d in (a, b):
        # in its machine's namespaces: network, mount, PID
        for kind in ("net", "mnt", "pid"):
            assert _ns(d.pid, kind) == _ns(d.machine.pid, kind), kind
        assert _ns(d.pid, "mnt") != _ns("self", "mnt")
        # its own defaults: /var/run/docker.sock, /var/lib/docker, /etc/docker/daemon.json
        args = Path(f"/proc/{d.pid}/cmdline").read_bytes().split(b"\0")
        assert args[0].endswith(b"dockerd") and args[1:] == [b""], args
        assert d.daemon_json.exists()
        # it sees its own machine's plugin directory, and only that one
        d.plugins_dir.mkdir(parents=True, exist_ok=True)
        (d.plugins_dir / f"marker-{d.name}").write_text("x")
    for d in (a, b):
        seen = os.listdir(f"/proc/{d.pid}/root/run/docker/plugins")
        assert seen == [f"marker-{d.name}"], seen
    ids = {d.docker("info", "--format", "{{.ID}}").stdout.strip() for d in (a, b)}
    assert len(ids) == 2, "each dockerd has its own engine id"
    for d in (a, b):
        d.import_image(rootfs_tar)
        out = d.docker("run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                       "ls /bin/ping /bin/nslookup /bin/ip /bin/top /bin/sleep && echo ok")
        assert out.stdout.strip().endswith("ok"), out
        d.docker("run", "-d", "--network", "none", "--name", "sleeper", IMAGE, "sleep", "600")
    pids = {d.name: d.leftovers() for d in (a, b)}
    assert all(len(p) >= 3 for p in pids.values()), pids  # dockerd, containerd, shim, sleep
    for d in (a, b):
        d.stop()
        assert d.leftovers() == []
        assert not os.path.exists(f"/sys/fs/cgroup/pids{d.cgroup_parent}")
        assert os.listdir(d.data_root) == []
    for pid_list in pids.values():
        for pid in pid_list:
            assert not alive(pid), pid
    for h in topo.hosts:
        # nothing of dockerd's is left in the machine: only lo and the underlay
        links = topo.exec(h, ["ip", "-o", "link"], check=True).stdout
        assert sorted(line.split(":")[1].strip().split("@")[0]
                      for line in links.splitlines()) == ["eth0", "lo"]
        procs = topo.exec(h, ["ps", "-e", "-o", "comm="], check=True).stdout.split()
        assert sorted(procs) == ["ps", "sleep", "tini"], procs
