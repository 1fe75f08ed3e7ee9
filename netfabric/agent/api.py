"""The local API's verbs: one typed request schema per verb, mapped onto AgentCore.

``POST /v1/<verb>`` with a JSON object; each field is checked here (type, required), so the
core only ever sees well-typed arguments and a bad request is one clear InvalidArgument.
Handlers are plain coroutines over a core, testable without a socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from netfabric.agent.core import AgentCore
from netfabric.agent.server import Request
from netfabric.api.types import to_wire
from netfabric.errors import InUse, InvalidArgument, IPAMError, NotFound

__all__ = ["VERBS", "Field", "dispatch"]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One argument of a verb: its JSON type and whether it may be absent/null."""

    name: str
    kind: type | tuple[type, ...]
    required: bool = False
    default: Any = None


def _s(name: str, *, required: bool = False) -> Field:
    return Field(name, str, required)


def _b(name: str) -> Field:
    return Field(name, bool, default=False)


def _l(name: str) -> Field:
    return Field(name, list, default=())


def _d(name: str) -> Field:
    return Field(name, dict, default=None)


Handler = Callable[..., Awaitable[Any]]

VERBS: dict[str, tuple[tuple[Field, ...], Callable[[AgentCore], Handler]]] = {
    "info": ((), lambda c: c.info),
    "init": ((_s("advertise_addr", required=True), _s("listen_addr")), lambda c: c.init),
    "join": ((_s("token", required=True), _s("remote", required=True)), lambda c: c.join),
    "join_token": ((_s("role", required=True), _b("rotate")), lambda c: c.join_token),
    "nodes": ((), lambda c: c.nodes),
    "update_node": ((_s("node", required=True), _s("availability", required=True)),
                    lambda c: c.update_node),
    "leave": ((_b("force"),), lambda c: c.leave),
    "create_network": ((_s("name", required=True), Field("driver", str, default="bridge"),
                        _b("attachable"), _s("subnet"), _s("gateway"), _s("ip_range"),
                        _b("ipv6"), _b("internal"), _d("options"), _d("labels")),
                       lambda c: c.create_network),
    "remove_network": ((_s("name", required=True),), lambda c: c.remove_network),
    "networks": ((), lambda c: c.networks),
    "inspect_network": ((_s("name", required=True),), lambda c: c.inspect_network),
    "run": ((_s("name", required=True), _s("network"), _l("aliases"), _s("ip"),
             _s("netns_path"), Field("hostname", str, default=""), _d("labels")),
            lambda c: c.run),
    "remove_container": ((_s("name", required=True), _b("force")),
                         lambda c: c.remove_container),
    "containers": ((), lambda c: c.containers),
    "inspect_container": ((_s("name", required=True),), lambda c: c.inspect_container),
    "connect": ((_s("network", required=True), _s("container", required=True), _l("aliases"),
                 _s("ip")), lambda c: c.connect),
    "disconnect": ((_s("network", required=True), _s("container", required=True),
                    _b("force")), lambda c: c.disconnect),
    "create_service": ((_s("name", required=True), _l("networks"),
                        Field("endpoint_mode", str, default="vip"), _l("publish"),
                        Field("replicas", int, default=None), _l("command")),
                       lambda c: c.create_service),
    "scale_service": ((_s("name", required=True), Field("replicas", int, required=True)),
                      lambda c: c.scale_service),
    "service_ps": ((_s("name", required=True),), lambda c: c.service_ps),
    "update_service": ((_s("name", required=True), Field("replicas", int, default=None),
                        _l("command"), _s("failure_action"), _b("rollback")),
                       lambda c: c.update_service),
    "remove_service": ((_s("name", required=True),), lambda c: c.remove_service),
    "services": ((), lambda c: c.services),
    "inspect_service": ((_s("name", required=True),), lambda c: c.inspect_service),
    "add_backend": ((_s("service", required=True), _s("container", required=True)),
                    lambda c: c.add_backend),
    "remove_backend": ((_s("service", required=True), _s("container", required=True)),
                       lambda c: c.remove_backend),
}


def _args(verb: str, fields: tuple[Field, ...], raw: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields}
    extra = sorted(set(raw) - known)
    if extra:
        raise InvalidArgument(f"{verb}: unknown argument(s) {', '.join(extra)}")
    out: dict[str, Any] = {}
    for f in fields:
        value = raw.get(f.name, _MISSING)
        if value is _MISSING or value is None:
            if f.required:
                raise InvalidArgument(f"{verb}: missing argument {f.name!r}")
            value = f.default
        elif not isinstance(value, f.kind) or (f.kind is not bool and isinstance(value, bool)):
            raise InvalidArgument(f"{verb}: argument {f.name!r} has the wrong type")
        if f.kind is list and value:
            if not all(isinstance(v, str) for v in value):
                raise InvalidArgument(f"{verb}: argument {f.name!r} must be a list of strings")
            value = tuple(value)
        if f.kind is dict and value and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise InvalidArgument(f"{verb}: argument {f.name!r} must map strings to strings")
        out[f.name] = value
    return out


async def dispatch(core: AgentCore, request: Request) -> Any:
    """Run one verb on the core and return its result as plain JSON data."""
    entry = VERBS.get(request.verb)
    if entry is None:
        raise NotFound(f"unknown API verb {request.verb!r}")
    fields, bind = entry
    args = _args(request.verb, fields, request.args)
    try:
        return to_wire(await bind(core)(**args))
    except (IPAMError, InUse) as exc:  # the IPAM speaks IDs; a user reads names
        named = core.name_ids(str(exc))
        if named == str(exc):
            raise
        raise type(exc)(named) from exc
