"""The seed lab's networking, replayed on simulated hosts: ``netfabric lab walkthrough``.

Each step is a real ``netfabric`` command run on one host against its agent, printed with
its output the way the tutorial shows it, and checked: a step whose result differs from
the lab's (an exit code, a line that must or must not appear) stops the walkthrough with
the reason. The cluster tests run the same steps as assertions.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from netfabric.errors import LabError
from netfabric.lab.cluster import Lab

__all__ = ["Step", "StepFailed", "Walkthrough", "form_cluster", "run_walkthrough"]


NAME_QUERY: Final = ("dig", "+tries=1", "+time=2", "+noall", "+comments", "+stats")
"""A DNS query through the container's resolv.conf that prints the answer's status and the
server that gave it (a dead resolver prints "no servers could be reached" instead)."""


class StepFailed(LabError):
    """A step's result differs from the lab's."""


@dataclass(frozen=True, slots=True)
class Step:
    """What one command printed."""

    host: str
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).rstrip("\n")


class Walkthrough:
    """Runs commands on a lab's hosts, prints them like the tutorial, checks them."""

    def __init__(self, lab: Lab, *, echo: Callable[[str], None] | None = print) -> None:
        self.lab = lab
        self.echo = echo

    def say(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)

    def section(self, title: str) -> None:
        self.say(f"\n### {title}\n")

    def run(self, host: str, argv: Sequence[str], *, ok: bool = True,
            expect: Sequence[str] = (), absent: Sequence[str] = (),
            retry_for: float = 0.0) -> Step:
        """Run ``argv`` on ``host``; check the exit status (``ok``) and that each regex of
        ``expect`` matches the output and none of ``absent`` does. ``retry_for`` seconds:
        repeat until it holds (for convergence after a change), printing the last try."""
        deadline = time.monotonic() + retry_for
        while True:
            proc = self.lab.run(host, argv)
            step = Step(host, tuple(argv), proc.returncode, proc.stdout, proc.stderr)
            problem = self._check(step, ok=ok, expect=expect, absent=absent)
            if problem is None or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        self.say(f"[{host}] $ {' '.join(_quote(a) for a in argv)}")
        if step.output:
            self.say(step.output)
        self.say("")
        if problem is not None:
            raise StepFailed(f"[{host}] {' '.join(argv)}: {problem}")
        return step

    @staticmethod
    def _check(step: Step, *, ok: bool, expect: Sequence[str],
               absent: Sequence[str]) -> str | None:
        if ok and step.returncode != 0:
            return f"exit status {step.returncode}, expected success"
        if not ok and step.returncode == 0:
            return "succeeded, expected a failure"
        for pattern in expect:
            if not re.search(pattern, step.output, re.M):
                return f"output lacks {pattern!r}"
        for pattern in absent:
            if re.search(pattern, step.output, re.M):
                return f"output has {pattern!r}"
        return None


def _quote(arg: str) -> str:
    return f"'{arg}'" if re.search(r"[\s{}*]", arg) else arg


def form_cluster(lab: Lab, walk: Walkthrough | None = None) -> str:
    """``init`` on the first host, ``join`` every other as a worker; returns the token."""
    walk = walk or Walkthrough(lab, echo=None)
    first = lab.agents[0]
    step = walk.run(first.name, ["netfabric", "init", "--advertise-addr", "eth0"],
                    expect=[r"is now a manager", r"netfabric join --token SWMTKN-1-"])
    match = re.search(r"netfabric join --token (\S+) (\S+)", step.stdout)
    if match is None:
        raise StepFailed("init printed no join command")
    token, addr = match.group(1), match.group(2)
    for agent in lab.agents[1:]:
        walk.run(agent.name, ["netfabric", "join", "--token", token, addr],
                 expect=[r"This node joined a swarm as a worker\."])
    return token


def walk_cluster(walk: Walkthrough) -> None:
    lab = walk.lab
    walk.section("Build your cluster")
    form_cluster(lab, walk)
    names = [a.name for a in lab.agents]
    walk.run(names[0], ["netfabric", "node", "ls"],
             expect=[r"^ID\s+HOSTNAME\s+STATUS\s+AVAILABILITY\s+MANAGER STATUS",
                     rf"\*\s+{names[0]}\s+Ready\s+Active\s+Leader",
                     *(rf"{n}\s+Ready\s+Active" for n in names[1:])], retry_for=10)
    walk.say("Commands against the cluster can only be issued from a manager:")
    walk.run(names[1], ["netfabric", "node", "ls"], ok=False,
             expect=[r"This node is not a swarm manager"])


