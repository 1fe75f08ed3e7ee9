"""HTTP/1.1 framing for every netfabric endpoint, sans-IO, over h11.

One framing serves the agent's local API (unix socket), the cluster RPC (TCP), the Docker
plugin (unix socket, keep-alive, chunked bodies) and the clients of all three and of
dockerd's API. This module only turns bytes into requests/responses and back; the socket
loops are in :mod:`netfabric.api.httpio`. Limits are enforced here: a head over
:data:`MAX_HEAD` or a body over ``max_body`` is an :class:`HttpError` with the status to
answer (431, 413), a framing error is a 400 naming what h11 found.

A peer that sends a malformed *answer* is :class:`~netfabric.errors.MalformedAnswer`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

from netfabric.errors import InvalidArgument, MalformedAnswer

__all__ = [
    "MAX_BODY",
    "MAX_HEAD",
    "ClientConnection",
    "HttpError",
    "HttpRequest",
    "HttpResponse",
    "ServerConnection",
    "reason",
]

MAX_HEAD = 16 * 1024
"""Largest request/status line plus headers accepted, in bytes."""
MAX_BODY = 8 * 1024 * 1024
"""Largest body accepted by default, in bytes."""
JSON = "application/json"


class HttpError(InvalidArgument):
    """A request that cannot be served, with the status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One complete request; header names are lower case."""

    method: str
    target: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """One complete response; header names are lower case."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def reason(status: int) -> str:
    """The standard reason phrase of ``status`` (``"Status"`` for an unknown one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}


class ServerConnection:
    """The server side of one connection: feed bytes, take requests, turn responses into bytes.

    After :meth:`respond`, :attr:`keep_alive` tells whether another request may follow
    (HTTP/1.1 without ``Connection: close`` on either side).
    """

    def __init__(self, *, max_body: int = MAX_BODY, max_head: int = MAX_HEAD) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self._max_body = max_body
        self._head: h11.Request | None = None
        self._body = bytearray()

    def receive(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` is the end of its stream."""
        self._conn.receive_data(data)

    @property
    def started(self) -> bool:
        """Whether any part of a request is buffered (a hang-up now cuts one short)."""
        return self._head is not None or bool(self._conn.trailing_data[0])

    @property
    def keep_alive(self) -> bool:
        return self._conn.our_state is h11.IDLE or (
            self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE)

    def next_request(self) -> HttpRequest | None:
        """The next complete request, ``None`` if more bytes are needed.

        Raises :class:`HttpError` for a framing error or a limit, and :class:`EOFError` when
        the peer closed the connection (cleanly or mid-request)."""
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                if status == 431 or "exceeded" in str(exc):
                    raise HttpError(431, f"request head larger than {MAX_HEAD} bytes") from None
                raise HttpError(status, f"malformed HTTP request: {exc}") from None
            if event is h11.NEED_DATA:
                return None
            if event is h11.PAUSED:
                if self._conn.our_state is h11.DONE:
                    self._conn.start_next_cycle()
                    continue
                return None
            if isinstance(event, h11.ConnectionClosed):
                raise EOFError("peer closed the connection")
            if isinstance(event, h11.Request):
                self._head = event
                self._body.clear()
                length = _headers(event.headers).get("content-length")
                if length is not None and int(length) > self._max_body:
                    raise HttpError(413, f"request body larger than {self._max_body} bytes")
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_body:
                    raise HttpError(413, f"request body larger than {self._max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                head, self._head = self._head, None
                assert head is not None
                return HttpRequest(method=head.method.decode("latin-1"),
                                   target=head.target.decode("latin-1"),
                                   body=bytes(self._body), headers=_headers(head.headers))

    def respond(self, response: HttpResponse, *, close: bool = False) -> bytes:
        """The bytes of ``response``; ``close`` ends the connection after it."""
        headers = [("Content-Type", response.content_type),
                   ("Content-Length", str(len(response.body)))]
        headers += [(k, v) for k, v in response.headers.items()]
        if close or self._conn.their_state is h11.ERROR:
            headers.append(("Connection", "close"))
        out = self._conn.send(h11.Response(status_code=response.status, headers=headers,
                                           reason=reason(response.status).encode()))
        out = (out or b"") + (self._conn.send(h11.Data(data=response.body)) or b"")
        return out + (self._conn.send(h11.EndOfMessage()) or b"")


    def start_stream(self, status: int, content_type: str,
                     headers: dict[str, str] | None = None) -> bytes:
        """The head of a response whose body follows in :meth:`stream` chunks (chunked
        transfer coding; server-sent events)."""
        items = [("Content-Type", content_type), *((headers or {}).items())]
        return self._conn.send(h11.Response(status_code=status, headers=items,
                                            reason=reason(status).encode())) or b""

    def stream(self, data: bytes) -> bytes:
        """One chunk of a streamed body."""
        return self._conn.send(h11.Data(data=data)) or b""


class ClientConnection:
    """The client side of one request/response exchange."""

    def __init__(self, *, max_body: int = MAX_BODY, max_head: int = MAX_HEAD,
                 peer: str = "the server") -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self._max_body = max_body
        self._peer = peer
        self._head: h11.Response | None = None
        self._body = bytearray()

    def request(self, method: str, target: str, body: bytes = b"", *, host: str = "netfabric",
                headers: dict[str, str] | None = None, content_type: str = JSON) -> bytes:
        """The bytes of one request (the connection closes after its answer)."""
        fields = [("Host", host), ("Connection", "close")]
        if body or method not in ("GET", "HEAD"):
            fields += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        fields += list((headers or {}).items())
        out = self._conn.send(h11.Request(method=method, target=target, headers=fields)) or b""
        if body:
            out += self._conn.send(h11.Data(data=body)) or b""
        return out + (self._conn.send(h11.EndOfMessage()) or b"")

    def receive(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` is the end of its stream."""
        self._conn.receive_data(data)

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next h11 event of the answer; a broken or cut-short answer is
        :class:`MalformedAnswer`."""
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise MalformedAnswer(f"{self._peer} sent a malformed HTTP answer: {exc}") \
                from None
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            raise MalformedAnswer(f"{self._peer} closed the connection mid-answer")
        return event

    def next_part(self) -> tuple[int, bytes, bool] | None:
        """For an answer read as it comes (a stream such as dockerd's ``/events``): once its
        head has arrived, ``(status, body bytes received since the last call, ended)``;
        ``None`` while more bytes are needed. Errors as :meth:`next_response`."""
        data = bytearray()
        while True:
            event = self._next_event()
            if isinstance(event, h11.Response):
                self._head = event
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert self._head is not None
                return self._head.status_code, bytes(data), True
            elif event is h11.NEED_DATA:
                if self._head is None:
                    return None
                return self._head.status_code, bytes(data), False

    def next_response(self) -> HttpResponse | None:
        """The complete response, ``None`` if more bytes are needed; a broken or cut-short
        answer is :class:`MalformedAnswer`."""
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                self._head = event
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_body:
                    raise MalformedAnswer(f"{self._peer} sent an answer over "
                                          f"{self._max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                head = self._head
                assert head is not None
                headers = _headers(head.headers)
                return HttpResponse(status=head.status_code, body=bytes(self._body),
                                    content_type=headers.get("content-type", ""),
                                    headers=headers)
