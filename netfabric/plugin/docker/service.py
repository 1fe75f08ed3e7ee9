"""``netfabric agent --docker-plugin PATH``: the agent serves the Docker plugin on PATH.

The agent's daemon calls :func:`serve` before the agent starts: the plugin registers its
recovery with the core (its persisted endpoints, whose veths dockerd holds, are re-attached
before the start-up reconcile would remove them as unknown). ``start()`` then opens the
socket once the agent runs; ``close()`` stops it. The plugin's records live in the agent's
data dir.
"""

from __future__ import annotations

import os
from typing import Final

from netfabric.agent.frontend import AgentFrontend
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
    """The plugin's socket server and its fabric; ``await start()`` opens the socket,
    ``await close()`` stops both."""

    def __init__(self, server: PluginServer, fabric: AgentFabric) -> None:
        self.server = server
        self.fabric = fabric

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()
        await self.fabric.close()


async def serve(agent: AgentFrontend, path: str) -> DockerPluginService:
    """The plugin for ``agent`` on the unix socket ``path``; call before the agent starts
    (it registers the plugin's recovery), then ``start()`` the result."""
    fabric = AgentFabric(agent)
    plugin = DockerPlugin(fabric, StateFile(os.path.join(agent.data_dir, STATE_FILE)),
                          engine_factory(os.environ.get(DOCKER_SOCKET_ENV) or None))
    agent.add_restorer(plugin.restore)
    return DockerPluginService(PluginServer(plugin, path), fabric)
