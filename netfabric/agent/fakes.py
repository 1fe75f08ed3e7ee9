"""In-memory fakes of the seams of :mod:`netfabric.agent.ports`, for tests without root.

Each fake keeps what it was told in plain attributes a test can read (``kernel.attached``,
``names.records``, ``mesh.published`` ...) and can be told to fail (``kernel.fail_attach``,
``links.unreachable``). :class:`FakeLayers` builds one of each; :meth:`FakeLayers.core` an
:class:`~netfabric.agent.core.AgentCore` over them.
"""

from __future__ import annotations

import inspect
import ipaddress
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from netfabric.agent.ports import Allocation, BlockBook, Link, ManagerCall, Member, MeshEvent
from netfabric.agent.state import STATE_FILE, NodeRecord
from netfabric.api.types import GossipInfo, Role
from netfabric.errors import AddressInUse, AgentUnreachable, NotFound, PoolExhausted
from netfabric.ipam.addr import IPFamily
from netfabric.ipam.pools import AddressSpace
from netfabric.ipam.values import BlockLease, Subnet
from netfabric.model import Endpoint, Network, SubnetSpec
from netfabric.services.lb import LoadBalancer

if TYPE_CHECKING:
    from netfabric.agent.context import AgentContext
    from netfabric.agent.core import AgentCore

__all__ = [
    "FakeBlocks",
    "FakeBook",
    "FakeKernel",
    "FakeLayers",
    "FakeLinks",
    "FakeMesh",
    "FakeNames",
    "FakeServiceTables",
]


class FakeKernel:
    """The dataplane as sets: networks, sandboxes, attached endpoints, programmed peers."""

    def __init__(self) -> None:
        self.networks: dict[str, Network] = {}
        self.netns: set[str] = set()
        """sandbox netns names"""
        self.attached: dict[str, tuple[str, str]] = {}
        """endpoint id -> (netns path, ifname)"""
        self.peers: dict[str, list[Endpoint]] = {}
        self.set_peers_calls: list[str] = []
        self.set_peers_delay = 0.0
        """Seconds each set_peers takes (to see overlapping calls)."""
        self.set_peers_overlap = 0
        """Most set_peers calls seen in flight at once."""
        self._in_flight = 0
        self.reconciled = 0
        self.fail_attach: Exception | None = None
        self.fail_detach: Exception | None = None
        self.closed = False
        self._lock = threading.Lock()

    def ensure_network(self, network: Network) -> None:
        self.networks[network.id] = network

    def delete_network(self, network: Network) -> None:
        self.networks.pop(network.id, None)

    def ensure_sandbox(self, netns: str) -> None:
        self.netns.add(netns)

    def delete_sandbox(self, netns: str) -> None:
        self.netns.discard(netns)

    def sandboxes(self, prefix: str) -> list[str]:
        return sorted(n for n in self.netns if n.startswith(prefix))

    def reconcile(self) -> None:
        self.reconciled += 1

    def attach(self, network: Network, endpoint: Endpoint, *, netns_path: str, ifname: str,
               gateway: str | None) -> None:
        if self.fail_attach is not None:
            raise self.fail_attach
        self.attached[endpoint.id] = (netns_path, ifname)

    def detach(self, network: Network, endpoint: Endpoint, *, netns_path: str,
               ifname: str) -> None:
        if self.fail_detach is not None:
            raise self.fail_detach
        self.attached.pop(endpoint.id, None)

    def set_peers(self, network: Network, peers: Sequence[Endpoint]) -> None:
        with self._lock:
            self._in_flight += 1
            self.set_peers_overlap = max(self.set_peers_overlap, self._in_flight)
        time.sleep(self.set_peers_delay)
        with self._lock:
            self._in_flight -= 1
            self.set_peers_calls.append(network.id)
            self.peers[network.id] = list(peers)

    def close(self) -> None:
        self.closed = True