def walk_bridge(walk: Walkthrough) -> None:
    n1, n2 = walk.lab.agents[0].name, walk.lab.agents[1].name
    walk.section("Bridge networking")
    walk.run(n1, ["netfabric", "network", "create", "mybridge"], expect=[r"^[0-9a-f]{32}$"])
    walk.run(n1, ["netfabric", "network", "ls"],
             expect=[r"^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE", r"\bbridge\s+bridge\s+local",
                     r"\bmybridge\s+bridge\s+local"])
    walk.say("On node2 the same default networks exist, with other IDs, and no mybridge:")
    walk.run(n2, ["netfabric", "network", "ls"], expect=[r"\bbridge\s+bridge\s+local"],
             absent=[r"mybridge"])
    walk.run(n1, ["netfabric", "container", "run", "--detach", "--network", "mybridge",
                  "--name", "alpine_host"])
    walk.run(n1, ["netfabric", "container", "run", "--detach", "--name", "alpine_client"])
    walk.say("The two containers share no network, so the name does not resolve: the "
             "embedded DNS answers that it does not exist (not a timeout, not a failure):")
    walk.run(n1, ["netfabric", "exec", "alpine_client", "ping", "-c1", "-W1", "alpine_host"],
             ok=False, expect=[r"alpine_host: Name or service not known"])
    walk.run(n1, ["netfabric", "exec", "alpine_client", *NAME_QUERY, "alpine_host"],
             expect=[r"status: NXDOMAIN", r"SERVER: 127\.0\.0\.11#53"])
    walk.run(n1, ["netfabric", "inspect", "-f", "{{.NetworkSettings.Networks}}",
                  "alpine_host"], expect=[r"^map\[mybridge:"])
    walk.run(n1, ["netfabric", "inspect", "-f", "{{.NetworkSettings.Networks}}",
                  "alpine_client"], expect=[r"^map\[bridge:"])
    walk.run(n1, ["netfabric", "container", "rm", "--force", "alpine_client"])
    walk.run(n1, ["netfabric", "container", "run", "--detach", "--network", "mybridge",
                  "--name", "alpine_client"])
    walk.run(n1, ["netfabric", "inspect", "-f", "{{.NetworkSettings.Networks}}",
                  "alpine_client"], expect=[r"^map\[mybridge:"])
    walk.say("On a shared network the embedded DNS resolves the name:")
    walk.run(n1, ["netfabric", "exec", "alpine_client", "ping", "-c", "3", "-i", "0.2",
                  "alpine_host"], expect=[r"3 received"])


def walk_overlay(walk: Walkthrough) -> None:
    n1, n2 = walk.lab.agents[0].name, walk.lab.agents[1].name
    walk.section("Overlay networking")
    walk.run(n1, ["netfabric", "container", "rm", "--force", "alpine_host", "alpine_client"])
    walk.run(n1, ["netfabric", "network", "create", "--attachable", "-d", "overlay",
                  "myoverlay"])
    walk.run(n1, ["netfabric", "network", "ls"], expect=[r"\bmyoverlay\s+overlay\s+swarm"])
    walk.run(n1, ["netfabric", "container", "run", "--detach", "--network", "myoverlay",
                  "--name", "alpine_host"])
    walk.say("node2 has no container on myoverlay, so the network is not extended there:")
    walk.run(n2, ["netfabric", "network", "ls"], absent=[r"myoverlay"])
    walk.run(n2, ["netfabric", "container", "run", "--detach", "--network", "myoverlay",
                  "--name", "alpine_client"])
    walk.run(n2, ["netfabric", "network", "ls"], expect=[r"\bmyoverlay\s+overlay\s+swarm"])
    walk.say("Ping alpine_host (on node1) by name from node2, across the VXLAN overlay:")
    walk.run(n2, ["netfabric", "exec", "alpine_client", "ping", "-c", "3", "-i", "0.2",
                  "alpine_host"], expect=[r"3 received"], retry_for=5)


