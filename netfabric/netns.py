"""Named network namespaces: the one module that creates, enters and removes them.

``setns(2)`` moves the calling *thread*, so these helpers enter a netns, do one thing (make
a socket, create the netns, read or write a sysctl) and come back, on a worker thread: the
dataplane's own (:class:`netfabric.dataplane.kernel.Kernel`), a fresh one
(:func:`run_in_netns`), or one parked in a netns for good (:class:`NetnsThread`, the DNS
forwarder's); never on an event loop. A socket made inside a netns keeps talking to that
netns after the thread has left it; that is how the kernel adapter reaches every netns
without a fork per namespace, and how the DNS server listens on 127.0.0.11 in each sandbox.

``ip netns add`` layout: ``/run/netns`` is a shared mount point and each netns is a bind
mount of ``/proc/thread-self/ns/net`` on ``/run/netns/NAME``. A name is 1-200 characters
of ``[A-Za-z0-9_.-]``, not ``.`` or ``..`` (:func:`netns_path` checks it).

No pyroute2 here: the DNS package uses this module without loading the dataplane's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import queue
import re
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

from netfabric.errors import DataplaneError, InvalidArgument

__all__ = [
    "NETNS_DIR",
    "NetnsThread",
    "create_netns",
    "delete_netns",
    "entered",
    "in_netns",
    "name_own_netns",
    "netlink_socket",
    "netns_exists",
    "netns_file",
    "netns_path",
    "netns_pids",
    "read_sysctl",
    "run_in_netns",
    "run_in_netns_async",
    "up_loopback",
    "write_sysctl",
]

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20
_MNT_DETACH = 2
_NETLINK_ROUTE = 0
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")

T = TypeVar("T")

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        code = ctypes.get_errno()
        raise DataplaneError(f"{what}: {os.strerror(code)}")


def netns_path(name: str) -> str:
    """``/run/netns/<name>`` after checking the name cannot escape that directory."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise InvalidArgument(f"invalid netns name {name!r}: use 1-200 of [A-Za-z0-9_.-]")
    return os.path.join(NETNS_DIR, name)


def _is_netns(path: str) -> bool:
    """Whether ``path`` is a mounted netns (on nsfs), not the empty file left behind when
    the mount went away (e.g. with the private mount namespace of an agent started by
    ``ip netns exec``): every nsfs file shares one device number."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/thread-self/ns/net").st_dev
    except OSError:
        return False


def netns_file(name: str) -> str:
    """The file of netns ``name``: a name under /run/netns, or an absolute path (a
    machine's /proc/PID/ns/net, a netns Docker or a CNI runtime made)."""
    return name if name.startswith("/") else netns_path(name)


def netns_exists(name: str) -> bool:
    return _is_netns(netns_file(name))


def netns_pids(name: str) -> list[int]:
    """The processes whose network namespace is netns ``name`` (none if it is gone)."""
    try:
        target = os.stat(netns_file(name))
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            out.append(int(entry))
    return sorted(out)


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside netns ``name`` (``None``: stay)."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(netns_file(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise DataplaneError(f"netns {name!r} does not exist") from exc
        except OSError as exc:
            raise DataplaneError(f"netns {name!r}: {exc.strerror}") from exc
        try:
            _check(_c().setns(target, _CLONE_NEWNET), f"setns {name}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            # Coming back must work, or this thread would serve the wrong netns forever.
            if _c().setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - kernel refused
                os.abort()
    finally:
        os.close(own)


def in_netns(name: str | None, func: Callable[[], T]) -> T:
    """``func()`` with the calling thread inside netns ``name``; the thread comes back."""
    with entered(name):
        return func()


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread that has entered netns ``name``; return its result.

    Blocking: call it from a worker thread or through :func:`run_in_netns_async`.
    """
    netns_path(name)
    result: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        try:
            result.append(in_netns(name, fn))
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
    """Bring ``lo`` up in the calling thread's netns; no-op if it is up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        if not flags & _IFF_UP:
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS,
                        struct.pack("16sH14x", b"lo", flags | _IFF_UP))


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
                _check(_c().setns(fd, _CLONE_NEWNET), f"setns {self.name}")
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


def netlink_socket(name: str | None) -> socket.socket:
    """An rtnetlink socket bound to netns ``name`` (``None``: the thread's own)."""
    return in_netns(name, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                                                _NETLINK_ROUTE))


