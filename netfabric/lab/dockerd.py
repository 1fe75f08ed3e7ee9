"""A real dockerd inside a simulated host, and the ``nfbox`` test image.

Each dockerd runs in its host's netns (``nsenter --net``, never ``ip netns exec``, which
makes a new mount namespace per command) and in a private mount namespace of its own
(``unshare -m --propagation slave``) where a per-host directory is bind-mounted on
``/run/docker/plugins`` (and on ``/etc/docker``, so engine ids differ). So two dockerds on
one machine each find *their own host's* ``netfabric.sock``, and everything a dockerd
mounts (overlay2, netns files) dies with its mount namespace. Data root, exec root, API
socket, pidfile and cgroup parent are per host, under one base directory.

:meth:`Dockerd.stop` always leaves nothing: containers are stopped by dockerd's own
shutdown, then any straggler (containerd, shims, container processes) is killed, the
per-host cgroups are removed, and the base directory is deleted.
"""

from __future__ import annotations

import contextlib
import io
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
from netfabric.lab.cluster import AgentProc, Lab
from netfabric.lab.topology import Host

__all__ = [
    "APPLETS",
    "DOCKERD_RESOLV_CONF",
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
DOCKERD_RESOLV_CONF: Final = "nameserver 127.0.0.11\n"
"""dockerd's resolv.conf in the lab: unknown names go to netfabric's resolver in the host."""
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


def _pids_matching(needle: str) -> list[int]:
    """Processes whose command line mentions ``needle`` (a per-host directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
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
    """One dockerd in one simulated host. Use :func:`start_dockerd`; always :meth:`stop`."""

    host: Host
    base: Path
    plugins: Path | None = None
    """The directory this dockerd sees as /run/docker/plugins (default ``base/plugins``)."""
    resolv_conf: str | None = None
    """What this dockerd reads as /etc/resolv.conf (``None``: the machine's)."""
    proc: subprocess.Popen[bytes] | None = None
    _log: io.BufferedWriter | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    @property
    def plugins_dir(self) -> Path:
        """Seen by this dockerd (only) as /run/docker/plugins."""
        return self.plugins or self.base / "plugins"

    @property
    def plugin_socket(self) -> Path:
        return self.plugins_dir / "netfabric.sock"

    @property
    def exec_root(self) -> Path:
        return self.base / "exec"

    @property
    def data_root(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "dockerd.log"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.host.netns}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise LabError(f"dockerd on {self.host.name} is not running")
        return self.proc.pid

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
                                  capture_output=True,
                                  timeout=timeout, check=False, input=stdin)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"docker {' '.join(args)} on {self.host.name} timed out") from exc
        out = subprocess.CompletedProcess(proc.args, proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise LabError(f"docker {' '.join(args)} on {self.host.name}: "
                           f"{out.stderr.strip() or out.stdout.strip()}")
        return out

    def start(self, *, debug: bool = False, timeout: float = START_TIMEOUT_S) -> None:
        """Start dockerd and wait until its API answers."""
        resolv_conf = self.resolv_conf
        for d in (self.plugins_dir, self.exec_root, self.data_root, self.base / "etc-docker"):
            d.mkdir(parents=True, exist_ok=True)
        for target in (PLUGINS_DIR, ETC_DOCKER):
            os.makedirs(target, exist_ok=True)  # mount points; empty in the root namespace
        mounts = [f"mount --bind {self.plugins_dir} {PLUGINS_DIR}",
                  f"mount --bind {self.base / 'etc-docker'} {ETC_DOCKER}"]
        if resolv_conf is not None:
            path = self.base / "resolv.conf"
            path.write_text(resolv_conf)
            mounts.append(f"mount --bind {path} /etc/resolv.conf")
        argv = [find_program(DOCKERD) or DOCKERD, "--data-root", str(self.data_root),
                "--exec-root", str(self.exec_root),
                "-H", self.url, "--pidfile", str(self.base / "dockerd.pid"),
                "--iptables=false", "--ip6tables=false", "--bridge=none",
                "--cgroup-parent", self.cgroup_parent, "--shutdown-timeout", "2",
                "--storage-driver", "overlay2"]
        if debug:
            argv.append("--debug")
        script = " && ".join([*mounts, "exec " + " ".join(argv)])
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={self.host.netns_path()}", "unshare", "-m",
             "--propagation", "slave", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "PATH": _search_path()})  # runc
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise LabError(f"dockerd on {self.host.name} exited: {self.tail_log()}")
            if self.socket.exists() and self.docker("version", "--format", "{{.Server.Version}}",
                                                    check=False, timeout=10).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError(f"dockerd on {self.host.name} did not answer within {timeout}s: "
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
        pids = (set(_pids_matching(str(self.exec_root))) | set(_pids_matching(str(self.data_root)))
                | set(_pids_in_cgroup(self.cgroup_parent)))
        if self.proc is not None and self.proc.poll() is None:
            pids.add(self.proc.pid)
        return sorted(pid for pid in pids if alive(pid))

    def remove_containers(self) -> None:
        """``docker rm -f`` every container (SIGKILL: no 10 s stop timeout each)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        ids = self.docker("ps", "-aq", check=False, timeout=20).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False, timeout=60)

    def stop(self, *, remove: bool = True, timeout: float = STOP_TIMEOUT_S,
             keep_containers: bool = False) -> None:
        """Stop dockerd, kill stragglers, remove cgroups and, with ``remove``, the base
        directory. Containers are removed first unless ``keep_containers`` (then dockerd's
        own shutdown stops them, as a real restart does). Idempotent; safe after a failed
        start."""
        if not keep_containers:
            with contextlib.suppress(LabError):
                self.remove_containers()
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    self.proc.wait(timeout=10)
            self.proc = None
        deadline = time.monotonic() + 10
        while (pids := self.leftovers()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if self._log is not None:
            self._log.close()
            self._log = None
        _remove_cgroups(self.cgroup_parent)
        if self.leftovers():
            raise LabError(f"dockerd on {self.host.name}: processes survive: {self.leftovers()}")
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def restart(self, *, debug: bool = False) -> None:
        """Stop (containers stopped by dockerd's shutdown, not removed) and start again,
        keeping data root, plugin directory and resolv.conf."""
        self.stop(remove=False, keep_containers=True)
        self.start(debug=debug)


def start_dockerd(host: Host, base: Path, *, plugins: Path | None = None,
                  resolv_conf: str | None = None, debug: bool = False,
                  timeout: float = START_TIMEOUT_S) -> Dockerd:
    """Start a dockerd in ``host`` with everything under ``base`` (its plugin directory is
    ``plugins`` if given); on failure stop it and raise :class:`LabError` with the end of
    its log."""
    d = Dockerd(host=host, base=base, plugins=plugins, resolv_conf=resolv_conf)
    try:
        d.start(debug=debug, timeout=timeout)
    except BaseException:
        d.stop()
        raise
    return d


@dataclass
class DockerLab(Lab):
    """A :class:`Lab` whose agents serve the Docker plugin, with a dockerd beside each.

    Each agent runs with ``--docker-plugin DATA/docker-plugins/netfabric.sock``; that
    directory is the one its host's dockerd sees as /run/docker/plugins. dockerd reads a
    resolv.conf naming netfabric's resolver in the host netns (``nameserver 127.0.0.11``):
    the one per-host setting names across hosts need. :meth:`down` stops the dockerds
    first (their containers leave through the plugin), then the agents and hosts.
    """

    dockerds: dict[str, Dockerd] = field(default_factory=dict)

    @staticmethod
    def plugin_dir(agent: AgentProc) -> Path:
        return Path(agent.data_dir) / "docker-plugins"

    def start_agent(self, agent: AgentProc, *, env: dict[str, str] | None = None) -> None:
        os.makedirs(agent.data_dir, exist_ok=True)
        sock = self.plugin_dir(agent) / PLUGIN_SOCKET_NAME
        argv = [*self.agent_argv(agent), "--docker-plugin", str(sock)]
        with open(os.path.join(agent.data_dir, "agent.log"), "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, env={**os.environ, **(env or {})})
        agent.pid = proc.pid
        proc.returncode = 0  # reaped by waitpid in stop_agent; no ResourceWarning
        self.save()

    def start_dockerd(self, name: str, *, image: bytes | None = None) -> Dockerd:
        """Start the dockerd of host ``name`` (importing ``image`` as nfbox if given)."""
        agent = self.agent(name)
        assert self.topo is not None
        host = self.topo.host(agent.host)
        d = start_dockerd(host, Path(self.root) / f"dockerd-{agent.name}",
                          plugins=self.plugin_dir(agent), resolv_conf=DOCKERD_RESOLV_CONF)
        self.dockerds[agent.name] = d
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
