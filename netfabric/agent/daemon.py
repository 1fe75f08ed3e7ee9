"""``netfabric agent``: one asyncio process per host, in the netns it is started in.

On its defaults it runs as on any host: local API ``/run/netfabric/agent.sock``, state
``/var/lib/netfabric``. The netns it starts in (the host's own, usually) gets the name
``/run/netns/PREFIX`` (as ``ip netns attach`` gives one), so that the dataplane and the
resolver reach it by name like any other; the sandbox and overlay netns it makes are named
``PREFIX-...``. PREFIX is ``--netns-prefix`` (default ``nf``).

It loads its state, builds the layers (drivers, IPAM store, DNS, gossip), recovers the
kernel to match the state, then serves the local API on a unix socket and, on a manager, the
cluster endpoint on TCP 2377. SIGTERM/SIGINT stop it cleanly; kernel state (sandboxes,
bridges, overlays) stays, as containers outlive a dockerd restart with live-restore, and the
next start reconciles it.

Other front ends attach here: :func:`add_service` registers a factory called with the
agent's front-end interface (:class:`~netfabric.agent.frontend.AgentFrontend`) before the
agent starts (so that it can register what the recovery must take back, see
``AgentFrontend.add_restorer``); each returns an object whose ``async start()`` runs once the
agent runs (the Docker plugin opens its socket there) and ``async close()`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from netfabric.agent.context import NODE_VERBS, AgentConfig, check_name
from netfabric.agent.flags import (
    DEFAULT_DATA_DIR,
    DEFAULT_NETNS_PREFIX,
    add_argument_flags,
)
from netfabric.agent.frontend import AgentFrontend
from netfabric.agent.ifaddr import resolve_addr
from netfabric.agent.ports import BlockBook, ManagerCall
from netfabric.agent.roster import MANAGERS_HEADER
from netfabric.agent.rpc import CLUSTER_PREFIX, MAC_HEADER, os_reason, split_addr, verify_mac
from netfabric.agent.sdnotify import notify
from netfabric.agent.server import Request, RpcServer
from netfabric.agent.state import LocalState
from netfabric.client import DEFAULT_SOCKET
from netfabric.errors import InvalidArgument, NetfabricError, NotAManager
from netfabric.host.reset import agent_pidfile
from netfabric.netns import name_own_netns

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_NETNS_PREFIX", "AgentService", "ServiceFactory",
           "add_argument_flags", "add_service", "current_netns", "run_agent"]

_PREFIX = re.compile(r"^nf[a-z0-9]{0,8}$")

log = logging.getLogger("netfabric.agent")


class AgentService(Protocol):
    """Something served next to the API (the Docker plugin socket, ...). A service may also
    have a ``verbs`` attribute, ``{name: async handler(args dict)}``: extra verbs of the
    local API (CNI's ``cni``), which validate their own arguments."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


ServiceFactory = Callable[[AgentFrontend, argparse.Namespace],
                          Awaitable[AgentService | None]]
_SERVICES: list[ServiceFactory] = []


async def _docker_plugin(core: AgentFrontend, args: argparse.Namespace
                         ) -> AgentService | None:
    """``--docker-plugin PATH``: the plugin package's ``serve(core, path)`` builds it."""
    path = getattr(args, "docker_plugin", None)
    if not path or path == "none":
        return None
    from netfabric.plugin import docker as plugin

    serve = getattr(plugin, "serve", None)
    if serve is None:
        raise NetfabricError("this build has no Docker plugin server (netfabric.plugin.docker)")
    svc: AgentService = await serve(core, path)
    return svc


async def _cni(core: AgentFrontend, args: argparse.Namespace) -> AgentService | None:
    """The ``cni`` verb of the local API, which ``netfabric-cni`` calls (always served)."""
    from netfabric.plugin.cni.service import serve

    svc: AgentService = await serve(core)
    return svc


def add_service(factory: ServiceFactory) -> None:
    """Register a front end started with the agent (called before :func:`run_agent`)."""
    _SERVICES.append(factory)


def current_netns() -> str | None:
    """The name under /run/netns of the netns this process runs in, if it has one."""
    try:
        mine = os.stat("/proc/self/ns/net")
        names = sorted(os.listdir("/run/netns"))
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(f"/run/netns/{name}")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
            return name
    return None


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    netns = args.netns_prefix
    if not isinstance(netns, str) or not _PREFIX.match(netns):
        raise InvalidArgument(f"invalid --netns-prefix {netns!r}: 'nf' and up to 8 lowercase "
                              "letters or digits")
    advertise = None
    if args.advertise_addr is not None:
        advertise = resolve_addr(args.advertise_addr, "--advertise-addr")
    for flag in ("gossip_port", "vxlan_port"):
        if not 0 < getattr(args, flag) < 65536:
            raise InvalidArgument(f"--{flag.replace('_', '-')} must be 1..65535")
    hostname = args.hostname or socket.gethostname()
    check_name(hostname, "host")
    data_dir = os.path.abspath(args.data_dir)
    return AgentConfig(data_dir=data_dir, socket=os.path.abspath(args.socket or DEFAULT_SOCKET),
                       hostname=hostname, host_netns=netns, advertise_addr=advertise,
                       gossip_port=args.gossip_port, vxlan_port=args.vxlan_port)


async def _serve(config: AgentConfig, args: argparse.Namespace) -> None:
    from netfabric.agent.adapters import HostBlocks, RemoteBlocks, build_layers
    from netfabric.agent.api import dispatch
    from netfabric.agent.core import AgentCore  # drivers, pyroute2: not for `netfabric --help`
    from netfabric.host import before

    os.makedirs(config.data_dir, exist_ok=True)
    os.makedirs(os.path.dirname(config.socket), exist_ok=True)
    before.record(config.data_dir)   # for `netfabric reset`, before anything is changed
    name_own_netns(config.host_netns)
    state = LocalState.load(config.data_dir, hostname=config.hostname)
    state.save(config.data_dir)
    ups = args.dns_upstream
    if ups is not None:
        ups = [u for u in ups if u != "none"]
    kernel, book, names, mesh = build_layers(config, node_id=state.node_id, dns_upstreams=ups,
                                             gossip_profile=args.gossip_profile)
    loop = asyncio.get_running_loop()

    def blocks(call: ManagerCall) -> BlockBook:
        return HostBlocks(config.data_dir, host_id=state.node_id,
                          source=RemoteBlocks(call, loop))

    core = AgentCore(config, state, kernel=kernel, book=book, names=names, mesh=mesh,
                     blocks=blocks)

    extra_verbs: dict[str, Callable[[dict[str, object]], Awaitable[object]]] = {}

    async def local(request: Request) -> object:
        handler = extra_verbs.get(request.verb)
        if handler is not None:
            return await handler(request.args)
        return await dispatch(core, request)

    async def cluster(request: Request) -> object:
        if core.state.cluster is None or (core.role.value != "manager" and
                                          request.verb not in NODE_VERBS):
            raise NotAManager("this node is not a manager")
        if request.verb != "join":
            verify_mac(core.state.cluster.secret, request.verb, request.body,
                       request.headers.get(MAC_HEADER))
        return await core.handle_cluster(request.verb, request.args)

    def managers_header() -> dict[str, str]:
        """A manager's answers tell the asking node every manager (it fails over to them)."""
        cluster = core.state.cluster
        if cluster is None or core.role.value != "manager" or not cluster.managers:
            return {}
        return {MANAGERS_HEADER: ",".join(cluster.managers)}

    api = RpcServer(local)
    cluster_server = RpcServer(cluster, prefix=CLUSTER_PREFIX, headers=managers_header)

    listening: list[str] = []

    async def open_cluster_endpoint(listen: str) -> None:
        # One endpoint at a time: opened again on the same address, it is kept; on
        # another, it moves there.
        if listening == [listen]:
            return
        await close_cluster_endpoint()
        host, port = split_addr(listen)
        await cluster_server.start_tcp(host, port)
        listening.append(listen)

    async def close_cluster_endpoint() -> None:
        """At leave (the old membership's endpoint must not outlive it) and when an init
        or join fails."""
        await cluster_server.close()
        listening.clear()

    core.set_cluster_endpoint(open_cluster_endpoint, close_cluster_endpoint)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    services: list[AgentService] = []
    from netfabric.agent.web import WebServer

    webs: list[tuple[WebServer, str]] = []
    metrics_addr: str = getattr(args, "metrics_addr", None) or ""
    ui_addr: str = getattr(args, "ui_addr", None) or ""
    for addr in (metrics_addr, ui_addr):
        if addr:
            split_addr(addr)   # a bad address fails before anything starts
    core.metrics_url = f"http://{metrics_addr}/metrics" if metrics_addr else ""
    core.ui_url = f"http://{ui_addr}/" if ui_addr else ""
    if metrics_addr and metrics_addr == ui_addr:
        webs.append((WebServer(core.observe, core.topology), metrics_addr))
    else:
        if metrics_addr:
            webs.append((WebServer(core.observe), metrics_addr))
        if ui_addr:
            webs.append((WebServer(topology=core.topology), ui_addr))
    try:
        for factory in [_docker_plugin, _cni, *_SERVICES]:
            svc = await factory(core, args)
            if svc is not None:
                services.append(svc)
                extra_verbs.update(getattr(svc, "verbs", None) or {})
        await core.start()
        await api.start_unix(config.socket)
        for web, addr in webs:
            await web.start(addr)
            log.info("web endpoint on http://%s/", addr)
        for svc in services:
            await svc.start()
        with open(agent_pidfile(config.socket), "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")   # for `netfabric reset` (and service managers)
        log.info("agent %s (%s) ready on unix://%s", state.hostname, state.node_id[:12],
                 config.socket)
        print(f"netfabric agent ready on unix://{config.socket}", flush=True)
        notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=ready on unix://{config.socket}")
        await stop.wait()
    finally:
        notify("STOPPING=1")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(agent_pidfile(config.socket))
        for svc in services:
            with contextlib.suppress(Exception):
                await svc.close()
        await api.close()
        for web, _ in webs:
            await web.close()
        await cluster_server.close()
        await core.close()


def run_agent(args: argparse.Namespace) -> int:
    """Run until SIGTERM; return the exit code."""
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    config = config_from_args(args)
    try:
        asyncio.run(_serve(config, args))
    except NetfabricError:
        raise
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise NetfabricError(f"agent failed to start: {os_reason(exc)}{where}") from exc
    return 0
