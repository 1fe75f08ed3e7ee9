"""A worker's choice of manager (issue 16): the order it tries them in, what it learns of
them, and the link that fails over. The real thing, with agents killed in lab machines:
tests/cluster/test_manager_failover.py."""

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from netfabric.agent import rpc
from netfabric.agent.fakes import FakeLayers
from netfabric.agent.roster import (
    MANAGERS_TABLE,
    ManagerRoster,
    merge_managers,
    order_managers,
    parse_managers,
)
from netfabric.agent.rpc import ManagerLink
from netfabric.api.types import Role
from netfabric.errors import (
    InvalidToken,
    ManagerUnreachable,
    NotAManager,
    StoreUnavailable,
)

A, B, C = "198.51.100.1:2377", "198.51.100.2:2377", "198.51.100.3:2377"


def test_the_manager_that_answered_last_is_tried_first() -> None:
    assert order_managers([A, B, C], last=None, dead_hosts=()) == [A, B, C]
    assert order_managers([A, B, C], last=B, dead_hosts=()) == [B, A, C]
    assert order_managers([A, B, C], last="198.51.100.9:2377", dead_hosts=()) == [A, B, C]


def test_gossip_dead_managers_are_tried_last_but_still_tried() -> None:
    assert order_managers([A, B, C], last=None, dead_hosts={"198.51.100.1"}) == [B, C, A]
    # the last to answer has died since: it goes last too
    assert order_managers([A, B, C], last=A, dead_hosts={"198.51.100.1"}) == [B, C, A]
    assert order_managers([A, B, C], last=C,
                          dead_hosts={"198.51.100.1", "198.51.100.2"}) == [C, A, B]
    assert order_managers([A, A, B], last=None, dead_hosts=()) == [A, B]


def test_the_roster_remembers_who_answered() -> None:
    roster = ManagerRoster()
    assert roster.order([A, B], set()) == [A, B]
    roster.answered(B)
    assert roster.order([A, B], set()) == [B, A]


def test_announcements_only_add() -> None:
    assert merge_managers([A], [C, B, A, ""]) == [A, B, C]
    assert merge_managers([B, A], []) == [B, A]


def test_the_list_in_an_answer_is_checked() -> None:
    assert parse_managers(f"{A}, {B},{A}") == [A, B]
    assert parse_managers(None) is None
    assert parse_managers("") is None
    assert parse_managers("198.51.100.1") is None
    assert parse_managers(f"{A},198.51.100.2:99999") is None


def _fake_post(outcomes: dict[str, Any], tried: list[str]) -> Any:
    async def post(addr: str, verb: str, args: dict[str, Any], **_: Any) -> Any:
        tried.append(addr)
        out = outcomes[addr]
        if isinstance(out, BaseException):
            raise out
        return out
    return post


def test_the_link_fails_over_to_the_next_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    monkeypatch.setattr(rpc, "_post", _fake_post({
        A: ManagerUnreachable(f"cannot reach a manager at {A}: Connection refused"),
        B: NotAManager("this node is not a manager"),
        C: ({"ok": 1}, [A, C])}, tried))
    seen: list[tuple[str, list[str] | None]] = []
    link = ManagerLink([A, B, C], secret="s", on_answer=lambda a, m: seen.append((a, m)))
    assert asyncio.run(link.call("get_network", {"name": "x"})) == {"ok": 1}
    assert tried == [A, B, C]
    assert seen == [(C, [A, C])]


def test_when_no_manager_serves_the_error_names_every_one_tried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    monkeypatch.setattr(rpc, "_post", _fake_post({
        A: ManagerUnreachable(f"cannot reach a manager at {A}: Connection refused"),
        B: ManagerUnreachable(f"cannot reach a manager at {B}: no connection in 0.5s"),
        C: StoreUnavailable("etcd etcd://198.51.100.7:2379/ unavailable; nothing was "
                            "changed")}, tried))
    link = ManagerLink([A, B, C], secret="s")
    with pytest.raises(ManagerUnreachable) as err:
        asyncio.run(link.call("lease_block", {}))
    assert str(err.value) == (
        f"no manager could serve lease_block: {A}: Connection refused; "
        f"{B}: no connection in 0.5s; {C}: etcd etcd://198.51.100.7:2379/ unavailable; "
        "nothing was changed")
    assert tried == [A, B, C]


