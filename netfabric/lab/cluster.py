"""A lab: simulated machines with one agent process each, remembered in a state file.

``lab up`` builds the hosts as machines (:mod:`netfabric.lab.machine`: own network, mount,
UTS and PID namespaces, private ``/run``) and starts ``netfabric agent`` inside each, on its
defaults as on a real host (socket ``/run/netfabric/agent.sock``, state
``/var/lib/netfabric``, sandboxes under the machine's ``/run/netns``) with only
``--advertise-addr eth0`` and the lab's timing and resolver options. From outside, the
agent's socket is ``/proc/PID/root/run/netfabric/agent.sock`` (PID: the machine's PID 1).
The state file (``$NETFABRIC_LAB_DIR/<prefix>.json``, default dir ``/run/netfabric/labs``)
lets ``lab down`` and ``lab exec`` work from another process; such a lab is built with
``detach`` so that its machines outlive the command. Tests and the benchmark use
:class:`Lab` directly, as a context manager that always tears down; their machines also die
with the process that built them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import ClassVar

from netfabric.client import DEFAULT_SOCKET
from netfabric.errors import AgentUnreachable, InvalidArgument, LabError, NetfabricError
from netfabric.lab.machine import Machine, enter_argv
from netfabric.lab.topology import NETNS_TAG, Topology, clean

__all__ = ["DEFAULT_LAB_DIR", "AgentProc", "Lab", "lab_dir", "netfabric_argv"]

DEFAULT_LAB_DIR = "/run/netfabric/labs"
START_TIMEOUT = 20.0
"""Seconds an agent may take to answer on its socket after start."""
STOP_TIMEOUT = 5.0
def lab_dir() -> str:
    return os.environ.get("NETFABRIC_LAB_DIR") or DEFAULT_LAB_DIR


def netfabric_argv() -> list[str]:
    """How to run this very netfabric (the venv's), whatever PATH says."""
    return [sys.executable, "-m", "netfabric.cli.main"]


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def spawn_in(machine_pid: int, argv: Sequence[str], *, log: str,
             env: dict[str, str] | None = None, timeout: float = 5.0) -> int:
    """Start ``argv`` inside a machine, detached, output appended to ``log``; returns its PID
    as seen from here (``nsenter`` forks it; signals must go to it, not to ``nsenter``)."""
    full = ["nsenter", "-t", str(machine_pid), "-n", "-m", "-u", "-p", "--", *argv]
    with open(log, "ab") as out:
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, env=env)
    deadline = time.monotonic() + timeout
    while not (kids := _children(proc.pid)):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise LabError(f"{' '.join(argv)}: did not start in machine {machine_pid}")
        time.sleep(0.002)
    # nsenter exits with its child; it is reaped by init once we are gone, and by
    # reap_children() while we live. Forget the Popen without a ResourceWarning:
    proc.returncode = 0
    return kids[0]


