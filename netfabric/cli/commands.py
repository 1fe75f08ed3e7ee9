"""The Docker-like verbs: cluster, node, network, container, exec, agent.

Each ``_cmd_*`` parses nothing itself: argparse hands it a namespace, it calls
:class:`netfabric.Client` and prints with :mod:`netfabric.cli.output`. Errors propagate as
NetfabricError to ``main``, which prints one line and picks Docker's exit code.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from netfabric.api.types import ContainerInfo, GossipInfo, NetworkInfo, NodeInfo, Role, to_wire
from netfabric.cli.filters import (
    CONTAINER_KEYS,
    NETWORK_KEYS,
    NODE_KEYS,
    PREDEFINED,
    parse_filters,
    select,
)
from netfabric.cli.names import random_name
from netfabric.cli.output import (
    CONTAINERS,
    NETWORKS,
    NODES,
    Listing,
    docker_container,
    docker_network,
    docker_node,
    format_inspect,
    format_list,
)
from netfabric.client import Client
from netfabric.errors import (
    AlreadyExists,
    InUse,
    InvalidArgument,
    NetfabricError,
    NotAManager,
    NotFound,
    NotInCluster,
)

__all__ = ["EXIT_CANNOT_INVOKE", "EXIT_NOT_FOUND", "EXIT_RUN_REFUSED", "add_commands",
           "error_exit_code", "group", "verb_parser"]

EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
"""``exec`` of a program that cannot run / is not found, as Docker and the shell say it."""

EXIT_RUN_REFUSED = 125
"""Docker's exit code when ``run`` is refused (by the CLI or the daemon)."""

FORMAT_HELP = ("'table' (default), 'json' (one object per line), 'table TEMPLATE' or a Go "
               "template, e.g. '{{.Name}}'")


def _client(args: argparse.Namespace) -> Client:
    return Client(args.host)


def _emit(text: str) -> None:
    if text:
        print(text)


def _list(args: argparse.Namespace, listing: Listing, fetch: Callable[[], Sequence[Any]],
          keys: dict[str, Any]) -> int:
    filters = parse_filters(args.filter, keys)  # a bad filter is refused before any call
    items = fetch()
    items = select(items, filters, keys)
    _emit(format_list(listing, items, args.format, quiet=args.quiet, trunc=not args.no_trunc))
    return 0


# -- cluster -----------------------------------------------------------------------------------

def _cmd_info(args: argparse.Namespace) -> int:
    info = _client(args).info()
    if args.format:
        plain = {"ID": info.node_id, "Name": info.hostname,
                 "Swarm": {"NodeID": info.node_id, "NodeAddr": info.advertise_addr,
                           "LocalNodeState": "inactive" if str(info.role) == "standalone"
                           else "active", "ControlAvailable": str(info.role) == "manager",
                           "Cluster": {"ID": info.cluster_id}, "Nodes": info.nodes,
                           "Managers": len(info.managers),
                           "RemoteManagers": [{"Addr": m} for m in info.managers]},
                 "Role": str(info.role), "Networks": info.networks,
                 "Containers": info.containers, "ContainersRunning": info.containers,
                 "ServerVersion": info.version}
        if info.gossip is not None:
            g = info.gossip
            plain["Gossip"] = {"Members": dict(g.members), "HealthScore": g.health,
                               "Tables": dict(g.tables), "Networks": g.networks,
                               "Dropped": g.dropped, "Unauthenticated": g.unauthenticated,
                               "Counters": dict(g.counters)}
        _emit(format_inspect([plain], None if args.format == "table" else args.format))
        return 0
    print(f"Node ID:        {info.node_id}\nHostname:       {info.hostname}\n"
          f"Role:           {info.role}\nAdvertise addr: {info.advertise_addr or '-'}\n"
          f"Cluster ID:     {info.cluster_id or '-'}\n"
          f"Managers:       {', '.join(info.managers) or '-'}\nNodes:          {info.nodes}\n"
          f"Networks:       {info.networks}\nContainers:     {info.containers}\n"
          f"Version:        {info.version}")
    if info.ui_url or info.metrics_url:
        print(f"Page:           {info.ui_url or '-'}\nMetrics:        {info.metrics_url or '-'}")
    if info.gossip is not None:
        print(_gossip_lines(info.gossip))
    return 0


def _gossip_lines(g: GossipInfo) -> str:
    """The gossip view of `info`, as `docker info` prints its Swarm section."""
    members = ", ".join(f"{n} {state}" for state, n in g.members.items()) or "-"
    tables = ", ".join(f"{t} {n}" for t, n in sorted(g.tables.items())) or "-"
    c = g.counters
    return (f"Gossip:\n Members:        {members}\n"
            f" Health score:   {g.health} (0 is healthy)\n"
            f" Networks:       {g.networks}\n Tables:         {tables}\n"
            f" Messages:       {c.get('datagrams_in', 0)} in, {c.get('datagrams_out', 0)} out"
            f" ({c.get('bytes_in', 0)} / {c.get('bytes_out', 0)} bytes)\n"
            f" Dropped:        {g.dropped}\n Unauthenticated: {g.unauthenticated}")


