"""Simulated hosts on the real kernel: one network namespace per host, one switch.

Each host is a netns with an underlay interface ``eth0`` whose peer sits in a shared
"switch" netns, enslaved to a bridge there. Underlay addresses come from the documentation
range 198.51.100.0/24, so no packet ever leaves for a real network.

Every name carries a unique prefix (``nf`` + random hex), so runs never collide, and
:func:`clean` removes everything with a prefix after a crash. The lab, the demo and the
test fixtures all build hosts here: there is one implementation.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from netfabric.errors import InvalidArgument, LabError

__all__ = [
    "NETNS_TAG",
    "UNDERLAY_NET",
    "Host",
    "Topology",
    "clean",
    "exit_on_sigterm",
    "list_netns",
    "new_prefix",
    "wait_for",
]

NETNS_TAG = "nf"
"""Every network namespace netfabric creates starts with this tag."""

UNDERLAY_NET = ipaddress.IPv4Network("198.51.100.0/24")
"""Documentation range (RFC 5737) used for the simulated underlay."""

SWITCH_BRIDGE = "sw0"
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
INTERRUPTED_SETTLE_S = 0.3
"""How long an interrupted build waits for in-flight ``ip`` children before its last sweep."""
MAX_HOSTS = 200
_NETNS_ETC = "/etc/netns"


def new_prefix() -> str:
    """A fresh, unique prefix: the tag plus 6 hex digits (8 characters)."""
    return NETNS_TAG + secrets.token_hex(3)


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def list_netns() -> list[str]:
    """Names of all named network namespaces on this machine."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _kill_netns_pids(netns: str) -> None:
    proc = _run(["ip", "netns", "pids", netns], check=False)
    for word in proc.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(word), signal.SIGKILL)


def clean(prefix: str = NETNS_TAG) -> list[str]:
    """Remove every netns whose name starts with ``prefix``, its processes and files.

    Returns the names removed. Safe to call when nothing is there; this is what the test
    command runs first, so a crashed earlier run leaves nothing behind for long.
    """
    if not prefix.startswith(NETNS_TAG):
        raise InvalidArgument(
            f"refusing to clean {prefix!r}: netfabric names start with {NETNS_TAG!r}")
    doomed = [ns for ns in list_netns() if ns.startswith(prefix)]
    for ns in doomed:
        _kill_netns_pids(ns)
    for ns in doomed:
        _run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(os.path.join(_NETNS_ETC, ns), ignore_errors=True)
    if os.path.isdir(_NETNS_ETC):
        for name in os.listdir(_NETNS_ETC):
            if name.startswith(prefix):
                shutil.rmtree(os.path.join(_NETNS_ETC, name), ignore_errors=True)
    return doomed


def exit_on_sigterm() -> None:
    """Turn SIGTERM (and SIGHUP) into SystemExit, so ``finally`` blocks and context managers
    remove the namespaces of a lab, demo or benchmark that ``timeout`` or ``kill`` stops."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)


@dataclass(frozen=True, slots=True)
class Host:
    """One simulated host: a netns with an underlay address."""

    name: str
    netns: str
    address: str
    index: int
    mtu: int

    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


@dataclass
class Topology:
    """N hosts on one switch. Use as a context manager; :meth:`destroy` always cleans."""

    prefix: str = field(default_factory=new_prefix)
    mtu: int = 1500
    hosts: list[Host] = field(default_factory=list)
    _built: bool = False

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}-sw"

    @classmethod
    def build(cls, n: int, *, mtu: int = 1500, prefix: str | None = None) -> Topology:
        """Build ``n`` hosts; on any failure, remove what was made and raise LabError."""
        topo = cls(prefix=prefix or new_prefix(), mtu=mtu)
        try:
            topo.create(n)
        except BaseException:
            topo.destroy(settle=INTERRUPTED_SETTLE_S)
            raise
        return topo

    def create(self, n: int) -> None:
        if not 1 <= n <= MAX_HOSTS:
            raise InvalidArgument(f"host count must be 1..{MAX_HOSTS}, got {n}")
        if not 576 <= self.mtu <= 65000:
            raise InvalidArgument(f"mtu must be 576..65000, got {self.mtu}")
        if len(self.prefix) > 9 or not self.prefix.startswith(NETNS_TAG):
            raise InvalidArgument(f"prefix must start with {NETNS_TAG!r} and be at most 9 chars")
        self._built = True
        sw = self.switch_netns
        _run(["ip", "netns", "add", sw])
        _run(["ip", "-n", sw, "link", "set", "lo", "up"])
        _run(["ip", "-n", sw, "link", "add", SWITCH_BRIDGE, "mtu", str(self.mtu), "type", "bridge"])
        _run(["ip", "-n", sw, "link", "set", SWITCH_BRIDGE, "up"])
        for _ in range(n):
            self.add_host()

    def add_host(self, name: str | None = None) -> Host:
        """Add one more host to the switch and return it."""
        index = len(self.hosts) + 1
        name = name or f"h{index}"
        netns = f"{self.prefix}-{name}"
        address = str(UNDERLAY_NET.network_address + index)
        sw = self.switch_netns
        port = f"p-{name}"[:15]
        _run(["ip", "netns", "add", netns])
        _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        _run(["ip", "-n", sw, "link", "add", port, "mtu", str(self.mtu), "type", "veth",
              "peer", "name", "eth0", "mtu", str(self.mtu), "netns", netns])
        _run(["ip", "-n", sw, "link", "set", port, "master", SWITCH_BRIDGE, "up"])
        cidr = f"{address}/{UNDERLAY_NET.prefixlen}"
        _run(["ip", "-n", netns, "addr", "add", cidr, "dev", "eth0"])
        _run(["ip", "-n", netns, "link", "set", "eth0", "up"])
        host = Host(name=name, netns=netns, address=address, index=index, mtu=self.mtu)
        self.hosts.append(host)
        return host

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no host {name!r} in lab {self.prefix}")

    def exec(self, host: Host, argv: Sequence[str], *, check: bool = False,
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a program inside the host's netns (with its /etc/netns files)."""
        try:
            proc = subprocess.run(["ip", "netns", "exec", host.netns, *argv],
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} on {host.name} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise LabError(f"{' '.join(argv)} on {host.name}: {proc.stderr.strip()}")
        return proc

    def set_link(self, host: Host, *, up: bool) -> None:
        """Cut (``up=False``) or heal a host's underlay at the switch port."""
        _run(["ip", "-n", self.switch_netns, "link", "set", f"p-{host.name}"[:15],
              "up" if up else "down"])

    def destroy(self, *, settle: float = 0.0) -> None:
        """Remove every namespace and file of this topology. Idempotent.

        ``settle`` > 0 is for an interrupted build: a child ``ip netns add`` that a signal cut
        off from us may still finish after the first sweep, so sweep until none appears for
        ``settle`` seconds.
        """
        if self._built:
            # A SIGTERM arriving mid-sweep must not abort it: hold it until the sweep is done.
            held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                clean(self.prefix)
                while settle > 0:
                    time.sleep(settle)
                    if not clean(self.prefix):
                        break
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self.hosts.clear()
        self._built = False

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy(settle=INTERRUPTED_SETTLE_S if exc_type is not None else 0.0)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0,
             interval: float = 0.1) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass; convergence in a lab
    is asserted this way, never with a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