class FakeBook:
    """IPAM: each network gets the next 10.99.N.0/24 (or its asked subnet), addresses
    handed out in order from .2 (.1 is the gateway)."""

    def __init__(self) -> None:
        self.subnets: dict[str, SubnetSpec] = {}
        self.v6: dict[str, str] = {}
        self.held: dict[str, dict[str, str]] = {}
        """network id -> address -> node id"""
        self.leases: dict[str, list[BlockLease]] = {}
        self.released_nodes: list[str] = []
        self.store_url: str | None = None
        self.rows: dict[str, Network] = {}
        """the network table"""
        self.objects_rows: dict[str, dict[str, bytes]] = {}
        """the store's objects: kind -> key -> value"""
        self._next = 0
        self.closed = False

    def create_network(self, network: Network, *, subnet: str | None, gateway: str | None,
                       ip_range: str | None) -> tuple[SubnetSpec, ...]:
        if subnet is None:
            self._next += 1
            subnet = f"10.99.{self._next}.0/24"
        net = ipaddress.ip_network(subnet)
        spec = SubnetSpec(cidr=str(net), gateway=gateway or str(net[1]), ip_range=ip_range)
        self.subnets[network.id] = spec
        self.held[network.id] = {}
        out = [spec]
        if network.ipv6:
            self.v6[network.id] = f"fd99:{self._next}::/64"
            out.append(SubnetSpec(cidr=self.v6[network.id],
                                  gateway=f"fd99:{self._next}::1"))
        self.rows[network.id] = replace(network, subnets=tuple(out))
        return tuple(out)

    def delete_network(self, network_id: str) -> None:
        self.subnets.pop(network_id, None)
        self.held.pop(network_id, None)
        self.rows.pop(network_id, None)

    def load_networks(self) -> list[Network]:
        return list(self.rows.values())

    def save_network(self, network: Network) -> None:
        self.rows[network.id] = network

    def drop_network(self, network_id: str) -> None:
        self.rows.pop(network_id, None)

    def allocate(self, network_id: str, *, node_id: str, ip: str | None,
                 lent_by: str | None = None) -> Allocation:
        spec = self.subnets.get(network_id)
        if spec is None:
            raise NotFound(f"network {network_id} not found")
        held = self.held[network_id]
        net = ipaddress.ip_network(spec.cidr)
        if ip is None:
            ip = next((str(a) for a in list(net.hosts())[1:] if str(a) not in held), None)
            if ip is None:
                raise PoolExhausted("full")
        held[ip] = node_id
        v6 = None
        if network_id in self.v6:
            v6net = ipaddress.ip_network(self.v6[network_id])
            v6 = str(v6net[len([a for a in held if ":" in a]) + 2])
            held[v6] = node_id
        return Allocation(ipv4=ip, prefixlen=net.prefixlen, gateway=spec.gateway, ipv6=v6)

    def release(self, network_id: str, ip: str, *, node_id: str) -> None:
        self.held.get(network_id, {}).pop(ip, None)

    def block_owner(self, network_id: str, ip: str) -> str | None:
        return None

    def allocated(self, network_id: str) -> set[str]:
        return set(self.held.get(network_id, {}))

    def use_store(self, url: str | None, prefix: str) -> None:
        self.store_url = url

    def reload(self) -> None:
        pass

    def block_owners(self) -> set[str]:
        return {lease.host_id for leases in self.leases.values() for lease in leases}

    def release_node(self, node_id: str) -> None:
        self.released_nodes.append(node_id)
        for held in self.held.values():
            for ip in [a for a, n in held.items() if n == node_id]:
                del held[ip]

    def lease_block(self, network_id: str, host_id: str, *, address: str | None,
                    family: IPFamily) -> BlockLease:
        spec = self.subnets[network_id]
        lease = BlockLease(network_id=network_id, host_id=host_id, block=spec.cidr,
                           subnet=Subnet(network_id=network_id, space=AddressSpace.GLOBAL,
                                         cidr=spec.cidr, gateway=spec.gateway))
        self.leases.setdefault(network_id, []).append(lease)
        return lease

    def release_block(self, network_id: str, host_id: str, block: str) -> None:
        self.leases[network_id] = [b for b in self.leases.get(network_id, [])
                                   if (b.host_id, b.block) != (host_id, block)]

    def leased(self, network_id: str) -> list[BlockLease]:
        return list(self.leases.get(network_id, []))

    def objects(self, kinds: Sequence[str]) -> dict[str, dict[str, bytes]]:
        return {k: dict(self.objects_rows.get(k, {})) for k in kinds}

    def write_objects(self, writes: Sequence[tuple[str, str, bytes | None]], *,
                      release: Sequence[tuple[str, str]] = ()) -> None:
        for network_id, ip in release:
            self.release(network_id, ip, node_id="")
        for kind, key, value in writes:
            if value is None:
                self.objects_rows.get(kind, {}).pop(key, None)
            else:
                self.objects_rows.setdefault(kind, {})[key] = value

    def allocate_object(self, kind: str, key: str, network_ids: Sequence[str],
                        make: Callable[[tuple[str, ...]], bytes]) -> bytes:
        ips = tuple(self.allocate(n, node_id="", ip=None).ipv4 for n in network_ids)
        value = make(ips)
        self.objects_rows.setdefault(kind, {})[key] = value
        return value

    def close(self) -> None:
        self.closed = True


