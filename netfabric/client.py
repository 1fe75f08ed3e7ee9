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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from netfabric.api.httpio import request, request_blocking
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
from netfabric.api.wire import encode_json, result_of
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




def _list(raw: Any, build: Callable[[Any], T]) -> list[T]:
    if not isinstance(raw, list):
        raise InvalidArgument("malformed API answer: expected a list")
    return [build(item) for item in raw]


@dataclass(frozen=True, slots=True)
class _Spec(Generic[T]):
    """One call: the verb, its JSON arguments and how to build the typed result."""

    verb: str
    args: dict[str, Any]
    build: Callable[[Any], T]


def _none(raw: Any) -> None:
    return None


def _object(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidArgument("malformed API object: not an object")
    return raw


def _lister(build: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    return lambda raw: _list(raw, build)


class _Specs:
    """The API verbs, written once: each returns the :class:`_Spec` of one call, which
    :class:`Client` and :class:`AsyncClient` send (blocking or awaited)."""

    @staticmethod
    def info() -> _Spec[ClusterInfo]:
        return _Spec("info", {}, ClusterInfo.from_wire)

    @staticmethod
    def init(advertise_addr: str, *, listen_addr: str | None = None) -> _Spec[JoinToken]:
        return _Spec(
            "init",
            {"advertise_addr": advertise_addr,
             "listen_addr": listen_addr},
            JoinToken.from_wire)

    @staticmethod
    def join(token: str, remote: str) -> _Spec[ClusterInfo]:
        return _Spec("join", {"token": token, "remote": remote}, ClusterInfo.from_wire)

    @staticmethod
    def join_token(role: Role | str, *, rotate: bool = False) -> _Spec[JoinToken]:
        return _Spec("join_token", {"role": str(role), "rotate": rotate}, JoinToken.from_wire)

    @staticmethod
    def nodes() -> _Spec[list[NodeInfo]]:
        return _Spec("nodes", {}, _lister(NodeInfo.from_wire))

    @staticmethod
    def update_node(node: str, *, availability: Availability | str) -> _Spec[NodeInfo]:
        return _Spec(
            "update_node",
            {"node": node,
             "availability": str(availability)},
            NodeInfo.from_wire)

    @staticmethod
    def leave(*, force: bool = False) -> _Spec[None]:
        return _Spec("leave", {"force": force}, _none)

    @staticmethod
    def create_network(name: str, *, driver: str = "bridge", attachable: bool = False,
                       subnet: str | None = None, gateway: str | None = None,
                       ip_range: str | None = None, ipv6: bool = False, internal: bool = False,
                       options: dict[str, str] | None = None,
                       labels: dict[str, str] | None = None) -> _Spec[NetworkInfo]:
        return _Spec(
            "create_network",
            {"name": name,
             "driver": driver, "attachable": attachable, "subnet": subnet, "gateway": gateway,
             "ip_range": ip_range, "ipv6": ipv6, "internal": internal,
             "options": dict(options or {}), "labels": dict(labels or {})},
            NetworkInfo.from_wire)

    @staticmethod
    def remove_network(name: str) -> _Spec[None]:
        return _Spec("remove_network", {"name": name}, _none)

    @staticmethod
    def networks() -> _Spec[list[NetworkInfo]]:
        return _Spec("networks", {}, _lister(NetworkInfo.from_wire))

    @staticmethod
    def inspect_network(name: str) -> _Spec[NetworkInfo]:
        return _Spec("inspect_network", {"name": name}, NetworkInfo.from_wire)

    @staticmethod
    def run(name: str, *, network: str | None = None, aliases: Sequence[str] = (),
            ip: str | None = None, hostname: str = "",
            labels: dict[str, str] | None = None) -> _Spec[ContainerInfo]:
        return _Spec(
            "run",
            {"name": name,
             "network": network, "aliases": list(aliases), "ip": ip, "netns_path": None,
             "hostname": hostname, "labels": dict(labels or {})},
            ContainerInfo.from_wire)

    @staticmethod
    def attach(name: str, netns_path: str, *, network: str | None = None,
               aliases: Sequence[str] = (), ip: str | None = None) -> _Spec[ContainerInfo]:
        return _Spec(
            "run",
            {"name": name,
             "network": network, "aliases": list(aliases), "ip": ip, "netns_path": netns_path},
            ContainerInfo.from_wire)

    @staticmethod
    def remove_container(name: str, *, force: bool = False) -> _Spec[None]:
        return _Spec("remove_container", {"name": name, "force": force}, _none)

    @staticmethod
    def containers() -> _Spec[list[ContainerInfo]]:
        return _Spec("containers", {}, _lister(ContainerInfo.from_wire))

    @staticmethod
    def inspect_container(name: str) -> _Spec[ContainerInfo]:
        return _Spec("inspect_container", {"name": name}, ContainerInfo.from_wire)

    @staticmethod
    def connect(network: str, container: str, *, aliases: Sequence[str] = (),
                ip: str | None = None) -> _Spec[EndpointInfo]:
        return _Spec(
            "connect",
            {"network": network,
             "container": container, "aliases": list(aliases), "ip": ip},
            EndpointInfo.from_wire)

    @staticmethod
    def disconnect(network: str, container: str, *, force: bool = False) -> _Spec[None]:
        return _Spec(
            "disconnect",
            {"network": network,
             "container": container, "force": force},
            _none)

    # -- services (plain JSON objects, see netfabric.agent.services) --------------------

    @staticmethod
    def create_service(name: str, *, networks: Sequence[str] = (), endpoint_mode: str = "vip",
                       publish: Sequence[str] = (), replicas: int | None = None,
                       command: Sequence[str] = ()) -> _Spec[dict[str, Any]]:
        return _Spec("create_service", {"name": name, "networks": list(networks),
                                        "endpoint_mode": endpoint_mode,
                                        "publish": list(publish), "replicas": replicas,
                                        "command": list(command)}, _object)

    @staticmethod
    def scale_service(name: str, replicas: int) -> _Spec[None]:
        return _Spec("scale_service", {"name": name, "replicas": replicas}, _none)

    @staticmethod
    def update_service(name: str, *, replicas: int | None = None, command: Sequence[str] = (),
                       failure_action: str | None = None,
                       rollback: bool = False) -> _Spec[dict[str, Any]]:
        return _Spec("update_service", {"name": name, "replicas": replicas,
                                        "command": list(command),
                                        "failure_action": failure_action,
                                        "rollback": rollback}, _object)

    @staticmethod
    def service_ps(name: str) -> _Spec[list[dict[str, Any]]]:
        return _Spec("service_ps", {"name": name}, _lister(_object))

    @staticmethod
    def remove_service(name: str) -> _Spec[None]:
        return _Spec("remove_service", {"name": name}, _none)

    @staticmethod
    def services() -> _Spec[list[dict[str, Any]]]:
        return _Spec("services", {}, _lister(_object))

    @staticmethod
    def inspect_service(name: str) -> _Spec[dict[str, Any]]:
        return _Spec("inspect_service", {"name": name}, _object)

    @staticmethod
    def add_backend(service: str, container: str) -> _Spec[dict[str, Any]]:
        return _Spec("add_backend", {"service": service, "container": container}, _object)

    @staticmethod
    def remove_backend(service: str, container: str) -> _Spec[None]:
        return _Spec("remove_backend", {"service": service, "container": container}, _none)


class Client:
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

    def _call(self, spec: _Spec[T]) -> T:
        verb = spec.verb
        try:
            response = request_blocking(self.path, "POST", f"/v1/{verb}",
                                        encode_json(spec.args), timeout=self.timeout,
                                        peer=f"agent at {self.path}")
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
        return spec.build(result_of(response.status, response.body, peer=f"agent at {self.path}"))


    def info(self) -> ClusterInfo:
        return self._call(_Specs.info())

    def init(self, advertise_addr: str, *, listen_addr: str | None = None) -> JoinToken:
        return self._call(_Specs.init(advertise_addr, listen_addr=listen_addr))

    def join(self, token: str, remote: str) -> ClusterInfo:
        return self._call(_Specs.join(token, remote))

    def join_token(self, role: Role | str, *, rotate: bool = False) -> JoinToken:
        return self._call(_Specs.join_token(role, rotate=rotate))

    def nodes(self) -> list[NodeInfo]:
        return self._call(_Specs.nodes())

    def update_node(self, node: str, *, availability: Availability | str) -> NodeInfo:
        return self._call(_Specs.update_node(node, availability=availability))

    def leave(self, *, force: bool = False) -> None:
        return self._call(_Specs.leave(force=force))

    def create_network(self, name: str, *, driver: str = "bridge", attachable: bool = False,
                       subnet: str | None = None, gateway: str | None = None,
                       ip_range: str | None = None, ipv6: bool = False, internal: bool = False,
                       options: dict[str, str] | None = None,
                       labels: dict[str, str] | None = None) -> NetworkInfo:
        return self._call(_Specs.create_network(
            name, driver=driver, attachable=attachable, subnet=subnet, gateway=gateway,
            ip_range=ip_range, ipv6=ipv6, internal=internal, options=options, labels=labels))

    def remove_network(self, name: str) -> None:
        return self._call(_Specs.remove_network(name))

    def networks(self) -> list[NetworkInfo]:
        return self._call(_Specs.networks())

    def inspect_network(self, name: str) -> NetworkInfo:
        return self._call(_Specs.inspect_network(name))

    def run(self, name: str, *, network: str | None = None, aliases: Sequence[str] = (),
            ip: str | None = None, hostname: str = "",
            labels: dict[str, str] | None = None) -> ContainerInfo:
        return self._call(_Specs.run(name, network=network, aliases=aliases, ip=ip,
                                     hostname=hostname, labels=labels))

    def attach(self, name: str, netns_path: str, *, network: str | None = None,
               aliases: Sequence[str] = (), ip: str | None = None) -> ContainerInfo:
        """Adopt an existing netns (by path) as a container and connect it to ``network``."""
        return self._call(_Specs.attach(name, netns_path, network=network, aliases=aliases, ip=ip))

    def remove_container(self, name: str, *, force: bool = False) -> None:
        return self._call(_Specs.remove_container(name, force=force))

    def containers(self) -> list[ContainerInfo]:
        return self._call(_Specs.containers())

    def inspect_container(self, name: str) -> ContainerInfo:
        return self._call(_Specs.inspect_container(name))

    def connect(self, network: str, container: str, *, aliases: Sequence[str] = (),
                ip: str | None = None) -> EndpointInfo:
        return self._call(_Specs.connect(network, container, aliases=aliases, ip=ip))

    def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        return self._call(_Specs.disconnect(network, container, force=force))

    def create_service(self, name: str, *, networks: Sequence[str] = (),
                       endpoint_mode: str = "vip", publish: Sequence[str] = (),
                       replicas: int | None = None, command: Sequence[str] = ()
                       ) -> dict[str, Any]:
        """A service; with ``command``, netfabric runs ``replicas`` tasks of it."""
        return self._call(_Specs.create_service(name, networks=networks,
                                                endpoint_mode=endpoint_mode, publish=publish,
                                                replicas=replicas, command=command))

    def scale_service(self, name: str, replicas: int) -> None:
        return self._call(_Specs.scale_service(name, replicas))

    def service_ps(self, name: str) -> list[dict[str, Any]]:
        return self._call(_Specs.service_ps(name))

    def update_service(self, name: str, *, replicas: int | None = None,
                       command: Sequence[str] = (), failure_action: str | None = None,
                       rollback: bool = False) -> dict[str, Any]:
        """Scale, roll out a new command one task at a time, or roll back."""
        return self._call(_Specs.update_service(name, replicas=replicas, command=command,
                                                failure_action=failure_action,
                                                rollback=rollback))

    def remove_service(self, name: str) -> None:
        return self._call(_Specs.remove_service(name))

    def services(self) -> list[dict[str, Any]]:
        return self._call(_Specs.services())

    def inspect_service(self, name: str) -> dict[str, Any]:
        return self._call(_Specs.inspect_service(name))

    def add_backend(self, service: str, container: str) -> dict[str, Any]:
        """Make a container of this node a backend of ``service`` (on every node)."""
        return self._call(_Specs.add_backend(service, container))

    def remove_backend(self, service: str, container: str) -> None:
        """Take it out of ``service`` everywhere; stop its task after this returns."""
        return self._call(_Specs.remove_backend(service, container))

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

    async def _acall(self, spec: _Spec[T]) -> T:
        verb = spec.verb
        try:
            async with asyncio.timeout(self.timeout):
                response = await request(lambda: asyncio.open_unix_connection(self.path),
                                         "POST", f"/v1/{verb}", encode_json(spec.args),
                                         peer=f"agent at {self.path}")
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
        return spec.build(result_of(response.status, response.body, peer=f"agent at {self.path}"))


    async def info(self) -> ClusterInfo:
        return await self._acall(_Specs.info())

    async def init(self, advertise_addr: str, *, listen_addr: str | None = None) -> JoinToken:
        return await self._acall(_Specs.init(advertise_addr, listen_addr=listen_addr))

    async def join(self, token: str, remote: str) -> ClusterInfo:
        return await self._acall(_Specs.join(token, remote))

    async def join_token(self, role: Role | str, *, rotate: bool = False) -> JoinToken:
        return await self._acall(_Specs.join_token(role, rotate=rotate))

    async def nodes(self) -> list[NodeInfo]:
        return await self._acall(_Specs.nodes())

    async def update_node(self, node: str, *, availability: Availability | str) -> NodeInfo:
        return await self._acall(_Specs.update_node(node, availability=availability))

    async def leave(self, *, force: bool = False) -> None:
        return await self._acall(_Specs.leave(force=force))

    async def create_network(self, name: str, *, driver: str = "bridge", attachable: bool = False,
                             subnet: str | None = None, gateway: str | None = None,
                             ip_range: str | None = None, ipv6: bool = False,
                             internal: bool = False,
                             options: dict[str, str] | None = None,
                             labels: dict[str, str] | None = None) -> NetworkInfo:
        return await self._acall(_Specs.create_network(
            name, driver=driver, attachable=attachable, subnet=subnet, gateway=gateway,
            ip_range=ip_range, ipv6=ipv6, internal=internal, options=options, labels=labels))

    async def remove_network(self, name: str) -> None:
        return await self._acall(_Specs.remove_network(name))

    async def networks(self) -> list[NetworkInfo]:
        return await self._acall(_Specs.networks())

    async def inspect_network(self, name: str) -> NetworkInfo:
        return await self._acall(_Specs.inspect_network(name))

    async def run(self, name: str, *, network: str | None = None, aliases: Sequence[str] = (),
                  ip: str | None = None, hostname: str = "",
                  labels: dict[str, str] | None = None) -> ContainerInfo:
        return await self._acall(_Specs.run(name, network=network, aliases=aliases, ip=ip,
                                                hostname=hostname, labels=labels))

    async def attach(self, name: str, netns_path: str, *, network: str | None = None,
                     aliases: Sequence[str] = (), ip: str | None = None) -> ContainerInfo:
        """Adopt an existing netns (by path) as a container and connect it to ``network``."""
        return await self._acall(
            _Specs.attach(name, netns_path, network=network, aliases=aliases, ip=ip))

    async def remove_container(self, name: str, *, force: bool = False) -> None:
        return await self._acall(_Specs.remove_container(name, force=force))

    async def containers(self) -> list[ContainerInfo]:
        return await self._acall(_Specs.containers())

    async def inspect_container(self, name: str) -> ContainerInfo:
        return await self._acall(_Specs.inspect_container(name))

    async def connect(self, network: str, container: str, *, aliases: Sequence[str] = (),
                      ip: str | None = None) -> EndpointInfo:
        return await self._acall(_Specs.connect(network, container, aliases=aliases, ip=ip))

    async def disconnect(self, network: str, container: str, *, force: bool = False) -> None:
        return await self._acall(_Specs.disconnect(network, container, force=force))

    async def create_service(self, name: str, *, networks: Sequence[str] = (),
                             endpoint_mode: str = "vip", publish: Sequence[str] = (),
                             replicas: int | None = None, command: Sequence[str] = ()
                             ) -> dict[str, Any]:
        return await self._acall(_Specs.create_service(
            name, networks=networks, endpoint_mode=endpoint_mode, publish=publish,
            replicas=replicas, command=command))

    async def scale_service(self, name: str, replicas: int) -> None:
        return await self._acall(_Specs.scale_service(name, replicas))

    async def service_ps(self, name: str) -> list[dict[str, Any]]:
        return await self._acall(_Specs.service_ps(name))

    async def update_service(self, name: str, *, replicas: int | None = None,
                             command: Sequence[str] = (), failure_action: str | None = None,
                             rollback: bool = False) -> dict[str, Any]:
        return await self._acall(_Specs.update_service(
            name, replicas=replicas, command=command, failure_action=failure_action,
            rollback=rollback))

    async def remove_service(self, name: str) -> None:
        return await self._acall(_Specs.remove_service(name))

    async def services(self) -> list[dict[str, Any]]:
        return await self._acall(_Specs.services())

    async def inspect_service(self, name: str) -> dict[str, Any]:
        return await self._acall(_Specs.inspect_service(name))

    async def add_backend(self, service: str, container: str) -> dict[str, Any]:
        return await self._acall(_Specs.add_backend(service, container))

    async def remove_backend(self, service: str, container: str) -> None:
        return await self._acall(_Specs.remove_backend(service, container))

    async def close(self) -> None:
        """Nothing is held between calls."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