def _cmd_doctor(args: argparse.Namespace) -> int:
    if args.source is None:
        report = _client(args).doctor_host(repair=args.repair)
    elif args.target is None or args.repair:
        raise InvalidArgument("doctor takes SOURCE and TARGET, or neither (with --repair)")
    else:
        report = _client(args).doctor(args.source, args.target)
    if args.format == "json":
        _emit(json.dumps(to_wire(report), indent=1) + "\n")
        return 0 if report.ok else 1
    marks = {"ok": "ok  ", "fail": "FAIL", "skip": "skip"}
    lines = [f"{report.source} -> {report.target}"]
    width = max((len(s.name) for s in report.steps), default=11)
    for step in report.steps:
        lines.append(f"  [{marks.get(step.status, step.status)}] {step.name:<{width}} "
                     f"{step.detail}")
        if step.fix:
            lines.append(f"         {'':<{width}} fix: {step.fix}")
    lines.append("all ok" if report.ok else
                 f"broken at: {next(s.name for s in report.steps if s.status == 'fail')}")
    _emit("\n".join(lines) + "\n")
    return 0 if report.ok else 1


def _cmd_ui(args: argparse.Namespace) -> int:
    info = _client(args).info()
    if not info.ui_url:
        raise InvalidArgument("this agent serves no page: start it with "
                              "`netfabric agent ... --ui-addr HOST:PORT`")
    print(info.ui_url)
    return 0


def _store_url(args: argparse.Namespace) -> str | None:
    """``--store`` with ``--store-cacert/--store-cert/--store-key`` as its TLS parameters
    (absolute paths: the agent on this host reads the files)."""
    files = {flag: getattr(args, f"store_{flag}", None) for flag in ("cacert", "cert", "key")}
    if not any(files.values()):
        return args.store  # type: ignore[no-any-return]
    if not args.store:
        raise InvalidArgument("--store-cacert, --store-cert and --store-key need --store "
                              "etcd://HOST:2379")
    if not files["cacert"]:
        raise InvalidArgument("--store-cert/--store-key need --store-cacert (the CA that "
                              "signed the etcd members' certificates)")
    from netfabric.store.etcd import EtcdTls, with_tls

    def absolute(path: str | None) -> str | None:
        return os.path.abspath(path) if path else None

    tls = EtcdTls(ca=absolute(files["cacert"]) or "", cert=absolute(files["cert"]),
                  key=absolute(files["key"]))
    return with_tls(args.store, tls)


def _cmd_init(args: argparse.Namespace) -> int:
    client = _client(args)
    token = client.init(args.advertise_addr, listen_addr=args.listen_addr,
                        store=_store_url(args))
    info = client.info()
    print(f"Swarm initialized: current node ({info.node_id}) is now a manager.\n\n"
          "To add a worker to this swarm, run the following command:\n\n"
          f"    {token.command}\n\n"
          "To add a manager to this swarm, run 'netfabric join-token manager' and follow "
          "the instructions.")
    return 0


def _cmd_join(args: argparse.Namespace) -> int:
    files = {f"store_{flag}": os.path.abspath(path) for flag in ("cacert", "cert", "key")
             if (path := getattr(args, f"store_{flag}", None))}
    info = _client(args).join(args.token, args.remote, advertise_addr=args.advertise_addr,
                              **files)
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
    client = _client(args)
    cut: list[str] = []
    if args.force:  # say which endpoints go: the containers stay, on their local networks
        swarm = {n.id for n in client.networks() if n.scope == "swarm"}
        cut = [f"{c.name} ({e.network})" for c in client.containers() for e in c.networks
               if e.network_id in swarm]
    client.leave(force=args.force)
    print("Node left the swarm.")
    if cut:
        print("Disconnected from cluster networks: " + ", ".join(cut) + " (the containers "
              "stay, with their local networks)")
    return 0


def _cmd_node_ls(args: argparse.Namespace) -> int:
    return _list(args, NODES, _client(args).nodes, NODE_KEYS)


def _find_node(nodes: Sequence[NodeInfo], ref: str) -> NodeInfo:
    if ref == "self":
        found = [n for n in nodes if n.is_self]
    else:
        found = [n for n in nodes if n.id == ref or n.hostname == ref] or \
                [n for n in nodes if n.id.startswith(ref)]
    if len(found) > 1:
        raise InvalidArgument(f"node {ref} is ambiguous ({len(found)} matches)")
    if not found:
        raise NotFound(f"No such node: {ref}")
    return found[0]


def _cmd_node_inspect(args: argparse.Namespace) -> int:
    nodes = _client(args).nodes()

    def one(ref: str) -> dict[str, Any]:
        return docker_node(_find_node(nodes, ref))

    if args.pretty:
        return _inspect_many(args, lambda ref: _pretty_node(_find_node(nodes, ref)),
                             pretty=True)
    return _inspect_many(args, one)


def _pretty_node(n: NodeInfo) -> dict[str, Any]:
    lines = [f"ID:\t\t\t{n.id}", f"Hostname:\t\t{n.hostname}",
             f"Status:\n State:\t\t\t{str(n.status).capitalize()}\n"
             f" Availability:\t\t{str(n.availability).capitalize()}\n"
             f" Address:\t\t{n.address}"]
    if n.manager_status:
        lines.append(f"Manager Status:\n Address:\t\t{n.address}:2377\n"
                     f" Raft Status:\t\t{(n.reachability or 'reachable').capitalize()}\n"
                     f" Leader:\t\t"
                     f"{'Yes' if n.leader else 'No'}")
    return {"text": "\n".join(lines)}


def _cmd_node_rm(args: argparse.Namespace) -> int:
    client = _client(args)
    for node in args.nodes:
        client.remove_node(node, force=args.force)
        print(node)
    return 0


def _cmd_node_promote(args: argparse.Namespace) -> int:
    return _change_roles(args, Role.MANAGER)


def _cmd_node_demote(args: argparse.Namespace) -> int:
    return _change_roles(args, Role.WORKER)