class FakeBlocks:
    """A worker's block allocator: addresses of a network from .2 of its first subnet."""

    def __init__(self, call: ManagerCall | None = None) -> None:
        self.call = call
        self.held: dict[str, set[str]] = {}
        self.returned: list[str] = []
        self.forgotten: list[str] = []
        self.lent: set[tuple[str, str]] = set()
        self.subnet = "10.77.0.0/24"
        self.closed = False

    def allocate(self, network_id: str, *, ip: str | None, ipv6: bool) -> Allocation:
        net = ipaddress.ip_network(self.subnet)
        held = self.held.setdefault(network_id, set())
        if ip is None:
            ip = next(str(a) for a in list(net.hosts())[1:] if str(a) not in held)
        held.add(ip)
        return Allocation(ipv4=ip, prefixlen=net.prefixlen, gateway=str(net[1]))

    def release(self, network_id: str, ip: str) -> bool:
        held = self.held.get(network_id, set())
        if ip not in held:
            return False
        held.discard(ip)
        return True

    def lend(self, network_id: str, ip: str) -> bool:
        if ip in self.held.get(network_id, set()):
            raise AddressInUse(f"{ip} is already allocated")
        self.lent.add((network_id, ip))
        return True

    def unlend(self, network_id: str, ip: str) -> bool:
        if (network_id, ip) not in self.lent:
            return False
        self.lent.discard((network_id, ip))
        return True

    def return_empty(self, network_id: str) -> None:
        self.returned.append(network_id)

    def forget_network(self, network_id: str) -> None:
        self.forgotten.append(network_id)
        self.held.pop(network_id, None)

    def close(self) -> None:
        self.closed = True


class FakeNames:
    """DNS records as a dict, and the netns served."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[str | None, str]] = {}
        """(network id, name) -> (ipv4, owner)"""
        self.aliases: dict[tuple[str, str], tuple[str, ...]] = {}
        self.served: dict[str, frozenset[str]] = {}
        self.closed = False

    def set_endpoint(self, network_id: str, name: str, *, aliases: Sequence[str],
                     ipv4: str | None, ipv6: str | None, owner: str) -> None:
        self.records[(network_id, name)] = (ipv4, owner)
        self.aliases[(network_id, name)] = tuple(aliases)

    def remove_endpoint(self, network_id: str, name: str, *, owner: str) -> None:
        if self.records.get((network_id, name), (None, ""))[1] == owner:
            del self.records[(network_id, name)]

    async def open_sandbox(self, netns: str, netns_path: str,
                           networks: frozenset[str]) -> None:
        self.served[netns] = networks

    async def close_sandbox(self, netns: str) -> None:
        self.served.pop(netns, None)

    async def close(self) -> None:
        self.closed = True


class FakeMesh:
    """Gossip: what this node published, and remote endpoints a test adds with
    :meth:`add_remote` / :meth:`remove_remote` (which also deliver the event)."""

    def __init__(self) -> None:
        self.started_with: tuple[str, tuple[str, ...]] | None = None
        self.published: dict[str, Endpoint] = {}
        self.remote: dict[str, Endpoint] = {}
        self.joined: set[str] = set()
        self.alive: dict[str, bool] = {}
        self.addresses: dict[str, str] = {}
        """Members' underlay addresses (by node id), "" when not set."""
        self.listeners: list[Callable[[MeshEvent], Awaitable[None]]] = []
        self.left = False
        self.closed = False
        self.tables: dict[str, dict[str, bytes]] = {}
        """The cluster-wide tables (RecordTable), this node's entries and remote ones."""

    async def start(self, *, secret: str, seeds: Sequence[str],
                    networks: Sequence[str] = ()) -> None:
        self.started_with = (secret, tuple(seeds))

    def publish(self, endpoint: Endpoint) -> None:
        self.published[endpoint.id] = endpoint

    def withdraw(self, endpoint: Endpoint) -> None:
        self.published.pop(endpoint.id, None)

    def join_network(self, network_id: str) -> None:
        self.joined.add(network_id)

    def leave_network(self, network_id: str) -> None:
        self.joined.discard(network_id)

    def endpoints(self, network_id: str) -> list[Endpoint]:
        return [e for e in (*self.published.values(), *self.remote.values())
                if e.network_id == network_id]

    def members(self) -> list[Member]:
        return [Member(node_id=n, address=self.addresses.get(n, ""), alive=a)
                for n, a in self.alive.items()]

    def set_record(self, table: str, key: str, value: bytes) -> None:
        self.tables.setdefault(table, {})[key] = value

    def delete_record(self, table: str, key: str) -> None:
        self.tables.get(table, {}).pop(key, None)

    def records(self, table: str) -> dict[str, bytes]:
        return dict(self.tables.get(table, {}))

    def subscribe(self, listener: Callable[[MeshEvent], Awaitable[None]]) -> None:
        self.listeners.append(listener)

    def stats(self) -> GossipInfo:
        alive = 1 + sum(self.alive.values())
        return GossipInfo(members={"alive": alive, "suspect": 0,
                                   "dead": len(self.alive) + 1 - alive, "left": 0},
                          tables={"endpoints": len(self.published) + len(self.remote)},
                          networks=len(self.joined))

    async def emit(self, event: MeshEvent) -> None:
        for listener in self.listeners:
            await listener(event)

    async def leave(self) -> None:
        self.left = True

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeLinks:
    """A :class:`~netfabric.agent.ports.LinkFactory` over a dict of answers per verb (a
    value, an exception to raise, or a function or coroutine function of the args)."""

    answers: dict[str, Any] = field(default_factory=dict)
    unreachable: bool = False
    calls: list[tuple[str, dict[str, Any], tuple[str, ...], str | None]] = \
        field(default_factory=list)

    def __call__(self, managers: Sequence[str], secret: str | None, *,
                 on_answer: Callable[[str, list[str] | None], None] | None = None) -> Link:
        return _FakeLink(self, tuple(managers), secret)


