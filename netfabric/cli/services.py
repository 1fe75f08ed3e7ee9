"""``netfabric service``: services of the service fabric (definitions and backends).

``service create`` takes a VIP per network (or none, ``--endpoint-mode dnsrr``); ``service
backend add SERVICE CONTAINER`` makes a container of this node a backend, on every node.
Service verbs are for managers (a worker gives Docker's error); ``backend`` works on any
node, for the containers of that node.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from netfabric.cli.commands import group, verb_parser
from netfabric.client import Client

__all__ = ["add_service_commands"]


def _client(args: argparse.Namespace) -> Client:
    return Client(args.host)


def _cmd_create(args: argparse.Namespace) -> int:
    svc = _client(args).create_service(args.name, networks=args.network,
                                       endpoint_mode=args.endpoint_mode, publish=args.publish)
    print(svc["name"])
    return 0


def _ports(svc: dict[str, Any]) -> str:
    return ", ".join(str(p) for p in svc.get("ports", []))


def _cmd_ls(args: argparse.Namespace) -> int:
    services = _client(args).services()
    if args.quiet:
        for svc in services:
            print(svc["name"])
        return 0
    rows = [("NAME", "MODE", "BACKENDS", "VIPS", "PORTS")]
    for svc in services:
        vips = ",".join(v["addr"] for v in svc.get("vips", []))
        rows.append((svc["name"], svc["mode"], str(len(svc.get("backends", []))), vips or "-",
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
                    examples=["netfabric service create --name web --network app",
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
                   help="a published port (recorded; programmed once the ingress network "
                   "is in the agent)")
    p.set_defaults(func=_cmd_create)
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
