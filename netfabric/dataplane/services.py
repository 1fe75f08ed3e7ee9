"""The service datapath of one netns: apply :mod:`netfabric.services.nftplan` to the kernel.

:class:`ServiceDatapath` keeps what it last applied, and each :meth:`~ServiceDatapath.sync`
sends only the delta (one nft transaction). The first sync, and any sync after a failed one,
rewrites the whole table, so an unknown kernel state is never patched.

nft runs through libnftables (``libnftables.so.1``, shipped with the ``nftables`` package)
over ctypes: the context, and so its netlink socket, is made with the calling thread inside
the target netns for the duration of the call, after which the socket keeps talking to that
netns from any thread. No process is spawned per change. Where the library cannot be
loaded, ``nft -f -`` under ``nsenter`` does the same job more slowly.

A netns with a masquerading load balancer gets ``net.ipv4.ip_forward=1``: its targets are
reached by routing through it (the routing mesh).

When a target leaves a UDP load balancer, its conntrack entries are deleted, so that a
client sending from one port is not pinned to a backend that is gone (kube-proxy does the
same; swarm did not, moby#33790).

The calls block: from an event loop, run them in an executor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import threading
from collections.abc import Iterable
from typing import Protocol

from netfabric.errors import DataplaneError
from netfabric.netns import (
    entered,
    netns_exists,
    netns_file,
    read_sysctl,
    write_sysctl,
)
from netfabric.services.lb import LoadBalancer, Proto, Target
from netfabric.services.nftplan import DEFAULT_TABLE, Delta, index, render_delta, render_full

__all__ = ["CliNft", "LibNft", "NftRunner", "ServiceDatapath", "configure_leg",
           "flush_udp_conntrack", "open_nft"]

_TIMEOUT = 20.0
_FORWARD = "net/ipv4/ip_forward"


class NftRunner(Protocol):
    """Runs nft scripts, each as one transaction, in one netns."""

    def run(self, script: str) -> str:
        """Apply ``script``; return nft's output; raise :class:`DataplaneError` on refusal."""

    def close(self) -> None:
        """Release the runner; further calls are errors."""


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _libnftables() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            name = ctypes.util.find_library("nftables") or "libnftables.so.1"
            try:
                lib = ctypes.CDLL(name)
            except OSError as exc:
                raise DataplaneError(f"cannot load libnftables: {exc}") from exc
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_free.restype = None
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            _lib = lib
        return _lib


