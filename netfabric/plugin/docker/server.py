"""HTTP/1.1 over a unix socket: the thin shell around :class:`DockerPlugin`.

dockerd finds the plugin by its socket in ``/run/docker/plugins/NAME.sock`` (or a ``.spec``
file in ``/etc/docker/plugins`` naming ``unix:///path``) and POSTs ``/<Verb>`` with a JSON
body, keeping the connection alive. The framing (``Content-Length`` or chunked bodies,
keep-alive, limits in size and time) is :mod:`netfabric.api.httpio`'s; every request is
answered, bad ones with ``Err``.
The caller's pid (``SO_PEERCRED``) tells the handlers which dockerd to ask for names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Final

from netfabric.api.http import HttpError, HttpRequest, HttpResponse
from netfabric.api.httpio import serve_connection
from netfabric.api.wire import encode_json
from netfabric.errors import InvalidArgument
from netfabric.plugin.docker.handlers import DockerPlugin, Reply
from netfabric.plugin.docker.schema import MAX_BODY, ErrorResponse

__all__ = ["DEFAULT_PLUGIN_SOCKET", "PluginServer", "write_spec"]

log = logging.getLogger(__name__)

DEFAULT_PLUGIN_SOCKET: Final = "/run/docker/plugins/netfabric.sock"
READ_TIMEOUT_S: Final = 30.0


def _err(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, encode_json(ErrorResponse(message).to_json()))


def _refuse(exc: HttpError) -> HttpResponse:
    return _err(exc.status, str(exc))


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid: int = struct.unpack("3i", raw)[0]
    return pid or None


class PluginServer:
    """Serves one :class:`DockerPlugin` on a unix socket. ``await start()``, ``await close()``."""

    def __init__(self, plugin: DockerPlugin, path: str | os.PathLike[str] = DEFAULT_PLUGIN_SOCKET,
                 *, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.plugin = plugin
        self.path = Path(path)
        self.read_timeout_s = read_timeout_s
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind the socket (replacing a stale one left by a crash) and accept."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        """Stop accepting, drop open connections, remove the socket file."""
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*list(self._conns), return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        await self.plugin.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        pid = _peer_pid(writer)
        try:
            await serve_connection(reader, writer, lambda request: self._one(request, pid),
                                   refuse=_refuse, read_timeout=self.read_timeout_s,
                                   max_body=MAX_BODY)
        finally:
            self._conns.discard(task)

    async def _one(self, request: HttpRequest, pid: int | None) -> HttpResponse:
        if request.method != "POST":
            return _err(405, f"{request.method} not allowed: the plugin API is POST /<Verb>")
        verb = request.target.split("?", 1)[0].lstrip("/")
        reply: Reply = await self.plugin.handle(verb, request.body, caller_pid=pid)
        return HttpResponse(reply.status, reply.body, content_type=reply.content_type)


def write_spec(spec_path: str | os.PathLike[str], socket_path: str | os.PathLike[str]) -> None:
    """Write ``/etc/docker/plugins/NAME.spec`` pointing dockerd at the plugin's socket
    (the alternative to a socket in ``/run/docker/plugins``)."""
    spec = Path(spec_path)
    if spec.suffix != ".spec":
        raise InvalidArgument(f"{spec}: a plugin spec file must end in .spec")
    spec.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.with_name(spec.name + ".tmp")
    tmp.write_text(f"unix://{os.path.abspath(socket_path)}\n")
    os.replace(tmp, spec)
