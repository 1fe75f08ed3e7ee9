"""The asyncio adapter that serves JSON-over-HTTP verbs on a unix socket or TCP port.

It only frames: it reads one request, hands ``(verb, args, raw_body, headers)`` to a
dispatcher and writes what comes back. Every :class:`NetfabricError` becomes a typed error
body; anything else is logged and answered as a 500 with one line, so a bug in a handler
never kills the agent or reaches a client as a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from netfabric.api.http import MAX_HEAD, decode_json, encode_response, parse_head
from netfabric.api.wire import error_to_wire, http_status
from netfabric.errors import InvalidArgument, NetfabricError, NotFound

__all__ = ["Request", "RpcServer"]

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0
"""Seconds a client may take to send its request."""


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded API request: ``POST /v1/<verb>`` with a JSON object body."""

    verb: str
    args: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    peer: str


Dispatcher = Callable[[Request], Awaitable[Any]]


def _headers(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return out


class RpcServer:
    """Serves one dispatcher; :meth:`start_unix` / :meth:`start_tcp` may both be used."""

    def __init__(self, dispatch: Dispatcher, *, prefix: str = "/v1/") -> None:
        self._dispatch = dispatch
        self._prefix = prefix
        self._servers: list[asyncio.Server] = []
        self._paths: list[str] = []

    async def start_unix(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server = await asyncio.start_unix_server(self._handle, path=path)
        os.chmod(path, 0o660)
        self._servers.append(server)
        self._paths.append(path)

    async def start_tcp(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._handle, host=host, port=port,
                                            reuse_address=True)
        self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._paths.clear()

    async def _read(self, reader: asyncio.StreamReader, peer: str) -> Request:
        try:
            head_raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise InvalidArgument("request head too large") from exc
        if len(head_raw) > MAX_HEAD:
            raise InvalidArgument("request head too large")
        head = parse_head(head_raw[:-4])
        body = await reader.readexactly(head.content_length) if head.content_length else b""
        method, path, _ = head.first
        if method != "POST" or not path.startswith(self._prefix):
            raise NotFound(f"no such API endpoint: {method} {path} (use POST {self._prefix}VERB)")
        args = decode_json(body)
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidArgument("request body must be a JSON object")
        return Request(verb=path[len(self._prefix):], args=args, body=body,
                       headers=_headers(head_raw[:-4]), peer=peer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername") or "local")
        try:
            try:
                request = await asyncio.wait_for(self._read(reader, peer), READ_TIMEOUT)
                result = await self._dispatch(request)
                answer = encode_response(200, {"result": result})
            except NetfabricError as exc:
                answer = encode_response(http_status(exc), error_to_wire(exc))
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            except Exception as exc:
                log.exception("API handler failed")
                answer = encode_response(500, error_to_wire(
                    NetfabricError(f"internal agent error: {type(exc).__name__}: {exc}")))
            writer.write(answer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
