"""A simulated machine: what a VM or a container looks like from inside.

A machine is a process tree in its own network, mount, UTS and PID namespaces, started with
``unshare``. Its first process mounts a private tmpfs on ``/run`` and on ``/etc/netns``,
bind-mounts the machine's own directories on ``/var/lib/netfabric``, ``/etc/docker``,
``/var/lib/docker`` and ``/etc/netfabric``, and a file of its own on ``/etc/resolv.conf``,
sets the hostname, brings ``lo`` up, then runs ``tini`` as PID 1 (so orphans are reaped).
Everything the machine runs (agents, dockerd, containers, sandboxes under its own
``/run/netns``) lives and dies with that PID 1; no name of it appears in the VM's
``/run/netns``.

Unless ``detach`` is given, ``unshare`` gets SIGKILL when the thread that started it ends
(``PR_SET_PDEATHSIG``) and passes it on to the PID 1 (``--kill-child``): a test run killed
with SIGKILL leaves no machine, netns or link behind. Build machines from a thread that
outlives them (the main thread).

:meth:`Machine.argv` enters a machine (``nsenter -t PID -n -m -u -p``), as ``lab exec``
does. Files inside are reached from outside at ``/proc/PID/root/...``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from netfabric.errors import InvalidArgument, LabError

__all__ = ["MACHINE_MARK", "PRIVATE_DIRS", "Machine", "enter_argv", "kill_machines",
           "machine_pids"]

MACHINE_MARK = "netfabric-machine:"
"""argv[0] of every machine's PID 1 starts with this, then the machine's full name."""

PRIVATE_DIRS = ("/var/lib/netfabric", "/etc/netfabric", "/etc/docker", "/var/lib/docker",
                "/srv", "/etc/cni", "/opt/cni")
"""Directories each machine has of its own (kept in its directory, across agent restarts)."""

START_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover (runs in the child before exec)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def enter_argv(pid: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside the machine whose PID 1 is ``pid``. ``nsenter`` forks it (a new
    PID namespace applies to children only); ``setpriv --pdeathsig KILL`` makes it die with
    that ``nsenter``, so killing what we started (a timeout, ``Popen.kill``) ends it, as
    if there were no fork."""
    return ["nsenter", "-t", str(pid), "-n", "-m", "-u", "-p", "--",
            "setpriv", "--pdeathsig", "KILL", "--", *argv]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def machine_pids(prefix: str) -> list[int]:
    """PIDs (in this PID namespace) of the PID 1 of every machine whose name starts with
    ``prefix``."""
    needle = (MACHINE_MARK + prefix).encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _cmdline(int(entry)).startswith(needle):
            found.append(int(entry))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def kill_machines(prefix: str, *, timeout: float = 10.0) -> list[int]:
    """SIGKILL the PID 1 of every machine named ``prefix``...; wait until they are gone.
    Returns their PIDs."""
    pids = machine_pids(prefix)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids


@dataclass
class Machine:
    """One machine. :meth:`start` it; :meth:`kill` ends it and all it runs."""

    name: str
    """Full name (lab prefix + host name): marks its processes, so :func:`kill_machines`
    finds them from another process."""
    hostname: str
    root: str
    """Directory of the machine's private files (``var-lib-netfabric``, ...)."""
    pid: int = 0
    """PID 1 of the machine, as seen from here."""
    _proc: subprocess.Popen[bytes] | None = None

    def private_dir(self, path: str) -> str:
        """Where, outside, the machine's own ``path`` (one of :data:`PRIVATE_DIRS`) is."""
        return os.path.join(self.root, path.strip("/").replace("/", "-"))

    @property
    def resolv_conf(self) -> str:
        return os.path.join(self.root, "resolv.conf")

    def start(self, *, detach: bool = False, resolv_conf: str = "") -> None:
        if self.pid:
            raise LabError(f"machine {self.name} is already running")
        if "/" in self.name or not self.name:
            raise InvalidArgument(f"bad machine name {self.name!r}")
        os.makedirs(self.root, exist_ok=True)
        with open(self.resolv_conf, "w", encoding="utf-8") as f:
            f.write(resolv_conf)
        # bind mounts first: the machine's directory may itself be under /run
        lines = ["set -e", f"mount --bind {shlex.quote(self.resolv_conf)} /etc/resolv.conf"]
        for path in PRIVATE_DIRS:
            os.makedirs(self.private_dir(path), exist_ok=True)
            os.makedirs(path, exist_ok=True)   # an empty mount point outside
            lines.append(f"mount --bind {shlex.quote(self.private_dir(path))} {path}")
        os.makedirs("/etc/netns", exist_ok=True)
        lines += ["mount -t tmpfs -o mode=755 tmpfs /run", "mkdir -p /run/netns /run/lock",
                  "mount -t tmpfs -o mode=755 tmpfs /etc/netns",
                  f"echo {shlex.quote(self.hostname)} > /proc/sys/kernel/hostname",
                  "ip link set lo up",
                  # the mark appears once all of the above succeeded: the machine is ready
                  f"exec -a {shlex.quote(MACHINE_MARK + self.name)} tini -s -- sleep infinity"]
        argv = ["unshare", "--net", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
                "--propagation", "private"]
        if not detach:
            argv.append("--kill-child=SIGKILL")
        argv += ["--", "bash", "-c", "\n".join(lines)]
        log = open(os.path.join(self.root, "machine.log"), "ab")  # noqa: SIM115
        with log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=detach, preexec_fn=None if detach else _die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.pid:
            found = machine_pids(self.name)
            mine = [p for p in found if _cmdline(p).split(b"\0", 1)[0]
                    == (MACHINE_MARK + self.name).encode()]
            if mine:
                self.pid = mine[0]
                break
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = ""
                with contextlib.suppress(OSError), open(
                        os.path.join(self.root, "machine.log"), errors="replace") as f:
                    tail = f.read()[-500:]
                raise LabError(f"machine {self.name} did not start: {tail.strip()}")
            time.sleep(0.01)
        if detach:
            self._proc.returncode = 0   # reaped by init once we are gone; no ResourceWarning

    def alive(self) -> bool:
        return self.pid > 0 and _alive(self.pid)

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the machine."""
        if not self.pid:
            raise LabError(f"machine {self.name} is not running")
        return enter_argv(self.pid, argv)

    def path(self, inside: str) -> str:
        """The path, from here, of the machine's file ``inside`` (absolute)."""
        return f"/proc/{self.pid}/root{inside}"

    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def run(self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(self.argv(argv), capture_output=True, text=True,
                                  timeout=timeout, check=False, env=env)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} on {self.hostname} timed out after "
                           f"{timeout:g}s") from exc
        if check and proc.returncode != 0:
            raise LabError(f"{' '.join(argv)} on {self.hostname}: "
                           f"{(proc.stderr or proc.stdout).strip()}")
        return proc

    def kill(self, *, timeout: float = 10.0) -> None:
        """End the machine and everything in it; idempotent."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
        kill_machines(self.name + "\0", timeout=timeout)
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                self._proc.wait(timeout=timeout)
            self._proc = None
        deadline = time.monotonic() + timeout
        while self.pid and _alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.pid = 0