class _FakeLink:
    def __init__(self, links: FakeLinks, managers: tuple[str, ...], secret: str | None) -> None:
        self._links = links
        self._managers = managers
        self._secret = secret

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        self._links.calls.append((verb, dict(args), self._managers, self._secret))
        if self._links.unreachable:
            raise AgentUnreachable(f"no manager answers {verb}")
        answer = self._links.answers.get(verb)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            answer = answer(args)
            if inspect.isawaitable(answer):
                answer = await answer
        return answer


class FakeServiceTables:
    """The services' datapath (a :class:`~netfabric.services.runtime.DatapathFactory`): the
    load balancers last synced per netns."""

    def __init__(self) -> None:
        self.synced: dict[str | None, tuple[LoadBalancer, ...]] = {}

    def factory(self, netns: str | None, table: str) -> _FakeServiceTable:
        return _FakeServiceTable(self, netns)


class _FakeServiceTable:
    def __init__(self, owner: FakeServiceTables, netns: str | None) -> None:
        self._owner = owner
        self._netns = netns

    def sync(self, lbs: Iterable[LoadBalancer]) -> object:
        self._owner.synced[self._netns] = tuple(lbs)
        return None

    def close(self, *, remove: bool = True) -> None:
        self._owner.synced.pop(self._netns, None)


class FakeLease:
    def __init__(self, records: FakeRecords, name: str) -> None:
        self._records, self.name = records, name

    def refresh(self) -> bool:
        return self._records.held.get(self.name, (None, self))[1] is self

    def release(self) -> None:
        if self.refresh():
            self._records.expire(self.name)


