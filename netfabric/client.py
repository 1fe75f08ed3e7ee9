"""The library client of the agent's local API, sync (:class:`Client`) and async
(:class:`AsyncClient`).

This is what an orchestrator imports and what the CLI uses. Every method is one verb of the
API (``POST /v1/<verb>`` with a JSON object of arguments); each returns typed values from
:mod:`netfabric.api.types` and raises the agent's own :mod:`netfabric.errors` class, or
:class:`AgentUnreachable` when nothing answers on the socket.

    from netfabric import Client
    with Client("unix:///run/netfabric/agent.sock") as nf:
        nf.create_network("myoverlay", driver="overlay", attachable=True)
        web = nf.run("web1", network="myoverlay")
        print(web.networks[0].ipv4)
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from netfabric.api.http import MAX_BODY, MAX_HEAD, decode_json, encode_request, parse_head
from netfabric.api.types import (
    Availability,
    ClusterInfo,
    ContainerInfo,
    EndpointInfo,
    JoinToken,
    NetworkInfo,
    NodeInfo,
    Role,
)
from netfabric.api.wire import error_from_wire
from netfabric.errors import AgentUnreachable, InvalidArgument

__all__ = ["DEFAULT_HOST", "DEFAULT_SOCKET", "AsyncClient", "Client", "resolve_host"]

DEFAULT_SOCKET = "/run/netfabric/agent.sock"
"""Where the agent listens when ``--socket`` is not given."""
DEFAULT_HOST = f"unix://{DEFAULT_SOCKET}"
DEFAULT_TIMEOUT = 60.0
"""Seconds a call may take (a cluster join or a first overlay attach can take a few)."""

T = TypeVar("T")


def resolve_host(host: str | None) -> str:
    """The socket path of ``host`` (``unix://PATH`` or a bare path), else $NETFABRIC_HOST,
    else :data:`DEFAULT_SOCKET`."""
    host = host or os.environ.get("NETFABRIC_HOST") or DEFAULT_HOST
    if host.startswith("unix://"):
        path = host[len("unix://"):]
    elif host.startswith("/"):
        path = host
    else:
        raise InvalidArgument(f"unsupported host {host!r}: use unix:///path/to/agent.sock")
    if not path:
        raise InvalidArgument("empty socket path in host")
    return path


def _split_response(raw: bytes, path: str) -> Any:
    head_raw, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AgentUnreachable(f"agent at {path} closed the connection mid-answer")
    head = parse_head(head_raw)
    body = body[:head.content_length]
    data = decode_json(body)
    status = head.first[1]
    if status != "200":
        raise error_from_wire(data)
    if not isinstance(data, dict) or "result" not in data:
        raise AgentUnreachable(f"agent at {path} sent a malformed answer")
    return data["result"]


def _list(raw: Any, build: Callable[[Any], T]) -> list[T]:
    if not isinstance(raw, list):
        raise InvalidArgument("malformed API answer: expected a list")
    return [build(item) for item in raw]


class _Verbs:
    """The API verbs, written once; :class:`Client` and :class:`AsyncClient` supply ``_call``
    (sync or async) and these return its result mapped through the typed constructor."""

    def _call(self, verb: str, args: dict[str, Any], build: Callable[[Any], Any]) -> Any:
        raise NotImplementedError

    # cluster
    def info(self) -> Any:
        return self._call("info", {}, ClusterInfo.from_wire)

    def init(self, advertise_addr: str, *, listen_addr: str | None = None) -> Any:
        return self._call("init", {"advertise_addr": advertise_addr,
                                   "listen_addr": listen_addr}, JoinToken.from_wire)

    def join(self, token: str, remote: str) -> Any:
        return self._call("join", {"token": token, "remote": remote}, ClusterInfo.from_wire)

    def join_token(self, role: Role | str, *, rotate: bool = False) -> Any:
        return self._call("join_token", {"role": str(role), "rotate": rotate},
                          JoinToken.from_wire)

    def nodes(self) -> Any:
        return self._call("nodes", {}, lambda r: _list(r, NodeInfo.from_wire))

    def update_node(self, node: str, *, availability: Availability | str) -> Any:
        return self._call("update_node", {"node": node, "availability": str(availability)},
                          NodeInfo.from_wire)

    def leave(self, *, force: bool = False) -> Any:
        return self._call("leave", {"force": force}, lambda r: None)

    # networks
    def create_network(self, name: str, *, driver: str = "bridge", attachable: bool = False,
                       subnet: str | None = None, gateway: str | None = None,
                       ip_range: str | None = None, ipv6: bool = False,
                       internal: bool = False,
                       options: dict[str, str] | None = None) -> Any:
        return self._call("create_network", {
            "name": name, "driver": driver, "attachable": attachable, "subnet": subnet,
            "gateway": gateway, "ip_range": ip_range, "ipv6": ipv6, "internal": internal,
            "options": dict(options or {})}, NetworkInfo.from_wire)

    def remove_network(self, name: str) -> Any:
        return self._call("remove_network", {"name": name}, lambda r: None)

    def networks(self) -> Any:
        return self._call("networks", {}, lambda r: _list(r, NetworkInfo.from_wire))

    def inspect_network(self, name: str) -> Any:
        return self._call("inspect_network", {"name": name}, NetworkInfo.from_wire)

    # containers (sandboxes)
    def run(self, name: str, *, network: str | None = None, aliases: Sequence[str] = (),
            ip: str | None = None) -> Any:
        return self._call("run", {"name": name, "network": network, "aliases": list(aliases),
                                  "ip": ip, "netns_path": None}, ContainerInfo.from_wire)

    def attach(self, name: str, netns_path: str, *, network: str | None = None,
               aliases: Sequence[str] = (), ip: str | None = None) -> Any:
        """Adopt an existing netns (by path) as a container and connect it to ``network``."""
        return self._call("run", {"name": name, "network": network, "aliases": list(aliases),
                                  "ip": ip, "netns_path": netns_path}, ContainerInfo.from_wire)

    def remove_container(self, name: str, *, force: bool = False) -> Any:
        return self._call("remove_container", {"name": name, "force": force}, lambda r: None)

    def containers(self) -> Any:
        return self._call("containers", {}, lambda r: _list(r, ContainerInfo.from_wire))

    def inspect_container(self, name: str) -> Any:
        return self._call("inspect_container", {"name": name}, ContainerInfo.from_wire)

    def connect(self, network: str, container: str, *, aliases: Sequence[str] = (),
                ip: str | None = None) -> Any:
        return self._call("connect", {"network": network, "container": container,
                                      "aliases": list(aliases), "ip": ip},
                          EndpointInfo.from_wire)

    def disconnect(self, network: str, container: str, *, force: bool = False) -> Any:
        return self._call("disconnect", {"network": network, "container": container,
                                         "force": force}, lambda r: None)


class Client(_Verbs):
    """Blocking client. ``host`` is ``unix://PATH`` (default: $NETFABRIC_HOST, then
    :data:`DEFAULT_HOST`). One short connection per call, so it is safe across threads.

    Typed methods (all raise :class:`netfabric.NetfabricError` subclasses):
    ``info() -> ClusterInfo``, ``init(addr) -> JoinToken``, ``join(token, remote) ->
    ClusterInfo``, ``join_token(role) -> JoinToken``, ``nodes() -> list[NodeInfo]``,
    ``update_node(node, availability=) -> NodeInfo``, ``leave()``,
    ``create_network(name, driver=, ...) -> NetworkInfo``, ``remove_network(name)``,
    ``networks() -> list[NetworkInfo]``, ``inspect_network(name) -> NetworkInfo``,
    ``run(name, network=, aliases=, ip=) -> ContainerInfo``, ``attach(name, netns_path, ...)
    -> ContainerInfo``, ``remove_container(name, force=)``, ``containers() ->
    list[ContainerInfo]``, ``inspect_container(name) -> ContainerInfo``,
    ``connect(network, container, aliases=, ip=) -> EndpointInfo``, ``disconnect(...)``.
    """

    def __init__(self, host: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = resolve_host(host)
        self.timeout = timeout

    def _call(self, verb: str, args: dict[str, Any], build: Callable[[Any], Any]) -> Any:
        request = encode_request("POST", f"/v1/{verb}", args)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(request)
                chunks: list[bytes] = []
                total = 0
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > MAX_HEAD + MAX_BODY:
                        raise AgentUnreachable(f"agent at {self.path} sent an oversized answer")
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnreachable(
                f"cannot reach the netfabric agent at unix://{self.path}: is it running?"
            ) from exc
        except TimeoutError as exc:
            raise AgentUnreachable(
                f"the agent at unix://{self.path} did not answer {verb} in {self.timeout:g}s"
            ) from exc
        except OSError as exc:
            raise AgentUnreachable(f"agent at unix://{self.path}: {exc.strerror or exc}") from exc
        return build(_split_response(b"".join(chunks), self.path))

    def close(self) -> None:
        """Nothing is held between calls; present for ``with`` symmetry."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Verbs):
    """The same verbs as :class:`Client`, each a coroutine: ``await nf.run("web1", ...)``."""

    def __init__(self, host: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = resolve_host(host)
        self.timeout = timeout

    async def _acall(self, verb: str, args: dict[str, Any], build: Callable[[Any], Any]) -> Any:
        request = encode_request("POST", f"/v1/{verb}", args)
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self.path)
                try:
                    writer.write(request)
                    await writer.drain()
                    raw = await reader.read(MAX_HEAD + MAX_BODY)
                    while chunk := await reader.read(65536):
                        raw += chunk
                finally:
                    writer.close()
                    await writer.wait_closed()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnreachable(
                f"cannot reach the netfabric agent at unix://{self.path}: is it running?"
            ) from exc
        except TimeoutError as exc:
            raise AgentUnreachable(
                f"the agent at unix://{self.path} did not answer {verb} in {self.timeout:g}s"
            ) from exc
        except OSError as exc:
            raise AgentUnreachable(f"agent at unix://{self.path}: {exc.strerror or exc}") from exc
        return build(_split_response(raw, self.path))

    def _call(self, verb: str, args: dict[str, Any], build: Callable[[Any], Any]) -> Any:
        return self._acall(verb, args, build)

    async def close(self) -> None:
        """Nothing is held between calls."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