def test_a_refusal_is_not_failed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """A manager that answers "no" (a bad token, a full subnet) is the cluster's answer:
    asking another manager would only repeat it."""
    tried: list[str] = []
    monkeypatch.setattr(rpc, "_post", _fake_post({A: InvalidToken("bad token"),
                                                  B: ({}, None)}, tried))
    with pytest.raises(InvalidToken):
        asyncio.run(ManagerLink([A, B], secret=None).call("join", {}))
    assert tried == [A]


def test_a_single_manager_keeps_its_own_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpc, "_post", _fake_post({
        A: ManagerUnreachable(f"cannot reach a manager at {A}: Connection refused")}, []))
    with pytest.raises(ManagerUnreachable, match=f"^cannot reach a manager at {A}: Connection "
                                                 "refused$"):
        asyncio.run(ManagerLink([A], secret=None).call("join", {}))


def test_a_dead_manager_costs_the_connect_timeout_only() -> None:
    """A manager that never accepts (a cut-off host: the SYN gets no answer) is given up
    after the connect timeout, not the call's 10 s. A listening socket with a full backlog
    that is never accepted stands for it, without any packet leaving this host."""
    import socket
    import time

    async def go() -> float:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(0)
            port = srv.getsockname()[1]
            fillers = []
            for _ in range(8):   # fill the accept queue: further SYNs are dropped
                s = socket.socket()
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", port))
                fillers.append(s)
            start = time.monotonic()
            try:
                with pytest.raises(ManagerUnreachable, match=r"no connection in 0\.3s"):
                    await ManagerLink([f"127.0.0.1:{port}"], secret=None,
                                      connect_timeout=0.3).call("get_network", {})
            finally:
                for s in fillers:
                    s.close()
            return time.monotonic() - start

    assert asyncio.run(go()) < 0.9


def test_a_worker_takes_the_list_a_manager_answers_with(tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx = layers.context(str(tmp_path), role=Role.WORKER)
    asyncio.run(ctx.mesh.start(secret="s" * 32, seeds=[]))
    M = "198.51.100.9:2377"
    ctx.update_managers([M, B])
    assert ctx.ledger.state.cluster is not None
    assert ctx.ledger.state.cluster.managers == [M, B]
    # announced in gossip (one that joined since): added, and kept across a restart
    layers.mesh.set_record(MANAGERS_TABLE, "c" * 26, C.encode())
    ctx.update_managers()
    assert ctx.ledger.state.cluster.managers == [M, B, C]
    reloaded = layers.context(str(tmp_path), role=Role.STANDALONE)
    assert reloaded.ledger.state.cluster is not None
    assert reloaded.ledger.state.cluster.managers == [M, B, C]
    # an answer without B (demoted, its announcement withdrawn): B is dropped
    ctx.update_managers([M, C])
    assert ctx.ledger.state.cluster.managers == [M, C]


def test_a_manager_keeps_its_own_list(tmp_path: Path) -> None:
    ctx = FakeLayers().context(str(tmp_path), role=Role.MANAGER)
    ctx.update_managers([A, B])
    assert ctx.ledger.state.cluster is not None
    assert ctx.ledger.state.cluster.managers == ["198.51.100.9:2377"]


def test_calls_go_to_the_last_manager_that_answered_and_dead_ones_last(
        tmp_path: Path) -> None:
    layers = FakeLayers()
    ctx = layers.context(str(tmp_path), role=Role.WORKER)
    ctx.ledger.set_managers([A, B, C])
    layers.links.answers["get_network"] = {}
    asyncio.run(ctx.call_manager("get_network", {"name": "x"}))
    assert layers.links.calls[-1][2] == (A, B, C)
    ctx.roster.answered(B)
    asyncio.run(ctx.mesh.start(secret="s" * 32, seeds=[]))
    layers.mesh.alive["n3"] = False
    layers.mesh.addresses["n3"] = "198.51.100.3"
    layers.mesh.alive["n1"] = True
    layers.mesh.addresses["n1"] = "198.51.100.1"
    asyncio.run(ctx.call_manager("get_network", {"name": "x"}))
    assert layers.links.calls[-1][2] == (B, A, C)
