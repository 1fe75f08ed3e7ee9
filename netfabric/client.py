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
import struct
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, overload

from netfabric.api import verbs
from netfabric.api.types import ContainerInfo
from netfabric.api.verbs import Verb
from netfabric.api.wire import encode_json, result_of
from netfabric.errors import AgentUnreachable, InvalidArgument

__all__ = ["DEFAULT_HOST", "DEFAULT_SOCKET", "AsyncClient", "Client", "resolve_host"]

DEFAULT_SOCKET = "/run/netfabric/agent.sock"
"""Where the agent listens when ``--socket`` is not given."""
DEFAULT_HOST = f"unix://{DEFAULT_SOCKET}"
DEFAULT_TIMEOUT = 60.0
"""Seconds a call may take (a cluster join or a first overlay attach can take a few)."""

P = ParamSpec("P")
R = TypeVar("R")


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


def _unreachable(path: str, verb: str, timeout: float, exc: OSError) -> AgentUnreachable:
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return AgentUnreachable(
            f"cannot reach the netfabric agent at unix://{path}: is it running?")
    if isinstance(exc, TimeoutError):
        return AgentUnreachable(
            f"the agent at unix://{path} did not answer {verb} in {timeout:g}s")
    return AgentUnreachable(f"agent at unix://{path}: {exc.strerror or exc}")


class _SyncVerb(Generic[P, R]):
    """A :class:`Client` method made from one verb of :mod:`netfabric.api.verbs`."""

    def __init__(self, verb: Verb[P, R]) -> None:
        self.verb = verb
        self.__doc__ = verb.doc

    @overload
    def __get__(self, obj: None, owner: type) -> _SyncVerb[P, R]: ...
    @overload
    def __get__(self, obj: Client, owner: type) -> Callable[P, R]: ...

    def __get__(self, obj: Client | None, owner: type) -> Callable[P, R] | _SyncVerb[P, R]:
        if obj is None:
            return self
        verb = self.verb

        def method(*args: P.args, **kwargs: P.kwargs) -> R:
            return obj._call(verb, verb.encode(*args, **kwargs))

        method.__name__ = method.__qualname__ = verb.name
        method.__doc__ = verb.doc
        return method

    def __call__(self, client: Client, *args: P.args, **kwargs: P.kwargs) -> R:
        return client._call(self.verb, self.verb.encode(*args, **kwargs))


class _AsyncVerb(Generic[P, R]):
    """An :class:`AsyncClient` coroutine method made from one verb."""

    def __init__(self, verb: Verb[P, R]) -> None:
        self.verb = verb
        self.__doc__ = verb.doc

    @overload
    def __get__(self, obj: None, owner: type) -> _AsyncVerb[P, R]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type) -> Callable[P, Awaitable[R]]: ...

    def __get__(self, obj: AsyncClient | None,
                owner: type) -> Callable[P, Awaitable[R]] | _AsyncVerb[P, R]:
        if obj is None:
            return self
        verb = self.verb

        async def method(*args: P.args, **kwargs: P.kwargs) -> R:
            return await obj._acall(verb, verb.encode(*args, **kwargs))

        method.__name__ = method.__qualname__ = verb.name
        method.__doc__ = verb.doc
        return method

    async def __call__(self, client: AsyncClient, *args: P.args, **kwargs: P.kwargs) -> R:
        return await client._acall(self.verb, self.verb.encode(*args, **kwargs))


