"""What the Docker plugin remembers across restarts of the agent and of dockerd.

dockerd never replays ``RequestPool``/``CreateNetwork`` after a restart, so the plugin keeps
its Docker-side records itself: pools it handed out, Docker networks and which netfabric
network (by name) each is bound to, and endpoints. The file is rewritten atomically (write,
fsync, rename) before a handler answers, so an answer Docker saw is never lost.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

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

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "pools": [asdict(p) for p in self.pools.values()],
            "networks": [asdict(n) for n in self.networks.values()],
            "endpoints": [asdict(e) for e in self.endpoints.values()],
        }

    @classmethod
    def from_json(cls, obj: Any) -> PluginState:
        if not isinstance(obj, dict) or obj.get("version") != _VERSION:
            raise ValueError("not a netfabric docker-plugin state (version 1)")
        state = cls()
        for p in obj["pools"]:
            state.pools[p["pool_id"]] = PoolRecord(**p)
        for n in obj["networks"]:
            n = dict(n, driver=Driver(n["driver"]),
                     options=tuple((str(k), str(v)) for k, v in n["options"]))
            state.networks[n["network_id"]] = DockerNetworkRecord(**n)
        for e in obj["endpoints"]:
            e = dict(e, names=tuple(str(n) for n in e.get("names", ())))
            state.endpoints[e["endpoint_id"]] = EndpointRecord(**e)
        return state


class StateFile:
    """The plugin's records in one JSON file, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> PluginState:
        """The saved state; an empty one when the file does not exist yet."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return PluginState()
        except OSError as exc:
            raise StoreError(f"cannot read docker plugin state {self.path}: {exc}") from exc
        try:
            return PluginState.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreCorrupt(f"docker plugin state {self.path} is unreadable ({exc}); "
                               "move it aside to start empty") from exc

    def save(self, state: PluginState) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(state.to_json(), f, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StoreError(f"cannot write docker plugin state {self.path}: {exc}") from exc