def _change_roles(args: argparse.Namespace, role: Role) -> int:
    """``node promote`` / ``node demote``, with Docker's words for each node."""
    client = _client(args)
    change = client.promote_node if role is Role.MANAGER else client.demote_node
    for ref in args.nodes:
        if _find_node(client.nodes(), ref).role is role:
            print(f"Node {ref} is already a {role}.")
            continue
        change(ref)
        print(f"Node {ref} promoted to a manager in the swarm." if role is Role.MANAGER
              else f"Manager {ref} demoted in the swarm.")
    return 0


def _cmd_node_update(args: argparse.Namespace) -> int:
    node = _client(args).update_node(args.node, availability=args.availability)
    print(node.hostname if args.node == node.hostname else node.id)
    return 0


# -- networks ----------------------------------------------------------------------------------

def _parse_opts(pairs: list[str], what: str = "option") -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key:
            raise InvalidArgument(f"invalid {what} {pair!r}: expected KEY=VALUE")
        if not sep and what == "option":
            raise InvalidArgument(f"invalid option {pair!r}: expected KEY=VALUE, e.g. mtu=1400")
        out[key] = value
    return out


def _one_subnet(args: argparse.Namespace) -> str | None:
    """The subnet of ``network create``; each value given is honoured or refused, never
    dropped (a network here has one IPv4 subnet, and IPv6 comes from ``--ipv6``)."""
    subnets: list[str] = args.subnet
    for s in subnets:
        try:
            net = ipaddress.ip_network(s, strict=False)
        except ValueError as exc:
            raise InvalidArgument(f"invalid subnet {s!r}: {exc}") from exc
        if net.version == 6:
            raise InvalidArgument(
                f"IPv6 subnet {s} refused: a network here has one IPv4 subnet, and --ipv6 "
                "gives its endpoints IPv6 addresses from a prefix the network derives")
    if len(subnets) > 1:
        raise InvalidArgument(
            f"several subnets refused ({', '.join(subnets)}): a network here has one "
            "--subnet; create one network per subnet")
    for flag in ("gateway", "ip_range"):
        if len(getattr(args, flag)) > 1:
            raise InvalidArgument(f"--{flag.replace('_', '-')} given "
                                  f"{len(getattr(args, flag))} times: one per network")
    return subnets[0] if subnets else None


def _cmd_network_create(args: argparse.Namespace) -> int:
    subnet = _one_subnet(args)
    net = _client(args).create_network(
        args.name, driver=args.driver, attachable=args.attachable, subnet=subnet,
        gateway=args.gateway[0] if args.gateway else None,
        ip_range=args.ip_range[0] if args.ip_range else None, ipv6=args.ipv6,
        internal=args.internal, options=_parse_opts(args.opt),
        labels=_parse_opts(args.label, "label"))
    print(net.id)
    return 0


def _cmd_network_ls(args: argparse.Namespace) -> int:
    return _list(args, NETWORKS, _client(args).networks, NETWORK_KEYS)


def _inspect_many(args: argparse.Namespace, find: Callable[[str], dict[str, Any]], *,
                  pretty: bool = False, empty_array: bool = False) -> int:
    """Docker's inspect: the objects found are printed, each missing one is an error line,
    and the exit is 1 if any was missing."""
    objs: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in args.names:
        try:
            objs.append(find(name))
        except NotFound as exc:
            errors.append(str(exc))
    if pretty:
        _emit("\n\n".join(o["text"] for o in objs))
    elif objs or not errors or (empty_array and not args.template):
        _emit(format_inspect(objs, args.template))  # `network inspect nope` prints []
    for err in errors:
        print(f"Error: {err}", file=sys.stderr)
    return 1 if errors else 0


def _network_obj(client: Client, name: str) -> dict[str, Any]:
    try:
        return docker_network(client.inspect_network(name))
    except NotFound as exc:
        raise NotFound(f"No such network: {name}") from exc


def _container_obj(client: Client, name: str) -> dict[str, Any]:
    try:
        return docker_container(client.inspect_container(name))
    except NotFound as exc:
        raise NotFound(f"No such container: {name}") from exc


def _cmd_network_inspect(args: argparse.Namespace) -> int:
    client = _client(args)
    return _inspect_many(args, lambda name: _network_obj(client, name), empty_array=True)


def _each(names: list[str], fn: Callable[[str], Any]) -> int:
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
    return _each(args.names, client.remove_network)


PRUNE_WARNING = ("WARNING! This will remove all custom networks not used by at least one "
                 "container.\nAre you sure you want to continue? [y/N] ")