def reap_children() -> None:
    """Reap our exited ``nsenter`` children (see :func:`spawn_in`)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@dataclass
class AgentProc:
    """One host of the lab (a machine) and its agent."""

    name: str
    host: str
    netns: str
    """The machine's full name (PREFIX-NAME)."""
    address: str
    data_dir: str
    """The machine's /var/lib/netfabric, from outside."""
    socket: str
    """The agent's socket, from outside (through /proc/MACHINE/root)."""
    pid: int = 0
    """The agent process (from outside)."""
    machine_pid: int = 0
    log: str = ""

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def enter(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this machine."""
        return enter_argv(self.machine_pid, argv)

    def path(self, inside: str) -> str:
        """A file of the machine (absolute path inside) seen from outside."""
        return f"/proc/{self.machine_pid}/root{inside}"

    def alive(self) -> bool:
        if self.pid <= 0:
            return False
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                return f.read().split(") ", 1)[1][0] not in "ZX"
        except (OSError, IndexError):
            return False


@dataclass
class Lab:
    prefix: str
    mtu: int
    root: str
    agents: list[AgentProc] = field(default_factory=list)
    topo: Topology | None = None
    gossip_profile: str = "local"
    """The agents' ``--gossip-profile``: ``local`` (fast failure detection, one machine) or
    ``lan``, the default of ``netfabric agent`` that users run."""
    metrics_port: int = 0
    """When set, every agent serves ``--metrics-addr ITS_ADDRESS:metrics_port``."""
    ui_port: int = 0
    """When set, every agent serves ``--ui-addr ITS_ADDRESS:ui_port``."""
    dns_upstream: tuple[str, ...] = ("none",)
    """The agents' ``--dns-upstream`` values (``none``: names netfabric does not own get
    NXDOMAIN; an ``IP[:PORT]`` in the lab, e.g. a dnsmasq host, to forward)."""

    # -- build / load / destroy -----------------------------------------------------------

    agent_args: tuple[str, ...] | None = None
    """Exactly what each agent is started with, besides ``netfabric agent`` (``None``: see
    :meth:`agent_argv`)."""
    RESOLV_CONF: ClassVar[str] = ""
    """Each machine's /etc/resolv.conf."""

    @classmethod
    def up(cls, n: int, *, mtu: int = 1500, state_dir: str | None = None,
           names: Sequence[str] | None = None, env: dict[str, str] | None = None,
           detach: bool = False, start: bool = True,
           gossip_profile: str = "local", dns_upstream: Sequence[str] = ("none",),
           metrics_port: int = 0, ui_port: int = 0,
           agent_args: Sequence[str] | None = None) -> Lab:
        """N machines with an agent each; on any failure everything made is removed.
        ``detach``: the machines outlive this process (``lab up``). ``start=False``: the
        agents are not started. ``agent_args``: exactly what each agent is started with
        (default: ``--advertise-addr eth0`` and the lab's gossip profile and upstreams)."""
        state_dir = state_dir or lab_dir()
        names = list(names) if names else [f"node{i + 1}" for i in range(n)]
        from netfabric.lab.topology import new_prefix

        prefix = new_prefix()
        root = os.path.join(state_dir, prefix)
        lab = cls(prefix=prefix, mtu=mtu, root=root, gossip_profile=gossip_profile,
                  dns_upstream=tuple(dns_upstream), metrics_port=metrics_port, ui_port=ui_port,
                  agent_args=None if agent_args is None else tuple(agent_args))
        try:
            os.makedirs(lab.root, exist_ok=True)
            lab.topo = Topology.build(n, mtu=mtu, prefix=prefix, machines=True,
                                      root=os.path.join(root, "machines"), detach=detach,
                                      names=names, resolv_conf=cls.RESOLV_CONF)
            for host in lab.topo.hosts:
                m = lab.topo.machine(host)
                lab.agents.append(AgentProc(
                    name=host.name, host=host.name, netns=host.netns, address=host.address,
                    data_dir=m.private_dir("/var/lib/netfabric"),
                    socket=m.path(DEFAULT_SOCKET), machine_pid=m.pid,
                    log=os.path.join(m.root, "agent.log")))
            lab.save()
            if not start:
                return lab
            for agent in lab.agents:
                lab.start_agent(agent, env=env)
            for agent in lab.agents:
                lab.wait_ready(agent)
        except BaseException:
            lab.down()
            raise
        return lab

    @property
    def state_file(self) -> str:
        return self.root + ".json"

    def save(self) -> None:
        data = {"prefix": self.prefix, "mtu": self.mtu, "root": self.root,
                "gossip_profile": self.gossip_profile, "dns_upstream": list(self.dns_upstream),
                "metrics_port": self.metrics_port, "ui_port": self.ui_port,
                "agent_args": None if self.agent_args is None else list(self.agent_args),
                "agents": [asdict(a) for a in self.agents]}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, prefix: str | None = None, *, state_dir: str | None = None) -> Lab:
        """The lab of ``prefix``, or the only one there is."""
        state_dir = state_dir or lab_dir()
        try:
            files = sorted(f for f in os.listdir(state_dir) if f.endswith(".json"))
        except FileNotFoundError:
            files = []
        if prefix:
            files = [f for f in files if f == f"{prefix}.json"]
        if not files:
            raise LabError("no lab is up" + (f" with prefix {prefix}" if prefix else "")
                           + ": run `netfabric lab up --hosts 3`")
        if len(files) > 1:
            raise InvalidArgument("several labs are up: name one: "
                                  + ", ".join(f[:-5] for f in files))
        path = os.path.join(state_dir, files[0])
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
            return cls(prefix=raw["prefix"], mtu=int(raw["mtu"]), root=raw["root"],
                       agents=[AgentProc(**a) for a in raw["agents"]],
                       gossip_profile=str(raw.get("gossip_profile", "local")),
                       dns_upstream=tuple(str(u) for u in raw.get("dns_upstream", ["none"])),
                       metrics_port=int(raw.get("metrics_port", 0)),
                       ui_port=int(raw.get("ui_port", 0)),
                       agent_args=(None if raw.get("agent_args") is None
                                   else tuple(str(a) for a in raw["agent_args"])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabError(f"lab state {path} is unreadable: {exc}") from exc

    def machine(self, name: str) -> Machine:
        """The machine of host ``name`` (a lab built in this process)."""
        if self.topo is None:
            raise LabError(f"lab {self.prefix} was loaded from its state file: use "
                           "agent(name).enter(argv)")
        return self.topo.machine(self.topo.host(self.agent(name).host))

    def down(self) -> None:
        """Stop every agent, end every machine, remove every file and directory of the lab."""
        for agent in self.agents:
            self.stop_agent(agent, sig=signal.SIGTERM, wait=False)
        deadline = time.monotonic() + STOP_TIMEOUT
        for agent in self.agents:
            while agent.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.stop_agent(agent, sig=signal.SIGKILL)
        if self.topo is not None:
            self.topo.destroy()
        if self.prefix.startswith(NETNS_TAG) and len(self.prefix) > len(NETNS_TAG):
            clean(self.prefix)
        reap_children()
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_file)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    # -- agents -----------------------------------------------------------------------------

    def agent(self, name: str) -> AgentProc:
        for a in self.agents:
            if name in (a.name, a.host, a.netns):
                return a
        raise InvalidArgument(f"no host {name!r} in lab {self.prefix}: "
                              + ", ".join(a.name for a in self.agents))

    def start_agent(self, agent: AgentProc, *, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if k != "NETFABRIC_HOST"}
        agent.pid = spawn_in(agent.machine_pid, self.agent_argv(agent), log=agent.log,
                             env={**environ, **(env or {})})
        self.save()

    def agent_argv(self, agent: AgentProc) -> list[str]:
        """``netfabric agent`` as run inside the machine: on its defaults (socket, state,
        hostname, Docker plugin) with ``--advertise-addr eth0`` and the lab's gossip profile
        and upstreams, or exactly :attr:`agent_args`."""
        if self.agent_args is not None:
            return [*netfabric_argv(), "agent", *self.agent_args]
        argv = [*netfabric_argv(), "agent", "--advertise-addr", "eth0",
                "--gossip-profile", self.gossip_profile]
        for upstream in self.dns_upstream:
            argv += ["--dns-upstream", upstream]
        if self.metrics_port:
            argv += ["--metrics-addr", f"{agent.address}:{self.metrics_port}"]
        if self.ui_port:
            argv += ["--ui-addr", f"{agent.address}:{self.ui_port}"]
        return argv

    def wait_ready(self, agent: AgentProc, *, timeout: float = START_TIMEOUT) -> None:
        from netfabric.client import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                Client(agent.url, timeout=2.0).info()
                return
            except AgentUnreachable:
                pass
            if not agent.alive() or time.monotonic() > deadline:
                tail = ""
                with contextlib.suppress(OSError), open(
                        agent.log, encoding="utf-8", errors="replace") as f:
                    tail = f.read()[-800:]
                raise LabError(f"agent {agent.name} did not start: {tail.strip()}")
            time.sleep(0.05)

    def stop_agent(self, agent: AgentProc, *, sig: signal.Signals = signal.SIGKILL,
                   wait: bool = True) -> None:
        if agent.pid <= 0:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(agent.pid, sig)
        if wait:
            deadline = time.monotonic() + STOP_TIMEOUT
            while agent.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            reap_children()

    def restart_agent(self, agent: AgentProc) -> None:
        self.stop_agent(agent)
        self.start_agent(agent)
        self.wait_ready(agent)

    # -- running commands -------------------------------------------------------------------

    def netns(self, name: str, prefix: str = "") -> list[str]:
        """The named netns of host ``name`` (its machine's /run/netns) starting with
        ``prefix``."""
        try:
            names = os.listdir(self.agent(name).path("/run/netns"))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.startswith(prefix))

    def exec_argv(self, agent: AgentProc, argv: Sequence[str]) -> list[str]:
        """``argv`` inside the host's machine, with ``netfabric`` meaning this netfabric."""
        argv = list(argv)
        if argv and argv[0] == "netfabric":
            argv = [*netfabric_argv(), *argv[1:]]
        return agent.enter(argv)

    def run(self, name: str, argv: Sequence[str], *, timeout: float = 60.0,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command on host ``name`` (inside its machine, where ``netfabric`` talks to
        the agent on its default socket); output captured."""
        agent = self.agent(name)
        env = {k: v for k, v in os.environ.items() if k != "NETFABRIC_HOST"}
        try:
            proc = subprocess.run(self.exec_argv(agent, argv), capture_output=True, text=True,
                                  timeout=timeout, check=False, env=env)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} on {name} timed out after {timeout:g}s") from exc
        if check and proc.returncode != 0:
            raise NetfabricError(f"{' '.join(argv)} on {name} failed: "
                                 f"{(proc.stderr or proc.stdout).strip()}")
        return proc
