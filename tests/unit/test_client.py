"""Client and AsyncClient against a real RpcServer on a unix socket (no netns needed)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netfabric.agent.server import Request, RpcServer
from netfabric.api.types import NetworkInfo, to_wire
from netfabric.client import AsyncClient, Client, resolve_host
from netfabric.errors import (
    AgentUnreachable,
    AlreadyExists,
    InvalidArgument,
    MalformedAnswer,
    NotAManager,
)

NET = NetworkInfo(id="abc", name="mybridge", driver="bridge", scope="local",
                  subnets=("172.18.0.0/16",), gateways=("172.18.0.1",))


async def _handler(request: Request) -> Any:
    if request.verb == "networks":
        return [to_wire(NET)]
    if request.verb == "create_network":
        if request.args["name"] == "dup":
            raise AlreadyExists("network with name dup already exists")
        return to_wire(NET)
    if request.verb == "nodes":
        raise NotAManager("This node is not a swarm manager.")
    if request.verb == "info":
        raise RuntimeError("boom")
    if request.verb == "inspect_network":
        return {**to_wire(NET), "subnets": "172.18.0.0/16"}  # not a list
    return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "agent.sock")
    loop = asyncio.new_event_loop()
    srv = RpcServer(_handler)
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.start_unix(path))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield f"unix://{path}"
    finally:
        asyncio.run_coroutine_threadsafe(srv.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert not os.path.exists(path)


def test_sync_client_returns_typed_values(server: str) -> None:
    nets = Client(server).networks()
    assert nets == [NET]
    assert Client(server).create_network("mybridge").subnets == ("172.18.0.0/16",)


def test_sync_client_raises_the_agents_error_class(server: str) -> None:
    with pytest.raises(AlreadyExists, match="dup already exists"):
        Client(server).create_network("dup")
    with pytest.raises(NotAManager):
        Client(server).nodes()


def test_a_handler_bug_is_one_line_not_a_traceback(server: str) -> None:
    with pytest.raises(Exception, match="internal agent error: RuntimeError: boom") as info:
        Client(server).info()
    assert "Traceback" not in str(info.value)


def test_an_answer_that_does_not_fit_the_verb_is_malformed(server: str) -> None:
    with pytest.raises(MalformedAnswer, match=r"inspect_network answer.*\$\.subnets"):
        Client(server).inspect_network("mybridge")


def test_async_client(server: str) -> None:
    async def main() -> None:
        async with AsyncClient(server) as nf:
            assert await nf.networks() == [NET]
            with pytest.raises(AlreadyExists):
                await nf.create_network("dup")
    asyncio.run(main())


def test_unreachable_agent(tmp_path: Path) -> None:
    with pytest.raises(AgentUnreachable, match="is it running"):
        Client(f"unix://{tmp_path}/none.sock").networks()

    async def main() -> None:
        with pytest.raises(AgentUnreachable):
            await AsyncClient(f"unix://{tmp_path}/none.sock").networks()
    asyncio.run(main())


def test_host_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETFABRIC_HOST", "unix:///x/y.sock")
    assert resolve_host(None) == "/x/y.sock"
    assert resolve_host("unix:///a.sock") == "/a.sock"
    with pytest.raises(InvalidArgument):
        resolve_host("tcp://1.2.3.4:2375")
