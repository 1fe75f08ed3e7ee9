"""Node-to-manager calls over the cluster endpoint (TCP, port 2377 by default).

Same framing as the local API (``POST /cluster/v1/<verb>``, JSON); every call but ``join``
carries an HMAC of its body under the cluster secret, so only members of the cluster can
ask a manager for networks or addresses. A manager that does not answer is
:class:`ManagerUnreachable` with its address, so a worker's error names what is down.

The verbs are written once, in :data:`CLUSTER_VERBS`: the argument Struct the manager
checks a request against (:class:`~netfabric.agent.manager.ManagerRpc`) and the result type
a node checks the answer against (:meth:`~netfabric.api.verbs.Verb.parse_result`, a
:class:`~netfabric.errors.MalformedAnswer` when it does not fit).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from netfabric.agent.handshake import JoinOffer
from netfabric.agent.ports import Allocation
from netfabric.agent.roster import MANAGERS_HEADER, parse_managers
from netfabric.agent.state import NodeRecord
from netfabric.agent.tokens import request_mac
from netfabric.api.httpio import request
from netfabric.api.types import Role
from netfabric.api.verbs import Args, Verb
from netfabric.api.wire import encode_json, result_of
from netfabric.errors import (
    AuthError,
    InvalidArgument,
    ManagerUnreachable,
    NotAManager,
    StoreUnavailable,
)
from netfabric.ipam.addr import IPFamily
from netfabric.ipam.values import BlockLease
from netfabric.model import Network

__all__ = [
    "ALLOCATE",
    "BECOME_MANAGER",
    "BECOME_WORKER",
    "CLUSTER_PREFIX",
    "CLUSTER_VERBS",
    "DEFAULT_CLUSTER_PORT",
    "GET_NETWORK",
    "JOIN",
    "LEASE_BLOCK",
    "LEAVE",
    "LEND_ADDRESS",
    "MAC_HEADER",
    "NODE_CALLS",
    "RELEASE",
    "RELEASE_BLOCK",
    "UNLEND_ADDRESS",
    "AllocateArgs",
    "AnswerHook",
    "BecomeManagerArgs",
    "BecomeWorkerArgs",
    "JoinAnswer",
    "LeaseBlockArgs",
    "LeaveArgs",
    "LendArgs",
    "ManagerLink",
    "NameArgs",
    "ReleaseArgs",
    "ReleaseBlockArgs",
    "os_reason",
    "split_addr",
    "verify_mac",
]


def os_reason(exc: OSError) -> str:
    """The words of an OSError without Python's decoration: asyncio's "Connect call failed
    ('198.51.100.9', 2377)" is ECONNREFUSED, said "Connection refused"."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


DEFAULT_CLUSTER_PORT = 2377
CLUSTER_PREFIX = "/cluster/v1/"
MAC_HEADER = "x-netfabric-mac"
CALL_TIMEOUT = 10.0
"""Seconds one call to a manager may take."""
CONNECT_TIMEOUT = 0.5
"""Seconds a manager has to accept the connection: a dead or cut-off manager costs at most
this before the next one is tried (a live one on a loaded host accepts in milliseconds)."""


class JoinAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The manager's answer to a valid join offer: the sealed cluster secret and the
    cluster as it stands."""

    sealed: str
    role: Role
    cluster_id: str
    managers: list[str]
    nodes: list[NodeRecord]
    store: str = ""
    """To a new manager: the store every manager shares (``etcd://...``), opened under
    the cluster's prefix; the role secrets are there, sealed with the cluster secret."""


class NameArgs(Args, frozen=True):
    name: str


class AllocateArgs(Args, frozen=True):
    network_id: str
    node_id: str
    ip: str | None = None


class ReleaseArgs(Args, frozen=True):
    network_id: str
    node_id: str
    ip: str


class LeaseBlockArgs(Args, frozen=True):
    network_id: str
    host_id: str
    ip: str | None = None
    family: IPFamily = IPFamily.V4


class ReleaseBlockArgs(Args, frozen=True):
    network_id: str
    host_id: str
    block: str


class LeaveArgs(Args, frozen=True):
    node_id: str


class BecomeManagerArgs(Args, frozen=True):
    store: str
    """The store every manager shares (``etcd://...``); nothing secret: the role secrets
    are there, sealed with the cluster secret."""


class BecomeWorkerArgs(Args, frozen=True):
    pass


class LendArgs(Args, frozen=True):
    network_id: str
    ip: str


_NoneType = type(None)

JOIN = Verb("join", JoinOffer, JoinAnswer, "A node proves a join token (no MAC: it has no "
            "secret yet) and gets the sealed cluster secret.")
GET_NETWORK = Verb("get_network", NameArgs, Network, "A cluster network by name or id.")
ALLOCATE = Verb("allocate", AllocateArgs, Allocation, "An address for a node's endpoint.")
RELEASE = Verb("release", ReleaseArgs, _NoneType, "Give an endpoint's address back.")
LEASE_BLOCK = Verb("lease_block", LeaseBlockArgs, BlockLease,
                   "A block of a network's subnet for a worker to allocate from.")
RELEASE_BLOCK = Verb("release_block", ReleaseBlockArgs, _NoneType, "Give a block back.")
LEAVE = Verb("leave", LeaveArgs, _NoneType, "A node leaves: its blocks and addresses go back.")

CLUSTER_VERBS: dict[str, Verb[..., Any]] = {v.name: v for v in (
    JOIN, GET_NETWORK, ALLOCATE, RELEASE, LEASE_BLOCK, RELEASE_BLOCK, LEAVE)}
"""Every verb a node calls on a manager, by name."""

LEND_ADDRESS = Verb("lend_address", LendArgs, bool,
                    "The manager asks the host whose block holds ``ip`` to lend it.")
UNLEND_ADDRESS = Verb("unlend_address", LendArgs, bool,
                      "The manager tells that host the address is free again.")
BECOME_MANAGER = Verb("become_manager", BecomeManagerArgs, bool,
                      "A manager promoted this node (its registry row says manager): it "
                      "opens the store and serves as a manager.")
BECOME_WORKER = Verb("become_worker", BecomeWorkerArgs, bool,
                     "A manager demoted this node (its registry row says worker).")
NODE_CALLS: dict[str, Verb[..., Any]] = {v.name: v for v in (
    LEND_ADDRESS, UNLEND_ADDRESS, BECOME_MANAGER, BECOME_WORKER)}
"""Every verb the manager calls on a node's cluster endpoint, by name."""


def split_addr(addr: str, *, default_port: int = DEFAULT_CLUSTER_PORT) -> tuple[str, int]:
    """``HOST[:PORT]`` as a pair; bad input is :class:`InvalidArgument`."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = addr, str(default_port)
    if not host:
        raise InvalidArgument(f"invalid address {addr!r}: expected HOST[:PORT]")
    try:
        number = int(port)
    except ValueError as exc:
        raise InvalidArgument(f"invalid port in {addr!r}") from exc
    if not 0 < number < 65536:
        raise InvalidArgument(f"invalid port in {addr!r}: must be 1..65535")
    return host, number


def verify_mac(secret: str, verb: str, body: bytes, mac: str | None) -> None:
    import hmac as _hmac

    if not mac or not _hmac.compare_digest(mac, request_mac(secret, verb, body)):
        raise AuthError("request not authenticated for this cluster")


async def _post(addr: str, verb: str, args: dict[str, Any], *, secret: str | None,
                timeout: float, connect_timeout: float = CONNECT_TIMEOUT
                ) -> tuple[Any, list[str] | None]:
    """One call: its result, and the list of managers the answer carries (None if none)."""
    host, port = split_addr(addr)
    body = encode_json(args)
    headers = {MAC_HEADER: request_mac(secret, verb, body)} if secret else {}
    peer = f"manager at {host}:{port}"

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(connect_timeout):
                return await asyncio.open_connection(host, port)
        except TimeoutError as exc:
            raise ManagerUnreachable(f"cannot reach a manager at {host}:{port}: no connection "
                                     f"in {connect_timeout:g}s") from exc

    try:
        async with asyncio.timeout(timeout):
            response = await request(connect, "POST", f"{CLUSTER_PREFIX}{verb}", body,
                                     host=host, headers=headers, peer=peer)
    except TimeoutError as exc:
        raise ManagerUnreachable(f"{peer} did not answer in {timeout:g}s") from exc
    except OSError as exc:
        raise ManagerUnreachable(
            f"cannot reach a manager at {host}:{port}: {os_reason(exc)}") from exc
    managers = parse_managers(response.headers.get(MANAGERS_HEADER))
    return result_of(response.status, response.body, peer=peer), managers


AnswerHook = Callable[[str, "list[str] | None"], None]
"""Told which manager answered (``HOST:PORT``) and the list of managers its answer carried."""
_NEXT_MANAGER = (ManagerUnreachable, NotAManager, StoreUnavailable)
"""A manager that answers so cannot serve now (down, demoted, cut off from etcd): the next
one may."""


class ManagerLink:
    """Calls the cluster's managers in the order given until one serves the call.

    A manager that cannot be reached, is no longer a manager, or has lost its store is
    skipped; when none serves, :class:`ManagerUnreachable` names every manager tried and
    why."""

    def __init__(self, managers: Sequence[str], *, secret: str | None,
                 timeout: float = CALL_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 on_answer: AnswerHook | None = None) -> None:
        if not managers:
            raise InvalidArgument("no manager address known")
        self.managers = list(managers)
        self.secret = secret
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.on_answer = on_answer

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        failures: list[tuple[str, Exception]] = []
        for addr in self.managers:
            try:
                result, managers = await _post(addr, verb, args, secret=self.secret,
                                               timeout=self.timeout,
                                               connect_timeout=self.connect_timeout)
            except _NEXT_MANAGER as exc:
                failures.append((addr, exc))
                continue
            if self.on_answer is not None:
                self.on_answer(addr, managers)
            return result
        if len(failures) == 1:
            raise failures[0][1]
        raise ManagerUnreachable(f"no manager could serve {verb}: " + "; ".join(
            f"{addr}: {_reason(addr, exc)}" for addr, exc in failures))


def _reason(addr: str, exc: Exception) -> str:
    """``exc``'s words without the address the list already names."""
    host, port = split_addr(addr)
    text = str(exc)
    for prefix in (f"cannot reach a manager at {host}:{port}: ", f"manager at {host}:{port} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text
