"""The Docker plugin's HTTP-over-unix-socket shell, and its dockerd API client, on real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from netfabric.errors import AgentUnreachable, InvalidArgument, MalformedAnswer
from netfabric.plugin.docker import (
    DockerEngine,
    DockerPlugin,
    PluginServer,
    StateFile,
    docker_socket_of,
    write_spec,
)
from tests.unit.test_docker_plugin import FakeEngine, FakeFabric


async def _exchange(path: Path, raw: bytes, *,
                    responses: int = 1) -> list[tuple[int, dict[str, Any]]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(raw)
        await writer.drain()
        out = []
        for _ in range(responses):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            status = int(lines[0].split()[1])
            length = next(int(x.split(":")[1]) for x in lines
                          if x.lower().startswith("content-length"))
            out.append((status, json.loads(await reader.readexactly(length))))
        return out
    finally:
        writer.close()
        await writer.wait_closed()


def _post(verb: str, body: bytes, *, extra: str = "") -> bytes:
    return (f"POST /{verb} HTTP/1.1\r\nHost: \r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def serve(tmp_path: Path, test: Callable[[Path, list[int | None]], Coroutine[Any, Any, None]]
          ) -> None:
    pids: list[int | None] = []

    def engine_for(pid: int | None) -> FakeEngine:
        pids.append(pid)
        return FakeEngine()

    async def main() -> None:
        plugin = DockerPlugin(FakeFabric(), StateFile(tmp_path / "state.json"), engine_for)
        sock = tmp_path / "plugins" / "netfabric.sock"
        server = PluginServer(plugin, sock, read_timeout_s=2.0)
        await server.start()
        try:
            await test(sock, pids)
        finally:
            await server.close()
        assert not sock.exists()

    asyncio.run(main())


def test_keep_alive_and_peer_pid(tmp_path: Path) -> None:
    async def t(sock: Path, pids: list[int | None]) -> None:
        raw = _post("Plugin.Activate", b"") + _post(
            "IpamDriver.RequestPool", b'{"AddressSpace":"netfabric","Pool":"10.70.0.0/24"}')
        (s1, r1), (s2, r2) = await _exchange(sock, raw, responses=2)
        assert s1 == 200 and r1 == {"Implements": ["NetworkDriver", "IpamDriver"]}
        assert s2 == 200 and r2["Pool"] == "10.70.0.0/24"
        assert pids == [os.getpid(), os.getpid()]
    serve(tmp_path, t)


def test_chunked_body(tmp_path: Path) -> None:
    async def t(sock: Path, pids: list[int | None]) -> None:
        body = b'{"AddressSpace":"netfabric","Pool":"10.71.0.0/24"}'
        chunked = (b"POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: \r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   + f"{10:x}\r\n".encode() + body[:10] + b"\r\n"
                   + f"{len(body) - 10:x}\r\n".encode() + body[10:] + b"\r\n0\r\n\r\n")
        [(status, out)] = await _exchange(sock, chunked)
        assert status == 200 and out["Pool"] == "10.71.0.0/24"
    serve(tmp_path, t)


@pytest.mark.parametrize(("raw", "status", "needle"), [
    # HTTP/1.1 requires a Host header (dockerd's Go client always sends one); h11 refuses
    # a request without it, so every HTTP/1.1 request here has one
    (b"GET /Plugin.Activate HTTP/1.1\r\nHost: \r\n\r\n", 405, "POST"),
    (b"POST /x HTTP/1.1\r\n\r\n", 400, "Host"),
    (b"garbage\r\n\r\n", 400, "malformed"),
    (b"POST /x HTTP/1.1\r\nNoColonHere\r\n\r\n", 400, "malformed"),
    (b"POST /x HTTP/1.1\r\nHost: \r\nContent-Length: 99999999\r\n\r\n", 413, "larger"),
    (b"POST /x HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400, "Content-Length"),
    (b"POST /x HTTP/1.1\r\nHost: \r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "chunk"),
    (_post("NetworkDriver.Nope", b"{}"), 404, "unknown verb"),
    (_post("NetworkDriver.Join", b"{\"NetworkID\": 1}"), 200, "NetworkID"),
])
def test_bad_http_gets_err(tmp_path: Path, raw: bytes, status: int, needle: str) -> None:
    async def t(sock: Path, pids: list[int | None]) -> None:
        [(got, out)] = await _exchange(sock, raw)
        assert got == status and needle in out["Err"]
        # the server is still there for the next caller
        [(ok, _)] = await _exchange(sock, _post("Plugin.Activate", b""))
        assert ok == 200
    serve(tmp_path, t)


def test_half_request_then_hangup(tmp_path: Path) -> None:
    async def t(sock: Path, pids: list[int | None]) -> None:
        for partial in (b"POST /Plugin.Activate HTTP/1.1\r\nContent-Le",
                        _post("IpamDriver.RequestPool", b'{"AddressSpace":')[:-3]):
            _reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(partial)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        [(ok, _)] = await _exchange(sock, _post("Plugin.Activate", b""))
        assert ok == 200
    serve(tmp_path, t)


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "plugins" / "netfabric.sock"
    stale.parent.mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()

    async def t(sock: Path, pids: list[int | None]) -> None:
        [(ok, _)] = await _exchange(sock, _post("Plugin.Activate", b""))
        assert ok == 200
    serve(tmp_path, t)


def test_write_spec(tmp_path: Path) -> None:
    spec = tmp_path / "etc" / "netfabric.spec"
    write_spec(spec, tmp_path / "nf.sock")
    assert spec.read_text() == f"unix://{tmp_path}/nf.sock\n"
    with pytest.raises(InvalidArgument, match="spec"):
        write_spec(tmp_path / "netfabric.json", tmp_path / "nf.sock")


def test_docker_socket_found_from_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()",
                              "-H", "unix:///tmp/x/docker.sock"], stdin=subprocess.PIPE)
    try:
        for _ in range(200):  # right after exec the kernel may show an empty cmdline
            if Path(f"/proc/{child.pid}/cmdline").read_bytes():
                break
            time.sleep(0.01)
        assert docker_socket_of(child.pid) == f"/proc/{child.pid}/root/tmp/x/docker.sock"
    finally:
        child.communicate(b"")
    assert docker_socket_of(2**22 + 7) == "/var/run/docker.sock"


@pytest.fixture
def fake_dockerd(tmp_path: Path) -> Callable[[], AsyncIterator[str]]:
    """An HTTP/1.0 server on a unix socket answering like dockerd's API."""
    routes = {
        "/v1.41/networks/n1": {"Name": "myoverlay", "Containers": {
            "c" * 64: {"Name": "web1", "EndpointID": "e1"},
            "d" * 64: {"Name": "web2", "EndpointID": "e2"}}},
        # web2 is listed by the network, but its own settings are not written yet
        "/v1.41/containers/" + "d" * 64 + "/json": {"NetworkSettings": {"Networks": {}}},
        "/v1.41/containers/" + "c" * 64 + "/json": {"NetworkSettings": {"Networks": {
            "myoverlay": {"Aliases": ["cccccccccccc", "web"], "EndpointID": "e1"}}}},
    }

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1].decode()
        obj = routes.get(line)
        body = json.dumps(obj if obj else {"message": "not found"}).encode()
        status = "200 OK" if obj else "404 Not Found"
        writer.write(f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    async def run() -> AsyncIterator[str]:
        path = str(tmp_path / "docker.sock")
        server = await asyncio.start_unix_server(handle, path=path)
        try:
            yield path
        finally:
            server.close()
            await server.wait_closed()

    return run


def test_engine_reads_names(fake_dockerd: Callable[[], AsyncIterator[str]],
                            tmp_path: Path) -> None:
    async def main() -> None:
        async for path in fake_dockerd():
            engine = DockerEngine(path)
            assert await engine.network_name("n1") == "myoverlay"
            assert await engine.network_name("n2") is None
            assert await engine.endpoint_names("n1", "e1") == ("web1", "cccccccccccc", "web")
            assert await engine.endpoint_names("n1", "e9") == ()
            assert await engine.endpoint_names("n1", "e2") == ()
        with pytest.raises(AgentUnreachable, match="dockerd API"):
            await DockerEngine(str(tmp_path / "none.sock")).network_name("n1")
    asyncio.run(main())


def test_engine_refuses_a_malformed_answer(tmp_path: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"Name": 5}'
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def main() -> None:
        path = str(tmp_path / "docker.sock")
        server = await asyncio.start_unix_server(handle, path=path)
        try:
            with pytest.raises(MalformedAnswer, match=r"dockerd API .* malformed .*\$\.Name"):
                await DockerEngine(path).network_name("n1")
        finally:
            server.close()
            await server.wait_closed()
    asyncio.run(main())


def test_engine_follows_connect_events(tmp_path: Path) -> None:
    """dockerd's /events answer is a chunked stream of JSON lines (a line may span chunks):
    the engine asks for network connect events since a time and yields each one as it comes;
    a network's listing gives the container's endpoint and name."""
    seen: list[str] = []
    events = [{"Type": "network", "Action": "connect",
               "Actor": {"ID": "n1", "Attributes": {"container": "c1", "name": "ov"}}},
              {"Type": "network", "Action": "connect", "Actor": {"ID": "n1"}},   # no container
              {"Type": "network", "Action": "connect",
               "Actor": {"ID": "n2", "Attributes": {"container": "c2"}}}]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = (await reader.readuntil(b"\r\n\r\n")).split(b" ")[1].decode()
        seen.append(target)
        if target.startswith("/v1.41/networks/"):
            body = json.dumps({"Name": "ov", "Containers": {
                "c1": {"Name": "web1", "EndpointID": "e1"}}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
            for piece in (data[:30], data[30:100], data[100:]):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main() -> None:
        path = str(tmp_path / "docker.sock")
        server = await asyncio.start_unix_server(handle, path=path)
        try:
            engine = DockerEngine(path)
            got = [e async for e in engine.connect_events(1700000000.5)]
            assert got == [("", ""), ("n1", "c1"), ("n2", "c2")]
            assert "since=1700000000.500000000" in seen[0]
            assert "connect" in urllib.parse.unquote(seen[0])
            assert await engine.endpoint_of("n1", "c1") == ("e1", "web1")
            assert await engine.endpoint_of("n1", "c9") == ("", "")
            assert not engine.gone()
            assert DockerEngine(str(tmp_path / "none.sock")).gone()
            with pytest.raises(AgentUnreachable, match="dockerd API"):
                async for _ in DockerEngine(str(tmp_path / "none.sock")).connect_events(0):
                    pass
        finally:
            server.close()
            await server.wait_closed()
    asyncio.run(main())
