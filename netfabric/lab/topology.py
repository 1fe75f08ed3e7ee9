"""Simulated hosts on the real kernel, on one switch.

Each host has an underlay interface ``eth0`` whose peer sits in a shared "switch" netns,
enslaved to a bridge there. Underlay addresses come from the documentation range
198.51.100.0/24, so no packet ever leaves for a real network.

A host is either a named netns (``/run/netns/PREFIX-h1``: what the dataplane's kernel tests
drive directly) or, with ``machines=True``, a :class:`~netfabric.lab.machine.Machine` (its
own network, mount, UTS and PID namespaces, private ``/run``; the switch is a machine too):
what the agent, Docker and the cluster tests run in, as on a real host. Machines leave no
name in ``/run/netns`` and die with the process that built them (unless ``detach``).

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
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from netfabric.errors import InvalidArgument, LabError
from netfabric.lab.machine import Machine, enter_argv, kill_machines

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
    """End every machine and remove every netns whose name starts with ``prefix``, their
    processes and files.

    Returns the names removed. Safe to call when nothing is there; this is what the test
    command runs first, so a crashed earlier run leaves nothing behind for long.
    """
    if not prefix.startswith(NETNS_TAG):
        raise InvalidArgument(
            f"refusing to clean {prefix!r}: netfabric names start with {NETNS_TAG!r}")
    doomed = [f"machine:{pid}" for pid in kill_machines(prefix)]
    named = [ns for ns in list_netns() if ns.startswith(prefix)]
    doomed += named
    for ns in named:
        _kill_netns_pids(ns)
    for ns in named:
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
    """One simulated host: a netns (or a machine, ``pid`` > 0) with an underlay address."""

    name: str
    netns: str
    """The netns name under /run/netns; for a machine, the machine's full name."""
    address: str
    index: int
    mtu: int
    pid: int = 0
    """The machine's PID 1 (0: a named netns)."""

    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net" if self.pid else f"/run/netns/{self.netns}"

    def enter(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the host (its machine, or its netns)."""
        if self.pid:
            return enter_argv(self.pid, argv)
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Topology:
    """N hosts on one switch. Use as a context manager; :meth:`destroy` always cleans."""

    prefix: str = field(default_factory=new_prefix)
    mtu: int = 1500
    hosts: list[Host] = field(default_factory=list)
    machines: bool = False
    """Hosts are machines (see the module's docstring)."""
    root: str = ""
    """Machines' private files (default: a temporary directory, removed with the lab)."""
    detach: bool = False
    """Machines outlive this process (``lab up``); :func:`clean` ends them."""
    resolv_conf: str = ""
    """Each machine's /etc/resolv.conf (default: empty, no resolver)."""
    _built: bool = False
    _own_root: bool = False
    _machine: dict[str, Machine] = field(default_factory=dict)

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}-sw"

    @classmethod
    def build(cls, n: int, *, mtu: int = 1500, prefix: str | None = None,
              machines: bool = False, root: str = "", detach: bool = False,
              names: Sequence[str] | None = None, resolv_conf: str = "") -> Topology:
        """Build ``n`` hosts (named ``names``, default h1, h2...); on any failure, remove
        what was made and raise LabError."""
        topo = cls(prefix=prefix or new_prefix(), mtu=mtu, machines=machines, root=root,
                   detach=detach, resolv_conf=resolv_conf)
        try:
            topo.create(n, names=names)
        except BaseException:
            topo.destroy(settle=INTERRUPTED_SETTLE_S)
            raise
        return topo

    def create(self, n: int, *, names: Sequence[str] | None = None) -> None:
        if names is not None and len(names) != n:
            raise InvalidArgument(f"{n} hosts but {len(names)} names")
        if not 1 <= n <= MAX_HOSTS:
            raise InvalidArgument(f"host count must be 1..{MAX_HOSTS}, got {n}")
        if not 576 <= self.mtu <= 65000:
            raise InvalidArgument(f"mtu must be 576..65000, got {self.mtu}")
        if len(self.prefix) > 9 or not self.prefix.startswith(NETNS_TAG):
            raise InvalidArgument(f"prefix must start with {NETNS_TAG!r} and be at most 9 chars")
        self._built = True
        sw = self.switch_netns
        if self.machines:
            if not self.root:
                self.root = tempfile.mkdtemp(prefix=f"{self.prefix}-")
                self._own_root = True
            self._start_machine(sw, "switch")
        else:
            _run(["ip", "netns", "add", sw])
            _run(["ip", "-n", sw, "link", "set", "lo", "up"])
        self._sw(["link", "add", SWITCH_BRIDGE, "mtu", str(self.mtu), "type", "bridge"])
        self._sw(["link", "set", SWITCH_BRIDGE, "up"])
        for i in range(n):
            self.add_host(names[i] if names else None)

    def _start_machine(self, name: str, hostname: str) -> Machine:
        m = Machine(name=name, hostname=hostname,
                    root=os.path.join(self.root, name.removeprefix(self.prefix + "-")))
        self._machine[name] = m
        m.start(detach=self.detach, resolv_conf=self.resolv_conf)
        return m

    def machine(self, host: Host) -> Machine:
        """The machine of ``host`` (a lab built with ``machines=True``)."""
        try:
            return self._machine[host.netns]
        except KeyError:
            raise LabError(f"host {host.name} is not a machine") from None

    def on_switch(self, argv: Sequence[str]) -> None:
        """Run a program in the switch's netns (e.g. ``ethtool`` on a host's port)."""
        if self.machines:
            _run(["nsenter", "-t", str(self._machine[self.switch_netns].pid), "-n", *argv])
        else:
            _run(["ip", "netns", "exec", self.switch_netns, *argv])

    def _sw(self, argv: Sequence[str]) -> None:
        if self.machines:   # its netns only: `netns PID` names a PID as seen from here
            _run(["nsenter", "-t", str(self._machine[self.switch_netns].pid), "-n", "ip", *argv])
        else:
            _run(["ip", "-n", self.switch_netns, *argv])

    def add_host(self, name: str | None = None) -> Host:
        """Add one more host to the switch and return it."""
        index = len(self.hosts) + 1
        name = name or f"h{index}"
        netns = f"{self.prefix}-{name}"
        address = str(UNDERLAY_NET.network_address + index)
        port = f"p-{name}"[:15]
        cidr = f"{address}/{UNDERLAY_NET.prefixlen}"
        if self.machines:
            m = self._start_machine(netns, name)
            self._sw(["link", "add", port, "mtu", str(self.mtu), "type", "veth",
                      "peer", "name", "eth0", "mtu", str(self.mtu), "netns", str(m.pid)])
            self._sw(["link", "set", port, "master", SWITCH_BRIDGE, "up"])
            m.run(["ip", "addr", "add", cidr, "dev", "eth0"], check=True)
            m.run(["ip", "link", "set", "eth0", "up"], check=True)
            host = Host(name=name, netns=netns, address=address, index=index, mtu=self.mtu,
                        pid=m.pid)
        else:
            _run(["ip", "netns", "add", netns])
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
            self._sw(["link", "add", port, "mtu", str(self.mtu), "type", "veth",
                      "peer", "name", "eth0", "mtu", str(self.mtu), "netns", netns])
            self._sw(["link", "set", port, "master", SWITCH_BRIDGE, "up"])
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
        """Run a program inside the host (its machine, or its netns with its /etc/netns
        files)."""
        try:
            proc = subprocess.run(host.enter(argv),
                                  capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} on {host.name} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise LabError(f"{' '.join(argv)} on {host.name}: {proc.stderr.strip()}")
        return proc

    def set_link(self, host: Host, *, up: bool) -> None:
        """Cut (``up=False``) or heal a host's underlay at the switch port."""
        self._sw(["link", "set", f"p-{host.name}"[:15], "up" if up else "down"])

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
                for m in [*self._machine.values()][::-1]:
                    m.kill()
                self._machine.clear()
                clean(self.prefix)
                if self._own_root:
                    shutil.rmtree(self.root, ignore_errors=True)
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
