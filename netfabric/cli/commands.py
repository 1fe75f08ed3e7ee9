"""The Docker-like verbs: cluster, node, network, container, exec, agent.

Each ``_cmd_*`` parses nothing itself: argparse hands it a namespace, it calls
:class:`netfabric.Client` and prints with :mod:`netfabric.cli.output`. Errors propagate as
NetfabricError to ``main``, which prints one line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any

from netfabric.api.types import to_wire
from netfabric.cli.output import (
    container_rows,
    docker_container,
    docker_network,
    network_rows,
    node_rows,
    render_template,
)
from netfabric.client import Client
from netfabric.errors import InvalidArgument, NetfabricError, NotFound

__all__ = ["add_commands"]

FORMAT_HELP = "output format: table (default) or json"


def _client(args: argparse.Namespace) -> Client:
    return Client(args.host)


def _dump(data: Any) -> None:
    print(json.dumps(to_wire(data), indent=2, sort_keys=False))


def _list_out(args: argparse.Namespace, items: list[Any], render: Any) -> None:
    if args.format == "json":
        _dump(items)
    elif getattr(args, "quiet", False):
        for item in items:
            print(getattr(item, "id", item))
    else:
        print(render(items))


# -- cluster -----------------------------------------------------------------------------------

def _cmd_info(args: argparse.Namespace) -> int:
    info = _client(args).info()
    if args.format == "json":
        _dump(info)
        return 0
    print(f"Node ID:        {info.node_id}\nHostname:       {info.hostname}\n"
          f"Role:           {info.role}\nAdvertise addr: {info.advertise_addr or '-'}\n"
          f"Cluster ID:     {info.cluster_id or '-'}\n"
          f"Managers:       {', '.join(info.managers) or '-'}\nNodes:          {info.nodes}\n"
          f"Networks:       {info.networks}\nContainers:     {info.containers}\n"
          f"Version:        {info.version}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    client = _client(args)
    token = client.init(args.advertise_addr, listen_addr=args.listen_addr)
    info = client.info()
    print(f"Swarm initialized: current node ({info.node_id}) is now a manager.\n\n"
          "To add a worker to this swarm, run the following command:\n\n"
          f"    {token.command}\n\n"
          "To add a manager to this swarm, run 'netfabric join-token manager' and follow "
          "the instructions.")
    return 0


def _cmd_join(args: argparse.Namespace) -> int:
    info = _client(args).join(args.token, args.remote)
    print(f"This node joined a swarm as a {info.role}.")
    return 0


def _cmd_join_token(args: argparse.Namespace) -> int:
    token = _client(args).join_token(args.role, rotate=args.rotate)
    if args.quiet:
        print(token.token)
        return 0
    if args.rotate:
        print(f"Successfully rotated {args.role} join token.\n")
    print(f"To add a {args.role} to this swarm, run the following command:\n\n"
          f"    {token.command}")
    return 0


def _cmd_leave(args: argparse.Namespace) -> int:
    _client(args).leave(force=args.force)
    print("Node left the swarm.")
    return 0


def _cmd_node_ls(args: argparse.Namespace) -> int:
    _list_out(args, _client(args).nodes(), node_rows)
    return 0


def _cmd_node_update(args: argparse.Namespace) -> int:
    node = _client(args).update_node(args.node, availability=args.availability)
    print(node.hostname if args.node == node.hostname else node.id)
    return 0


# -- networks ----------------------------------------------------------------------------------

def _parse_opts(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid option {pair!r}: expected KEY=VALUE, e.g. mtu=1400")
        out[key] = value
    return out


def _cmd_network_create(args: argparse.Namespace) -> int:
    net = _client(args).create_network(
        args.name, driver=args.driver, attachable=args.attachable, subnet=args.subnet,
        gateway=args.gateway, ip_range=args.ip_range, ipv6=args.ipv6, internal=args.internal,
        options=_parse_opts(args.opt))
    print(net.id)
    return 0


def _cmd_network_ls(args: argparse.Namespace) -> int:
    _list_out(args, _client(args).networks(), network_rows)
    return 0


def _cmd_network_inspect(args: argparse.Namespace) -> int:
    client = _client(args)
    objs = [docker_network(client.inspect_network(name)) for name in args.names]
    return _print_objects(args, objs)


def _print_objects(args: argparse.Namespace, objs: list[dict[str, Any]]) -> int:
    if args.template:
        for obj in objs:
            print(render_template(args.template, obj))
    else:
        print(json.dumps(objs, indent=4))
    return 0


def _each(args: argparse.Namespace, names: list[str], fn: Any) -> int:
    rc = 0
    for name in names:
        try:
            fn(name)
            print(name)
        except NetfabricError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            rc = 1
    return rc


def _cmd_network_rm(args: argparse.Namespace) -> int:
    client = _client(args)
    return _each(args, args.names, client.remove_network)


def _cmd_network_connect(args: argparse.Namespace) -> int:
    _client(args).connect(args.network, args.container, aliases=args.alias, ip=args.ip)
    return 0


def _cmd_network_disconnect(args: argparse.Namespace) -> int:
    _client(args).disconnect(args.network, args.container, force=args.force)
    return 0


# -- containers --------------------------------------------------------------------------------

def _cmd_run(args: argparse.Namespace) -> int:
    if not args.detach:
        raise InvalidArgument("sandboxes have no process to attach to: use -d/--detach")
    con = _client(args).run(args.name, network=args.network, aliases=args.alias, ip=args.ip)
    print(con.id)
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    client = _client(args)
    return _each(args, args.names, lambda n: client.remove_container(n, force=args.force))


def _cmd_ps(args: argparse.Namespace) -> int:
    _list_out(args, _client(args).containers(), container_rows)
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    client = _client(args)
    objs = []
    for name in args.names:
        try:
            objs.append(docker_container(client.inspect_container(name)))
        except NotFound:
            if args.type == "container":
                raise
            objs.append(docker_network(client.inspect_network(name)))
    return _print_objects(args, objs)


def _cmd_container_inspect(args: argparse.Namespace) -> int:
    args.type = "container"
    return _cmd_inspect(args)


def _cmd_exec(args: argparse.Namespace) -> int:
    con = _client(args).inspect_container(args.name)
    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise InvalidArgument("exec needs a command, e.g. netfabric exec web1 ping -c1 db1")
    if shutil.which(argv[0]) is None:
        raise NotFound(f"exec: {argv[0]!r}: executable file not found in $PATH")
    sys.stdout.flush()
    if con.netns_path == f"/run/netns/{con.netns}":
        cmd = ["ip", "netns", "exec", con.netns, *argv]
    else:
        cmd = ["nsenter", f"--net={con.netns_path}", "--", *argv]
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        raise NetfabricError(f"exec {argv[0]}: {exc.strerror or exc}") from exc
    return 0  # pragma: no cover


def _cmd_agent(args: argparse.Namespace) -> int:
    from netfabric.agent.daemon import run_agent

    return run_agent(args)


# -- the parser --------------------------------------------------------------------------------

def _fmt(p: argparse.ArgumentParser, *, quiet: bool = True) -> None:
    p.add_argument("--format", choices=["table", "json"], default="table", help=FORMAT_HELP)
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true", help="only print IDs")


def _network_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="bridge", choices=["bridge", "overlay"],
                   help="bridge (one host, default) or overlay (the whole cluster; managers)")
    p.add_argument("--attachable", action="store_true",
                   help="overlay: allow `container run`/`network connect` to use it")
    p.add_argument("--subnet", help="subnet in CIDR form, e.g. 10.10.0.0/24 (default: next "
                   "free from the pool)")
    p.add_argument("--gateway", help="gateway address inside --subnet (default: first)")
    p.add_argument("--ip-range", help="sub-range of --subnet for dynamic addresses")
    p.add_argument("--ipv6", action="store_true", help="also give endpoints an IPv6 address")
    p.add_argument("--internal", action="store_true", help="no egress to outside the network")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="driver option, e.g. mtu=1400")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_cmd_network_create)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true",
                   help="run in the background (the only mode: a sandbox has no process)")
    p.add_argument("--network", help="network to connect to (default: the host's bridge)")
    p.add_argument("--name", required=True, help="container name (its DNS name)")
    p.add_argument("--alias", action="append", default=[], help="extra DNS name on the network")
    p.add_argument("--ip", help="a specific IPv4 address on the network")
    p.set_defaults(func=_cmd_run)


def _inspect_args(p: argparse.ArgumentParser, *, what: str) -> None:
    p.add_argument("-f", "--format", dest="template", default=None, metavar="TEMPLATE",
                   help="Go-style template, e.g. '{{.NetworkSettings.Networks}}'")
    p.add_argument("names", nargs="+", metavar=what)


def add_commands(sub: Any) -> None:
    """Add every agent-facing command to the top-level subparsers."""
    p = sub.add_parser("info", help="show this node and how it sees the cluster")
    _fmt(p, quiet=False)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("init", help="make this node the first manager of a new cluster",
                       description="Create a cluster with this node as its manager and print "
                       "the command that joins workers to it.")
    p.add_argument("--advertise-addr", required=True, metavar="IP",
                   help="address other nodes reach this manager at")
    p.add_argument("--listen-addr", metavar="IP:PORT",
                   help="where the cluster endpoint listens (default ADVERTISE-ADDR:2377)")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("join", help="join a cluster as a worker or manager",
                       description="Join the cluster a manager at ADDR runs, with a token "
                       "from `netfabric join-token worker` on that manager.")
    p.add_argument("--token", required=True, help="SWMTKN-1-... token from a manager")
    p.add_argument("remote", metavar="ADDR[:PORT]", help="a manager (port 2377 by default)")
    p.set_defaults(func=_cmd_join)

    p = sub.add_parser("join-token", help="print (or rotate) a join token (managers)")
    p.add_argument("role", choices=["worker", "manager"])
    p.add_argument("-q", "--quiet", action="store_true", help="only print the token")
    p.add_argument("--rotate", action="store_true",
                   help="replace the token: the old one is refused from now on")
    p.set_defaults(func=_cmd_join_token)

    p = sub.add_parser("leave", help="leave the cluster")
    p.add_argument("-f", "--force", action="store_true", help="leave even as a manager")
    p.set_defaults(func=_cmd_leave)

    node = sub.add_parser("node", help="cluster nodes (managers)")
    nsub = node.add_subparsers(dest="node_command", metavar="COMMAND")
    nsub.required = True
    p = nsub.add_parser("ls", help="list nodes: * marks this one")
    _fmt(p)
    p.set_defaults(func=_cmd_node_ls)
    p = nsub.add_parser("update", help="change a node's availability")
    p.add_argument("--availability", required=True, choices=["active", "pause", "drain"])
    p.add_argument("node", metavar="NODE", help="node ID or hostname")
    p.set_defaults(func=_cmd_node_update)

    net = sub.add_parser("network", help="networks: create, ls, inspect, rm, connect, "
                         "disconnect")
    netsub = net.add_subparsers(dest="network_command", metavar="COMMAND")
    netsub.required = True
    _network_create_args(netsub.add_parser("create", help="create a network"))
    p = netsub.add_parser("ls", help="list networks")
    _fmt(p)
    p.set_defaults(func=_cmd_network_ls)
    p = netsub.add_parser("inspect", help="show networks as JSON")
    _inspect_args(p, what="NETWORK")
    p.set_defaults(func=_cmd_network_inspect)
    p = netsub.add_parser("rm", help="remove networks (refused while endpoints are attached)")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    p.set_defaults(func=_cmd_network_rm)
    p = netsub.add_parser("connect", help="connect a container to a network")
    p.add_argument("--alias", action="append", default=[], help="extra DNS name")
    p.add_argument("--ip", help="a specific IPv4 address")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=_cmd_network_connect)
    p = netsub.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=_cmd_network_disconnect)
    _network_create_args(sub.add_parser("create", help="shortcut for `network create`"))

    con = sub.add_parser("container", help="containers (sandboxes): run, rm, ls, inspect")
    csub = con.add_subparsers(dest="container_command", metavar="COMMAND")
    csub.required = True
    _run_args(csub.add_parser("run", help="create a sandbox (a netns) on a network"))
    p = csub.add_parser("rm", help="remove containers and their endpoints")
    p.add_argument("-f", "--force", action="store_true", help="accepted for Docker parity")
    p.add_argument("names", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=_cmd_rm)
    p = csub.add_parser("ls", help="list containers")
    _fmt(p)
    p.set_defaults(func=_cmd_ps)
    p = csub.add_parser("inspect", help="show containers as JSON (or -f TEMPLATE)")
    _inspect_args(p, what="CONTAINER")
    p.set_defaults(func=_cmd_container_inspect)

    _run_args(sub.add_parser("run", help="shortcut for `container run`"))
    p = sub.add_parser("rm", help="shortcut for `container rm`")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=_cmd_rm)
    p = sub.add_parser("ps", help="shortcut for `container ls`")
    _fmt(p)
    p.set_defaults(func=_cmd_ps)
    p = sub.add_parser("inspect", help="show containers or networks as JSON (or -f TEMPLATE)")
    p.add_argument("--type", choices=["container", "network"], default=None)
    _inspect_args(p, what="NAME")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("exec", help="run a host program inside a container's netns",
                       description="Run CMD inside the container's network namespace, with "
                       "its resolv.conf (so names resolve through the embedded DNS).")
    p.add_argument("name", metavar="CONTAINER")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD...")
    p.set_defaults(func=_cmd_exec)

    from netfabric.agent.daemon import add_argument_flags

    p = sub.add_parser("agent", help="run the agent daemon (one per host netns)",
                       description="Run the netfabric agent in the current network namespace. "
                       "It serves the local API on --socket until SIGTERM.")
    add_argument_flags(p)
    p.set_defaults(func=_cmd_agent)
