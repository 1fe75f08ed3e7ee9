"""``netfabric lab ...``: the lab's commands over :mod:`netfabric.lab` (the only module
outside ``netfabric/lab/`` that imports it: nothing else may know it runs in a lab)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

from netfabric.cli.commands import verb_parser
from netfabric.errors import InvalidArgument, LabError

__all__ = ["add_lab_commands"]


Command = Callable[[argparse.Namespace], int]


def _stoppable(func: Command) -> Command:
    """A lab command stopped by SIGTERM still removes what it built."""

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        from netfabric.lab.topology import exit_on_sigterm

        exit_on_sigterm()
        return func(args)

    return run


def _cmd_clean(args: argparse.Namespace) -> int:
    from netfabric.lab.topology import NETNS_TAG, clean

    removed = clean(args.prefix or NETNS_TAG)
    for ns in removed:
        print(f"removed netns {ns}")
    if not removed:
        print("nothing to clean")
    return 0


def _cmd_ping(args: argparse.Namespace) -> int:
    from netfabric.lab.topology import Topology

    with Topology.build(args.hosts, mtu=args.mtu, prefix=args.prefix, machines=True) as topo:
        for h in topo.hosts:   # each a machine: its own network, mount, UTS, PID namespaces
            print(f"{h.name}\t{h.netns}\tpid {h.pid}\t{h.address}\tmtu {h.mtu}")
        for a in topo.hosts:
            for b in topo.hosts:
                if a is not b:
                    proc = topo.exec(a, ["ping", "-c1", "-W1", b.address])
                    status = "ok" if proc.returncode == 0 else "FAILED"
                    print(f"{a.name} -> {b.name} ({b.address}): {status}")
    return 0


def labs_up(state_dir: str) -> list[str]:
    """The prefixes of the labs whose state files are in ``state_dir``."""
    try:
        return sorted(f[:-5] for f in os.listdir(state_dir) if f.endswith(".json"))
    except FileNotFoundError:
        return []


def _cmd_up(args: argparse.Namespace) -> int:
    from netfabric.lab.cluster import Lab, lab_dir

    running = labs_up(lab_dir())
    if running and not args.another:
        raise LabError(f"lab {', '.join(running)} is already up: use it (netfabric lab exec "
                       "node1 -- ...), remove it (netfabric lab down), or start a second one "
                       "with --another and then name it with --prefix")
    lab = Lab.up(args.hosts, mtu=args.mtu, detach=True)
    if args.join:
        from netfabric.lab.walkthrough import form_cluster

        form_cluster(lab)
    print(f"lab {lab.prefix} is up: {len(lab.agents)} hosts, underlay mtu {lab.mtu}")
    for a in lab.agents:
        print(f"  {a.name:<8} machine {a.netns:<16} pid {a.machine_pid:<8} eth0 {a.address}")
    print(f"\nRun commands on a host:  netfabric lab exec {lab.agents[0].name} -- "
          "netfabric network ls\nRemove it all:           netfabric lab down")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from netfabric.lab.cluster import Lab

    lab = Lab.load(args.prefix)
    lab.down()
    print(f"lab {lab.prefix} removed")
    return 0


def _cmd_exec(args: argparse.Namespace) -> int:
    from netfabric.lab.cluster import Lab

    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise InvalidArgument("lab exec needs a command: netfabric lab exec node1 -- "
                              "netfabric node ls")
    lab = Lab.load(args.prefix)
    agent = lab.agent(args.hostname)
    cmd = lab.exec_argv(agent, argv)
    sys.stdout.flush()
    os.environ.pop("NETFABRIC_HOST", None)   # inside, the agent is on its default socket
    os.environ["PATH"] = with_netfabric_on_path(os.environ.get("PATH", ""))
    os.execvp(cmd[0], cmd)
    return 0  # pragma: no cover


def with_netfabric_on_path(path: str) -> str:
    """``path`` with the directory of this netfabric's ``netfabric`` script first, so that
    `lab exec node1 -- sh -c 'netfabric ...'` runs the same netfabric as the direct form."""
    scripts = sysconfig.get_path("scripts")
    if not os.path.exists(os.path.join(scripts, "netfabric")):
        return path
    return scripts + (os.pathsep + path if path else "")


def _cmd_walkthrough(args: argparse.Namespace) -> int:
    from netfabric.lab.walkthrough import run_walkthrough

    return 0 if run_walkthrough(mtu=args.mtu, keep=args.keep) else 1


def add_lab_commands(labsub: Any) -> None:
    p = verb_parser(labsub, "clean", "remove every netfabric netns (or those with PREFIX)",
                    examples=["netfabric lab clean nf3a9f1c"])
    p.add_argument("prefix", nargs="?", help="name prefix, e.g. nf3a9f1c (default: all of ours)")
    p.set_defaults(func=_stoppable(_cmd_clean))
    p = verb_parser(labsub, "ping", "build N machines, ping each pair over the underlay, remove",
                    examples=["netfabric lab ping --hosts 2"])
    p.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    p.add_argument("--mtu", type=int, default=1500, help="underlay MTU (default 1500)")
    p.add_argument("--prefix", help="name prefix, 'nf' + up to 7 chars (default: random)")
    p.set_defaults(func=_stoppable(_cmd_ping))
    p = verb_parser(labsub, "up", "build N simulated hosts and start an agent on each",
                    examples=["netfabric lab up --hosts 3 --join"],
                    description="Build N simulated machines (own network, mount, UTS and PID "
                    "namespaces; eth0 on one switch, underlay 198.51.100.0/24) and start one "
                    "netfabric agent in each, on its defaults with --advertise-addr eth0. The "
                    "lab stays up until `netfabric lab down`.")
    p.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    p.add_argument("--mtu", type=int, default=1500, help="underlay MTU (default 1500)")
    p.add_argument("--join", action="store_true",
                   help="also init a cluster on node1 and join the others as workers")
    p.add_argument("--another", action="store_true",
                   help="start a lab even though one is up (then name each with --prefix)")
    p.set_defaults(func=_stoppable(_cmd_up))
    p = verb_parser(labsub, "down", "stop the agents and remove every trace of the lab",
                    examples=["netfabric lab down", "netfabric lab down nf3a9f1c"])
    p.add_argument("prefix", nargs="?", help="which lab (needed only when several are up)")
    p.set_defaults(func=_stoppable(_cmd_down))
    p = verb_parser(labsub, "exec", "run a command on a host, against its agent",
                    examples=["netfabric lab exec node1 -- netfabric node ls",
                              "netfabric lab exec node2 -- sh -c 'netfabric ps -q | wc -l'"],
                    description="Run CMD inside machine HOSTNAME (nsenter -t PID -n -m -u -p), "
                    "where `netfabric` reaches that machine's agent on its default socket, "
                    "with this netfabric first on PATH.")
    p.add_argument("--prefix", default=None, help="which lab (when several are up)")
    p.add_argument("hostname", metavar="HOSTNAME", help="node1, node2, ...")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...",
                   help="the command; `netfabric` in it (or on PATH) is this netfabric")
    p.set_defaults(func=_stoppable(_cmd_exec))
    p = verb_parser(labsub, "walkthrough",
                    "replay the seed lab's networking on 3 hosts, step by step",
                    examples=["netfabric lab walkthrough", "netfabric lab walkthrough --keep"],
                    description="Build 3 hosts and replay the Docker Swarm lab's "
                    "network steps: init/join, bridge isolation and DNS, an overlay "
                    "across hosts, a node failure healing. Each command is printed "
                    "with its output; the lab is removed at the end.")
    p.add_argument("--mtu", type=int, default=1500, help="underlay MTU (default 1500)")
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    p.set_defaults(func=_stoppable(_cmd_walkthrough))
