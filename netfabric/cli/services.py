"""``netfabric service``: services of the service fabric (definitions and backends).

``service create`` takes a VIP per network (or none, ``--endpoint-mode dnsrr``); ``service
backend add SERVICE CONTAINER`` makes a container of this node a backend, on every node.
Service verbs are for managers (a worker gives Docker's error); ``backend`` works on any
node, for the containers of that node.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from typing import Any

from netfabric.cli.commands import group, verb_parser
from netfabric.client import Client
from netfabric.errors import InvalidArgument

__all__ = ["add_service_commands"]


def _client(args: argparse.Namespace) -> Client:
    return Client(args.host)


def _cmd_create(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    svc = _client(args).create_service(args.name, networks=args.network,
                                       endpoint_mode=args.endpoint_mode, publish=args.publish,
                                       replicas=args.replicas, command=command)
    print(svc["name"])
    return 0


def _ago(since: float) -> str:
    secs = max(0, int(time.time() - since))
    if secs < 60:
        return "less than a second ago" if secs < 1 else f"{secs} seconds ago"
    if secs < 3600:
        return f"{secs // 60} minutes ago"
    return f"{secs // 3600} hours ago"


_STATE_WORDS = {"running": "Running", "starting": "Starting", "failed": "Failed",
                "complete": "Complete", "shutdown": "Shutdown", "rejected": "Rejected",
                "new": "New"}


def _cmd_ps(args: argparse.Namespace) -> int:
    client = _client(args)
    ports = ", ".join(str(p) for p in client.inspect_service(args.name).get("ports", []))
    rows = [("ID", "NAME", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR", "PORTS")]
    last_slot = None
    for t in client.service_ps(args.name):
        name = t["name"] if t["slot"] != last_slot else f" \\_ {t['name']}"
        last_slot = t["slot"]
        current = f"{_STATE_WORDS.get(t['state'], t['state'])} {_ago(t['since'])}"
        error = f'"{t["error"]}"' if t["error"] else ""
        rows.append((t["id"][:12], name, t["node"], t["desired"].capitalize(), current, error,
                     ports if t["desired"] == "running" else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    client = _client(args)
    for pair in args.pairs:
        name, sep, count = pair.partition("=")
        if not sep or not count.isdigit():
            raise InvalidArgument(f"invalid scale specifier {pair!r}: use SERVICE=REPLICAS")
        client.scale_service(name, int(count))
        print(f"{name} scaled to {count}")
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    command = shlex.split(args.command) if args.command else []
    if args.replicas is None and not command and not args.rollback and \
            args.update_failure_action is None:
        raise InvalidArgument("service update: nothing to change (--replicas, --command, "
                              "--rollback, --update-failure-action)")
    _client(args).update_service(args.name, replicas=args.replicas, command=command,
                                 failure_action=args.update_failure_action,
                                 rollback=args.rollback)
    print(args.name)
    return 0


def _ports(svc: dict[str, Any]) -> str:
    return ", ".join(str(p) for p in svc.get("ports", []))


def _cmd_ls(args: argparse.Namespace) -> int:
    services = _client(args).services()
    if args.quiet:
        for svc in services:
            print(svc["name"])
        return 0
    rows = [("NAME", "MODE", "REPLICAS", "ENDPOINT", "VIPS", "PORTS")]
    for svc in services:
        vips = ",".join(v["addr"] for v in svc.get("vips", []))
        if "replicas" in svc:   # run by netfabric: Docker's running/desired
            replicas = f"{svc['running']}/{svc['replicas']}"
        else:                   # an orchestrator's: how many backends it added
            replicas = f"{len(svc.get('backends', []))} backends"
        rows.append((svc["name"], "replicated", replicas, svc["mode"], vips or "-",
                     _ports(svc)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    client = _client(args)
    print(json.dumps([client.inspect_service(n) for n in args.names], indent=4))
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    client = _client(args)
    for name in args.names:
        client.remove_service(name)
        print(name)
    return 0


def _cmd_backend_add(args: argparse.Namespace) -> int:
    _client(args).add_backend(args.service, args.container)
    print(args.container)
    return 0


def _cmd_backend_rm(args: argparse.Namespace) -> int:
    _client(args).remove_backend(args.service, args.container)
    print(args.container)
    return 0


def add_service_commands(sub: Any) -> None:
    """Add ``service`` to the top-level subparsers."""
    sp, ssub = group(sub, "service", "manage services (VIPs, DNS, backends)", "service_cmd")
    sp.epilog = ("Examples:\n  netfabric service create --name web --network app\n"
                 "  netfabric service backend add web web1")
    p = verb_parser(ssub, "create", "create a service: a VIP per network, names in DNS",
                    examples=["netfabric service create --name web --network app --replicas 3 "
                              "-- busybox httpd -f -p 80",
                              "netfabric service create --name database --endpoint-mode dnsrr "
                              "--network atsea --publish mode=host,target=1433"])
    p.add_argument("--name", required=True, help="the service's name (and DNS name)")
    p.add_argument("--network", action="append", default=[], metavar="NET",
                   help="an overlay network to attach the service to (repeatable)")
    p.add_argument("--endpoint-mode", default="vip", choices=("vip", "dnsrr"),
                   help="vip: one load-balanced VIP per network; dnsrr: the name gives "
                   "every backend, rotated")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[mode=ingress|host,]P:T[/tcp|udp]",
                   help="a published port: ingress (every node's address, the routing "
                   "mesh) or host (only where a task runs)")
    p.add_argument("--replicas", type=int, default=None,
                   help="how many tasks netfabric runs (needs a command; default 1)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="after --: the program each task runs in its sandbox")
    p.set_defaults(func=_cmd_create)
    p = verb_parser(ssub, "ps", "list a service's tasks, with their history",
                    examples=["netfabric service ps appserver"])
    p.add_argument("name", metavar="SERVICE", help="the service's name")
    p.set_defaults(func=_cmd_ps)
    p = verb_parser(ssub, "scale", "change how many tasks services run",
                    examples=["netfabric service scale appserver=6"])
    p.add_argument("pairs", nargs="+", metavar="SERVICE=REPLICAS", help="what to scale")
    p.set_defaults(func=_cmd_scale)
    p = verb_parser(ssub, "update", "scale, roll out a new command one task at a time, or "
                    "roll back", examples=[
                        "netfabric service update --replicas 6 appserver",
                        "netfabric service update --command 'python3 -m http.server 8080' "
                        "--update-failure-action pause appserver",
                        "netfabric service update --rollback appserver"])
    p.add_argument("--replicas", type=int, default=None, help="how many tasks to run")
    p.add_argument("--command", default=None, metavar="CMD",
                   help="the new command (one string, split as a shell does)")
    p.add_argument("--update-failure-action", default=None,
                   choices=("pause", "continue", "rollback"),
                   help="what a new task that fails to start does to the update")
    p.add_argument("--rollback", action="store_true",
                   help="return to the previous command, one task at a time")
    p.add_argument("name", metavar="SERVICE", help="the service's name")
    p.set_defaults(func=_cmd_update)
    p = verb_parser(ssub, "ls", "list services", examples=["netfabric service ls"])
    p.add_argument("-q", "--quiet", action="store_true", help="only print names")
    p.set_defaults(func=_cmd_ls)
    p = verb_parser(ssub, "inspect", "show services as JSON",
                    examples=["netfabric service inspect web"])
    p.add_argument("names", nargs="+", metavar="SERVICE", help="service names")
    p.set_defaults(func=_cmd_inspect)
    p = verb_parser(ssub, "rm", "remove services", examples=["netfabric service rm web"])
    p.add_argument("names", nargs="+", metavar="SERVICE", help="service names")
    p.set_defaults(func=_cmd_rm)
    bp, bsub = group(ssub, "backend", "add or remove a backend (a container of this node)",
                     "backend_cmd")
    bp.epilog = "Examples:\n  netfabric service backend add web web1"
    p = verb_parser(bsub, "add", "make a container of this node a backend of a service",
                    examples=["netfabric service backend add web web1"])
    p.add_argument("service", help="the service's name")
    p.add_argument("container", help="a container (sandbox) of this node")
    p.set_defaults(func=_cmd_backend_add)
    p = verb_parser(bsub, "rm", "take a container out of a service (before stopping it)",
                    examples=["netfabric service backend rm web web1"])
    p.add_argument("service", help="the service's name")
    p.add_argument("container", help="a container (sandbox) of this node")
    p.set_defaults(func=_cmd_backend_rm)