class Client:
    """Blocking client. ``host`` is ``unix://PATH`` (default: $NETFABRIC_HOST, then
    :data:`DEFAULT_HOST`). One short connection per call, so it is safe across threads.

    Typed methods, one per verb of :mod:`netfabric.api.verbs` (signature and result type
    are the verb's; all raise :class:`netfabric.NetfabricError` subclasses, an answer that
    does not fit the verb :class:`netfabric.MalformedAnswer`): ``info``, ``init``,
    ``join``, ``join_token``, ``nodes``, ``update_node``, ``remove_node``,
    ``promote_node``, ``demote_node``, ``leave``,
    ``create_network``,
    ``remove_network``, ``networks``, ``inspect_network``, ``run``, ``remove_container``,
    ``containers``, ``inspect_container``, ``connect``, ``disconnect``, ``create_service``,
    ``remove_service``, ``services``, ``inspect_service``, ``add_backend``,
    ``remove_backend``, ``scale_service``, ``service_ps``, ``update_service``, ``doctor``,
    ``doctor_host``; and
    ``attach(name, netns_path, ...)``, ``run`` adopting an existing netns.
    """

    def __init__(self, host: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = resolve_host(host)
        self.timeout = timeout

    def agent_pid(self) -> int | None:
        """The agent's pid as this process sees it (the peer credentials of its socket,
        which the kernel gives in this process's pid namespace); None if unknown."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                      struct.calcsize("3i"))
        except OSError:
            return None
        pid = struct.unpack("3i", raw)[0]
        return pid if pid > 0 else None

    def _call(self, verb: Verb[P, R], args: dict[str, Any]) -> R:
        from netfabric.api.httpio import request_blocking  # h11: not for `import netfabric`

        peer = f"agent at {self.path}"
        try:
            response = request_blocking(self.path, "POST", f"/v1/{verb.name}",
                                        encode_json(args), timeout=self.timeout, peer=peer)
        except OSError as exc:
            raise _unreachable(self.path, verb.name, self.timeout, exc) from exc
        return verb.parse_result(result_of(response.status, response.body, peer=peer),
                                 peer=peer)

    info = _SyncVerb(verbs.INFO)
    doctor = _SyncVerb(verbs.DOCTOR)
    doctor_host = _SyncVerb(verbs.DOCTOR_HOST)
    init = _SyncVerb(verbs.INIT)
    join = _SyncVerb(verbs.JOIN)
    join_token = _SyncVerb(verbs.JOIN_TOKEN)
    nodes = _SyncVerb(verbs.NODES)
    update_node = _SyncVerb(verbs.UPDATE_NODE)
    remove_node = _SyncVerb(verbs.REMOVE_NODE)
    promote_node = _SyncVerb(verbs.PROMOTE_NODE)
    demote_node = _SyncVerb(verbs.DEMOTE_NODE)
    leave = _SyncVerb(verbs.LEAVE)
    create_network = _SyncVerb(verbs.CREATE_NETWORK)
    remove_network = _SyncVerb(verbs.REMOVE_NETWORK)
    networks = _SyncVerb(verbs.NETWORKS)
    inspect_network = _SyncVerb(verbs.INSPECT_NETWORK)
    run = _SyncVerb(verbs.RUN)
    remove_container = _SyncVerb(verbs.REMOVE_CONTAINER)
    containers = _SyncVerb(verbs.CONTAINERS)
    inspect_container = _SyncVerb(verbs.INSPECT_CONTAINER)
    connect = _SyncVerb(verbs.CONNECT)
    disconnect = _SyncVerb(verbs.DISCONNECT)
    create_service = _SyncVerb(verbs.CREATE_SERVICE)
    remove_service = _SyncVerb(verbs.REMOVE_SERVICE)
    services = _SyncVerb(verbs.SERVICES)
    inspect_service = _SyncVerb(verbs.INSPECT_SERVICE)
    add_backend = _SyncVerb(verbs.ADD_BACKEND)
    remove_backend = _SyncVerb(verbs.REMOVE_BACKEND)
    scale_service = _SyncVerb(verbs.SCALE_SERVICE)
    service_ps = _SyncVerb(verbs.SERVICE_PS)
    update_service = _SyncVerb(verbs.UPDATE_SERVICE)

    def attach(self, name: str, netns_path: str, *, network: str | None = None,
               aliases: Sequence[str] = (), ip: str | None = None) -> ContainerInfo:
        """Adopt an existing netns (by path) as a container and connect it to ``network``."""
        return self.run(name, network=network, aliases=tuple(aliases), ip=ip,
                        netns_path=netns_path)

    def close(self) -> None:
        """Nothing is held between calls; present for ``with`` symmetry."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """The same verbs as :class:`Client`, each a coroutine: ``await nf.run("web1", ...)``."""

    def __init__(self, host: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = resolve_host(host)
        self.timeout = timeout

    async def _acall(self, verb: Verb[P, R], args: dict[str, Any]) -> R:
        from netfabric.api.httpio import request

        peer = f"agent at {self.path}"
        try:
            async with asyncio.timeout(self.timeout):
                response = await request(lambda: asyncio.open_unix_connection(self.path),
                                         "POST", f"/v1/{verb.name}", encode_json(args),
                                         peer=peer)
        except OSError as exc:  # TimeoutError included
            raise _unreachable(self.path, verb.name, self.timeout, exc) from exc
        return verb.parse_result(result_of(response.status, response.body, peer=peer),
                                 peer=peer)

    info = _AsyncVerb(verbs.INFO)
    doctor = _AsyncVerb(verbs.DOCTOR)
    doctor_host = _AsyncVerb(verbs.DOCTOR_HOST)
    init = _AsyncVerb(verbs.INIT)
    join = _AsyncVerb(verbs.JOIN)
    join_token = _AsyncVerb(verbs.JOIN_TOKEN)
    nodes = _AsyncVerb(verbs.NODES)
    update_node = _AsyncVerb(verbs.UPDATE_NODE)
    remove_node = _AsyncVerb(verbs.REMOVE_NODE)
    promote_node = _AsyncVerb(verbs.PROMOTE_NODE)
    demote_node = _AsyncVerb(verbs.DEMOTE_NODE)
    leave = _AsyncVerb(verbs.LEAVE)
    create_network = _AsyncVerb(verbs.CREATE_NETWORK)
    remove_network = _AsyncVerb(verbs.REMOVE_NETWORK)
    networks = _AsyncVerb(verbs.NETWORKS)
    inspect_network = _AsyncVerb(verbs.INSPECT_NETWORK)
    run = _AsyncVerb(verbs.RUN)
    remove_container = _AsyncVerb(verbs.REMOVE_CONTAINER)
    containers = _AsyncVerb(verbs.CONTAINERS)
    inspect_container = _AsyncVerb(verbs.INSPECT_CONTAINER)
    connect = _AsyncVerb(verbs.CONNECT)
    disconnect = _AsyncVerb(verbs.DISCONNECT)
    create_service = _AsyncVerb(verbs.CREATE_SERVICE)
    remove_service = _AsyncVerb(verbs.REMOVE_SERVICE)
    services = _AsyncVerb(verbs.SERVICES)
    inspect_service = _AsyncVerb(verbs.INSPECT_SERVICE)
    add_backend = _AsyncVerb(verbs.ADD_BACKEND)
    remove_backend = _AsyncVerb(verbs.REMOVE_BACKEND)
    scale_service = _AsyncVerb(verbs.SCALE_SERVICE)
    service_ps = _AsyncVerb(verbs.SERVICE_PS)
    update_service = _AsyncVerb(verbs.UPDATE_SERVICE)

    async def attach(self, name: str, netns_path: str, *, network: str | None = None,
                     aliases: Sequence[str] = (), ip: str | None = None) -> ContainerInfo:
        """Adopt an existing netns (by path) as a container and connect it to ``network``."""
        return await self.run(name, network=network, aliases=tuple(aliases), ip=ip,
                              netns_path=netns_path)

    async def close(self) -> None:
        """Nothing is held between calls."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
