"""HTTP/1.1 over a unix socket: the thin shell around :class:`DockerPlugin`.

dockerd finds the plugin by its socket in ``/run/docker/plugins/NAME.sock`` (or a ``.spec``
file in ``/etc/docker/plugins`` naming ``unix:///path``) and POSTs ``/<Verb>`` with a JSON
body, keeping the connection alive. The server reads requests with ``Content-Length`` or
chunked bodies, bounded in size and time, and answers every one, bad ones with ``Err``.
The caller's pid (``SO_PEERCRED``) tells the handlers which dockerd to ask for names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Final

from netfabric.errors import InvalidArgument
from netfabric.plugin.docker.handlers import DockerPlugin, Reply
from netfabric.plugin.docker.schema import MAX_BODY, ErrorResponse

__all__ = ["DEFAULT_PLUGIN_SOCKET", "PluginServer", "write_spec"]

log = logging.getLogger(__name__)

DEFAULT_PLUGIN_SOCKET: Final = "/run/docker/plugins/netfabric.sock"
MAX_HEADER: Final = 16 * 1024
READ_TIMEOUT_S: Final = 30.0
_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                   413: "Payload Too Large"}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _err(status: int, message: str) -> Reply:
    return Reply(status, json.dumps(ErrorResponse(message).to_json()).encode())


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


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "malformed chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise _BadRequest(413, f"request body larger than {MAX_BODY} bytes")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length_text = headers.get("content-length", "0")
    try:
        length = int(length_text)
    except ValueError:
        raise _BadRequest(400, f"bad Content-Length {length_text[:20]!r}") from None
    if length < 0 or length > MAX_BODY:
        raise _BadRequest(413, f"request body larger than {MAX_BODY} bytes")
    return await reader.readexactly(length)


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
            while True:
                reply, keep = await self._one(reader, pid)
                if reply is None:
                    return
                head = (f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Error')}\r\n"
                        f"Content-Type: {reply.content_type}\r\n"
                        f"Content-Length: {len(reply.body)}\r\n"
                        f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
                writer.write(head.encode() + reply.body)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError):
            return
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader,
                   pid: int | None) -> tuple[Reply | None, bool]:
        """Read and answer one request; ``(None, _)`` at a clean end of the connection."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout_s)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                return _err(400, "incomplete request head"), False
            return None, False
        except asyncio.LimitOverrunError:
            return _err(400, "request head too long"), False
        if len(head) > MAX_HEADER:
            return _err(400, "request head too long"), False
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    key, sep, value = line.partition(":")
                    if not sep:
                        raise ValueError(line)
                    headers[key.strip().lower()] = value.strip()
        except ValueError:
            return _err(400, "malformed HTTP request"), False
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        try:
            body = await asyncio.wait_for(_read_body(reader, headers), self.read_timeout_s)
        except _BadRequest as exc:
            return _err(exc.status, str(exc)), False
        if method != "POST":
            return _err(405, f"{method} not allowed: the plugin API is POST /<Verb>"), keep
        verb = target.split("?", 1)[0].lstrip("/")
        return await self.plugin.handle(verb, body, caller_pid=pid), keep


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