def _share_run_dir() -> None:
    os.makedirs(NETNS_DIR, exist_ok=True)
    libc = _c()
    if libc.mount(b"", NETNS_DIR.encode(), b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, f"make {NETNS_DIR} shared")
    _check(libc.mount(NETNS_DIR.encode(), NETNS_DIR.encode(), b"none", _MS_BIND | _MS_REC,
                      None), f"bind {NETNS_DIR}")
    _check(libc.mount(b"", NETNS_DIR.encode(), b"none", _MS_SHARED | _MS_REC, None),
           f"make {NETNS_DIR} shared")


def _private_mounts() -> bool:
    """Whether this process has its own mount namespace (``ip netns exec`` makes one, with
    ``/`` a slave): a netns bind-mounted here would be seen by no one else, and would die
    with the process."""
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink("/proc/1/ns/mnt")
    except OSError:
        return False


def _in_root_mounts(argv: list[str]) -> None:
    proc = subprocess.run(["nsenter", "--mount=/proc/1/ns/mnt", *argv], capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise DataplaneError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def create_netns(name: str) -> bool:
    """Create netns ``name``; ``False`` if it already existed. Call on a worker thread."""
    path = netns_path(name)
    if os.path.exists(path):
        if _is_netns(path):
            return False
        os.unlink(path)   # the mount point of a netns gone with its mount namespace
    if _private_mounts():
        _in_root_mounts(["ip", "netns", "add", name])
        _lo_up(name)
        return True
    _share_run_dir()
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        return False
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = _c()
        if libc.unshare(_CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            os.unlink(path)
            raise DataplaneError(f"unshare for netns {name}: {os.strerror(code)}")
        try:
            rc = libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND, None)
            code = ctypes.get_errno()
        finally:
            if libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - kernel refused
                os.abort()
        if rc != 0:
            os.unlink(path)
            raise DataplaneError(f"mount netns {name}: {os.strerror(code)}")
    finally:
        os.close(own)
    _lo_up(name)
    return True


def name_own_netns(name: str) -> bool:
    """Give the calling thread's netns the name ``name`` under /run/netns (what ``ip netns
    attach NAME PID`` does); ``False`` if it already has it. An error if ``name`` is taken
    by another netns."""
    path = netns_path(name)
    own = os.stat("/proc/thread-self/ns/net")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
            return False
        if not _is_mounted(path):
            os.unlink(path)   # an empty file a crash left behind, not a netns
        else:
            raise DataplaneError(f"{path} names another network namespace: is another "
                                 "agent running with the same --netns-prefix?")
    if _private_mounts():
        _in_root_mounts(["ip", "netns", "attach", name, str(os.getpid())])
        return True
    _share_run_dir()
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    if _c().mount(b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND, None) != 0:
        code = ctypes.get_errno()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise DataplaneError(f"name this netns {name}: {os.strerror(code)}")
    return True


def _is_mounted(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def _lo_up(name: str) -> None:
    """A fresh netns has lo down; everything in it expects 127.0.0.1 to work."""
    in_netns(name, up_loopback)


def delete_netns(name: str) -> bool:
    """Remove netns ``name`` (its processes are the caller's business); ``False`` if absent."""
    path = netns_path(name)
    if not os.path.exists(path):
        return False
    if _private_mounts():
        _in_root_mounts(["ip", "netns", "delete", name])
        return True
    _c().umount2(path.encode(), _MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DataplaneError(f"remove netns {name}: {exc.strerror}") from exc
    return True


def read_sysctl(name: str | None, path: str) -> str | None:
    """The value of ``/proc/sys/<path>`` inside netns ``name``, ``None`` if absent."""
    def read() -> str | None:
        try:
            with open(os.path.join("/proc/sys", path)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None
    return in_netns(name, read)


def write_sysctl(name: str | None, path: str, value: str) -> None:
    def write() -> None:
        try:
            with open(os.path.join("/proc/sys", path), "w") as f:
                f.write(value)
        except OSError as exc:
            raise DataplaneError(f"sysctl {path}={value}: {exc.strerror}") from exc
    in_netns(name, write)
