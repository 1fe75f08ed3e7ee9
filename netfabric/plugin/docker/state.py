"""What the Docker plugin remembers across restarts of the agent and of dockerd.

dockerd never replays ``RequestPool``/``CreateNetwork`` after a restart, so the plugin keeps
its Docker-side records itself: pools it handed out, Docker networks and which netfabric
network (by name) each is bound to, and endpoints. The file is rewritten atomically (write,
fsync, rename) before a handler answers, so an answer Docker saw is never lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgspec

from netfabric.errors import StoreCorrupt, StoreError
from netfabric.model import Driver

__all__ = ["DockerNetworkRecord", "EndpointRecord", "PluginState", "PoolRecord", "StateFile"]

_VERSION = 1


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """A pool handed to Docker by ``RequestPool``."""

    pool_id: str
    address_space: str
    cidr: str
    user_subnet: bool
    """True when the user gave ``--subnet``: the netfabric network must have exactly it."""
    ip_range: str = ""
    gateway: str = ""
    """Bare gateway address once Docker asked for it ('' before)."""
    network_id: str = ""
    """The Docker network this pool went to ('' until ``CreateNetwork``)."""


@dataclass(frozen=True, slots=True)
class DockerNetworkRecord:
    """A Docker network of this dockerd, and the netfabric network it is bound to."""

    network_id: str
    pool_id: str
    driver: Driver
    options: tuple[tuple[str, str], ...] = ()
    name: str = ""
    """The netfabric network's name ('' until learnt from dockerd)."""


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    endpoint_id: str
    network_id: str
    address: str
    """``a/len`` as Docker gave it."""
    mac: str
    ifname: str = ""
    """The veth name handed to Docker at Join ('' before Join and after Leave): while set,
    the endpoint's interface is Docker's and an agent restart re-attaches it."""
    names: tuple[str, ...] = ()
    """Container name then aliases, once learnt from dockerd (republished after a restart)."""
    sandbox_key: str = ""
    """The container's netns (Join's SandboxKey), given the services' VIP tables again after
    an agent restart."""


@dataclass
class PluginState:
    """All records, keyed by their Docker id."""

    pools: dict[str, PoolRecord] = field(default_factory=dict)
    networks: dict[str, DockerNetworkRecord] = field(default_factory=dict)
    endpoints: dict[str, EndpointRecord] = field(default_factory=dict)

    def pool_by_cidr(self, address_space: str, cidr: str) -> PoolRecord | None:
        for pool in self.pools.values():
            if pool.cidr == cidr and pool.address_space == address_space:
                return pool
        return None

    def network_of_pool(self, pool_id: str) -> DockerNetworkRecord | None:
        pool = self.pools.get(pool_id)
        if pool is None or not pool.network_id:
            return None
        return self.networks.get(pool.network_id)

    def set_pool(self, pool: PoolRecord, **changes: Any) -> PoolRecord:
        new = replace(pool, **changes)
        self.pools[new.pool_id] = new
        return new

    def to_json(self) -> bytes:
        """The file's bytes: the records as lists (see :class:`_File`)."""
        return msgspec.json.encode(_File(pools=list(self.pools.values()),
                                         networks=list(self.networks.values()),
                                         endpoints=list(self.endpoints.values())))

    @classmethod
    def from_json(cls, raw: bytes) -> PluginState:
        """The state of a file's bytes; a malformed one is ``ValueError`` naming the field."""
        try:
            head = msgspec.json.decode(raw, type=_Version)
            if head.version != _VERSION:
                raise ValueError("not a netfabric docker-plugin state (version 1)")
            obj = msgspec.json.decode(raw, type=_File)
        except msgspec.DecodeError as exc:
            raise ValueError(str(exc)) from None
        return cls(pools={p.pool_id: p for p in obj.pools},
                   networks={n.network_id: n for n in obj.networks},
                   endpoints={e.endpoint_id: e for e in obj.endpoints})


class _Version(msgspec.Struct):
    version: int | None = None


class _File(msgspec.Struct, kw_only=True):
    """The file's schema (version 1)."""

    version: int = _VERSION
    pools: list[PoolRecord]
    networks: list[DockerNetworkRecord]
    endpoints: list[EndpointRecord]


class StateFile:
    """The plugin's records in one JSON file, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> PluginState:
        """The saved state; an empty one when the file does not exist yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return PluginState()
        except OSError as exc:
            raise StoreError(f"cannot read docker plugin state {self.path}: {exc}") from exc
        try:
            return PluginState.from_json(raw)
        except ValueError as exc:
            raise StoreCorrupt(f"docker plugin state {self.path} is unreadable ({exc}); "
                               "move it aside to start empty") from exc

    def save(self, state: PluginState) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(state.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StoreError(f"cannot write docker plugin state {self.path}: {exc}") from exc