def walk_failure(walk: Walkthrough) -> None:
    lab = walk.lab
    n1, n2, n3 = (a.name for a in lab.agents[:3])
    walk.section("Failure and recovery")
    walk.run(n3, ["netfabric", "container", "run", "--detach", "--network", "myoverlay",
                  "--name", "alpine_other"])
    walk.run(n3, ["netfabric", "exec", "alpine_other", "getent", "hosts", "alpine_client"],
             retry_for=5)
    walk.say("node2's agent is killed (kill -9): its names must go from every peer.")
    lab.stop_agent(lab.agent(n2), sig=signal.SIGKILL)
    walk.run(n1, ["netfabric", "node", "ls"], expect=[rf"{n2}\s+Down"], retry_for=15)
    walk.run(n3, ["netfabric", "exec", "alpine_other", *NAME_QUERY, "alpine_client"],
             expect=[r"status: NXDOMAIN", r"SERVER: 127\.0\.0\.11#53"], retry_for=10)
    walk.run(n3, ["netfabric", "exec", "alpine_other", "ping", "-c", "2", "-i", "0.2",
                  "alpine_host"], expect=[r"2 received"])
    walk.say("node2's agent restarts: it rebuilds its sandboxes and the network heals.")
    lab.start_agent(lab.agent(n2))
    lab.wait_ready(lab.agent(n2))
    walk.run(n1, ["netfabric", "node", "ls"], expect=[rf"{n2}\s+Ready"], retry_for=15)
    walk.run(n2, ["netfabric", "exec", "alpine_client", "ping", "-c", "2", "-i", "0.2",
                  "alpine_host"], expect=[r"2 received"], retry_for=10)
    walk.run(n3, ["netfabric", "exec", "alpine_other", "ping", "-c", "2", "-i", "0.2",
                  "alpine_client"], expect=[r"2 received"], retry_for=10)


def _site(lab: Lab, version: str) -> str:
    """A directory with an index page saying ``version``: what an image is to Docker.

    Written into every machine's own ``/srv`` (a task may run on any of them; the lab's
    directory may be under ``/run``, which each machine has private)."""
    path = f"/srv/www-{version}"
    for agent in lab.agents:
        inside = agent.path(path)
        os.makedirs(inside, exist_ok=True)
        with open(os.path.join(inside, "index.html"), "w", encoding="utf-8") as f:
            f.write(f"atsea {version}\n")
    return path


def _httpd(lab: Lab, version: str, port: int) -> list[str]:
    return ["busybox", "httpd", "-f", "-p", str(port), "-h", _site(lab, version)]


