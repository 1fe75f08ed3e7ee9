"""The dockerd that calls the plugin, asked for the names the remote protocol leaves out.

Zero configuration: the plugin's socket gives the caller's pid (``SO_PEERCRED``), which is
dockerd's; its command line names its API socket (``-H unix://PATH``, default
``/var/run/docker.sock``), reached through ``/proc/PID/root`` so that a dockerd in another
mount namespace works too. A fixed socket path can be configured instead.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Final, TypeVar
from urllib.parse import quote, urlencode

import msgspec

from netfabric.api.httpio import request, stream
from netfabric.errors import AgentUnreachable, MalformedAnswer

__all__ = ["DEFAULT_DOCKER_SOCKET", "DockerEngine", "docker_socket_of", "engine_factory"]

DEFAULT_DOCKER_SOCKET: Final = "/var/run/docker.sock"
API_VERSION: Final = "v1.41"
TIMEOUT_S: Final = 3.0
_T = TypeVar("_T")


def docker_socket_of(pid: int) -> str:
    """The API socket of the dockerd with this pid, as a path this process can open."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return DEFAULT_DOCKER_SOCKET
    path = DEFAULT_DOCKER_SOCKET
    for i, arg in enumerate(argv):
        value = ""
        if arg in ("-H", "--host") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(("-H=", "--host=")):
            value = arg.split("=", 1)[1]
        if value.startswith("unix://"):
            path = value.removeprefix("unix://")
            break
    return f"/proc/{pid}/root{path}" if os.path.isabs(path) else path


# The parts of dockerd's answers the engine reads (Docker's field names; the rest ignored).


class _NetContainer(msgspec.Struct):
    Name: str = ""
    EndpointID: str = ""


class _Network(msgspec.Struct):
    Name: str = ""
    Containers: dict[str, _NetContainer] | None = None


class _EndpointSettings(msgspec.Struct):
    EndpointID: str = ""
    Aliases: list[str] | None = None


class _Settings(msgspec.Struct):
    Networks: dict[str, _EndpointSettings] | None = None


class _Container(msgspec.Struct):
    NetworkSettings: _Settings | None = None


class _Actor(msgspec.Struct):
    ID: str = ""
    Attributes: dict[str, str] | None = None


class _Event(msgspec.Struct):
    Type: str = ""
    Action: str = ""
    Actor: _Actor | None = None


CONNECT_FILTER: Final = json.dumps({"type": ["network"], "event": ["connect"]})


class DockerEngine:
    """A minimal client of dockerd's API for network and container names."""

    def __init__(self, socket_path: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    @property
    def key(self) -> str:
        """Which dockerd this is (its API socket): one events stream per dockerd."""
        return self.socket_path

    def gone(self) -> bool:
        """True once the dockerd's socket has disappeared (it stopped; a new one is a new
        engine)."""
        return not os.path.exists(self.socket_path)

    async def connect_events(self, since: float) -> AsyncIterator[tuple[str, str]]:
        """``(network id, container id)`` of every network ``connect`` event dockerd logs
        from ``since`` (a Unix time: dockerd replays the recent ones) on, as it sends them.
        dockerd logs it while ``docker start`` runs, once the container's endpoint has
        joined: before the start returns. First ``("", "")``, once dockerd has accepted the
        subscription. Ends when dockerd ends the stream."""
        query = urlencode({"since": f"{since:.9f}", "filters": CONNECT_FILTER})
        peer = f"dockerd API at {self.socket_path}"
        buf = b""
        try:
            async for data in stream(lambda: asyncio.open_unix_connection(self.socket_path),
                                     f"/{API_VERSION}/events?{query}", host="docker",
                                     peer=peer):
                if not data:
                    yield "", ""   # subscribed
                    continue
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        event = msgspec.json.decode(line, type=_Event)
                    except msgspec.DecodeError as exc:
                        raise MalformedAnswer(f"{peer} sent a malformed event: {exc}") from None
                    attrs = (event.Actor.Attributes if event.Actor else None) or {}
                    if (event.Type == "network" and event.Action == "connect"
                            and event.Actor and attrs.get("container")):
                        yield event.Actor.ID, attrs["container"]
        except OSError as exc:
            raise AgentUnreachable(f"{peer}: {exc.strerror or exc}") from exc

    async def endpoint_of(self, network_id: str, container_id: str) -> tuple[str, str]:
        """``(endpoint id, container name)`` of a container on a network, from the
        network's listing (which dockerd answers while the container is still starting);
        ``("", "")`` while not listed."""
        net = await self._get(f"/networks/{quote(network_id)}", _Network)
        info = (net.Containers or {}).get(container_id) if net is not None else None
        if info is None:
            return "", ""
        return info.EndpointID, info.Name.lstrip("/")

    async def _get(self, path: str, kind: type[_T]) -> _T | None:
        """The answer to ``GET path`` as ``kind``; ``None`` for a status other than 200."""
        try:
            response = await asyncio.wait_for(
                request(lambda: asyncio.open_unix_connection(self.socket_path), "GET",
                        f"/{API_VERSION}{path}", host="docker",
                        peer=f"dockerd API at {self.socket_path}"), self.timeout_s)
        except (OSError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            raise AgentUnreachable(f"dockerd API at {self.socket_path}: {why}") from exc
        if response.status != 200:
            return None
        try:
            return msgspec.json.decode(response.body, type=kind)
        except msgspec.DecodeError as exc:
            raise MalformedAnswer(f"dockerd API at {self.socket_path} sent a malformed "
                                  f"answer to GET {path}: {exc}") from None

    async def network_name(self, network_id: str) -> str | None:
        net = await self._get(f"/networks/{quote(network_id)}", _Network)
        return net.Name if net is not None and net.Name else None

    async def endpoint_names(self, network_id: str, endpoint_id: str) -> tuple[str, ...]:
        net = await self._get(f"/networks/{quote(network_id)}", _Network)
        if net is None:
            return ()
        found = [(cid, info) for cid, info in (net.Containers or {}).items()
                 if info.EndpointID == endpoint_id]
        if not found:
            return ()
        cid, info = found[0]
        names = [info.Name.lstrip("/")]
        ctr = await self._get(f"/containers/{quote(cid)}/json", _Container)
        if ctr is None:
            return ()
        nets = (ctr.NetworkSettings.Networks if ctr.NetworkSettings else None) or {}
        mine = nets.get(net.Name)
        if mine is None or mine.EndpointID != endpoint_id:
            return ()  # the container's settings (and aliases) are not written yet
        names += mine.Aliases or []
        return tuple(dict.fromkeys(n for n in names if n))


def engine_factory(socket_path: str | None = None) -> Callable[[int | None], DockerEngine]:
    """An ``engine_for(pid)`` for :class:`DockerPlugin`: the fixed socket if given, else the
    caller's own dockerd found from its pid."""

    def engine_for(pid: int | None) -> DockerEngine:
        if socket_path:
            return DockerEngine(socket_path)
        return DockerEngine(docker_socket_of(pid) if pid else DEFAULT_DOCKER_SOCKET)

    return engine_for
