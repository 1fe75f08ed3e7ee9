"""Cluster membership on this node: init, join, join tokens, the node list, leave.

A manager holds the cluster's secret, the join secrets and the node registry, and serves the
cluster endpoint (:mod:`netfabric.agent.manager` answers it); a worker knows the managers'
addresses and the secret. On a cluster whose managers share etcd (``init --store``), the
registry and the join secrets are etcd's too, and several managers serve
(:class:`~netfabric.agent.managerset.ManagerSet`); on the embedded store, one. Gossip
starts once the node is in a cluster, seeded from the registry and the managers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from netfabric.agent import handshake
from netfabric.agent.addresses import AddressRouter
from netfabric.agent.context import AgentContext
from netfabric.agent.ifaddr import resolve_addr, resolve_hostport
from netfabric.agent.leadership import ManagerStatus
from netfabric.agent.ledger import managers_of
from netfabric.agent.managerset import ManagerSet
from netfabric.agent.ports import ClusterRecords, MeshEvent, MeshEventKind
from netfabric.agent.roster import MANAGERS_TABLE
from netfabric.agent.rpc import (
    BECOME_MANAGER,
    BECOME_WORKER,
    JOIN,
    LEAVE,
    BecomeManagerArgs,
    os_reason,
    split_addr,
)
from netfabric.agent.state import ClusterRecord, NodeRecord, new_id
from netfabric.agent.tokens import make_token, new_cluster_secret, new_role_secret
from netfabric.api.types import Availability, JoinToken, NodeInfo, NodeStatus, Role
from netfabric.errors import (
    ClusterError,
    InUse,
    InvalidArgument,
    NetfabricError,
    NotFound,
    NotInCluster,
)
from netfabric.model import Scope
from netfabric.store.etcd import (
    EtcdTls,
    check_tls_files,
    cluster_prefix,
    parse_etcd_url,
    store_tls,
    with_tls,
)

__all__ = ["ALREADY_IN_CLUSTER", "ROLE_VERBS", "SECOND_MANAGER_NEEDS_ETCD", "ClusterService"]

ROLE_VERBS = frozenset({BECOME_MANAGER.name, BECOME_WORKER.name})
"""The node verbs a manager calls to promote or demote this node."""
LAST_MANAGER = "attempting to demote the last manager of the swarm"

log = logging.getLogger(__name__)

ALREADY_IN_CLUSTER = ("This node is already part of a swarm. Use \"netfabric leave\" to leave "
                      "this swarm and join another one.")
SECOND_MANAGER_NEEDS_ETCD = (
    "a second manager needs --store etcd://...: this cluster keeps its state in the "
    "embedded single-manager store (netfabric init --store etcd://HOST:2379 makes a "
    "cluster several managers can serve); join this node as a worker")
EndpointOpener = Callable[[str], Awaitable[None]]
EndpointCloser = Callable[[], Awaitable[None]]


class ClusterService:
    """This node's membership of a cluster."""

    def __init__(self, ctx: AgentContext, addresses: AddressRouter,
                 managers: ManagerSet) -> None:
        self._ctx = ctx
        self._addresses = addresses
        self._managers = managers
        managers.on_demoted(self.become_worker)
        self._open_endpoint: EndpointOpener | None = None
        self._close_endpoint: EndpointCloser | None = None

    # -- the cluster endpoint and gossip ------------------------------------------------------

    def set_cluster_endpoint(self, opener: EndpointOpener,
                             closer: EndpointCloser | None = None) -> None:
        """The daemon's hooks that open the cluster's TCP endpoint on ``HOST:PORT`` (opening
        it again replaces it) and close it."""
        self._open_endpoint = opener
        self._close_endpoint = closer

    async def stop_cluster_endpoint(self) -> None:
        if self._close_endpoint is not None:
            await self._close_endpoint()

    async def _upgrade_records(self, records: ClusterRecords, nodes: list[NodeRecord],
                               roles: dict[str, str]) -> None:
        """A cluster on etcd made before the registry and the role secrets moved there
        (one manager, its state file held them): they go to etcd now, this manager's row
        with its cluster endpoint. ``nodes`` and ``roles`` are completed in place."""
        ctx = self._ctx
        cluster = ctx.ledger.state.cluster
        assert cluster is not None
        if not roles and cluster.role_secrets:
            await ctx.thread(records.save_roles, dict(cluster.role_secrets))
            roles.update(cluster.role_secrets)
        have, empty = {n.id for n in nodes}, not nodes
        for n in list(ctx.ledger.state.nodes.values()):
            if n.id == ctx.node_id and not n.manager_addr:
                n = replace(n, manager_addr=self._own_address(cluster))
            if n.id not in have and (empty or n.id == ctx.node_id):
                await ctx.thread(records.save_node, n)   # (or this row was lost: back)
                nodes.append(n)

    async def start_cluster_endpoint(self) -> None:
        """Serve the cluster endpoint: a manager's on its ``listen`` address; a worker's on
        its advertise address and cluster port, for the manager's calls of
        :data:`~netfabric.agent.context.NODE_VERBS` only (a worker that cannot open it still
        works; fixed addresses in its blocks then cannot be lent)."""
        ctx = self._ctx
        cluster = ctx.ledger.state.cluster
        if cluster is None or self._open_endpoint is None:
            return
        if cluster.role is Role.MANAGER:
            try:
                await self._open_endpoint(cluster.listen)
            except OSError as exc:
                raise ClusterError(f"cannot serve the cluster endpoint on {cluster.listen}: "
                                   f"{os_reason(exc)}") from exc
        elif ctx.address:
            try:
                await self._open_endpoint(f"{ctx.address}:{ctx.config.cluster_port}")
            except OSError as exc:
                log.warning("cannot serve the node endpoint on %s:%s: %s", ctx.address,
                            ctx.config.cluster_port, exc.strerror or exc)

    async def start_mesh(self) -> None:
        """Start gossip, seeded from the known nodes and managers; join the cluster networks
        this node takes part in (all on a manager, those with local endpoints on a worker)."""
        ctx = self._ctx
        state = ctx.ledger.state
        cluster = state.cluster
        assert cluster is not None
        seeds = [f"{n.address}:{n.gossip_port}" for n in state.nodes.values()
                 if n.id != state.node_id]
        seeds += [f"{split_addr(m)[0]}:{ctx.config.gossip_port}" for m in cluster.managers]
        # The networks are joined before the seeds are asked (not after the start): a
        # restarted node then gets their entries in the join exchange itself, instead of
        # from the next periodic push/pull (seconds later with the lan profile).
        networks = [net.id for net in ctx.ledger.networks()
                    if net.scope == Scope.SWARM and (ctx.role is Role.MANAGER or
                                                     ctx.ledger.local_endpoints(net.id))]
        await ctx.mesh.start(secret=cluster.secret, seeds=sorted(set(seeds)),
                             networks=networks)
        self.announce_role()

    def announce_role(self) -> None:
        """A manager announces its cluster address in the gossip table of managers (workers
        learn of it at once: :mod:`netfabric.agent.roster`); any other node withdraws its
        entry (a demoted manager). Call again whenever this node's role changes."""
        ctx = self._ctx
        cluster = ctx.ledger.state.cluster
        if cluster is None:
            return
        if cluster.role is Role.MANAGER and ctx.address:
            port = split_addr(cluster.listen)[1] if cluster.listen else ctx.config.cluster_port
            ctx.mesh.set_record(MANAGERS_TABLE, ctx.node_id, f"{ctx.address}:{port}".encode())
        else:
            ctx.mesh.delete_record(MANAGERS_TABLE, ctx.node_id)
            ctx.update_managers()

    async def on_mesh_event(self, event: MeshEvent) -> None:
        """A manager announced itself: a worker adds it to the managers it knows."""
        if event.kind is MeshEventKind.RECORD_SET and event.table == MANAGERS_TABLE:
            self._ctx.update_managers()

    async def _serve_new(self) -> None:
        """Serve the endpoint and gossip of the cluster just recorded (init, join); if
        either fails, undo both and forget the cluster: no half-made cluster is left."""
        ctx = self._ctx
        try:
            await self.start_cluster_endpoint()
            await self.start_mesh()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.stop_cluster_endpoint()
            with contextlib.suppress(Exception):
                await ctx.mesh.leave()
            ctx.ledger.clear_cluster()
            raise

    async def resume(self) -> None:
        """At start: a node in a cluster serves its endpoint and gossips again; a manager
        of a cluster on etcd reads the registry and secrets there and follows them."""
        cluster = self._ctx.ledger.state.cluster
        if cluster is None:
            return
        if cluster.store and cluster.role is Role.MANAGER:
            records = await self._managers.attach(cluster.store,
                                                  cluster_prefix(cluster.cluster_id),
                                                  cluster.secret)
            nodes = await self._ctx.thread(records.load_nodes)
            roles = await self._ctx.thread(records.load_roles)
            async with self._ctx.lock:
                await self._upgrade_records(records, nodes, roles)
                self._ctx.ledger.sync_records(nodes, roles)
        await self.start_cluster_endpoint()
        await self.start_mesh()
        await self._managers.start()

    # -- init, join, tokens -------------------------------------------------------------------

    async def init(self, advertise_addr: str, *, listen_addr: str | None = None,
                   store: str | None = None) -> None:
        ctx = self._ctx
        if not isinstance(advertise_addr, str):
            raise InvalidArgument("init needs an advertise address")
        # an interface name (e.g. eth0) is looked up here, on the agent's host
        advertise_addr = await ctx.thread(resolve_addr, advertise_addr, "advertise address")
        if listen_addr is not None:
            listen_addr = await ctx.thread(resolve_hostport, listen_addr,
                                           ctx.config.cluster_port, "listen address")
        if store:
            parse_etcd_url(store)   # InvalidArgument before anything changes
            tls = store_tls(store)
            if tls is not None:
                await ctx.thread(check_tls_files, tls)
        async with ctx.lock:
            state = ctx.ledger.state
            if state.cluster is not None:
                raise ClusterError(ALREADY_IN_CLUSTER)
            if ctx.config.advertise_addr and advertise_addr != ctx.config.advertise_addr:
                raise InvalidArgument(
                    f"advertise address {advertise_addr} differs from the agent's "
                    f"--advertise-addr {ctx.config.advertise_addr}")
            listen = listen_addr or f"{advertise_addr}:{ctx.config.cluster_port}"
            _, port = split_addr(listen)
            cluster = ClusterRecord(
                cluster_id=new_id(13), secret=new_cluster_secret(), role=Role.MANAGER,
                managers=[f"{advertise_addr}:{port}"],
                role_secrets={"worker": new_role_secret(), "manager": new_role_secret()},
                listen=listen, store=store or "")
            me = NodeRecord(id=state.node_id, hostname=state.hostname, address=advertise_addr,
                            gossip_port=ctx.config.gossip_port, role=Role.MANAGER,
                            manager_addr=cluster.managers[0])
            try:
                if store:
                    prefix = cluster_prefix(cluster.cluster_id)
                    await ctx.thread(ctx.book.use_store, store, prefix)
                    ctx.ledger.reload_networks()
                    await self._managers.attach(store, prefix, cluster.secret)
                ctx.ledger.set_cluster(cluster, [me])
                await self._serve_new()
            except BaseException:
                if store:   # back to the embedded file, as before the init
                    await self._undo_store()
                raise
        await self._managers.start()

    async def _undo_store(self) -> None:
        ctx = self._ctx
        await self._managers.stop()
        with contextlib.suppress(Exception):
            await ctx.thread(ctx.book.use_store, None, "")
        ctx.ledger.reload_networks()
        if ctx.ledger.state.cluster is not None:
            ctx.ledger.clear_cluster()

    async def join_token(self, role: Role | str, *, rotate: bool = False) -> JoinToken:
        try:
            role = Role(role)
        except ValueError as exc:
            raise InvalidArgument(f"unknown role {role!r}: use worker or manager") from exc
        if role is Role.STANDALONE:
            raise InvalidArgument("unknown role 'standalone': use worker or manager")
        cluster = self._ctx.require_manager()
        if role is Role.MANAGER and not cluster.store:
            raise ClusterError(SECOND_MANAGER_NEEDS_ETCD)
        if rotate:
            async with self._ctx.lock:
                self._ctx.ledger.set_role_secret(str(role), new_role_secret())
        return JoinToken(role=role, token=make_token(cluster.secret,
                                                     cluster.role_secrets[str(role)]),
                         address=self._own_address(cluster))

    async def join(self, token: str, remote: str, *, advertise_addr: str | None = None,
                   tls: EtcdTls | None = None) -> None:
        """Join the cluster of the manager at ``remote``. ``tls``: this host's files
        for the cluster's etcd (a manager's join; by default the paths the cluster's store
        url names)."""
        ctx = self._ctx
        if not isinstance(token, str) or not isinstance(remote, str):
            raise InvalidArgument("join needs a token and a manager address")
        if tls is not None:
            await ctx.thread(check_tls_files, tls)   # before the manager hears of us
        host, port = split_addr(remote)
        if advertise_addr is not None:
            # as init: an interface name (e.g. eth0) is looked up here, on the agent's host;
            # the node is reached at the agent's own address, which this must be
            given = await ctx.thread(resolve_addr, advertise_addr, "advertise address")
            if ctx.address and given != ctx.address:
                raise InvalidArgument(f"advertise address {given} differs from the agent's "
                                      f"--advertise-addr {ctx.address}")
        if not ctx.address:
            raise InvalidArgument("this agent has no --advertise-addr: restart it with one")
        async with ctx.lock:
            state = ctx.ledger.state
            if state.cluster is not None:
                raise ClusterError(ALREADY_IN_CLUSTER)
            offer = handshake.make_offer(token, node_id=state.node_id,
                                         hostname=state.hostname, address=ctx.address,
                                         gossip_port=ctx.config.gossip_port)
            raw = await ctx.links([f"{host}:{port}"], None).call(JOIN.name, offer.to_wire())
            answer = JOIN.parse_result(raw, peer=f"manager at {host}:{port}")
            secret = handshake.open_secret(answer.sealed, token=token, nonce=offer.nonce)
            role, managers, nodes = answer.role, answer.managers, answer.nodes
            cluster_id = answer.cluster_id
            if role is Role.MANAGER:
                try:
                    store = answer.store
                    if store and tls is not None:
                        store = with_tls(store, tls)
                    elif store and (theirs := store_tls(store)) is not None:
                        try:
                            await ctx.thread(check_tls_files, theirs)
                        except InvalidArgument as exc:
                            raise InvalidArgument(
                                f"{exc} (the cluster's etcd needs TLS: give this host's "
                                "files with --store-cacert, --store-cert, "
                                "--store-key)") from None
                    await self._join_as_manager(store, cluster_id, secret)
                except BaseException:
                    # the manager put this node in the registry when it answered (the
                    # store's url, hence what it needs, comes only with the answer): take
                    # the row back, so a failed join leaves no node behind
                    with contextlib.suppress(Exception):
                        await ctx.links([f"{host}:{port}"], secret).call(
                            LEAVE.name, {"node_id": state.node_id})
                    raise
                return
            ctx.ledger.set_cluster(ClusterRecord(cluster_id=cluster_id, secret=secret,
                                                 role=role, managers=managers), nodes)
            await self._serve_new()

    async def _join_as_manager(self, store: str, cluster_id: str, secret: str) -> None:
        """Become one more manager of a cluster on etcd: its records, rows and secrets are
        read there; this node serves the cluster endpoint on its own address. The caller
        holds the lock. A failure leaves no cluster behind."""
        ctx = self._ctx
        if not store:
            raise ClusterError("the manager answered a manager join without the cluster's "
                               "store: it runs an older netfabric; upgrade it first")
        prefix = cluster_prefix(cluster_id)
        state = ctx.ledger.state
        listen = f"{ctx.address}:{ctx.config.cluster_port}"
        try:
            records = await self._managers.attach(store, prefix, secret)
            roles = await ctx.thread(records.load_roles)
            nodes = await ctx.thread(records.load_nodes)
            await ctx.thread(ctx.book.use_store, store, prefix)
            ctx.ledger.reload_networks()
            me = NodeRecord(id=state.node_id, hostname=state.hostname, address=ctx.address,
                            gossip_port=ctx.config.gossip_port, role=Role.MANAGER,
                            manager_addr=listen)
            ctx.ledger.set_cluster(
                ClusterRecord(cluster_id=cluster_id, secret=secret, role=Role.MANAGER,
                              managers=[listen], role_secrets=roles, listen=listen,
                              store=store),
                [n for n in nodes if n.id != me.id] + [me])
            await self._serve_new()
        except BaseException:
            await self._undo_store()
            raise
        await self._managers.start()

    def _own_address(self, cluster: ClusterRecord) -> str:
        """Where this manager is joined (its own endpoint, not another manager's)."""
        me = self._ctx.ledger.state.nodes.get(self._ctx.node_id)
        if me is not None and me.manager_addr:
            return me.manager_addr
        return cluster.managers[0]

    # -- nodes --------------------------------------------------------------------------------

    async def nodes(self) -> list[NodeInfo]:
        ctx = self._ctx
        ctx.require_manager()
        shared = ctx.ledger.records is not None
        if shared:
            await self._managers.leases_read()
        state = ctx.ledger.state
        alive = {m.node_id: m.alive for m in ctx.mesh.members()}
        rows = []
        for n in state.nodes.values():
            up = n.id == state.node_id or alive.get(n.id, False)
            reach, leader = "", n.id == state.node_id
            if n.role is Role.MANAGER and shared:
                status = self._managers.status(n.id, gossip_alive=alive.get(n.id))
                leader = status is ManagerStatus.LEADER
                reach = "unreachable" if status is ManagerStatus.UNREACHABLE else "reachable"
            elif n.role is Role.MANAGER:
                reach = "reachable" if up else "unreachable"
            rows.append(NodeInfo(
                id=n.id, hostname=n.hostname, address=n.address,
                status=NodeStatus.READY if up else NodeStatus.DOWN,
                availability=n.availability, role=n.role, leader=leader,
                is_self=n.id == state.node_id, reachability=reach))
        return sorted(rows, key=lambda r: (not r.is_self, r.hostname, r.id))

    def _find_node(self, ref: str) -> NodeRecord:
        nodes = self._ctx.ledger.state.nodes.values()
        exact = [n for n in nodes if ref in (n.id, n.hostname)]
        if len(exact) == 1:
            return exact[0]
        pref = [n for n in nodes if n.id.startswith(ref)]
        if len(pref) == 1 and ref:
            return pref[0]
        if len(exact) + len(pref) > 1:
            raise InvalidArgument(f"node {ref!r} is ambiguous: use its ID")
        raise NotFound(f"node {ref} not found")

    async def update_node(self, node: str, *, availability: Availability | str) -> NodeInfo:
        self._ctx.require_manager()
        try:
            avail = Availability(availability)
        except ValueError as exc:
            raise InvalidArgument(
                f"invalid availability {availability!r}: use active, pause or drain") from exc
        async with self._ctx.lock:
            rec = self._find_node(node)
            self._ctx.ledger.set_availability(rec.id, avail)
        return next(n for n in await self.nodes() if n.id == rec.id)

    # -- promote, demote ------------------------------------------------------------------------

    async def promote_node(self, node: str) -> NodeInfo:
        """Docker's ``node promote``: the node's registry row says manager, then the node is
        told (over its authenticated node endpoint) to open the store and serve; if it
        cannot be told, the row is put back and nothing changed."""
        ctx = self._ctx
        cluster = ctx.require_manager()
        if not cluster.store:
            raise ClusterError(SECOND_MANAGER_NEEDS_ETCD)
        async with ctx.lock:
            rec = self._find_node(node)
            if rec.role is Role.MANAGER:
                return await self._info(rec.id)
            port = split_addr(cluster.listen)[1] if cluster.listen else ctx.config.cluster_port
            ctx.ledger.put_node(replace(rec, role=Role.MANAGER,
                                        manager_addr=f"{rec.address}:{port}"))
        try:
            if rec.id == ctx.node_id:   # pragma: no cover - a manager is never a worker
                raise ClusterError("this node is already a manager")
            await ctx.call_node(rec.id, BECOME_MANAGER.name, {"store": cluster.store})
        except NetfabricError as exc:
            async with ctx.lock:
                with contextlib.suppress(NetfabricError):
                    ctx.ledger.put_node(rec)
            raise ClusterError(f"node {rec.hostname} could not be promoted: {exc}") from exc
        await self._managers.sync({"nodes"})
        return await self._info(rec.id)

    async def demote_node(self, node: str) -> NodeInfo:
        """Docker's ``node demote``: the node's registry row says worker (the last manager
        is refused), then the node is told; a node that is down turns worker when it is
        back (it reads its row at start)."""
        ctx = self._ctx
        ctx.require_manager()
        async with ctx.lock:
            rec = self._find_node(node)
            if rec.role is not Role.MANAGER:
                return await self._info(rec.id)
            managers = [n for n in ctx.ledger.state.nodes.values() if n.role is Role.MANAGER]
            if len(managers) <= 1:
                raise ClusterError(LAST_MANAGER)
            ctx.ledger.put_node(replace(rec, role=Role.WORKER, manager_addr=""))
        if rec.id == ctx.node_id:
            await self.become_worker()
            return NodeInfo(id=rec.id, hostname=rec.hostname, address=rec.address,
                            status=NodeStatus.READY, availability=rec.availability,
                            role=Role.WORKER, is_self=True)
        try:
            await ctx.call_node(rec.id, BECOME_WORKER.name, {})
        except NetfabricError as exc:   # it turns worker when it is back
            log.warning("node %s demoted while unreachable: %s", rec.hostname, exc)
        return await self._info(rec.id)

    async def _info(self, node_id: str) -> NodeInfo:
        return next(n for n in await self.nodes() if n.id == node_id)

    async def role_verb(self, verb: str, raw: dict[str, object]) -> bool:
        """A manager's call to promote or demote this node."""
        if verb == BECOME_MANAGER.name:
            args = BECOME_MANAGER.parse(raw)
            assert isinstance(args, BecomeManagerArgs)
            await self.become_manager(args.store)
        else:
            BECOME_WORKER.parse(raw)
            await self.become_worker()
        return True

    async def become_manager(self, store: str) -> None:
        """This worker becomes one more manager: it opens the cluster's store, checks that
        the registry there makes it a manager (a call with the cluster's MAC alone does
        not), and serves every cluster verb on its endpoint."""
        ctx = self._ctx
        parse_etcd_url(store)
        async with ctx.lock:
            cluster = ctx.ledger.state.cluster
            if cluster is None:
                raise NotInCluster("This node is not part of a swarm")
            if cluster.role is Role.MANAGER:
                return
            prefix = cluster_prefix(cluster.cluster_id)
            try:
                records = await self._managers.attach(store, prefix, cluster.secret)
                nodes = await ctx.thread(records.load_nodes)
                roles = await ctx.thread(records.load_roles)
                me = next((n for n in nodes if n.id == ctx.node_id), None)
                if me is None or me.role is not Role.MANAGER or not me.manager_addr:
                    raise ClusterError("the cluster's registry does not make this node a "
                                       "manager: refusing")
                await ctx.thread(ctx.book.use_store, store, prefix)
            except BaseException:
                await self._managers.stop()
                raise
            ctx.ledger.reload_networks()
            ctx.ledger.set_membership(replace(
                cluster, role=Role.MANAGER, store=store, listen=me.manager_addr,
                role_secrets=roles, managers=managers_of(nodes)))
            ctx.ledger.sync_records(nodes, roles)
            swarm = [n.id for n in ctx.ledger.networks() if n.scope == Scope.SWARM]
        await self.start_cluster_endpoint()
        for network_id in swarm:
            ctx.mesh.join_network(network_id)
        self.announce_role()
        await self._managers.start()
        log.info("promoted: this node is a manager")

    async def become_worker(self) -> None:
        """This manager becomes a worker: it stops following the store (its leases go, so
        another manager leads at once), keeps the cluster networks its containers use and
        asks the managers from now on."""
        ctx = self._ctx
        async with ctx.lock:
            cluster = ctx.ledger.state.cluster
            if cluster is None or cluster.role is not Role.MANAGER:
                return
            others = [n for n in ctx.ledger.state.nodes.values() if n.id != ctx.node_id]
            kept = [n for n in ctx.ledger.networks()
                    if n.scope == Scope.SWARM and ctx.ledger.local_endpoints(n.id)]
            dropped = [n.id for n in ctx.ledger.networks()
                       if n.scope == Scope.SWARM and n not in kept]
            await self._managers.stop()
            await ctx.thread(ctx.book.use_store, None, "")
            ctx.ledger.reload_networks()
            for net in kept:
                ctx.ledger.remember_network(net)
            for net in ctx.ledger.networks():   # rows of before init --store: stale
                if net.scope == Scope.SWARM and net not in kept:
                    ctx.ledger.drop_network(net.id)
            ctx.ledger.set_membership(replace(
                cluster, role=Role.WORKER, store="", listen="", role_secrets={},
                managers=managers_of(others) or cluster.managers))
        await self.start_cluster_endpoint()
        for network_id in dropped:
            ctx.mesh.leave_network(network_id)
        self.announce_role()
        log.info("demoted: this node is a worker")

    async def remove_node(self, node: str, *, force: bool = False) -> None:
        """Docker's ``node rm``: forget a node that is gone for good and give back its
        address blocks and the addresses held for it (they would stay leased forever and
        keep ``network rm`` refused). A node still up needs ``force``; a manager and this
        node are refused."""
        ctx = self._ctx
        ctx.require_manager()
        async with ctx.lock:
            rec = self._find_node(node)
            if rec.id == ctx.ledger.state.node_id:
                raise ClusterError(f"node {rec.hostname} is this node: use `netfabric leave`")
            if rec.role is Role.MANAGER:
                raise ClusterError(f"node {rec.hostname} is a cluster manager: it must be "
                                   f"demoted to worker before removal (netfabric node demote "
                                   f"{rec.hostname})")
            alive = {m.node_id: m.alive for m in ctx.mesh.members()}
            if alive.get(rec.id, False) and not force:
                raise ClusterError(f"node {rec.hostname} is not down and can't be removed "
                                   "(use --force)")
            ctx.ledger.drop_node(rec.id)
            await ctx.thread(ctx.book.release_node, rec.id)

    # -- leave --------------------------------------------------------------------------------

    async def check_leave(self, *, force: bool, busy: Callable[[], list[str]]) -> None:
        """Refuse to leave without ``force`` on a manager, or while ``busy()`` names
        endpoints on cluster networks."""
        async with self._ctx.lock:
            cluster = self._ctx.ledger.state.cluster
            if cluster is None:
                raise NotInCluster("This node is not part of a swarm")
            if cluster.role is Role.MANAGER and not force:
                raise ClusterError(
                    "You are attempting to leave the swarm on a node that is participating as "
                    "a manager. Use `--force` to ignore this message.")
            users = busy()
            if users and not force:
                raise InUse("containers are attached to cluster networks: "
                            + ", ".join(sorted(users)) + " (remove them or use --force)")

    async def finish_leave(self) -> None:
        """Tell the manager (a worker), stop gossip and forget the cluster."""
        ctx = self._ctx
        async with ctx.lock:
            cluster = ctx.ledger.state.cluster
            if cluster is None:
                return
            if cluster.role is not Role.MANAGER:
                with contextlib.suppress(NetfabricError):
                    await ctx.call_manager("leave", {"node_id": ctx.node_id})
            await ctx.mesh.leave()
            await self.stop_cluster_endpoint()   # a later init or join opens its own
            await self._managers.stop(forget_self=True)
            if cluster.store:   # this node's rows go back to the embedded file
                await ctx.thread(ctx.book.use_store, None, "")
                ctx.ledger.reload_networks()
            gone = ctx.ledger.clear_cluster()
            await self._addresses.forget_all(gone)
