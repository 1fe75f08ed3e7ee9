"""The local API's verbs, each written once: its argument Struct and its result type.

``POST /v1/<verb>`` carries the argument Struct as a JSON object and answers
``{"result": <result>}``. From this one table the agent's dispatch checks requests
(:meth:`Verb.parse_args`), and :class:`netfabric.Client` / :class:`netfabric.AsyncClient`
take their methods, signatures included (:meth:`Verb.arguments` is the argument Struct's
constructor), and check answers (:meth:`Verb.parse_result`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

import msgspec
from msgspec.structs import force_setattr

from netfabric.api.types import (
    ClusterInfo,
    ContainerInfo,
    DoctorReport,
    EndpointInfo,
    JoinToken,
    NetworkInfo,
    NodeInfo,
)
from netfabric.errors import InvalidArgument, MalformedAnswer

__all__ = ["VERBS", "Args", "Verb"]

P = ParamSpec("P")
R = TypeVar("R")


class Args(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of the argument Structs: unknown arguments are refused."""


class Verb(Generic[P, R]):
    """One verb: its name, its argument Struct (whose constructor is the call's signature)
    and the type of its result. The cluster endpoint's verbs (:mod:`netfabric.agent.rpc`)
    are made the same way."""

    def __init__(self, name: str, args: Callable[P, msgspec.Struct], result: type[R],
                 doc: str) -> None:
        self.name = name
        self.arguments = args
        self.result = result
        self.doc = doc
        self._args_type: type[msgspec.Struct] = args  # type: ignore[assignment]

    def encode(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """The JSON object of one call (every argument, defaults included)."""
        return msgspec.structs.asdict(self.arguments(*args, **kwargs))

    def parse(self, raw: Any) -> msgspec.Struct:
        """The checked argument Struct of a request body; ``null`` means "not given".

        A bad request is one :class:`InvalidArgument` naming the verb, the argument and
        what was wrong."""
        if not isinstance(raw, dict):
            raise InvalidArgument(f"{self.name}: the arguments must be a JSON object")
        given = {k: v for k, v in raw.items() if v is not None}
        try:
            return msgspec.convert(given, self._args_type)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(self._explain(str(exc))) from None

    def parse_args(self, raw: Any) -> dict[str, Any]:
        """:meth:`parse` as the keyword arguments of the method that serves the verb."""
        args = self.parse(raw)
        return {f: getattr(args, f) for f in args.__struct_fields__}

    def _explain(self, text: str) -> str:
        for marker, say in (("missing required field `", "missing argument"),
                            ("unknown field `", "unknown argument(s)")):
            if marker in text:
                name = text.split(marker, 1)[1].split("`", 1)[0]
                return f"{self.name}: {say} {name!r}"
        path = text.rsplit("`$.", 1)[-1].rstrip("`")
        name = path.split(".", 1)[0].split("[", 1)[0]
        kind = self._args_type.__annotations__.get(name, "?")
        shape = {"Sequence[str]": "a list of strings",
                 "dict[str, str] | None": "an object mapping strings to strings"}.get(
                     str(kind), str(kind).replace(" | None", ""))
        return f"{self.name}: argument {name!r} has the wrong type ({text}): it must be {shape}"

    def parse_result(self, raw: Any, *, peer: str) -> R:
        """The typed result of an answer; one that does not fit is :class:`MalformedAnswer`."""
        try:
            return msgspec.convert(raw, self.result)
        except msgspec.ValidationError as exc:
            raise MalformedAnswer(f"{peer} sent a malformed {self.name} answer: {exc}") \
                from None


# -- the argument Structs: field names, types and defaults are the wire's and the methods' ---


class _None(Args, frozen=True):
    pass


class _Init(Args, frozen=True):
    advertise_addr: str
    listen_addr: str | None = None
    store: str | None = None


class _Join(Args, frozen=True):
    token: str
    remote: str
    advertise_addr: str | None = None
    store_cacert: str | None = None
    store_cert: str | None = None
    store_key: str | None = None


class _JoinToken(Args, frozen=True):
    role: str
    rotate: bool = False


class _UpdateNode(Args, frozen=True):
    node: str
    availability: str


class _NodeRef(Args, frozen=True):
    node: str


class _RemoveNode(Args, frozen=True):
    node: str
    force: bool = False


class _Leave(Args, frozen=True, kw_only=True):
    force: bool = False


class _CreateNetwork(Args, frozen=True):
    name: str
    driver: str = "bridge"
    attachable: bool = False
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    ipv6: bool = False
    internal: bool = False
    options: dict[str, str] | None = None
    labels: dict[str, str] | None = None


class _Name(Args, frozen=True):
    name: str


class _Aliases(Args, frozen=True):
    """Takes any sequence of aliases, holds a tuple."""

    def __post_init__(self) -> None:
        force_setattr(self, "aliases", tuple(getattr(self, "aliases")))  # noqa: B009


class _Run(_Aliases, frozen=True):
    name: str
    network: str | None = None
    aliases: Sequence[str] = ()
    ip: str | None = None
    netns_path: str | None = None
    hostname: str = ""
    labels: dict[str, str] | None = None


class _RemoveContainer(Args, frozen=True):
    name: str
    force: bool = False


class _Connect(_Aliases, frozen=True):
    network: str
    container: str
    aliases: Sequence[str] = ()
    ip: str | None = None


class _CreateService(Args, frozen=True):
    name: str
    networks: Sequence[str] = ()
    endpoint_mode: str = "vip"
    publish: Sequence[str] = ()
    replicas: int | None = None
    command: Sequence[str] = ()

    def __post_init__(self) -> None:
        force_setattr(self, "networks", tuple(self.networks))
        force_setattr(self, "publish", tuple(self.publish))
        force_setattr(self, "command", tuple(self.command))


class _Scale(Args, frozen=True):
    name: str
    replicas: int


class _UpdateService(Args, frozen=True):
    name: str
    replicas: int | None = None
    command: Sequence[str] = ()
    failure_action: str | None = None
    rollback: bool = False

    def __post_init__(self) -> None:
        force_setattr(self, "command", tuple(self.command))


class _Backend(Args, frozen=True):
    service: str
    container: str


class _Disconnect(Args, frozen=True):
    network: str
    container: str
    force: bool = False


_NoneType = type(None)

class _Doctor(Args, frozen=True):
    source: str
    target: str


DOCTOR = Verb("doctor", _Doctor, DoctorReport,
              "Walk the path from container ``source`` to ``target``, step by step.")
class _DoctorHost(Args, frozen=True):
    repair: bool = False


DOCTOR_HOST = Verb("doctor_host", _DoctorHost, DoctorReport,
                   "This host against the cluster's view; ``repair`` fixes what differs.")
INFO = Verb("info", _None, ClusterInfo, "Who this node is and how it sees the cluster.")
INIT = Verb("init", _Init, JoinToken, "Start a cluster with this node as its manager.")
JOIN = Verb("join", _Join, ClusterInfo, "Join the cluster of the manager at ``remote``.")
JOIN_TOKEN = Verb("join_token", _JoinToken, JoinToken,
                  "The join token of ``role`` (worker or manager); ``rotate`` issues a new one.")
NODES = Verb("nodes", _None, list[NodeInfo], "The cluster's nodes (on a manager).")
UPDATE_NODE = Verb("update_node", _UpdateNode, NodeInfo, "Set a node's availability.")
REMOVE_NODE = Verb("remove_node", _RemoveNode, _NoneType,
                   "Remove a node that is down for good (``force``: even if up); its address "
                   "blocks and addresses are given back.")
PROMOTE_NODE = Verb("promote_node", _NodeRef, NodeInfo,
                    "Make a worker a manager (a cluster on etcd); it serves at once.")
DEMOTE_NODE = Verb("demote_node", _NodeRef, NodeInfo,
                   "Make a manager a worker; the last manager is refused.")
LEAVE = Verb("leave", _Leave, _NoneType, "Leave the cluster.")
CREATE_NETWORK = Verb("create_network", _CreateNetwork, NetworkInfo, "Create a network.")
REMOVE_NETWORK = Verb("remove_network", _Name, _NoneType, "Remove a network.")
NETWORKS = Verb("networks", _None, list[NetworkInfo], "The networks this node sees.")
INSPECT_NETWORK = Verb("inspect_network", _Name, NetworkInfo, "One network.")
RUN = Verb("run", _Run, ContainerInfo,
           "Make a container (a netns, or adopt ``netns_path``) and connect it to ``network``.")
REMOVE_CONTAINER = Verb("remove_container", _RemoveContainer, _NoneType, "Remove a container.")
CONTAINERS = Verb("containers", _None, list[ContainerInfo], "This node's containers.")
INSPECT_CONTAINER = Verb("inspect_container", _Name, ContainerInfo, "One container.")
CONNECT = Verb("connect", _Connect, EndpointInfo, "Connect a container to a network.")
DISCONNECT = Verb("disconnect", _Disconnect, _NoneType,
                  "Disconnect a container from a network.")

# services: plain JSON objects (see netfabric.agent.services)
CREATE_SERVICE = Verb("create_service", _CreateService, dict[str, Any],
                      "A service; with ``command``, netfabric runs ``replicas`` tasks of it.")
SCALE_SERVICE = Verb("scale_service", _Scale, _NoneType, "Run ``replicas`` tasks of a service.")
SERVICE_PS = Verb("service_ps", _Name, list[dict[str, Any]], "A service's tasks.")
UPDATE_SERVICE = Verb("update_service", _UpdateService, dict[str, Any],
                      "Scale, roll out a new command one task at a time, or roll back.")
REMOVE_SERVICE = Verb("remove_service", _Name, _NoneType, "Remove a service.")
SERVICES = Verb("services", _None, list[dict[str, Any]], "The cluster's services.")
INSPECT_SERVICE = Verb("inspect_service", _Name, dict[str, Any], "One service.")
ADD_BACKEND = Verb("add_backend", _Backend, dict[str, Any],
                   "Make a container of this node a backend of ``service`` (on every node).")
REMOVE_BACKEND = Verb("remove_backend", _Backend, _NoneType,
                      "Take it out of ``service`` everywhere; stop its task after this returns.")

VERBS: dict[str, Verb[..., Any]] = {v.name: v for v in (
    INFO, INIT, JOIN, JOIN_TOKEN, NODES, UPDATE_NODE, REMOVE_NODE, PROMOTE_NODE, DEMOTE_NODE,
    LEAVE, CREATE_NETWORK,
    REMOVE_NETWORK,
    NETWORKS, INSPECT_NETWORK, RUN, REMOVE_CONTAINER, CONTAINERS, INSPECT_CONTAINER, CONNECT,
    DISCONNECT, CREATE_SERVICE, REMOVE_SERVICE, SERVICES, INSPECT_SERVICE, ADD_BACKEND,
    REMOVE_BACKEND, SCALE_SERVICE, SERVICE_PS, UPDATE_SERVICE, DOCTOR,
    DOCTOR_HOST)}
"""Every verb of the local API by name."""
