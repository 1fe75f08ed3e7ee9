"""Docker's remote NetworkDriver + IpamDriver plugin (libnetwork v1 socket, local scope).

:class:`DockerPlugin` holds the pure handlers over the :class:`Fabric` seam (implemented by
the agent) and the :class:`Engine` seam (dockerd's API, for names); :class:`PluginServer`
serves them as HTTP on a unix socket. The agent starts both through :func:`serve` (in
``service.py``), over its public interface :class:`~netfabric.agent.frontend.AgentFrontend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netfabric.plugin.docker.backend import Attachment, Engine, Fabric, FabricNetwork
from netfabric.plugin.docker.engine import DockerEngine, docker_socket_of, engine_factory
from netfabric.plugin.docker.handlers import ADDRESS_SPACE, DockerPlugin, Reply, mac_for
from netfabric.plugin.docker.server import DEFAULT_PLUGIN_SOCKET, PluginServer, write_spec
from netfabric.plugin.docker.state import PluginState, StateFile

__all__ = [
    "ADDRESS_SPACE",
    "DEFAULT_PLUGIN_SOCKET",
    "Attachment",
    "DockerEngine",
    "DockerPlugin",
    "Engine",
    "Fabric",
    "FabricNetwork",
    "PluginServer",
    "PluginState",
    "Reply",
    "StateFile",
    "docker_socket_of",
    "engine_factory",
    "mac_for",
    "serve",
    "write_spec",
]

if TYPE_CHECKING:
    from netfabric.agent.frontend import AgentFrontend
    from netfabric.plugin.docker.service import DockerPluginService


async def serve(agent: AgentFrontend, path: str) -> DockerPluginService:
    """The agent's hook (``--docker-plugin PATH``): the plugin for ``agent`` on ``path``,
    built before the agent starts and ``start()``-ed after. Imported lazily so that the
    handlers need none of the agent."""
    from netfabric.plugin.docker.service import serve as serve_service

    return await serve_service(agent, path)
