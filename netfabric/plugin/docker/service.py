"""``netfabric agent --docker-plugin PATH``: the agent serves the Docker plugin on PATH.

The agent's daemon calls :func:`serve` once its core runs; what it returns is closed when
the agent stops. The plugin's records live in the agent's data dir.
"""

from __future__ import annotations

import os
from typing import Final

from netfabric.agent.core import AgentCore
from netfabric.plugin.docker.agent_fabric import AgentFabric
from netfabric.plugin.docker.engine import engine_factory
from netfabric.plugin.docker.handlers import DockerPlugin
from netfabric.plugin.docker.server import PluginServer
from netfabric.plugin.docker.state import StateFile

__all__ = ["STATE_FILE", "DockerPluginService", "serve"]

STATE_FILE: Final = "docker-plugin.json"
DOCKER_SOCKET_ENV: Final = "NETFABRIC_DOCKER_SOCKET"
"""Optional: dockerd's API socket, when finding it from the caller's pid is not wanted."""


class DockerPluginService:
    """The plugin's socket server and its fabric; ``await close()`` stops both."""

    def __init__(self, server: PluginServer, fabric: AgentFabric) -> None:
        self.server = server
        self.fabric = fabric

    async def close(self) -> None:
        await self.server.close()
        await self.fabric.close()


async def serve(core: AgentCore, path: str) -> DockerPluginService:
    """Start serving the plugin for ``core`` on the unix socket ``path``."""
    fabric = AgentFabric(core)
    plugin = DockerPlugin(fabric, StateFile(os.path.join(core.config.data_dir, STATE_FILE)),
                          engine_factory(os.environ.get(DOCKER_SOCKET_ENV) or None))
    server = PluginServer(plugin, path)
    try:
        await server.start()
    except BaseException:
        await fabric.close()
        raise
    return DockerPluginService(server, fabric)