def walk_services(walk: Walkthrough) -> None:
    """The seed's second half: services, the routing mesh, upgrade and rollback, scale,
    drain; the command each task runs is what the image is to Docker."""
    lab = walk.lab
    n1, n2 = lab.agents[0].name, lab.agents[1].name
    walk.section("Deploying Swarm services")
    walk.run(n1, ["netfabric", "network", "create", "-d", "overlay", "atsea"])
    walk.run(n1, ["netfabric", "service", "create", "--name", "database", "--endpoint-mode",
                  "dnsrr", "--network", "atsea", "--publish", "mode=host,target=1433", "--",
                  *_httpd(lab, "db", 1433)], expect=[r"^database$"])
    walk.run(n1, ["netfabric", "service", "ps", "database"],
             expect=[r"^ID\s+NAME\s+NODE\s+DESIRED STATE\s+CURRENT STATE\s+ERROR\s+PORTS",
                     r"database\.1\s+node\d\s+Running\s+Running"], retry_for=20)
    walk.run(n1, ["netfabric", "service", "create", "--publish", "8080:8080", "--network",
                  "atsea", "--name", "appserver", "--", *_httpd(lab, "1.0", 8080)],
             expect=[r"^appserver$"])
    walk.run(n1, ["netfabric", "service", "ls"],
             expect=[r"appserver\s+replicated\s+1/1\s.*\*:8080->8080/tcp",
                     r"database\s+replicated\s+1/1"], retry_for=20)
    walk.say("The website answers on port 8080 of every node, with a task there or not "
             "(the routing mesh):")
    for agent in lab.agents:
        walk.run(n1, ["busybox", "wget", "-q", "-O", "-", f"http://{agent.address}:8080/"],
                 expect=[r"atsea 1\.0"], retry_for=20)
    walk.say("The application knows only the name `database`:")
    ps = walk.run(n1, ["netfabric", "service", "ps", "appserver"],
                  expect=[r"appserver\.1\s+node\d\s+Running"])
    task = re.search(r"^(\w+)\s+appserver\.1\s+(node\d)\s+Running", ps.output, re.M)
    if task is None:
        raise StepFailed("service ps shows no running appserver.1")
    sandbox = f"appserver.1.{task.group(1)}"
    walk.run(task.group(2), ["netfabric", "exec", sandbox, "getent", "hosts", "database"],
             expect=[r"^10\."], retry_for=10)

    walk.section("Upgrades and Rollback")
    walk.run(n1, ["netfabric", "service", "update", "--command", "sh -c 'exit 143'",
                  "--update-failure-action", "pause", "appserver"])
    walk.run(n1, ["netfabric", "service", "ps", "appserver"],
             expect=[r"Failed .*task: non-zero exit \(143\)", r"appserver\.1\s+node\d\s+"
                     r"Running\s+Running"], retry_for=20)
    walk.run(n1, ["netfabric", "service", "inspect", "appserver"],
             expect=[r'"state": "paused"', r"update paused due to failure"], retry_for=20)
    walk.say("The old task still serves while the update is paused:")
    walk.run(n1, ["busybox", "wget", "-q", "-O", "-", f"http://{lab.agents[2].address}:8080/"],
             expect=[r"atsea 1\.0"])
    walk.run(n1, ["netfabric", "service", "update", "--rollback", "appserver"])
    walk.run(n1, ["netfabric", "service", "inspect", "appserver"],
             expect=[r'"state": "rollback_completed"'], retry_for=20)
    walk.run(n1, ["netfabric", "service", "update", "--command",
                  " ".join(_httpd(lab, "3.0", 8080)), "--update-failure-action", "pause",
                  "appserver"])
    walk.run(n1, ["netfabric", "service", "inspect", "appserver"],
             expect=[r'"state": "completed"'], retry_for=30)
    walk.run(n1, ["busybox", "wget", "-q", "-O", "-", f"http://{lab.agents[1].address}:8080/"],
             expect=[r"atsea 3\.0"], retry_for=10)

    walk.section("Scale the front end")
    walk.run(n1, ["netfabric", "service", "update", "--replicas", "6", "appserver"])
    walk.run(n1, ["netfabric", "service", "ls"], expect=[r"appserver\s+replicated\s+6/6"],
             retry_for=30)
    walk.run(n1, ["netfabric", "service", "ps", "appserver"],
             expect=[rf"appserver\.{i}\s+node\d\s+Running\s+Running" for i in range(1, 7)])

    walk.section("Failure and recovery (services)")
    walk.run(n1, ["netfabric", "node", "update", "--availability", "drain", n2])
    walk.run(n1, ["netfabric", "service", "ps", "appserver"],
             expect=[r"Shutdown\s+Shutdown"], absent=[rf"{n2}\s+Running\s+Running",
                                                    r"Running\s+Starting"],
             retry_for=30)
    walk.run(n1, ["netfabric", "service", "ls"], expect=[r"appserver\s+replicated\s+6/6"],
             retry_for=30)
    for agent in lab.agents:
        walk.run(n1, ["busybox", "wget", "-q", "-O", "-", f"http://{agent.address}:8080/"],
                 expect=[r"atsea 3\.0"], retry_for=10)
    walk.run(n1, ["netfabric", "node", "update", "--availability", "active", n2])


def run_walkthrough(*, mtu: int = 1500, keep: bool = False,
                    echo: Callable[[str], None] | None = print) -> bool:
    """Build 3 hosts, replay every section, remove the lab (unless ``keep``)."""
    say = echo or (lambda _s: None)
    say("Building 3 simulated hosts (netns on one switch, underlay 198.51.100.0/24), one "
        "netfabric agent each...")
    lab = Lab.up(3, mtu=mtu)
    ok = False
    try:
        walk = Walkthrough(lab, echo=echo)
        for agent in lab.agents:
            say(f"  {agent.name}: eth0 {agent.address} (machine {agent.netns}, "
                f"pid {agent.machine_pid})")
        for part in (walk_cluster, walk_bridge, walk_overlay, walk_failure, walk_services):
            part(walk)
        ok = True
        say("Walkthrough complete: every step behaved as in the lab.")
    except (StepFailed, subprocess.SubprocessError) as exc:
        print(f"Error: walkthrough step failed: {exc}", file=sys.stderr)
    finally:
        if keep:
            say(f"Lab {lab.prefix} kept: `netfabric lab exec node1 -- netfabric ...`, "
                "then `netfabric lab down`.")
        else:
            lab.down()
    return ok
