"""The agent's opt-in HTTP endpoint for people and scrapers (``--metrics-addr``):
``GET /metrics`` in Prometheus' text format, read from the agent at each scrape.

Framing is :mod:`netfabric.api.http` (h11) as everywhere; only GET and HEAD are served."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from netfabric.agent.metrics import CONTENT_TYPE, AgentCollector, Observation, render
from netfabric.agent.rpc import split_addr
from netfabric.api.http import HttpError, HttpRequest, HttpResponse
from netfabric.api.httpio import serve_connection

__all__ = ["WebServer"]

log = logging.getLogger(__name__)

_READ_TIMEOUT = 10.0
_MAX_BODY = 0


class WebServer:
    """Serves ``/metrics`` from ``observe()``, awaited once per scrape."""

    def __init__(self, observe: Callable[[], Awaitable[Observation]]) -> None:
        self._observe = observe
        self._latest = Observation()
        self._collector = AgentCollector(lambda: self._latest)
        self._servers: list[asyncio.Server] = []

    async def start(self, listen: str) -> None:
        """Listen on ``HOST:PORT``."""
        host, port = split_addr(listen)
        self._servers.append(await asyncio.start_server(self._handle, host=host, port=port,
                                                        reuse_address=True))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def metrics(self) -> bytes:
        """One scrape: observe the agent, then let prometheus_client expose it."""
        self._latest = await self._observe()
        return render(self._collector)

    async def _answer(self, http: HttpRequest) -> HttpResponse:
        if http.method not in ("GET", "HEAD"):
            return HttpResponse(405, b"only GET\n", content_type="text/plain")
        path = http.target.split("?", 1)[0]
        if path == "/metrics":
            try:
                return HttpResponse(200, await self.metrics(), content_type=CONTENT_TYPE)
            except Exception as exc:  # a scrape must never take the agent down
                log.exception("metrics scrape failed")
                return HttpResponse(500, f"scrape failed: {exc}\n".encode(),
                                    content_type="text/plain")
        return HttpResponse(404, b"not found: try /metrics\n", content_type="text/plain")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(reader, writer, self._answer, refuse=_refuse,
                               read_timeout=_READ_TIMEOUT, max_body=_MAX_BODY)


def _refuse(exc: HttpError) -> HttpResponse:
    return HttpResponse(exc.status, f"{exc}\n".encode(), content_type="text/plain")