def _confirm(prompt: str) -> bool:
    print(prompt, end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")


def prunable(nets: Sequence[NetworkInfo]) -> list[NetworkInfo]:
    """Networks ``network prune`` may remove: custom ones with no endpoint this host sees
    (the agent still refuses one that is in use elsewhere in the cluster)."""
    return [n for n in nets
            if not (n.name in PREDEFINED and n.scope == "local") and not n.endpoints]


def _cmd_network_prune(args: argparse.Namespace) -> int:
    if not args.force and not _confirm(PRUNE_WARNING):
        return 0
    client = _client(args)
    keys = parse_filters(args.filter, NETWORK_KEYS)
    removed = []
    for net in select(prunable(client.networks()), keys, NETWORK_KEYS):
        try:
            client.remove_network(net.id)
        except (InUse, NotFound):
            continue  # in use on another host, or removed meanwhile
        removed.append(net.name)
    if removed:
        print("Deleted Networks:\n" + "\n".join(removed) + "\n")
    return 0


def _cmd_network_connect(args: argparse.Namespace) -> int:
    _client(args).connect(args.network, args.container, aliases=args.alias, ip=args.ip)
    return 0


def _cmd_network_disconnect(args: argparse.Namespace) -> int:
    _client(args).disconnect(args.network, args.container, force=args.force)
    return 0


# -- containers --------------------------------------------------------------------------------

GENERATED_NAME_TRIES = 5


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.detach:
        raise InvalidArgument("sandboxes have no process to attach to: use -d/--detach")
    networks: list[str] = args.network or []
    if args.ip and len(networks) > 1:
        raise InvalidArgument("--ip applies to one network: give it with `network connect "
                              "--ip` for the others")
    aliases = [*args.alias]
    extra: dict[str, Any] = {"hostname": args.hostname or "",
                             "labels": _parse_opts(args.label, "label")}
    client = _client(args)
    first = networks[0] if networks else None
    con: ContainerInfo | None = None
    if args.name:
        con = client.run(args.name, network=first, aliases=aliases, ip=args.ip, **extra)
    else:
        for attempt in range(GENERATED_NAME_TRIES):
            try:
                con = client.run(random_name(retry=attempt), network=first, aliases=aliases,
                                 ip=args.ip, **extra)
                break
            except AlreadyExists:
                continue
        if con is None:
            raise AlreadyExists("no free generated name: give one with --name")
    try:
        for net in networks[1:]:
            client.connect(net, con.name, aliases=aliases)
    except NetfabricError:
        client.remove_container(con.name, force=True)  # nothing half-made
        raise
    print(con.id)
    return 0


def error_exit_code(args: argparse.Namespace) -> int:
    """Docker's exit code for a NetfabricError out of this verb: 125 for ``run``, else 1."""
    return EXIT_RUN_REFUSED if getattr(args, "func", None) is _cmd_run else 1


def _cmd_rm(args: argparse.Namespace) -> int:
    client = _client(args)
    return _each(args.names, lambda n: client.remove_container(n, force=args.force))


def _cmd_ps(args: argparse.Namespace) -> int:
    return _list(args, CONTAINERS, _client(args).containers, CONTAINER_KEYS)


def _cmd_inspect(args: argparse.Namespace) -> int:
    client = _client(args)

    def find(name: str) -> dict[str, Any]:
        if args.type == "container":
            return _container_obj(client, name)
        if args.type == "network":
            return _network_obj(client, name)
        if args.type == "node":
            return docker_node(_find_node(client.nodes(), name))
        try:
            return docker_container(client.inspect_container(name))
        except NotFound:
            pass
        try:
            return docker_network(client.inspect_network(name))
        except NotFound:
            pass
        try:  # as Docker's inspect: nodes too, where this node can list them (a manager)
            return docker_node(_find_node(client.nodes(), name))
        except (NotFound, NotAManager, NotInCluster):
            raise NotFound(f"No such object: {name}") from None

    return _inspect_many(args, find)


def _cmd_container_inspect(args: argparse.Namespace) -> int:
    args.type = "container"
    return _cmd_inspect(args)


def _enterable(client: Client, path: str) -> str:
    """The path of a sandbox's netns as this process can open it.

    The agent may run in a mount namespace of its own (``ip netns exec HOSTNS netfabric
    agent``, or a systemd unit with private mounts): the netns it bind-mounts under
    /run/netns are then seen by no one else. ``/proc/<agent pid>/root`` shows the agent's
    view of the files, from any mount namespace (the pid from the agent socket's peer
    credentials, in this process's pid namespace)."""
    pid = client.agent_pid()
    if pid is None:
        return path
    theirs = f"/proc/{pid}/root{path}"
    try:
        st_theirs = os.stat(theirs)
    except OSError:
        return path
    try:
        st_ours = os.stat(path)
    except OSError:
        return theirs
    same = (st_ours.st_dev, st_ours.st_ino) == (st_theirs.st_dev, st_theirs.st_ino)
    return path if same else theirs


def _cmd_exec(args: argparse.Namespace) -> int:
    client = _client(args)
    con = client.inspect_container(args.name)
    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise InvalidArgument("exec needs a command, e.g. netfabric exec web1 ping -c1 db1")
    path = shutil.which(argv[0])
    if path is None:
        if "/" in argv[0] and os.path.exists(argv[0]):
            print(f'Error: exec: "{argv[0]}": permission denied', file=sys.stderr)
            return EXIT_CANNOT_INVOKE
        print(f'Error: exec: "{argv[0]}": executable file not found in $PATH',
              file=sys.stderr)
        return EXIT_NOT_FOUND
    sys.stdout.flush()
    if con.hostname:  # its own UTS namespace, so that `hostname` answers the container's
        argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', con.hostname,
                *argv]
    path = _enterable(client, con.netns_path)
    named = f"/run/netns/{con.netns}"
    if path == named:
        cmd = ["ip", "netns", "exec", con.netns, *argv]
    elif con.netns_path == named and os.path.isfile(named):
        # the agent's own mount namespace holds the netns: bind it where ``ip netns exec``
        # looks, in a mount namespace of this command's own, so that the sandbox's
        # /etc/netns/NAME/resolv.conf (its DNS) and /sys are set up the same way
        script = 'mount --no-canonicalize --bind "$1" "$2" && shift 2 && exec ip netns exec "$@"'
        cmd = ["unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", script,
               "netfabric", path, named, con.netns, *argv]
    else:
        cmd = ["nsenter", f"--net={path}", "--", *argv]
    try:
        os.execvp(cmd[0], cmd)
    except OSError as exc:
        print(f"Error: exec {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_INVOKE
    return 0  # pragma: no cover


def _cmd_agent(args: argparse.Namespace) -> int:
    from netfabric.agent.daemon import run_agent

    return run_agent(args)


def _cmd_docker_setup(args: argparse.Namespace) -> int:
    from netfabric.host.docker import DockerSetup

    setup = DockerSetup(resolv_conf=args.resolv_conf, data_dir=args.data_dir)
    done = setup.undo() if args.undo else setup.apply()
    for line in done:
        print(line)
    if not done:
        print("nothing to undo" if args.undo else "dockerd is already set up for netfabric")
        return 0
    if not args.undo:
        print("containers started from now on resolve names of every host's containers")
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from netfabric.agent.flags import DOCKER_PLUGIN_SOCKET
    from netfabric.client import DEFAULT_SOCKET
    from netfabric.host.reset import Reset

    if not args.force:
        sys.stderr.write("netfabric reset stops the agent and removes every network, "
                         "container sandbox and file netfabric made on this host. "
                         "Run it with --force.\n")
        return 1
    done = Reset(data_dir=args.data_dir, socket=args.socket or DEFAULT_SOCKET,
                 netns_prefix=args.netns_prefix,
                 plugin_socket=args.docker_plugin or DOCKER_PLUGIN_SOCKET,
                 resolv_conf=args.resolv_conf, cni_conf_dir=args.cni_conf_dir,
                 cni_bin_dir=args.cni_bin_dir).run()
    for line in done:
        print(f"removed: {line}")
    if not done:
        print("nothing to remove: netfabric left nothing on this host")
    return 0


# -- the parser --------------------------------------------------------------------------------

def verb_parser(sub: Any, name: str, summary: str, *, examples: Sequence[str] = (),
                description: str | None = None, short_h: bool = False
                ) -> argparse.ArgumentParser:
    """A verb's parser: ``summary`` in the parent's list, the description and one or two
    examples in its own ``--help``."""
    epilog = None
    if examples:
        epilog = "Examples:\n" + "\n".join(f"  {e}" for e in examples)
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=description or summary[0].upper() + summary[1:] + ".",
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=not short_h)
    if short_h:  # -h is a flag of the verb (Docker's `run -h HOSTNAME`): only --help helps
        p.add_argument("--help", action="help", help="show this help message and exit")
    return p


