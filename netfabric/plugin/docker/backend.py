"""The two narrow seams the Docker plugin stands on.

:class:`Fabric` is what the plugin needs from netfabric (the agent implements it over its
store, IPAM, drivers and gossip): networks by *name*, addresses from netfabric's allocator,
and a veth in this host's netns for Docker to move into the container. :class:`Engine` is
what it needs from dockerd itself: the names the remote protocol never carries (a network's
name, a container's name and aliases), read from dockerd's API.

Every method raises only :mod:`netfabric.errors`; the handlers turn those into ``Err``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from netfabric.model import Driver

__all__ = ["Attachment", "Engine", "Fabric", "FabricNetwork"]


@dataclass(frozen=True, slots=True)
class FabricNetwork:
    """A netfabric network as the plugin sees it: one IPv4 subnet and its gateway."""

    name: str
    driver: Driver
    subnet: str
    """CIDR, e.g. ``10.0.3.0/24``."""
    gateway: str
    """Bare address, e.g. ``10.0.3.1``."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """Where the endpoint's interface waits for Docker: a veth in this host's netns."""

    ifname: str
    gateway: str


class Fabric(Protocol):
    """netfabric as the plugin needs it. Every call is idempotent."""

    async def lookup_network(self, name: str) -> FabricNetwork | None:
        """The network of that name, if netfabric knows it."""
        ...

    async def ensure_network(self, name: str, *, driver: Driver, subnet: str | None,
                             gateway: str | None, ip_range: str | None,
                             options: Mapping[str, str]) -> FabricNetwork:
        """The network of that name, created with these settings if it does not exist."""
        ...

    async def release_network(self, name: str) -> None:
        """Remove the network if no endpoint uses it on any host; else leave it (no error)."""
        ...

    async def propose_subnet(self, *, exclude: frozenset[str]) -> str:
        """A subnet free in netfabric's overlay pool and not in ``exclude`` (not reserved)."""
        ...

    async def allocate_address(self, network: str, *, address: str | None) -> str:
        """An address of the network (the given one, or the next free); bare address."""
        ...

    async def release_address(self, network: str, address: str) -> None:
        """Give an address back; releasing a free address is not an error."""
        ...

    async def attach(self, network: str, *, endpoint_id: str, address: str,
                     mac: str, sandbox_key: str = "") -> Attachment:
        """Wire the endpoint into the network and publish it; leave the host end of a veth,
        down and unaddressed, in this host's netns for Docker to move into the sandbox.
        ``sandbox_key``: the container's netns (Join's SandboxKey), given the VIP load
        balancers of the network's services."""
        ...

    async def set_names(self, network: str, *, endpoint_id: str,
                        names: tuple[str, ...]) -> None:
        """Publish the container name and aliases of an attached endpoint (for DNS)."""
        ...

    async def leave(self, network: str, *, endpoint_id: str) -> None:
        """Withdraw the endpoint from the cluster (DNS, peers' FDB) but keep its links."""
        ...

    async def detach(self, network: str, *, endpoint_id: str) -> None:
        """Remove every trace of the endpoint: links (in any netns), FDB, records."""
        ...


class Engine(Protocol):
    """The dockerd that called the plugin, for names the protocol does not carry."""

    @property
    def key(self) -> str:
        """Which dockerd this is: the plugin keeps one events stream per key."""
        ...

    def gone(self) -> bool:
        """True once this dockerd is gone for good (its events stream is not reopened)."""
        ...

    def connect_events(self, since: float) -> AsyncIterator[tuple[str, str]]:
        """``(network id, container id)`` of each container joining a network, from the
        Unix time ``since`` on, as dockerd reports them, after a first ``("", "")`` once the
        stream is open; ends when dockerd ends the stream."""
        ...

    async def endpoint_of(self, network_id: str, container_id: str) -> tuple[str, str]:
        """``(endpoint id, container name)`` of a container on a network, without waiting
        for the container to finish starting; ``("", "")`` while not listed."""
        ...

    async def network_name(self, network_id: str) -> str | None:
        """The Docker network's name, or ``None`` while dockerd does not list it yet."""
        ...

    async def endpoint_names(self, network_id: str, endpoint_id: str) -> tuple[str, ...]:
        """Container name then aliases of the endpoint; ``()`` while not visible yet."""
        ...
