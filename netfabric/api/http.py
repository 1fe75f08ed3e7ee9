"""A minimal HTTP/1.1 framing for JSON bodies: enough for the agent's API, nothing more.

One request per connection (``Connection: close``), ``Content-Length`` bodies only. The
stdlib's http.server is thread-based and aiohttp is not a dependency; this is ~80 lines of
pure encode/decode shared by the asyncio server and both clients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from netfabric.errors import InvalidArgument

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "Head",
    "decode_json",
    "encode_request",
    "encode_response",
    "parse_head",
]

MAX_HEAD = 16 * 1024
"""Largest request/status line plus headers accepted, in bytes."""
MAX_BODY = 8 * 1024 * 1024
"""Largest body accepted, in bytes."""

_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 500: "Internal Server Error",
            503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Head:
    """The first line split in three words, and the content length."""

    first: tuple[str, str, str]
    content_length: int


def parse_head(raw: bytes) -> Head:
    """Parse the bytes up to (not including) the blank line."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes everything
        raise InvalidArgument("malformed HTTP head") from exc
    lines = text.split("\r\n")
    words = lines[0].split(" ", 2)
    if len(words) != 3:
        raise InvalidArgument(f"malformed HTTP first line: {lines[0][:80]!r}")
    length = 0
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise InvalidArgument(f"malformed HTTP header: {line[:80]!r}")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError as exc:
                raise InvalidArgument("malformed Content-Length") from exc
    if not 0 <= length <= MAX_BODY:
        raise InvalidArgument(f"body of {length} bytes is over the {MAX_BODY} limit")
    return Head(first=(words[0], words[1], words[2]), content_length=length)


def decode_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"malformed JSON body: {exc}") from exc


def _body(data: Any) -> bytes:
    return b"" if data is None else json.dumps(data, separators=(",", ":")).encode()


def encode_request(method: str, path: str, data: Any, *, host: str = "netfabric") -> bytes:
    body = _body(data)
    head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def encode_response(status: int, data: Any) -> bytes:
    body = _body(data)
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body
