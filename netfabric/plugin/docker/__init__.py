"""Docker's remote NetworkDriver + IpamDriver plugin (libnetwork v1 socket, local scope).

:class:`DockerPlugin` holds the pure handlers over the :class:`Fabric` seam (implemented by
the agent) and the :class:`Engine` seam (dockerd's API, for names); :class:`PluginServer`
serves them as HTTP on a unix socket. The agent starts both; see ``serve.py``.
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
    from netfabric.agent.core import AgentCore
    from netfabric.plugin.docker.service import DockerPluginService


async def serve(core: AgentCore, path: str) -> DockerPluginService:
    """The agent's hook (``--docker-plugin PATH``): the plugin for ``core`` on ``path``, built
    before the core starts and ``start()``-ed after. Imported lazily so that the handlers
    need none of the agent."""
    from netfabric.plugin.docker.service import serve as serve_service

    return await serve_service(core, path)
