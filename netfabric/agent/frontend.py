"""The one public interface the agent offers its front ends.

The local HTTP API (and so the CLI), the Docker plugin, and the CNI and service front ends
all drive the agent through :class:`AgentFrontend` and nothing else: no front end reaches
into the agent's services or state. :class:`~netfabric.agent.core.AgentCore` implements it.

Two groups of calls:

- the **verbs** of the local API (``info`` ... ``disconnect``), one typed method each;
- **hooks for front ends that plumb interfaces of their own** (the Docker plugin hands
  dockerd a veth; CNI will do the same for a runtime): resolve a network, take an address
  from the agent's IPAM, plumb the endpoint with the agent's drivers, publish its name to
  DNS and gossip, serve DNS in a netns, and take endpoints back after an agent restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from netfabric.agent.ports import Allocation
from netfabric.api.types import (
    Availability,
    ClusterInfo,
    ContainerInfo,
    DoctorReport,
    EndpointInfo,
    JoinToken,
    NetworkInfo,
    NodeInfo,
    Role,
)
from netfabric.model import Endpoint, Network

__all__ = ["AgentFrontend", "Restorer"]

Restorer = Callable[[], Awaitable[None]]


class AgentFrontend(Protocol):
    """What a front end may ask of the running agent."""

    # -- who and where ------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's id (gossip, IPAM holders, endpoint owners)."""

    @property
    def address(self) -> str:
        """This node's underlay address (its VTEP), "" without --advertise-addr."""

    @property
    def host_netns(self) -> str:
        """Name of the netns the agent runs in (under /run/netns)."""

    @property
    def data_dir(self) -> str:
        """The agent's state directory; a front end keeps its own records there."""

    # -- the local API's verbs ----------------------------------------------------------------

    async def info(self) -> ClusterInfo: ...

    async def doctor(self, source: str, target: str) -> DoctorReport: ...

    async def doctor_host(self, *, repair: bool = False) -> DoctorReport: ...

    async def init(self, advertise_addr: str, *, listen_addr: str | None = None,
                   store: str | None = None) -> JoinToken: ...

    async def join(self, token: str, remote: str,
                   advertise_addr: str | None = None) -> ClusterInfo: ...

    async def join_token(self, role: Role | str, *, rotate: bool = False) -> JoinToken: ...

    async def nodes(self) -> list[NodeInfo]: ...

    async def update_node(self, node: str, *,
                          availability: Availability | str) -> NodeInfo: ...

    async def remove_node(self, node: str, *, force: bool = False) -> None: ...

    async def promote_node(self, node: str) -> NodeInfo: ...

    async def demote_node(self, node: str) -> NodeInfo: ...

    async def leave(self, *, force: bool = False) -> None: ...

    async def create_network(self, name: str, *, driver: str = "bridge",
                             attachable: bool = False, subnet: str | None = None,
                             gateway: str | None = None, ip_range: str | None = None,
                             ipv6: bool = False, internal: bool = False,
                             options: dict[str, str] | None = None,
                             labels: dict[str, str] | None = None) -> NetworkInfo: ...

    async def remove_network(self, name: str) -> None: ...

    async def networks(self) -> list[NetworkInfo]: ...

    async def inspect_network(self, name: str) -> NetworkInfo: ...

    async def ensure_network(self, name: str, *, driver: str = "overlay") -> NetworkInfo: ...

    async def run(self, name: str, *, network: str | None = None, aliases: Sequence[str] = (),
                  ip: str | None = None, netns_path: str | None = None, hostname: str = "",
                  labels: dict[str, str] | None = None) -> ContainerInfo: ...

    async def remove_container(self, name: str, *, force: bool = False) -> None: ...

    async def containers(self) -> list[ContainerInfo]: ...

    async def inspect_container(self, name: str) -> ContainerInfo: ...

    async def connect(self, network: str, container: str, *, aliases: Sequence[str] = (),
                      ip: str | None = None) -> EndpointInfo: ...

    async def disconnect(self, network: str, container: str, *,
                         force: bool = False) -> None: ...

    async def create_service(self, name: str, *, networks: Sequence[str] = (),
                             endpoint_mode: str = "vip",
                             publish: Sequence[str] = ()) -> dict[str, Any]: ...

    async def remove_service(self, name: str) -> None: ...

    async def services(self) -> list[dict[str, Any]]: ...

    async def inspect_service(self, name: str) -> dict[str, Any]: ...

    async def add_backend(self, service: str, container: str) -> dict[str, Any]: ...

    async def remove_backend(self, service: str, container: str) -> None: ...

    def name_ids(self, text: str) -> str:
        """``text`` with the network and node IDs it names written as names (for errors)."""

    # -- hooks for front ends that plumb their own interfaces ---------------------------------

    def add_restorer(self, restore: Restorer) -> None:
        """Register, before the agent starts, how this front end takes back the endpoints
        it plumbed itself. The agent awaits it once networks, gossip and sandboxes are back
        and before its reconcile, which removes every kernel object the drivers were not
        told about. It re-attaches (attach is idempotent) and handles a failure per
        endpoint itself."""

    async def resolve_network(self, ref: str) -> Network:
        """A network by name or ID (a worker asks a manager for cluster networks)."""

    def subnets_in_use(self) -> list[str]:
        """The CIDRs of every network this host knows (to propose a free one)."""

    async def allocate(self, network: Network, ip: str | None = None) -> Allocation:
        """An address on ``network`` from the right IPAM (local, or the manager's)."""

    async def release(self, network: Network, ip: str | None) -> None:
        """Give an address back (kept and retried if the manager is unreachable)."""

    async def attach_endpoint(self, network: Network, endpoint: Endpoint, *, netns_path: str,
                              ifname: str, gateway: str | None) -> None:
        """Plumb ``endpoint`` into ``netns_path`` as ``ifname`` with the agent's drivers
        (idempotent), and keep the network's remote endpoints programmed while it is
        attached. It is not resolvable until :meth:`publish`."""

    async def detach_endpoint(self, network: Network, endpoint: Endpoint, *, netns_path: str,
                              ifname: str) -> None:
        """Undo :meth:`attach_endpoint` (:meth:`withdraw` it first)."""

    def publish(self, network: Network, endpoint: Endpoint, *,
                replaces: Endpoint | None = None) -> None:
        """Make ``endpoint``'s name and aliases resolve here and, on a cluster network, on
        every host. ``replaces``: the same endpoint published before under other names."""

    def withdraw(self, network: Network, endpoint: Endpoint) -> None:
        """Undo :meth:`publish`."""

    async def open_names(self, netns: str, netns_path: str, networks: frozenset[str]) -> None:
        """Serve 127.0.0.11 in a netns for the names of ``networks`` (or update its set)."""

    async def close_names(self, netns: str) -> None:
        """Stop serving DNS in a netns."""

    async def open_services(self, netns_path: str, networks: frozenset[str]) -> None:
        """Give a netns made by someone else (a Docker or CNI container's) the VIP load
        balancers of the services on ``networks`` (or update its set), as netfabric's own
        sandboxes have: its connections to a VIP reach the service's tasks."""

    async def close_services(self, netns_path: str) -> None:
        """Take them out again (before the netns goes: its table holds it open)."""
