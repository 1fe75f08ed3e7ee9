"""Entry point of the `netfabric` command.

Every NetfabricError becomes one line on stderr and exit code 1 (2 for bad arguments);
no traceback reaches a user. The agent is reached at ``-H unix://PATH`` or
``$NETFABRIC_HOST``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from netfabric import __version__
from netfabric.cli.commands import add_commands
from netfabric.cli.labcmd import add_lab_commands
from netfabric.errors import InvalidArgument, NetfabricError

__all__ = ["build_parser", "main"]


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"netfabric {__version__}")
    return 0


def _cmd_lab_clean(args: argparse.Namespace) -> int:
    from netfabric.lab.topology import NETNS_TAG, clean

    removed = clean(args.prefix or NETNS_TAG)
    for ns in removed:
        print(f"removed netns {ns}")
    if not removed:
        print("nothing to clean")
    return 0


def _cmd_lab_hosts(args: argparse.Namespace) -> int:
    from netfabric.lab.topology import Topology

    with Topology.build(args.hosts, mtu=args.mtu, prefix=args.prefix) as topo:
        for h in topo.hosts:
            print(f"{h.name}\t{h.netns}\t{h.address}\tmtu {h.mtu}")
        for a in topo.hosts:
            for b in topo.hosts:
                if a is not b:
                    proc = topo.exec(a, ["ping", "-c1", "-W1", b.address])
                    status = "ok" if proc.returncode == 0 else "FAILED"
                    print(f"{a.name} -> {b.name} ({b.address}): {status}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netfabric",
        description="Overlay network fabric for containers: networks, sandboxes, DNS, cluster.",
        epilog="Start with `netfabric lab walkthrough` (the seed lab on 3 simulated hosts), or "
               "`netfabric lab up --hosts 3` then `netfabric lab exec node1 -- netfabric "
               "network ls`.",
    )
    parser.add_argument("-H", "--host", default=None, metavar="unix://PATH",
                        help="agent socket (default: $NETFABRIC_HOST, then "
                             "unix:///run/netfabric/agent.sock)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    lab = sub.add_parser("lab", help="simulated hosts (network namespaces) on this machine")
    labsub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    labsub.required = True
    p = labsub.add_parser("clean", help="remove every netfabric netns (or those with PREFIX)")
    p.add_argument("prefix", nargs="?", help="name prefix, e.g. nf3a9f1c (default: all of ours)")
    p.set_defaults(func=_cmd_lab_clean)
    p = labsub.add_parser("ping", help="build N hosts, ping each pair over the underlay, remove")
    p.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    p.add_argument("--mtu", type=int, default=1500, help="underlay MTU (default 1500)")
    p.add_argument("--prefix", help="netns name prefix, 'nf' + up to 7 chars (default: random)")
    p.set_defaults(func=_cmd_lab_hosts)
    add_lab_commands(labsub)
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "lab":
        from netfabric.lab.topology import exit_on_sigterm

        exit_on_sigterm()  # a stopped lab command still removes what it built
    try:
        rc: int = args.func(args)
    except InvalidArgument as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except NetfabricError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.command == "agent":  # a daemon's log keeps the whole story
            logging.getLogger("netfabric.agent").exception("agent crashed")
        print(f"Error: internal error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
