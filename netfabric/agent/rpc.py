"""Node-to-manager calls over the cluster endpoint (TCP, port 2377 by default).

Same framing as the local API (``POST /cluster/v1/<verb>``, JSON); every call but ``join``
carries an HMAC of its body under the cluster secret, so only members of the cluster can
ask a manager for networks or addresses. A manager that does not answer is
:class:`ManagerUnreachable` with its address, so a worker's error names what is down.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from netfabric.agent.tokens import request_mac
from netfabric.api.httpio import request
from netfabric.api.wire import encode_json, result_of
from netfabric.errors import AuthError, InvalidArgument, ManagerUnreachable

__all__ = ["CLUSTER_PREFIX", "DEFAULT_CLUSTER_PORT", "MAC_HEADER", "ManagerLink", "os_reason",
           "split_addr", "verify_mac"]


def os_reason(exc: OSError) -> str:
    """The words of an OSError without Python's decoration: asyncio's "Connect call failed
    ('198.51.100.9', 2377)" is ECONNREFUSED, said "Connection refused"."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or type(exc).__name__


DEFAULT_CLUSTER_PORT = 2377
CLUSTER_PREFIX = "/cluster/v1/"
MAC_HEADER = "x-netfabric-mac"
CALL_TIMEOUT = 10.0
"""Seconds one call to a manager may take."""


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
                timeout: float) -> Any:
    host, port = split_addr(addr)
    body = encode_json(args)
    headers = {MAC_HEADER: request_mac(secret, verb, body)} if secret else {}
    peer = f"manager at {host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            response = await request(lambda: asyncio.open_connection(host, port), "POST",
                                     f"{CLUSTER_PREFIX}{verb}", body, host=host,
                                     headers=headers, peer=peer)
    except TimeoutError as exc:
        raise ManagerUnreachable(f"{peer} did not answer in {timeout:g}s") from exc
    except OSError as exc:
        raise ManagerUnreachable(
            f"cannot reach a manager at {host}:{port}: {os_reason(exc)}") from exc
    return result_of(response.status, response.body, peer=peer)


class ManagerLink:
    """Calls the cluster's managers, trying each in turn until one answers."""

    def __init__(self, managers: Sequence[str], *, secret: str | None,
                 timeout: float = CALL_TIMEOUT) -> None:
        if not managers:
            raise InvalidArgument("no manager address known")
        self.managers = list(managers)
        self.secret = secret
        self.timeout = timeout

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        last: ManagerUnreachable | None = None
        for addr in self.managers:
            try:
                return await _post(addr, verb, args, secret=self.secret, timeout=self.timeout)
            except ManagerUnreachable as exc:
                last = exc
        assert last is not None
        raise last
