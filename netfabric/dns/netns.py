"""Open sockets inside another network namespace without moving the calling thread.

A socket keeps the netns it was created in. So a helper thread enters the sandbox netns
(``setns``), creates and binds the sockets, and goes back (or simply ends, since it is its
own thread): the event loop never changes netns. Python 3.11 has no ``os.setns``, hence ctypes.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import queue
import re
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from netfabric.errors import DataplaneError, InvalidArgument

__all__ = ["NetnsThread", "netns_path", "run_in_netns", "run_in_netns_async", "up_loopback"]

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_NETNS_DIR = "/run/netns"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

T = TypeVar("T")

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise DataplaneError(f"setns failed: {os.strerror(err)}")


def netns_path(name: str) -> str:
    """``/run/netns/<name>`` after checking the name cannot escape that directory."""
    if not _NAME.match(name) or name in (".", ".."):
        raise InvalidArgument(f"invalid netns name {name!r}")
    return os.path.join(_NETNS_DIR, name)


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread that has entered netns ``name``; return its result.

    Blocking: call it from a worker thread or through :func:`run_in_netns_async`.
    """
    path = netns_path(name)
    result: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                os.close(home)
                raise DataplaneError(f"no network namespace {name!r}: {exc.strerror}") from exc
            try:
                _setns(target)
                try:
                    result.append(fn())
                finally:
                    _setns(home)  # if this fails the thread ends here anyway
            finally:
                os.close(target)
                os.close(home)
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


async def run_in_netns_async(name: str, fn: Callable[[], T]) -> T:
    """:func:`run_in_netns` without blocking the event loop."""
    fut: Future[T] = Future()

    def body() -> None:
        try:
            fut.set_result(run_in_netns(name, fn))
        except BaseException as exc:
            fut.set_exception(exc)

    threading.Thread(target=body, name=f"netns-wait-{name}", daemon=True).start()
    return await asyncio.wrap_future(fut)


def up_loopback() -> None:
    """Bring ``lo`` up in the current netns (127.0.0.11 lives on it); no-op if up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


class NetnsThread:
    """A long-lived thread parked in one netns that creates sockets on request.

    Forwarding opens a fresh socket per upstream query (a random source port each time);
    when those must live in a netns other than the caller's, this avoids a thread per query.
    The thread never leaves its netns and ends on :meth:`close`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._path = netns_path(name)
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = (
            queue.SimpleQueue())
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name=f"netns-{name}", daemon=True)
        self._thread.start()
        self._ready.result()

    def _main(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def socket(self, family: int, kind: int) -> socket.socket:
        """A new non-blocking socket in this thread's netns (blocking call, microseconds)."""
        fut: Future[object] = Future()

        def make() -> socket.socket:
            s = socket.socket(family, kind)
            s.setblocking(False)
            return s

        self._jobs.put((make, fut))
        sock = fut.result()
        assert isinstance(sock, socket.socket)
        return sock

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