def _help_of(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(args: argparse.Namespace) -> int:
        p.print_help()
        return 0
    return show


def group(sub: Any, name: str, summary: str, dest: str) -> tuple[argparse.ArgumentParser, Any]:
    """A verb with verbs under it (``network``, ``node``...): alone it prints its help."""
    p = verb_parser(sub, name, summary)
    p.set_defaults(func=_help_of(p))
    return p, p.add_subparsers(dest=dest, metavar="COMMAND")


def _ls_flags(p: argparse.ArgumentParser, *, filters: str) -> None:
    p.add_argument("--format", default=None, metavar="FORMAT", help=FORMAT_HELP)
    p.add_argument("-q", "--quiet", action="store_true",
                   help="only print IDs (wins over --format)")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate IDs")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help=f"only list what matches, e.g. {filters} (repeatable)")


def _network_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="bridge", choices=["bridge", "overlay"],
                   help="bridge (one host, default) or overlay (the whole cluster; managers)")
    p.add_argument("--attachable", action="store_true",
                   help="overlay: allow `container run`/`network connect` to use it")
    p.add_argument("--subnet", action="append", default=[], metavar="CIDR",
                   help="IPv4 subnet, e.g. 10.10.0.0/24 (default: next free from the pool)")
    p.add_argument("--gateway", action="append", default=[], metavar="IP",
                   help="gateway address inside --subnet (default: its first address)")
    p.add_argument("--ip-range", action="append", default=[], metavar="CIDR",
                   help="sub-range of --subnet for dynamic addresses")
    p.add_argument("--ipv6", action="store_true", help="also give endpoints an IPv6 address")
    p.add_argument("--internal", action="store_true", help="no egress to outside the network")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="driver option, e.g. mtu=1400")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata on the network (repeatable)")
    p.add_argument("name", metavar="NAME", help="the network's name")
    p.set_defaults(func=_cmd_network_create)


CREATE_EXAMPLES = ("netfabric network create -d overlay --attachable myoverlay",
                   "netfabric network create --subnet 10.10.0.0/24 --gateway 10.10.0.1 br1")
RUN_EXAMPLES = ("netfabric run -d --network myoverlay --name web1 --network-alias web",
                "netfabric run -d --network ov1 --network br1 --name twonet")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true",
                   help="run in the background (the only mode: a sandbox has no process)")
    p.add_argument("--network", "--net", action="append", default=[], metavar="NETWORK",
                   help="network to connect to; repeat for several (default: the host's "
                        "bridge)")
    p.add_argument("--name", default=None,
                   help="container name, also its DNS name (default: a generated one)")
    p.add_argument("--network-alias", "--alias", dest="alias", action="append", default=[],
                   metavar="ALIAS", help="extra DNS name on its networks (repeatable)")
    p.add_argument("--ip", help="a specific IPv4 address on the (one) network")
    p.add_argument("-h", "--hostname", default=None,
                   help="the container's host name (default: its short ID)")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata on the container (repeatable)")
    p.set_defaults(func=_cmd_run)


def _inspect_args(p: argparse.ArgumentParser, *, what: str) -> None:
    p.add_argument("-f", "--format", dest="template", default=None, metavar="TEMPLATE",
                   help="'json' (one object per line) or a Go template, e.g. "
                        "'{{range .IPAM.Config}}{{.Subnet}}{{end}}'")
    p.add_argument("names", nargs="+", metavar=what, help=f"{what.lower()} names or IDs")


