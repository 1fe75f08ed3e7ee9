"""JSON bodies and errors on the wire: ``{"error": {"kind": "NotFound", "message": "..."}}``
both ways.

The kind is the class name in :mod:`netfabric.errors`, so the client raises the very class
the agent raised; an unknown kind from a newer agent becomes the base class, never a crash.
"""

from __future__ import annotations

from typing import Any

import msgspec

import netfabric.errors as errors
from netfabric.errors import InvalidArgument, MalformedAnswer, NetfabricError

__all__ = ["decode_json", "encode_json", "error_from_wire", "error_to_wire", "http_status",
           "result_of"]

_ENCODER = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    """Compact JSON of plain data, Structs, dataclasses and enums."""
    return _ENCODER.encode(value)


def decode_json(body: bytes) -> Any:
    """Plain data of a JSON body (``None`` for an empty one); bad JSON is InvalidArgument."""
    if not body:
        return None
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"malformed JSON body: {exc}") from exc

_STATUS: dict[type[NetfabricError], int] = {
    errors.InvalidArgument: 400,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.InUse: 409,
    errors.IPAMError: 409,
    errors.ClusterError: 403,
    errors.AgentUnreachable: 503,
}


def http_status(exc: NetfabricError) -> int:
    """The HTTP status an error is sent with (for humans with curl; clients read the kind)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def error_to_wire(exc: NetfabricError) -> dict[str, Any]:
    return {"error": {"kind": type(exc).__name__, "message": str(exc)}}


def error_from_wire(body: Any) -> NetfabricError:
    """The exception a response body describes (the base class for anything unknown)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return NetfabricError(f"agent sent a malformed error: {str(body)[:200]}")
    kind, message = err.get("kind"), str(err.get("message", "unknown error"))
    cls = getattr(errors, kind, None) if isinstance(kind, str) else None
    if isinstance(cls, type) and issubclass(cls, NetfabricError) and kind in errors.__all__:
        return cls(message)
    return NetfabricError(message)


def result_of(status: int, body: bytes, *, peer: str) -> Any:
    """The ``result`` of an answer ``{"result": ...}``; the error it carries is raised as its
    own class; anything else is :class:`MalformedAnswer` naming ``peer``."""
    try:
        data = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError as exc:
        raise MalformedAnswer(f"{peer} sent a malformed answer: {exc}") from None
    if status != 200:
        raise error_from_wire(data)
    if not isinstance(data, dict) or "result" not in data:
        raise MalformedAnswer(f"{peer} sent a malformed answer")
    return data["result"]
