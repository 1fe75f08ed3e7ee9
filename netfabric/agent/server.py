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

from netfabric.api.http import MAX_BODY, HttpError, HttpRequest, HttpResponse
from netfabric.api.httpio import serve_connection
from netfabric.api.wire import decode_json, encode_json, error_to_wire, http_status
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


class RpcServer:
    """Serves one dispatcher; :meth:`start_unix` / :meth:`start_tcp` may both be used."""

    def __init__(self, dispatch: Dispatcher, *, prefix: str = "/v1/",
                 headers: Callable[[], dict[str, str]] | None = None) -> None:
        self._dispatch = dispatch
        self._prefix = prefix
        self._headers = headers
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

    def _request(self, http: HttpRequest, peer: str) -> Request:
        if http.method != "POST" or not http.target.startswith(self._prefix):
            raise NotFound(f"no such API endpoint: {http.method} {http.target} "
                           f"(use POST {self._prefix}VERB)")
        args = decode_json(http.body)
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidArgument("request body must be a JSON object")
        return Request(verb=http.target[len(self._prefix):], args=args, body=http.body,
                       headers=http.headers, peer=peer)

    async def _answer(self, http: HttpRequest, peer: str) -> HttpResponse:
        try:
            result = await self._dispatch(self._request(http, peer))
            answer = HttpResponse(200, encode_json({"result": result}))
        except NetfabricError as exc:
            answer = _error(exc)
        except Exception as exc:
            log.exception("API handler failed")
            answer = _error(NetfabricError(f"internal agent error: {type(exc).__name__}: {exc}"))
        if self._headers is not None:   # on every answer, errors included
            answer = HttpResponse(answer.status, answer.body, answer.content_type,
                                  {**answer.headers, **self._headers()})
        return answer

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername") or "local")
        await serve_connection(reader, writer, lambda http: self._answer(http, peer),
                               refuse=_error, read_timeout=READ_TIMEOUT, max_body=MAX_BODY)


def _error(exc: NetfabricError) -> HttpResponse:
    status = exc.status if isinstance(exc, HttpError) else http_status(exc)
    return HttpResponse(status, encode_json(error_to_wire(exc)))
