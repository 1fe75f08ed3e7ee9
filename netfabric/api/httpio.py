"""The socket loops around :mod:`netfabric.api.http`: one asyncio server loop, one asyncio
client call and one blocking client call, for unix sockets and TCP alike.

Every server (agent API, cluster RPC, Docker plugin) runs :func:`serve_connection` with its
own handler; every client (CLI, library, node-to-manager, dockerd API) sends one request per
connection with :func:`request` or :func:`request_blocking`. Transport failures are left to
the caller (``OSError``, ``TimeoutError``) so each names what it could not reach; a peer that
answers out of protocol is :class:`~netfabric.errors.MalformedAnswer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from netfabric.api.http import (
    ClientConnection,
    HttpError,
    HttpRequest,
    HttpResponse,
    ServerConnection,
)
from netfabric.errors import MalformedAnswer

__all__ = ["Opener", "request", "request_blocking", "serve_connection", "stream"]

CHUNK = 65536

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
"""Opens the stream to the server: ``lambda: asyncio.open_unix_connection(path)``."""


async def _next_request(reader: asyncio.StreamReader,
                        conn: ServerConnection) -> HttpRequest | None:
    while True:
        request = conn.next_request()
        if request is not None:
            return request
        data = await reader.read(CHUNK)
        if not data:
            if conn.started:
                raise EOFError("peer hung up mid-request")
            return None
        conn.receive(data)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           handle: Callable[[HttpRequest], Awaitable[HttpResponse]], *,
                           refuse: Callable[[HttpError], HttpResponse],
                           read_timeout: float, max_body: int) -> None:
    """Answer requests on one connection until either side ends it.

    ``handle`` answers a well-framed request; ``refuse`` turns a framing error or a limit
    into the answer to send before closing. A peer that is silent for ``read_timeout`` while
    sending a request, or hangs up mid-request, is dropped without an answer."""
    conn = ServerConnection(max_body=max_body)
    try:
        while True:
            try:
                request = await asyncio.wait_for(_next_request(reader, conn), read_timeout)
            except HttpError as exc:
                writer.write(conn.respond(refuse(exc), close=True))
                await writer.drain()
                return
            except (EOFError, TimeoutError):
                return
            if request is None:
                return
            writer.write(conn.respond(await handle(request)))
            await writer.drain()
            if not conn.keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def request(open_stream: Opener, method: str, target: str, body: bytes = b"", *,
                  host: str = "netfabric", headers: dict[str, str] | None = None,
                  peer: str = "the server") -> HttpResponse:
    """One request on a new connection and its complete answer (no timeout of its own:
    wrap it in ``asyncio.timeout``)."""
    conn = ClientConnection(peer=peer)
    reader, writer = await open_stream()
    try:
        writer.write(conn.request(method, target, body, host=host, headers=headers))
        await writer.drain()
        while True:
            response = conn.next_response()
            if response is not None:
                return response
            conn.receive(await reader.read(CHUNK))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def stream(open_stream: Opener, target: str, *, host: str = "netfabric",
                 peer: str = "the server", max_error: int = 65536) -> AsyncIterator[bytes]:
    """``GET target`` whose answer is a stream (dockerd's ``/events``): yields ``b""`` once
    the server has accepted it (a 200 head), then its body as it arrives, and ends when the
    server ends the answer. A status other than 200 is :class:`MalformedAnswer` with what
    the server said. Transport errors are the caller's."""
    conn = ClientConnection(peer=peer)
    reader, writer = await open_stream()
    try:
        writer.write(conn.request("GET", target, host=host))
        await writer.drain()
        error = bytearray()
        accepted = False
        while True:
            part = conn.next_part()
            if part is not None:
                status, data, ended = part
                if status == 200 and not accepted:
                    accepted = True
                    yield b""
                if status != 200:
                    error += data
                    if ended or len(error) > max_error:
                        text = error[:300].decode(errors="replace").strip()
                        raise MalformedAnswer(f"{peer} answered {status} to GET {target}: "
                                              f"{text}")
                elif data:
                    yield data
                if ended:
                    return
            conn.receive(await reader.read(CHUNK))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def request_blocking(path: str, method: str, target: str, body: bytes = b"", *,
                     timeout: float, host: str = "netfabric",
                     headers: dict[str, str] | None = None,
                     peer: str = "the server") -> HttpResponse:
    """:func:`request` over a unix socket without an event loop (the CLI's path: no asyncio
    start-up cost). ``timeout`` bounds each socket operation."""
    conn = ClientConnection(peer=peer)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(conn.request(method, target, body, host=host, headers=headers))
        while True:
            response = conn.next_response()
            if response is not None:
                return response
            conn.receive(sock.recv(CHUNK))
