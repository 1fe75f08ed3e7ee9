"""The agent's own durable state: identity, cluster membership, node registry, sandboxes.

Networks and address allocations live in the store (:mod:`netfabric.store`); this file
holds what only the agent knows: who this node is, which cluster it belongs to (and, on a
manager, the join secrets and the node registry), and which sandboxes and endpoints exist
here. It is one JSON document (its schema: the dataclasses below, read and checked by
msgspec) written atomically (temp file, fsync, rename) before any call
returns, so a ``kill -9`` at any point leaves either the old or the new document, which is
what restart recovery reconciles the kernel against. An unreadable file is
:class:`StoreCorrupt`, never silently reset.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

import msgspec

from netfabric.api.types import Availability, Role, to_wire
from netfabric.errors import StoreCorrupt, StoreError
from netfabric.model import Driver, Network, Scope, SubnetSpec

__all__ = [
    "STATE_FILE",
    "ClusterRecord",
    "EndpointRecord",
    "LocalState",
    "NetworkRecord",
    "NodeRecord",
    "SandboxRecord",
    "new_id",
    "to_network",
    "to_record",
]

STATE_FILE = "agent-state.json"
_VERSION = 1


def new_id(nbytes: int = 16) -> str:
    """A random lowercase hex id (Docker shows the first 12 characters)."""
    return secrets.token_hex(nbytes)


@dataclass(slots=True)
class EndpointRecord:
    """One endpoint of a local sandbox, with everything needed to rebuild it."""

    id: str
    network_id: str
    network: str
    ifname: str
    mac: str
    ipv4: str | None
    prefixlen: int
    gateway: str | None
    ipv6: str | None = None
    aliases: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SandboxRecord:
    """A sandbox on this host: its netns and endpoints. ``external`` netns are not ours to
    delete (attached by path, e.g. Docker's or CNI's)."""

    id: str
    name: str
    netns: str
    netns_path: str
    external: bool
    created: float
    endpoints: list[EndpointRecord] = field(default_factory=list)
    hostname: str = ""
    labels: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class NetworkRecord:
    """A network this host knows: its own local ones, and cluster ones learned from a
    manager (kept so that a worker restarts without asking the manager)."""

    id: str
    name: str
    driver: str
    scope: str
    subnets: list[tuple[str, str, str | None]]
    vni: int | None
    attachable: bool
    internal: bool
    ipv6: bool
    mtu: int | None
    options: list[tuple[str, str]]
    created: float
    labels: list[tuple[str, str]] = field(default_factory=list)


def to_network(rec: NetworkRecord) -> Network:
    return Network(id=rec.id, name=rec.name, driver=Driver(rec.driver), scope=Scope(rec.scope),
                   subnets=tuple(SubnetSpec(cidr=c, gateway=g, ip_range=r)
                                 for c, g, r in rec.subnets),
                   vni=rec.vni, attachable=rec.attachable, internal=rec.internal,
                   ipv6=rec.ipv6, mtu=rec.mtu, options=tuple(rec.options), created=rec.created,
                   labels=tuple(rec.labels))


def to_record(net: Network) -> NetworkRecord:
    return NetworkRecord(id=net.id, name=net.name, driver=str(net.driver), scope=str(net.scope),
                         subnets=[(s.cidr, s.gateway, s.ip_range) for s in net.subnets],
                         vni=net.vni, attachable=net.attachable, internal=net.internal,
                         ipv6=net.ipv6, mtu=net.mtu, options=list(net.options),
                         created=net.created, labels=list(net.labels))


@dataclass(slots=True)
class NodeRecord:
    """A node as the manager registers it at join."""

    id: str
    hostname: str
    address: str
    gossip_port: int
    role: Role
    availability: Availability = Availability.ACTIVE
    manager_addr: str = ""
    """A manager's cluster endpoint ``HOST:PORT`` (workers and managers call it)."""


@dataclass(slots=True)
class ClusterRecord:
    """Membership: the secret (root of trust), role, where the managers listen.
    ``role_secrets`` is set on managers only."""

    cluster_id: str
    secret: str
    role: Role
    managers: list[str]
    role_secrets: dict[str, str] = field(default_factory=dict)
    listen: str = ""
    store: str = ""
    """``etcd://host:2379[,...]`` when a manager keeps the cluster's rows in etcd; ""
    for the embedded file."""


@dataclass(slots=True)
class LocalState:
    node_id: str
    hostname: str
    cluster: ClusterRecord | None = None
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    networks: dict[str, NetworkRecord] = field(default_factory=dict)
    """Only in a state file written before networks moved to the store: the
    :class:`~netfabric.agent.ledger.Ledger` moves them there when it opens, and it is
    empty from then on."""
    sandboxes: dict[str, SandboxRecord] = field(default_factory=dict)
    pending_releases: list[tuple[str, str]] = field(default_factory=list)
    """(network id, address) a worker could not give back to an unreachable manager yet."""

    # -- persistence ----------------------------------------------------------------------

    @classmethod
    def load(cls, data_dir: str, *, hostname: str) -> LocalState:
        """Read the state of ``data_dir``, or a fresh identity when there is none."""
        path = os.path.join(data_dir, STATE_FILE)
        try:
            with open(path, "rb") as f:
                raw = msgspec.json.decode(f.read())
        except FileNotFoundError:
            return cls(node_id=new_id(13), hostname=hostname)
        except (OSError, msgspec.DecodeError) as exc:
            raise StoreCorrupt(f"agent state {path} is unreadable: {exc}") from exc
        try:
            return cls._from_wire(raw, hostname=hostname)
        except (msgspec.ValidationError, ValueError) as exc:
            raise StoreCorrupt(f"agent state {path} is malformed: {exc}") from exc

    def save(self, data_dir: str) -> None:
        path = os.path.join(data_dir, STATE_FILE)
        tmp = f"{path}.tmp{os.getpid()}"
        data = msgspec.json.format(msgspec.json.encode({"version": _VERSION, **to_wire(self)},
                                                       order="sorted"), indent=1)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StoreError(f"cannot write agent state {path}: {exc}") from exc

    @classmethod
    def _from_wire(cls, raw: Any, *, hostname: str) -> LocalState:
        if not isinstance(raw, dict) or raw.get("version") != _VERSION:
            version = raw.get("version") if isinstance(raw, dict) else None
            raise ValueError(f"unknown version {version!r}")
        state = msgspec.convert(raw, cls)
        if hostname:
            state.hostname = hostname
        return state
