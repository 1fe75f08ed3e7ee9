"""A real dockerd inside a simulated machine, and the ``nfbox`` test image.

Each dockerd runs inside its host's machine (:mod:`netfabric.lab.machine`) on its own
defaults, as on a real host: API socket ``/var/run/docker.sock``, data root
``/var/lib/docker``, plugin directory ``/run/docker/plugins`` and configuration
``/etc/docker/daemon.json``, all the machine's own. The lab writes only that configuration
file (no iptables or default bridge, a cgroup parent named after the machine, a short
shutdown timeout). From outside, its socket is ``/proc/PID/root/run/docker.sock``.

:meth:`Dockerd.stop` always leaves nothing: containers are stopped by dockerd's own
shutdown, then any straggler (containerd, shims, container processes) is killed and the
machine's cgroups are removed. Whatever survives dies with the machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from netfabric.errors import LabError
from netfabric.lab.cluster import Lab, spawn_in
from netfabric.lab.machine import Machine

__all__ = [
    "APPLETS",
    "IMAGE",
    "DockerLab",
    "Dockerd",
    "alive",
    "busybox_rootfs_tar",
    "docker_programs_missing",
    "find_program",
    "start_dockerd",
]

DOCKERD: Final = "dockerd"
DOCKER: Final = "docker"
BUSYBOX: Final = "/bin/busybox"
IMAGE: Final = "nfbox"
APPLETS: Final = ("sh", "ping", "nslookup", "ip", "top", "sleep", "cat", "ls", "hostname",
                  "echo", "wget", "nc", "true", "ifconfig", "route")
PLUGINS_DIR: Final = "/run/docker/plugins"
ETC_DOCKER: Final = "/etc/docker"
CGROUP_ROOT: Final = "/sys/fs/cgroup"
PLUGIN_SOCKET_NAME: Final = "netfabric.sock"
SBIN_DIRS: Final = ("/usr/local/sbin", "/usr/sbin", "/sbin")
"""Where Debian puts dockerd and runc; scripts/setup counts a program there as installed,
so the lab finds it there too, whatever PATH a CI runner has."""
DOCKER_PROGRAMS: Final = (DOCKERD, DOCKER, "containerd", "runc")
START_TIMEOUT_S: Final = 40.0
STOP_TIMEOUT_S: Final = 20.0


def busybox_rootfs_tar(applets: Sequence[str] = APPLETS) -> bytes:
    """A root filesystem as a tar: Debian's static busybox and its applet links."""
    if not os.path.exists(BUSYBOX):
        raise LabError(f"{BUSYBOX} is missing: apt-get install -y busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for name in applets:
            info = tarfile.TarInfo(f"bin/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for path, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                           ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pids_in_pidns(machine_pid: int) -> list[int]:
    """Every process of a machine but its PID 1 and the agent's (by ``comm``)."""
    try:
        ns = os.readlink(f"/proc/{machine_pid}/ns/pid")
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == machine_pid:
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0] in (b"sleep",) or b"netfabric.cli.main" in argv or not argv[0]:
            continue
        found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """True for a live process; a zombie waiting for init to reap it is not alive."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pids_in_cgroup(parent: str) -> list[int]:
    found: set[int] = set()
    for ctrl in ("pids", "memory", "cpu", "devices", "freezer"):
        base = Path(CGROUP_ROOT, ctrl, parent.strip("/"))
        if base.is_dir():
            for procs in base.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(x) for x in procs.read_text().split())
    return sorted(found)


def _remove_cgroups(parent: str) -> None:
    for ctrl in os.listdir(CGROUP_ROOT):
        base = Path(CGROUP_ROOT, ctrl, parent.strip("/"))
        if base.is_dir() and not base.is_symlink():
            for sub in sorted((p for p in base.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                base.rmdir()


def _search_path() -> str:
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    return os.pathsep.join([*path, *(d for d in SBIN_DIRS if d not in path)])


def find_program(name: str) -> str | None:
    """``name``'s absolute path on PATH or in :data:`SBIN_DIRS`, or ``None``."""
    return shutil.which(name, path=_search_path())


def docker_programs_missing() -> list[str]:
    """Which of dockerd, docker, containerd and runc cannot be found (see :func:`find_program`)."""
    return [p for p in DOCKER_PROGRAMS if find_program(p) is None]


@dataclass
class Dockerd:
    """One dockerd in one machine. Use :func:`start_dockerd`; always :meth:`stop`."""

    machine: Machine
    resolv_conf: str | None = None
    """The machine's /etc/resolv.conf while this dockerd runs (``None``: leave it)."""
    config: dict[str, object] = field(default_factory=dict)
    """Extra settings for /etc/docker/daemon.json."""
    pid: int = 0
    """dockerd's PID, seen from here."""

    @property
    def name(self) -> str:
        return self.machine.hostname

    @property
    def socket(self) -> Path:
        return Path(self.machine.path("/run/docker.sock"))

    @property
    def plugins_dir(self) -> Path:
        """The machine's /run/docker/plugins, from outside."""
        return Path(self.machine.path(PLUGINS_DIR))

    @property
    def plugin_socket(self) -> Path:
        return self.plugins_dir / PLUGIN_SOCKET_NAME

    @property
    def daemon_json(self) -> Path:
        """The machine's /etc/docker/daemon.json, from outside."""
        return Path(self.machine.private_dir(ETC_DOCKER)) / "daemon.json"

    @property
    def data_root(self) -> Path:
        return Path(self.machine.private_dir("/var/lib/docker"))

    @property
    def log_path(self) -> Path:
        return Path(self.machine.root) / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.machine.name}"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.url}

    def docker(self, *args: str, check: bool = True, timeout: float = 60.0,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this dockerd."""
        try:
            proc = subprocess.run([find_program(DOCKER) or DOCKER, "-H", self.url, *args],
                                  capture_output=True, timeout=timeout, check=False,
                                  input=stdin)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"docker {' '.join(args)} on {self.name} timed out") from exc
        out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise LabError(f"docker {' '.join(args)} on {self.name}: "
                           f"{out.stderr.strip() or out.stdout.strip()}")
        return out

    def write_config(self, *, debug: bool = False) -> None:
        """The lab's settings in the machine's /etc/docker/daemon.json (others kept): no
        iptables or default bridge, a cgroup parent named after the machine, a short
        shutdown timeout."""
        config: dict[str, object] = {}
        text = ""
        with contextlib.suppress(FileNotFoundError, ValueError):
            text = self.daemon_json.read_text()
            config = json.loads(text)
        config.update({"iptables": False, "ip6tables": False, "bridge": "none",
                       "cgroup-parent": self.cgroup_parent, "shutdown-timeout": 2,
                       "storage-driver": "overlay2", "debug": debug, **self.config})
        new = json.dumps(config, indent=2) + "\n"
        if new != text:
            self.daemon_json.parent.mkdir(parents=True, exist_ok=True)
            self.daemon_json.write_text(new)

    def start(self, *, debug: bool = False, timeout: float = START_TIMEOUT_S) -> None:
        """Write the machine's daemon.json, start dockerd there and wait until its API
        answers."""
        if self.resolv_conf is not None:
            with open(self.machine.resolv_conf, "w", encoding="utf-8") as f:
                f.write(self.resolv_conf)   # in place: the machine bind-mounts this file
        self.write_config(debug=debug)
        self.pid = spawn_in(self.machine.pid, [find_program(DOCKERD) or DOCKERD],
                            log=str(self.log_path),
                            env={**os.environ, "PATH": _search_path()})   # runc
        deadline = time.monotonic() + timeout
        while True:
            if not alive(self.pid):
                raise LabError(f"dockerd on {self.name} exited: {self.tail_log()}")
            if self.socket.exists() and self.docker("version", "--format", "{{.Server.Version}}",
                                                    check=False, timeout=10).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError(f"dockerd on {self.name} did not answer within {timeout}s: "
                               f"{self.tail_log()}")
            time.sleep(0.1)

    def tail_log(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def import_image(self, rootfs_tar: bytes, name: str = IMAGE) -> None:
        """``docker import`` a root filesystem as image ``name`` (no registry needed)."""
        self.docker("import", "--change", 'CMD ["sh"]', "-", name, stdin=rootfs_tar)

    def leftovers(self) -> list[int]:
        """Processes of this dockerd still alive: dockerd, containerd, shims, containers."""
        pids = set(_pids_in_cgroup(self.cgroup_parent)) | set(_pids_in_pidns(self.machine.pid))
        if self.pid:
            pids.add(self.pid)
        return sorted(pid for pid in pids if alive(pid))

    def remove_containers(self) -> None:
        """``docker rm -f`` every container (SIGKILL: no 10 s stop timeout each)."""
        if not self.pid or not alive(self.pid):
            return
        ids = self.docker("ps", "-aq", check=False, timeout=20).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False, timeout=60)

    def stop(self, *, remove: bool = True, timeout: float = STOP_TIMEOUT_S,
             keep_containers: bool = False) -> None:
        """Stop dockerd, kill stragglers, remove cgroups and, with ``remove``, its data root.
        Containers are removed first unless ``keep_containers`` (then dockerd's own shutdown
        stops them, as a real restart does). Idempotent; safe after a failed start."""
        if not keep_containers:
            with contextlib.suppress(LabError):
                self.remove_containers()
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.pid = 0
        deadline = time.monotonic() + 10
        while (pids := self.leftovers()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        _remove_cgroups(self.cgroup_parent)
        if self.leftovers():
            raise LabError(f"dockerd on {self.name}: processes survive: {self.leftovers()}")
        if remove and self.machine.alive():
            # its mounts (overlay2, netns files) are the machine's: unmount them in there
            self.machine.run(["sh", "-c", "umount -R /var/lib/docker/overlay2 /run/docker/netns "
                              "2>/dev/null; true"])
            shutil.rmtree(self.data_root, ignore_errors=True)
            self.data_root.mkdir(exist_ok=True)

    def restart(self, *, debug: bool = False) -> None:
        """Stop (containers stopped by dockerd's shutdown, not removed) and start again,
        keeping data root, plugin directory and resolv.conf."""
        self.stop(remove=False, keep_containers=True)
        self.start(debug=debug)


def start_dockerd(machine: Machine, *, resolv_conf: str | None = None, debug: bool = False,
                  config: dict[str, object] | None = None,
                  timeout: float = START_TIMEOUT_S) -> Dockerd:
    """Start a dockerd in ``machine``; on failure stop it and raise :class:`LabError` with
    the end of its log."""
    d = Dockerd(machine=machine, resolv_conf=resolv_conf, config=dict(config or {}))
    try:
        d.start(debug=debug, timeout=timeout)
    except BaseException:
        d.stop()
        raise
    return d


@dataclass
class DockerLab(Lab):
    """A :class:`Lab` with a dockerd beside each agent, in each machine.

    Each agent serves the Docker plugin on its default socket, the machine's
    ``/run/docker/plugins/netfabric.sock``, where that machine's dockerd finds it; dockerd
    is told the rest by ``netfabric docker setup`` run in the machine, as on a real host.
    :meth:`down` stops the dockerds first (their containers leave through the plugin), then
    the agents and machines.
    """

    dockerds: dict[str, Dockerd] = field(default_factory=dict)

    def start_dockerd(self, name: str, *, image: bytes | None = None,
                      setup: bool = True) -> Dockerd:
        """Start the dockerd of host ``name`` after ``netfabric docker setup`` there, as a
        user does (``setup=False``: without it), importing ``image`` as nfbox if given."""
        machine = self.machine(name)
        if setup:
            self.run(name, ["netfabric", "docker", "setup"], check=True)
        d = start_dockerd(machine)
        self.dockerds[self.agent(name).name] = d
        if image is not None:
            d.import_image(image)
        return d

    def start_cluster(self, image: bytes) -> list[Dockerd]:
        """Make the first agent a manager, join the others as workers, and start a dockerd
        with ``image`` beside each: the two-engine set-up of the Docker tests and bench."""
        from netfabric.client import Client

        first, *rest = self.agents
        token = Client(first.url).init(first.address).token
        for agent in rest:
            Client(agent.url).join(token, first.address)
        return [self.start_dockerd(agent.name, image=image) for agent in self.agents]

    def down(self) -> None:
        errors: list[LabError] = []
        for d in self.dockerds.values():
            try:
                d.stop()
            except LabError as exc:
                errors.append(exc)
        self.dockerds.clear()
        super().down()
        if errors:
            raise errors[0]
