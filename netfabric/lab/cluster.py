"""A lab: simulated hosts with one agent process each, remembered in a state file.

``lab up`` builds the hosts with :class:`Topology` and starts ``netfabric agent`` inside each
host's netns, detached, so the lab outlives the command. Agents enter the netns with
``nsenter --net`` and not ``ip netns exec``: the latter gives the process a private mount
namespace, and the sandbox netns the agent then mounts under /run/netns would not be visible
to anyone else. The state file
(``$NETFABRIC_LAB_DIR/<prefix>.json``, default dir ``/run/netfabric/labs``) lets ``lab
down`` and ``lab exec`` work from another process. Tests and the benchmark use :class:`Lab`
directly, as a context manager that always tears down.
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

from netfabric.errors import AgentUnreachable, InvalidArgument, LabError, NetfabricError
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


@dataclass
class AgentProc:
    """One host of the lab and its agent."""

    name: str
    host: str
    netns: str
    address: str
    data_dir: str
    socket: str
    pid: int = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

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

    @classmethod
    def up(cls, n: int, *, mtu: int = 1500, state_dir: str | None = None,
           names: Sequence[str] | None = None, env: dict[str, str] | None = None,
           gossip_profile: str = "local", dns_upstream: Sequence[str] = ("none",),
           metrics_port: int = 0, ui_port: int = 0) -> Lab:
        """N hosts with an agent each; on any failure everything made is removed."""
        state_dir = state_dir or lab_dir()
        topo = Topology.build(n, mtu=mtu)
        lab = cls(prefix=topo.prefix, mtu=mtu, root=os.path.join(state_dir, topo.prefix),
                  topo=topo, gossip_profile=gossip_profile, dns_upstream=tuple(dns_upstream),
                  metrics_port=metrics_port, ui_port=ui_port)
        try:
            os.makedirs(lab.root, exist_ok=True)
            for i, host in enumerate(topo.hosts):
                name = names[i] if names else f"node{host.index}"
                data = os.path.join(lab.root, name)
                lab.agents.append(AgentProc(name=name, host=host.name, netns=host.netns,
                                            address=host.address, data_dir=data,
                                            socket=os.path.join(data, "agent.sock")))
            lab.save()
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
                       ui_port=int(raw.get("ui_port", 0)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabError(f"lab state {path} is unreadable: {exc}") from exc

    def down(self) -> None:
        """Stop every agent and remove every netns, file and directory of the lab."""
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
        os.makedirs(agent.data_dir, exist_ok=True)
        argv = self.agent_argv(agent)
        with open(os.path.join(agent.data_dir, "agent.log"), "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, env={**os.environ, **(env or {})})
        agent.pid = proc.pid
        # The child is reaped by nobody if we exit first; that is what start_new_session is
        # for. While we live, forget the Popen without a ResourceWarning:
        proc.returncode = 0
        self.save()

    def agent_argv(self, agent: AgentProc) -> list[str]:
        """``netfabric agent`` in the host's netns, with the lab's profile and upstreams."""
        argv = ["nsenter", f"--net=/run/netns/{agent.netns}", "--", *netfabric_argv(), "agent",
                "--data-dir", agent.data_dir, "--socket", agent.socket,
                "--advertise-addr", agent.address, "--hostname", agent.name,
                "--netns-name", agent.netns, "--gossip-profile", self.gossip_profile]
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
                        os.path.join(agent.data_dir, "agent.log"), encoding="utf-8",
                        errors="replace") as f:
                    tail = f.read()[-800:]
                raise LabError(f"agent {agent.name} did not start: {tail.strip()}")
            time.sleep(0.05)

    def stop_agent(self, agent: AgentProc, *, sig: signal.Signals = signal.SIGKILL,
                   wait: bool = True) -> None:
        if agent.pid <= 0:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(agent.pid, sig)
        if wait:
            deadline = time.monotonic() + STOP_TIMEOUT
            while agent.alive() and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(agent.pid, os.WNOHANG)
                time.sleep(0.02)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(agent.pid, os.WNOHANG)

    def restart_agent(self, agent: AgentProc) -> None:
        self.stop_agent(agent)
        self.start_agent(agent)
        self.wait_ready(agent)

    # -- running commands -------------------------------------------------------------------

    def exec_argv(self, agent: AgentProc, argv: Sequence[str]) -> list[str]:
        """``argv`` inside the host's netns, with ``netfabric`` meaning this netfabric."""
        argv = list(argv)
        if argv and argv[0] == "netfabric":
            argv = [*netfabric_argv(), *argv[1:]]
        return ["nsenter", f"--net=/run/netns/{agent.netns}", "--", *argv]

    def run(self, name: str, argv: Sequence[str], *, timeout: float = 60.0,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command on host ``name`` against its agent; output captured."""
        agent = self.agent(name)
        try:
            proc = subprocess.run(self.exec_argv(agent, argv), capture_output=True, text=True,
                                  timeout=timeout, check=False,
                                  env={**os.environ, "NETFABRIC_HOST": agent.url})
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} on {name} timed out after {timeout:g}s") from exc
        if check and proc.returncode != 0:
            raise NetfabricError(f"{' '.join(argv)} on {name} failed: "
                                 f"{(proc.stderr or proc.stdout).strip()}")
        return proc