class LibNft:
    """libnftables in-process, bound to netns ``netns`` (``None``: the caller's)."""

    def __init__(self, netns: str | None) -> None:
        self._netns = netns
        self._lock = threading.Lock()
        lib = _libnftables()
        with entered(netns):
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise DataplaneError("nft_ctx_new failed")
            # The netlink socket is opened here, inside the netns; make sure of it by a
            # first command run before leaving.
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            lib.nft_run_cmd_from_buffer(ctx, b"list tables\n")
        self._lib: ctypes.CDLL | None = lib
        self._ctx: int | None = ctx

    def run(self, script: str) -> str:
        with self._lock:
            if self._lib is None or self._ctx is None:
                raise DataplaneError("nft runner is closed")
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(
                errors="replace")
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(
                errors="replace")
        if rc != 0:
            raise DataplaneError(f"nft in {self._netns or 'own netns'}: {err.strip()}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._lib is not None and self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
            self._lib = self._ctx = None


class CliNft:
    """``nft -f -`` in netns ``netns`` through ``nsenter``: one process per script."""

    def __init__(self, netns: str | None) -> None:
        self._prefix = ["nsenter", f"--net={netns_file(netns)}"] if netns else []
        self._netns = netns

    def run(self, script: str) -> str:
        try:
            proc = subprocess.run([*self._prefix, "nft", "-f", "-"], input=script,
                                  capture_output=True, text=True, timeout=_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataplaneError(f"nft in {self._netns or 'own netns'}: {exc}") from exc
        if proc.returncode != 0:
            raise DataplaneError(f"nft in {self._netns or 'own netns'}: {proc.stderr.strip()}")
        return proc.stdout

    def close(self) -> None:
        pass


def open_nft(netns: str | None) -> NftRunner:
    """The fastest runner available: libnftables, else the ``nft`` program."""
    try:
        return LibNft(netns)
    except DataplaneError as exc:
        if "libnftables" not in str(exc):
            raise
        return CliNft(netns)


def flush_udp_conntrack(netns: str | None, lb: LoadBalancer, target: Target) -> None:
    """Delete the UDP conntrack entries of ``lb`` whose replies come from ``target``."""
    if lb.all_ports:
        match = ["-p", "udp", "--reply-src", target.ip]
    elif lb.proto is Proto.UDP:
        match = ["-p", "udp", "--orig-port-dst", str(lb.port), "--reply-src", target.ip,
                 "--reply-port-src", str(target.port)]
    else:
        return
    prefix = ["nsenter", f"--net={netns_file(netns)}"] if netns else []
    filters = [["--orig-dst", vip] for vip in lb.vips]
    if lb.published:
        filters.append([])
    for extra in filters:
        try:
            proc = subprocess.run([*prefix, "conntrack", "-D", *match, *extra],
                                  capture_output=True, text=True, timeout=_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataplaneError(f"conntrack -D: {exc}") from exc
        # conntrack exits 1 when nothing matched; that is success here.
        if proc.returncode != 0 and "flow entries have been deleted" not in proc.stderr:
            raise DataplaneError(f"conntrack -D: {proc.stderr.strip()}")


class ServiceDatapath:
    """The load balancers of one netns, kept in table ``table`` (one per netns).

    Thread-safe; every method blocks on the kernel.
    """

    def __init__(self, netns: str | None, *, table: str = DEFAULT_TABLE,
                 runner: NftRunner | None = None) -> None:
        self.netns = netns
        self.table = table
        self._runner = runner
        self._applied: dict[str, LoadBalancer] | None = None
        self._lock = threading.Lock()
        self._forwarding = False
        self.full_syncs = 0
        self.delta_syncs = 0

    def _nft(self) -> NftRunner:
        if self._runner is None:
            self._runner = open_nft(self.netns)
        return self._runner

    @property
    def applied(self) -> dict[str, LoadBalancer]:
        """What the kernel holds as of the last successful sync."""
        with self._lock:
            return dict(self._applied or {})

    def sync(self, lbs: Iterable[LoadBalancer]) -> Delta:
        """Make the table hold exactly ``lbs``; return the delta that was applied."""
        desired = index(lbs)
        with self._lock:
            nft = self._nft()
            if not self._forwarding and any(lb.masquerade for lb in desired.values()):
                # Masqueraded targets sit behind this netns: it must route to them.
                if read_sysctl(self.netns, _FORWARD) != "1":
                    write_sysctl(self.netns, _FORWARD, "1")
                self._forwarding = True
            if self._applied is None:
                delta = Delta(render_full(self.table, desired), tuple(sorted(desired)), ())
                nft.run(delta.script)
                self.full_syncs += 1
            else:
                delta = render_delta(self.table, self._applied, desired)
                if not delta.empty:
                    try:
                        nft.run(delta.script)
                        self.delta_syncs += 1
                    except DataplaneError:
                        # The kernel is not what we thought: rewrite it whole, once.
                        self._applied = None
                        nft.run(render_full(self.table, desired))
                        self.full_syncs += 1
            self._applied = desired
        for lb, target in delta.removed_targets:
            flush_udp_conntrack(self.netns, lb, target)
        return delta

    def resync(self) -> None:
        """Rewrite the whole table from what was last applied (repairs drift)."""
        with self._lock:
            current = list((self._applied or {}).values())
            self._applied = None
        self.sync(current)

    def listing(self) -> str:
        """``nft list table`` of our table, for tests and diagnostics."""
        with self._lock:
            return self._nft().run(f"list table ip {self.table}\n")

    def close(self, *, remove: bool = True) -> None:
        """Release the nft context; with ``remove``, delete the table first."""
        with self._lock:
            if self._runner is None and remove and (
                    self.netns is None or netns_exists(self.netns)):
                self._runner = open_nft(self.netns)
            if self._runner is not None:
                try:
                    if remove:
                        self._runner.run(f"table ip {self.table}\n"
                                         f"delete table ip {self.table}\n")
                finally:
                    self._runner.close()
                    self._runner = None
            self._applied = None


def configure_leg(netns: str | None, ifname: str, cidr: str, mac: str | None = None) -> None:
    """Give a node's leg on the ingress network (parked unconfigured in its host netns by
    the overlay driver) its address (and only it: a stray one would be the source of the
    masqueraded connections), its MAC, and bring it up; idempotent."""
    prefix = ["ip", "-n", netns] if netns and netns_exists(netns) else ["ip"]
    steps = [[*prefix, "addr", "replace", cidr, "dev", ifname]]
    if mac is not None:
        steps.append([*prefix, "link", "set", ifname, "address", mac])
    steps.append([*prefix, "link", "set", ifname, "up"])
    shown = subprocess.run([*prefix, "-4", "-o", "addr", "show", "dev", ifname],
                           capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    for line in shown.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            have = fields[fields.index("inet") + 1]
            if have != cidr:
                steps.insert(1, [*prefix, "addr", "del", have, "dev", ifname])
    for argv in steps:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataplaneError(f"{' '.join(argv)}: {exc}") from exc
        if proc.returncode != 0:
            raise DataplaneError(f"{' '.join(argv)}: {proc.stderr.strip()}")