def add_commands(sub: Any) -> None:
    """Add every agent-facing command to the top-level subparsers."""
    p = verb_parser(sub, "info", "show this node and how it sees the cluster",
                    examples=["netfabric info", "netfabric info --format '{{.Swarm.NodeID}}'"])
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="'json' or a Go template over Docker's info fields")
    p.set_defaults(func=_cmd_info)

    p = verb_parser(sub, "doctor", "walk the path between two containers, step by step",
                    description="Check each step from SOURCE (a container on this host) to "
                    "TARGET (a container, a name or an address): a shared network, the name's "
                    "record, the local veth and bridge, FDB and neighbour entries against "
                    "gossip, the MTU, the peer agent in membership. Exit 0 only if all is ok.",
                    examples=["netfabric doctor web db", "netfabric doctor web 10.0.1.5 "
                              "--format json", "netfabric doctor --repair"])
    p.add_argument("source", metavar="SOURCE", nargs="?", default=None,
                   help="a container on this host (none: check the whole host)")
    p.add_argument("target", metavar="TARGET", nargs="?", default=None,
                   help="a container, a name or an address")
    p.add_argument("--repair", action="store_true",
                   help="with no SOURCE/TARGET: fix what differs from the cluster's view")
    p.add_argument("--format", default=None, choices=["json"], help="'json': the report")
    p.set_defaults(func=_cmd_doctor)

    p = verb_parser(sub, "ui", "print the address of the agent's live topology page",
                    description="Print the URL of the live page (hosts, networks, endpoints "
                    "and names, updated as gossip changes) the agent serves when started "
                    "with --ui-addr HOST:PORT.", examples=["netfabric ui"])
    p.set_defaults(func=_cmd_ui)

    p = verb_parser(sub, "init", "make this node the first manager of a new cluster",
                    description="Create a cluster with this node as its manager and print "
                    "the command that joins workers to it.",
                    examples=["netfabric init --advertise-addr eth0",
                              "netfabric init --advertise-addr 198.51.100.1"])
    p.add_argument("--advertise-addr", required=True, metavar="IP|IFACE",
                   help="address other nodes reach this manager at: an IP address or an "
                        "interface name with one IPv4 address, e.g. eth0 (looked up on the "
                        "agent's host)")
    p.add_argument("--listen-addr", metavar="IP|IFACE[:PORT]",
                   help="where the cluster endpoint listens, an address or an interface name "
                        "(default ADVERTISE-ADDR:2377)")
    p.add_argument("--store", metavar="etcd://HOST:2379[,HOST:2379...]", default=None,
                   help="keep the cluster's networks and addresses in this etcd 3.4 cluster "
                   "(default: the embedded single-manager file)")
    p.add_argument("--store-cacert", metavar="FILE", default=None,
                   help="talk TLS to etcd, trusting the CA in this PEM file")
    p.add_argument("--store-cert", metavar="FILE", default=None,
                   help="client certificate (PEM) for etcd's --client-cert-auth")
    p.add_argument("--store-key", metavar="FILE", default=None,
                   help="the client certificate's private key (PEM)")
    p.set_defaults(func=_cmd_init)

    p = verb_parser(sub, "join", "join a cluster as a worker or manager",
                    description="Join the cluster a manager at ADDR runs, with a token "
                    "from `netfabric join-token worker` on that manager.",
                    examples=["netfabric join --token SWMTKN-1-... 198.51.100.1:2377",
                              "netfabric join --advertise-addr eth0 --token SWMTKN-1-... "
                              "198.51.100.1"])
    p.add_argument("--token", required=True, help="SWMTKN-1-... token from a manager")
    p.add_argument("--advertise-addr", default=None, metavar="IP|IFACE",
                   help="address other nodes reach this node at: an IP address or an "
                        "interface name with one IPv4 address, e.g. eth0 (looked up on the "
                        "agent's host; it must be the agent's own --advertise-addr)")
    p.add_argument("remote", metavar="ADDR[:PORT]", help="a manager (port 2377 by default)")
    p.add_argument("--store-cacert", metavar="FILE", default=None,
                   help="joining as a manager of a cluster on an etcd with TLS: this host's "
                        "copy of the CA (default: the paths the cluster's first manager "
                        "gave at init)")
    p.add_argument("--store-cert", metavar="FILE", default=None,
                   help="this host's client certificate for etcd (PEM)")
    p.add_argument("--store-key", metavar="FILE", default=None,
                   help="its private key (PEM)")
    p.set_defaults(func=_cmd_join)

    p = verb_parser(sub, "join-token", "print (or rotate) a join token (managers)",
                    examples=["netfabric join-token worker",
                              "netfabric join-token -q --rotate manager"])
    p.add_argument("role", choices=["worker", "manager"], help="which token")
    p.add_argument("-q", "--quiet", action="store_true", help="only print the token")
    p.add_argument("--rotate", action="store_true",
                   help="replace the token: the old one is refused from now on")
    p.set_defaults(func=_cmd_join_token)

    p = verb_parser(sub, "leave", "leave the cluster",
                    examples=["netfabric leave", "netfabric leave --force   # a manager"])
    p.add_argument("-f", "--force", action="store_true", help="leave even as a manager")
    p.set_defaults(func=_cmd_leave)

    _, nsub = group(sub, "node", "cluster nodes (managers)", "node_command")
    p = verb_parser(nsub, "ls", "list nodes: * marks this one",
                    examples=["netfabric node ls", "netfabric node ls --format "
                              "'{{.Hostname}}: {{.Status}}' --filter role=manager"])
    _ls_flags(p, filters="role=manager, name=node2, id=ID")
    p.set_defaults(func=_cmd_node_ls)
    p = verb_parser(nsub, "inspect", "show nodes as JSON (or -f TEMPLATE)",
                    examples=["netfabric node inspect self",
                              "netfabric node inspect -f '{{.Status.State}}' node2"])
    _inspect_args(p, what="NODE")
    p.add_argument("--pretty", action="store_true", help="human-friendly text, not JSON")
    p.set_defaults(func=_cmd_node_inspect)
    p = verb_parser(nsub, "promote", "make workers managers (a cluster on etcd: init --store)",
                    examples=["netfabric node promote node3"])
    p.add_argument("nodes", nargs="+", metavar="NODE", help="node ID or hostname")
    p.set_defaults(func=_cmd_node_promote)
    p = verb_parser(nsub, "demote", "make managers workers (never the last manager)",
                    examples=["netfabric node demote node3"])
    p.add_argument("nodes", nargs="+", metavar="NODE", help="node ID or hostname")
    p.set_defaults(func=_cmd_node_demote)
    p = verb_parser(nsub, "update", "change a node's availability",
                    examples=["netfabric node update --availability drain node2"])
    p.add_argument("--availability", required=True, choices=["active", "pause", "drain"],
                   help="active: takes new work; pause: keeps what it has; drain: none")
    p.add_argument("node", metavar="NODE", help="node ID or hostname")
    p.set_defaults(func=_cmd_node_update)
    p = verb_parser(nsub, "rm", "remove a node that is gone for good; its address blocks "
                    "are given back", examples=["netfabric node rm node3",
                                                "netfabric node rm --force node3"])
    p.add_argument("-f", "--force", action="store_true",
                   help="remove it even if it is up (it stops being in the cluster)")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="node ID or hostname")
    p.set_defaults(func=_cmd_node_rm)

    _, netsub = group(sub, "network", "networks: create, ls, inspect, rm, prune, connect, "
                      "disconnect", "network_command")
    _network_create_args(verb_parser(netsub, "create", "create a network",
                                     examples=CREATE_EXAMPLES))
    p = verb_parser(netsub, "ls", "list networks",
                    examples=["netfabric network ls --filter driver=overlay",
                              "netfabric network ls --format 'table {{.Name}}\\t{{.Scope}}'"])
    _ls_flags(p, filters="driver=overlay, name=web, label=env, scope=swarm, type=custom")
    p.set_defaults(func=_cmd_network_ls)
    p = verb_parser(netsub, "inspect", "show networks as JSON (or -f TEMPLATE)",
                    examples=["netfabric network inspect myoverlay",
                              "netfabric network inspect -f "
                              "'{{range .IPAM.Config}}{{.Subnet}}{{end}}' myoverlay"])
    _inspect_args(p, what="NETWORK")
    p.set_defaults(func=_cmd_network_inspect)
    p = verb_parser(netsub, "rm", "remove networks (refused while endpoints are attached)",
                    examples=["netfabric network rm br1 myoverlay"])
    p.add_argument("names", nargs="+", metavar="NETWORK", help="network names or IDs")
    p.set_defaults(func=_cmd_network_rm)
    p = verb_parser(netsub, "prune", "remove every custom network no container uses",
                    examples=["netfabric network prune -f",
                              "netfabric network prune -f --filter driver=bridge"])
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="only prune what matches, e.g. label=env=test")
    p.set_defaults(func=_cmd_network_prune)
    p = verb_parser(netsub, "connect", "connect a container to a network",
                    examples=["netfabric network connect --alias db myoverlay web1"])
    p.add_argument("--alias", action="append", default=[], help="extra DNS name (repeatable)")
    p.add_argument("--ip", help="a specific IPv4 address")
    p.add_argument("network", metavar="NETWORK", help="network name or ID")
    p.add_argument("container", metavar="CONTAINER", help="container name or ID")
    p.set_defaults(func=_cmd_network_connect)
    p = verb_parser(netsub, "disconnect", "disconnect a container from a network",
                    examples=["netfabric network disconnect myoverlay web1"])
    p.add_argument("-f", "--force", action="store_true",
                   help="accepted for Docker parity (disconnect never waits)")
    p.add_argument("network", metavar="NETWORK", help="network name or ID")
    p.add_argument("container", metavar="CONTAINER", help="container name or ID")
    p.set_defaults(func=_cmd_network_disconnect)
    _network_create_args(verb_parser(sub, "create", "shortcut for `network create`",
                                     examples=CREATE_EXAMPLES))

    _, csub = group(sub, "container", "containers (sandboxes): run, rm, ls, inspect",
                    "container_command")
    _run_args(verb_parser(csub, "run", "create a sandbox (a netns) on networks",
                          examples=RUN_EXAMPLES, short_h=True))
    _rm_args(verb_parser(csub, "rm", "remove containers and their endpoints",
                         examples=["netfabric container rm web1 web2"]))
    _ps_args(verb_parser(csub, "ls", "list containers", examples=_PS_EXAMPLES))
    p = verb_parser(csub, "inspect", "show containers as JSON (or -f TEMPLATE)",
                    examples=_INSPECT_EXAMPLES)
    _inspect_args(p, what="CONTAINER")
    p.set_defaults(func=_cmd_container_inspect)

    _run_args(verb_parser(sub, "run", "shortcut for `container run`", examples=RUN_EXAMPLES,
                          short_h=True))
    _rm_args(verb_parser(sub, "rm", "shortcut for `container rm`",
                         examples=["netfabric rm web1"]))
    _ps_args(verb_parser(sub, "ps", "shortcut for `container ls`", examples=_PS_EXAMPLES))
    p = verb_parser(sub, "inspect", "show containers or networks as JSON (or -f TEMPLATE)",
                    examples=_INSPECT_EXAMPLES)
    p.add_argument("--type", choices=["container", "network", "node"], default=None,
                   help="only look for this kind of object")
    _inspect_args(p, what="NAME")
    p.set_defaults(func=_cmd_inspect)

    p = verb_parser(sub, "exec", "run a host program inside a container's netns",
                    description="Run CMD inside the container's network namespace, with "
                    "its resolv.conf (so names resolve through the embedded DNS). Exit 127 "
                    "if CMD is not found, 126 if it cannot run.",
                    examples=["netfabric exec web1 ping -c1 db1",
                              "netfabric exec web1 -- getent hosts web"])
    p.add_argument("name", metavar="CONTAINER", help="container name or ID")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD...",
                   help="the program and its arguments")
    p.set_defaults(func=_cmd_exec)

    from netfabric.agent.flags import DEFAULT_DATA_DIR, DEFAULT_NETNS_PREFIX, add_argument_flags
    from netfabric.host.docker import RESOLV_CONF
    from netfabric.plugin.cni.install import BIN_DIR as CNI_BIN_DIR
    from netfabric.plugin.cni.install import CONF_DIR as CNI_CONF_DIR

    p = verb_parser(sub, "docker", "make the local dockerd use netfabric",
                    examples=["netfabric docker setup", "netfabric docker setup --undo"],
                    description="`docker setup` tells this host's dockerd what it needs so "
                    "that containers on netfabric networks resolve containers of other hosts "
                    "by name: Docker's embedded DNS forwards such names to the host's "
                    "resolv.conf servers, so netfabric's resolver (127.0.0.11 in the host) "
                    "goes first in /etc/resolv.conf, the host's servers after it. Idempotent; "
                    "--undo restores the file. (dockerd finds the plugin by itself: the agent "
                    "serves /run/docker/plugins/netfabric.sock.)")
    dsub = p.add_subparsers(dest="docker_command", metavar="COMMAND", required=True)
    q = verb_parser(dsub, "setup", "set dockerd up for netfabric (or --undo it)",
                    examples=["netfabric docker setup", "netfabric docker setup --undo"])
    q.add_argument("--undo", action="store_true", help="restore the host's resolv.conf")
    q.add_argument("--resolv-conf", default=RESOLV_CONF, metavar="PATH",
                   help=f"the host's resolver configuration (default {RESOLV_CONF})")
    q.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"where the setup is recorded for --undo (default {DEFAULT_DATA_DIR})")
    q.set_defaults(func=_cmd_docker_setup)

    p = verb_parser(sub, "reset", "remove everything netfabric made on this host",
                    examples=["netfabric reset --force"],
                    description="Stop the agent if it runs, then remove every netns, link, "
                    "nftables table and file netfabric made on this host, and dockerd's setup "
                    "(`docker setup --undo`), saying what was removed: the host is as before "
                    "the agent first ran. Like `kubeadm reset`.")
    p.add_argument("-f", "--force", action="store_true", help="do it (no question asked)")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                   help=f"the agent's state directory (default {DEFAULT_DATA_DIR})")
    p.add_argument("--socket", default=None, metavar="PATH",
                   help="the agent's API socket (default /run/netfabric/agent.sock)")
    p.add_argument("--netns-prefix", default=DEFAULT_NETNS_PREFIX, metavar="PREFIX",
                   help=f"the agent's --netns-prefix (default {DEFAULT_NETNS_PREFIX!r})")
    p.add_argument("--docker-plugin", default=None, metavar="PATH",
                   help="the agent's plugin socket (default /run/docker/plugins/"
                        "netfabric.sock)")
    p.add_argument("--resolv-conf", default=RESOLV_CONF, metavar="PATH",
                   help=f"the host's resolver configuration (default {RESOLV_CONF})")
    p.add_argument("--cni-conf-dir", default=CNI_CONF_DIR, metavar="DIR",
                   help=f"where `netfabric cni install` wrote conflists (default {CNI_CONF_DIR})")
    p.add_argument("--cni-bin-dir", default=CNI_BIN_DIR, metavar="DIR",
                   help=f"where it wrote the plugin (default {CNI_BIN_DIR})")
    p.set_defaults(func=_cmd_reset)


    p = verb_parser(sub, "agent", "run the agent daemon (one per host)",
                    description="Run the netfabric agent on this host (in the network "
                    "namespace it starts in). It serves the local API on --socket and the "
                    "Docker plugin until SIGTERM.",
                    examples=["netfabric agent --advertise-addr eth0",
                              "netfabric agent --advertise-addr 198.51.100.1 "
                              "--docker-plugin none"])
    add_argument_flags(p)
    p.set_defaults(func=_cmd_agent)


_PS_EXAMPLES = ("netfabric ps --filter network=myoverlay --format '{{.Names}}'",
                "netfabric ps -q --no-trunc")
_INSPECT_EXAMPLES = (
    "netfabric inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' web1",
    "netfabric inspect --type network -f '{{json .IPAM.Config}}' myoverlay")


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="accepted for Docker parity")
    p.add_argument("names", nargs="+", metavar="CONTAINER", help="container names or IDs")
    p.set_defaults(func=_cmd_rm)


def _ps_args(p: argparse.ArgumentParser) -> None:
    _ls_flags(p, filters="name=web, network=myoverlay, label=env, node=node2")
    p.add_argument("-a", "--all", action="store_true",
                   help="accepted for Docker parity: every sandbox is running")
    p.set_defaults(func=_cmd_ps)
