"""The UDP fast path: one thread batching ``recvmmsg``/``sendmmsg`` over every sandbox.

A cached reply is a function of the query bytes after the ID (see the resolver), so this
thread answers a hit by copying the cached bytes over the query in the receive buffer, after
its ID, and sending that slot back: no parsing, no dnslib, one small ``bytes`` for the key.
Misses (and anything odd) go to the event loop in one batch per ``recvmmsg``, where the
resolver answers or forwards them. The thread only reads the resolver's cache dicts; the
loop alone writes them (under the GIL a concurrent read sees the old or the new entry).

ctypes releases the GIL around each syscall, so the loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import select
import socket
import threading
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from netfabric.dns.latency import Latency

if TYPE_CHECKING:
    from netfabric.dns.server import Sandbox

PeekCache = Callable[[frozenset[str]], "dict[bytes, bytes] | None"]
"""The resolver's live cache of a network set (query bytes after the ID -> answer bytes
after the ID), ``None`` if there is none; read-only and safe from any thread."""
AnswerMiss = Callable[["Sandbox", bytes, tuple[str, int]], None]
"""Answers one datagram the cache could not, on the event loop."""

__all__ = ["BATCH", "SLOT", "AnswerMiss", "PeekCache", "UdpPump"]

BATCH = 64
"""Datagrams per recvmmsg/sendmmsg call."""

SLOT = 2048
"""Bytes per datagram buffer: every query we answer and every cached UDP reply fits."""

_MSG_DONTWAIT = 0x40
_SOCKADDR_IN = 16
_EAGAIN = (11,)
_ROUNDS = 8  # batches per socket per wakeup: bounds how long remove() may wait


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_Iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_MMSG = ctypes.sizeof(_Mmsghdr)
_LEN_AT = _Mmsghdr.msg_len.offset // 4  # msg_len as a uint32 index within one mmsghdr
_IOV_WORDS = ctypes.sizeof(_Iovec) // 8


class _Batch:
    """Pre-built receive and send vectors over one set of buffers."""

    def __init__(self) -> None:
        self.data = (ctypes.c_char * (BATCH * SLOT))()
        self.names = (ctypes.c_char * (BATCH * _SOCKADDR_IN))()
        self.rx_iov = (_Iovec * BATCH)()
        self.tx_iov = (_Iovec * BATCH)()
        self.rx = (_Mmsghdr * BATCH)()
        self.tx = (_Mmsghdr * BATCH)()
        base = ctypes.addressof(self.data)
        names = ctypes.addressof(self.names)
        for i in range(BATCH):
            self.rx_iov[i].iov_base = self.tx_iov[i].iov_base = base + i * SLOT
            self.rx_iov[i].iov_len = SLOT
            for vec, iov in ((self.rx, self.rx_iov), (self.tx, self.tx_iov)):
                hdr = vec[i].msg_hdr
                hdr.msg_name = names + i * _SOCKADDR_IN
                hdr.msg_namelen = _SOCKADDR_IN
                hdr.msg_iov = ctypes.pointer(iov[i])
                hdr.msg_iovlen = 1
        self.view = memoryview(self.data).cast("B")
        self.lens = memoryview(self.rx).cast("B").cast("I")
        self.tx_lens = memoryview(self.tx_iov).cast("B").cast("Q")
        self.tx_base = ctypes.addressof(self.tx)
        self.rx_base = ctypes.addressof(self.rx)

    def addr(self, i: int) -> tuple[str, int]:
        names: Any = self.names
        raw: bytes = names[i * _SOCKADDR_IN:(i + 1) * _SOCKADDR_IN]
        return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")


class UdpPump:
    """The serving thread of :attr:`ServingMode.THREAD <netfabric.dns.server.ServingMode>`.

    It needs two things of the server: ``peek_cache`` to answer hits on its own thread, and
    ``answer_miss``, called on ``loop``, for the rest."""

    def __init__(self, peek_cache: PeekCache, answer_miss: AnswerMiss,
                 loop: asyncio.AbstractEventLoop) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._recvmmsg = libc.recvmmsg
        self._recvmmsg.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                   ctypes.c_void_p]
        self._sendmmsg = libc.sendmmsg
        self._sendmmsg.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int]
        self._peek_cache = peek_cache
        self._answer_miss = answer_miss
        self._loop = loop
        self._lock = threading.Lock()
        self._fds: dict[int, Sandbox] = {}
        self.latency = Latency()
        """Cache hits answered by this thread (written only here)."""
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._stop = False
        self.hits = 0
        self.misses = 0
        self.send_errors = 0
        self.recv_errors = 0
        self.batches = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._main, name="dns-udp-pump", daemon=True)
        self._thread.start()

    def add(self, sb: Sandbox) -> None:
        with self._lock:
            self._fds[sb.udp.fileno()] = sb
            self._epoll.register(sb.udp.fileno(), select.EPOLLIN)

    def update(self, sb: Sandbox) -> None:
        """The sandbox's networks changed: nothing to do, the pump reads ``sb.asker``."""

    def remove(self, sb: Sandbox) -> None:
        """After this returns the thread no longer touches the socket: close it safely."""
        with self._lock:
            fd = sb.udp.fileno()
            if self._fds.pop(fd, None) is not None:
                self._epoll.unregister(fd)

    def counters(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "batches": self.batches,
                "send_errors": self.send_errors, "recv_errors": self.recv_errors,
                "errors": self.errors}

    def close(self) -> None:
        self._stop = True
        os.eventfd_write(self._wake, 1)
        self._thread.join()
        self._epoll.close()
        os.close(self._wake)

    def _main(self) -> None:
        batch = _Batch()
        while not self._stop:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            with self._lock:
                for fd, _ in events:
                    sb = self._fds.get(fd)
                    if sb is None:
                        continue
                    try:
                        self._drain(fd, sb, batch)
                    except Exception:  # a bug here must not stop serving every sandbox
                        self.errors += 1

    def _drain(self, fd: int, sb: Sandbox, b: _Batch) -> None:
        caches = self._peek_cache
        view = b.view
        lens = b.lens
        tx_lens = b.tx_lens
        data: Any = b.data  # c_char array: slicing gives bytes (typeshed says list)
        stride = _MMSG // 4
        recvmmsg = self._recvmmsg
        rx = b.rx_base
        for _ in range(_ROUNDS):
            n = recvmmsg(fd, rx, BATCH, _MSG_DONTWAIT, None)
            if n <= 0:
                if n < 0 and ctypes.get_errno() not in _EAGAIN:
                    self.recv_errors += 1
                return
            self.batches += 1
            started = perf_counter()
            cache = caches(sb.asker.networks)
            misses: list[tuple[bytes, tuple[str, int]]] = []
            run_start = 0
            for i in range(n):
                size = lens[i * stride + _LEN_AT]
                off = i * SLOT
                hit = cache.get(data[off + 2:off + size]) if cache is not None else None
                if hit is None or len(hit) > SLOT - 2:
                    misses.append((data[off:off + size], b.addr(i)))
                    self._send(fd, b, run_start, i)
                    run_start = i + 1
                    continue
                end = off + 2 + len(hit)
                view[off + 2:end] = hit
                tx_lens[i * _IOV_WORDS + 1] = end - off
            self._send(fd, b, run_start, n)
            self.hits += n - len(misses)
            self.latency.observe(perf_counter() - started, n - len(misses))
            if misses:
                self.misses += len(misses)
                self._loop.call_soon_threadsafe(self._answer_misses, sb, misses)
            if n < BATCH:
                return

    def _send(self, fd: int, b: _Batch, start: int, stop: int) -> None:
        while start < stop:
            sent = self._sendmmsg(fd, b.tx_base + start * _MMSG, stop - start, 0)
            if sent <= 0:
                self.send_errors += stop - start
                return
            start += sent

    def _answer_misses(self, sb: Sandbox, misses: list[tuple[bytes, tuple[str, int]]]) -> None:
        for data, addr in misses:
            self._answer_miss(sb, data, addr)
