"""The agent's opt-in HTTP endpoints for people and scrapers: ``--metrics-addr`` serves
``GET /metrics`` in Prometheus' text format, read from the agent at each scrape;
``--ui-addr`` serves the live page (``/``), its data (``/api/topology``) and server-sent
events (``/events``: the topology again whenever it changes).

Framing is :mod:`netfabric.api.http` (h11) as everywhere; only GET and HEAD are served."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from netfabric.agent.metrics import CONTENT_TYPE, AgentCollector, Observation, render
from netfabric.agent.rpc import split_addr
from netfabric.agent.ui import PAGE
from netfabric.api.http import HttpError, HttpRequest, HttpResponse, ServerConnection

__all__ = ["WebServer"]

log = logging.getLogger(__name__)

_READ_TIMEOUT = 10.0
_MAX_BODY = 0
EVENT_PERIOD = 0.3
"""Seconds between two looks at the topology for an /events stream."""
_KEEPALIVE = 15.0


class WebServer:
    """Serves ``/metrics`` from ``observe()``, awaited once per scrape."""

    def __init__(self, observe: Callable[[], Awaitable[Observation]] | None = None,
                 topology: Callable[[], dict[str, Any]] | None = None) -> None:
        self._observe = observe
        self._topology = topology
        self._latest = Observation()
        self._collector = AgentCollector(lambda: self._latest)
        self._servers: list[asyncio.Server] = []
        self._streams: set[asyncio.StreamWriter] = set()

    async def start(self, listen: str) -> None:
        """Listen on ``HOST:PORT``."""
        host, port = split_addr(listen)
        self._servers.append(await asyncio.start_server(self._handle, host=host, port=port,
                                                        reuse_address=True))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._streams):
            writer.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def metrics(self) -> bytes:
        """One scrape: observe the agent, then let prometheus_client expose it."""
        assert self._observe is not None
        self._latest = await self._observe()
        return render(self._collector)

    def _snapshot(self, version: int) -> dict[str, Any]:
        assert self._topology is not None
        return {**self._topology(), "version": version}

    async def _answer(self, http: HttpRequest) -> HttpResponse:
        if http.method not in ("GET", "HEAD"):
            return HttpResponse(405, b"only GET\n", content_type="text/plain")
        path = http.target.split("?", 1)[0]
        if self._topology is not None and path in ("/", "/index.html"):
            return HttpResponse(200, PAGE, content_type="text/html; charset=utf-8")
        if self._topology is not None and path == "/api/topology":
            return HttpResponse(200, json.dumps(self._snapshot(0)).encode())
        if self._observe is not None and path == "/metrics":
            try:
                return HttpResponse(200, await self.metrics(), content_type=CONTENT_TYPE)
            except Exception as exc:  # a scrape must never take the agent down
                log.exception("metrics scrape failed")
                return HttpResponse(500, f"scrape failed: {exc}\n".encode(),
                                    content_type="text/plain")
        return HttpResponse(404, b"not found\n", content_type="text/plain")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (the page makes few): an answer, or an event stream."""
        conn = ServerConnection(max_body=_MAX_BODY)
        try:
            try:
                request = await asyncio.wait_for(_read(reader, conn), _READ_TIMEOUT)
            except HttpError as exc:
                writer.write(conn.respond(_refuse(exc), close=True))
                return
            except (EOFError, TimeoutError):
                return
            if request is None:
                return
            if (self._topology is not None and request.method == "GET"
                    and request.target.split("?", 1)[0] == "/events"):
                await self._events(reader, writer, conn)
                return
            writer.write(conn.respond(await self._answer(request), close=True))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _events(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      conn: ServerConnection) -> None:
        """Server-sent events: ``topology`` now and at every change, until the peer goes."""
        writer.write(conn.start_stream(200, "text/event-stream",
                                       {"Cache-Control": "no-cache"}))
        self._streams.add(writer)
        gone = asyncio.ensure_future(reader.read(1))   # any byte or EOF: the peer left
        try:
            last: dict[str, Any] | None = None
            version = 0
            idle = 0.0
            while not gone.done() and not writer.is_closing():
                now = self._snapshot(0)
                if now != last:
                    last = now
                    version += 1
                    data = json.dumps({**now, "version": version})
                    writer.write(conn.stream(f"event: topology\ndata: {data}\n\n".encode()))
                    idle = 0.0
                elif idle >= _KEEPALIVE:
                    writer.write(conn.stream(b": keep-alive\n\n"))
                    idle = 0.0
                await writer.drain()
                await asyncio.wait([gone], timeout=EVENT_PERIOD)
                idle += EVENT_PERIOD
        finally:
            self._streams.discard(writer)
            gone.cancel()


async def _read(reader: asyncio.StreamReader, conn: ServerConnection) -> HttpRequest | None:
    while True:
        request = conn.next_request()
        if request is not None:
            return request
        data = await reader.read(4096)
        if not data:
            if conn.started:
                raise EOFError("peer hung up mid-request")
            return None
        conn.receive(data)


def _refuse(exc: HttpError) -> HttpResponse:
    return HttpResponse(exc.status, f"{exc}\n".encode(), content_type="text/plain")