class FakeRecords:
    """The cluster's shared records (etcd) in memory, one instance shared by the managers
    of a test; :meth:`expire` ends a lease as etcd does when its holder stops refreshing.
    ``fail`` set: every call raises it (etcd unreachable)."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeRecord] = {}
        self.roles: dict[str, str] = {}
        self.held: dict[str, tuple[str, FakeLease]] = {}
        self.watchers: list[Callable[[str, bool], None]] = []
        self.fail: Exception | None = None

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def _changed(self, key: str, deleted: bool = False) -> None:
        for watcher in list(self.watchers):
            watcher(key, deleted)

    def load_nodes(self) -> list[NodeRecord]:
        self._check()
        return list(self.nodes.values())

    def save_node(self, node: NodeRecord) -> None:
        self._check()
        self.nodes[node.id] = node
        self._changed(f"nodes/{node.id}")

    def drop_node(self, node_id: str) -> None:
        self._check()
        self.nodes.pop(node_id, None)
        self._changed(f"nodes/{node_id}", True)

    def load_roles(self) -> dict[str, str]:
        self._check()
        return dict(self.roles)

    def save_roles(self, roles: dict[str, str]) -> None:
        self._check()
        self.roles = dict(roles)
        self._changed("cluster/roles")

    def hold(self, name: str, value: str, ttl: int) -> FakeLease | None:
        self._check()
        if name in self.held:
            return None
        lease = FakeLease(self, name)
        self.held[name] = (value, lease)
        self._changed(f"leases/{name}")
        return lease

    def expire(self, name: str) -> None:
        if self.held.pop(name, None) is not None:
            self._changed(f"leases/{name}", True)

    def leases(self) -> dict[str, str]:
        self._check()
        return {name: value for name, (value, _) in self.held.items()}

    def watch(self, callback: Callable[[str, bool], None]) -> Callable[[], None]:
        self.watchers.append(callback)
        return lambda: self.watchers.remove(callback) if callback in self.watchers else None

    def close(self) -> None:
        pass


@dataclass
class FakeLayers:
    """One fake of each seam."""

    kernel: FakeKernel = field(default_factory=FakeKernel)
    book: FakeBook = field(default_factory=FakeBook)
    names: FakeNames = field(default_factory=FakeNames)
    mesh: FakeMesh = field(default_factory=FakeMesh)
    links: FakeLinks = field(default_factory=FakeLinks)
    services: FakeServiceTables = field(default_factory=FakeServiceTables)
    blocks: FakeBlocks | None = None
    records: FakeRecords = field(default_factory=FakeRecords)
    """Shared by the managers of a test: pass one instance to each FakeLayers."""

    def records_factory(self, url: str, prefix: str, secret: str) -> FakeRecords:
        return self.records

    def blocks_factory(self, call: ManagerCall) -> BlockBook:
        if self.blocks is None:
            self.blocks = FakeBlocks(call)
        return self.blocks

    def core(self, data_dir: str, *, advertise_addr: str | None = "198.51.100.1",
             hostname: str = "node1", node_id: str = "n" * 26) -> AgentCore:
        """An agent over these fakes with a fresh (or ``data_dir``'s) state."""
        from netfabric.agent.core import AgentConfig, AgentCore
        from netfabric.agent.state import LocalState

        state = LocalState.load(data_dir, hostname=hostname)
        if not os.path.exists(os.path.join(data_dir, STATE_FILE)):
            state.node_id = node_id
        config = AgentConfig(data_dir=data_dir, socket=os.path.join(data_dir, "agent.sock"),
                             hostname=hostname, host_netns="nfst-h1",
                             advertise_addr=advertise_addr)
        return AgentCore(config, state, kernel=self.kernel, book=self.book, names=self.names,
                         mesh=self.mesh, blocks=self.blocks_factory, links=self.links,
                         service_datapath=self.services.factory,
                         records=self.records_factory)

    def context(self, data_dir: str, *, role: Role = Role.STANDALONE,
                advertise_addr: str | None = "198.51.100.1") -> AgentContext:
        """The context the agent's services share, over these fakes; ``role`` other than
        standalone puts the node in a cluster whose manager is at 198.51.100.9:2377."""
        from netfabric.agent.context import AgentConfig, AgentContext
        from netfabric.agent.ledger import Ledger
        from netfabric.agent.state import ClusterRecord, LocalState

        config = AgentConfig(data_dir=data_dir, socket=os.path.join(data_dir, "agent.sock"),
                             hostname="node1", host_netns="nfst-h1",
                             advertise_addr=advertise_addr)
        ledger = Ledger(LocalState.load(data_dir, hostname="node1"), data_dir, self.book)
        if role is not Role.STANDALONE:
            ledger.set_cluster(ClusterRecord(cluster_id="c1", secret="s" * 32, role=role,
                                             managers=["198.51.100.9:2377"]), [])
        return AgentContext(config, ledger, kernel=self.kernel, book=self.book,
                            names=self.names, mesh=self.mesh, links=self.links)
