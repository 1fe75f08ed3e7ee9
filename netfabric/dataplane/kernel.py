"""The kernel adapter: idempotent verbs, ``apply(ops)`` and ``observe(scopes)``.

All netlink work runs on one private worker thread. That thread alone enters namespaces
(to make a socket there, create a netns, touch a sysctl), so a caller on an event loop
never changes netns; it should still call from an executor, since the calls block.

A socket per netns is kept only for namespaces the drivers own (``keep``); sockets into
sandboxes are closed after every call, because an open socket would keep a sandbox's netns
alive after its container is gone.

Verbs are idempotent: EEXIST on create and ENOENT/ENODEV on delete are success, after a
check that what exists is what was wanted.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netfabric import netns as ns
from netfabric.dataplane import nft
from netfabric.dataplane.rawnl import Link, Rtnl, RtnlError
from netfabric.dataplane.resources import (
    Addr,
    Bridge,
    Create,
    Delete,
    Fdb,
    LinkState,
    Neigh,
    Netns,
    NftTable,
    Op,
    Phase,
    Placement,
    Resource,
    Route,
    Sysctl,
    Veth,
    Vxlan,
)
from netfabric.errors import DataplaneError

__all__ = ["ALL_PHASES", "Kernel", "Scope"]

T = TypeVar("T")

ALL_PHASES = frozenset(Phase)
_IFF_UP = 1
_NUD_PERMANENT = 0x80
_NTF_SELF = 0x02
_NTF_MASTER = 0x04
_IFA_F_NODAD = 0x02
_MAIN_TABLE = 254
_GONE = (errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL)
_ZERO_MAC = "00:00:00:00:00:00"
_AF_BRIDGE = 7
_IFLA_VXLAN_ID = 1
_IFLA_VXLAN_LOCAL = 4
_IFLA_VXLAN_PORT = 15


@dataclass(frozen=True, slots=True)
class Scope:
    """What :meth:`Kernel.observe` reads in one netns.

    ``links=None`` reads every link but ``lo`` (a netns that is ours alone); otherwise only
    the named links and those starting with one of ``prefixes``. ``phases`` limits which
    kinds of resources are read, so a hot path can skip FDB and neighbour dumps.
    ``report_netns`` adds the :class:`Netns` itself when it exists.
    """

    netns: str | None
    links: frozenset[str] | None = None
    prefixes: tuple[str, ...] = ()
    phases: frozenset[Phase] = ALL_PHASES
    nft_tables: tuple[tuple[str, str], ...] = ()
    sysctls: tuple[str, ...] = ()
    report_netns: bool = field(default=False)

    def wants(self, name: str) -> bool:
        if self.links is None:
            return name != "lo"
        return name in self.links or (bool(self.prefixes) and name.startswith(self.prefixes))


def _attr(msg: Any, *path: str) -> Any:
    cur = msg
    for name in path:
        if cur is None:
            return None
        cur = cur.get_attr(name)
    return cur


def _norm_ip(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


def _norm_cidr(cidr: str) -> str:
    iface = ipaddress.ip_interface(cidr)
    return f"{iface.ip}/{iface.network.prefixlen}"


class Kernel:
    """One host's kernel, reached from a private worker thread.

    ``host_netns`` names the host's netns under /run/netns; ``None`` means the netns this
    process runs in (an agent started inside its host). Resources with ``netns=None`` live
    in the host netns.
    """

    def __init__(self, *, host_netns: str | None) -> None:
        self.host_netns = host_netns
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nf-dataplane")
        self._lock = threading.Lock()
        self._ipr: dict[str | None, IPRoute] = {}
        self._raw: dict[str | None, Rtnl] = {}
        self._keep: set[str | None] = {None}
        self._closed = False

    # ----------------------------------------------------------- threading and sockets

    def call(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the worker thread and return its result (or raise its error)."""
        with self._lock:
            if self._closed:
                raise DataplaneError("dataplane is closed")
            return self._pool.submit(self._guarded, func).result()

    def _guarded(self, func: Callable[[], T]) -> T:
        try:
            return func()
        finally:
            for key in [k for k in self._ipr if k not in self._keep]:
                self._ipr.pop(key).close()
            for key in [k for k in self._raw if k not in self._keep]:
                self._raw.pop(key).close()

    def _real(self, name: str | None) -> str | None:
        return self.host_netns if name is None else name

    def ipr(self, name: str | None) -> IPRoute:
        """The socket into netns ``name`` (``None``: host). Worker thread only."""
        key = self._real(name)
        sock = self._ipr.get(key)
        if sock is None:
            raw = ns.netlink_socket(key)
            sock = IPRoute(fileno=raw.detach(), groups=0)
            self._ipr[key] = sock
        return sock

    def raw(self, name: str | None) -> Rtnl:
        """The hot-path socket into netns ``name`` (see :mod:`rawnl`). Worker thread only."""
        key = self._real(name)
        sock = self._raw.get(key)
        if sock is None:
            sock = self._raw[key] = Rtnl(ns.netlink_socket(key))
        return sock

    def keep(self, name: str) -> None:
        """Keep a socket into ``name`` between calls (a netns the drivers own)."""
        self._keep.add(name)

    def forget(self, name: str) -> None:
        self._keep.discard(name)
        sock = self._ipr.pop(name, None)
        if sock is not None:
            sock.close()
        raw = self._raw.pop(name, None)
        if raw is not None:
            raw.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._keep.clear()
            self._pool.submit(self._guarded, lambda: None).result()
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------- plain verbs (public)

    def ensure_netns(self, name: str) -> None:
        self.call(lambda: self._netns_create(name))

    def delete_netns(self, name: str) -> None:
        self.call(lambda: self._netns_delete(name))

    def list_netns(self, prefix: str) -> list[str]:
        """Names under /run/netns starting with ``prefix``."""
        try:
            return sorted(n for n in os.listdir(ns.NETNS_DIR) if n.startswith(prefix))
        except FileNotFoundError:
            return []

    def present_sysctls(self, paths: Iterable[str]) -> tuple[str, ...]:
        """Those of ``paths`` that exist in the host netns (e.g. ``net/bridge/...`` only
        once br_netfilter is loaded), so a driver wants only settings it can observe."""
        wanted = list(paths)
        host = self._real(None)
        return self.call(lambda: tuple(p for p in wanted
                                       if ns.read_sysctl(host, p) is not None))

    def underlay_mtu(self, towards: Iterable[str], *, local: str) -> int:
        """The smallest MTU on the host's routes to ``towards`` (or, with no peer yet, of
        the link holding ``local``)."""
        return self.call(lambda: self._underlay_mtu(list(towards), local))

    def ensure(self, resources: Iterable[Resource]) -> int:
        """Create each resource, outermost first, without reading the kernel first: every
        create is idempotent (what exists and matches is success). The fast path of attach;
        ``observe`` + ``diff`` + ``apply`` is the thorough one."""
        ordered = sorted(resources, key=lambda r: r.phase)
        return self.apply(Create(r) for r in ordered)

    def forget_neighbours(self, entries: Iterable[tuple[str, str, str]]) -> int:
        """Drop cached ARP/ND entries ``(netns, dev, ip)`` inside sandboxes, so a moved IP
        is re-resolved at once instead of after the cache's timers; returns how many were
        there. Missing netns, devices and entries are fine."""
        todo = list(entries)

        def run() -> int:
            n = 0
            for netns, dev, ip in todo:
                if not ns.netns_exists(netns):
                    continue
                link = self.raw(netns).link(dev)
                if link is not None and self.raw(netns).del_neigh(link.index, ip):
                    n += 1
            return n

        try:
            return self.call(run)
        except RtnlError as exc:
            raise DataplaneError(f"forget neighbours: {exc.strerror}") from exc

    def apply(self, ops: Iterable[Op]) -> int:
        """Run ``ops`` in order; returns how many ran. Stops at the first failure, raising
        :class:`DataplaneError` naming the op."""
        return self.call(lambda: self._apply(list(ops)))

    def observe(self, scopes: Iterable[Scope], *, desired: Iterable[Resource] = ()
                ) -> tuple[Resource, ...]:
        """What exists in the given scopes. ``desired`` tells where each veth's peer is
        expected (a veth is one resource with two ends)."""
        peers = {r.name: r for r in desired if isinstance(r, Veth)}
        return self.call(lambda: self._observe(list(scopes), peers))

    # ----------------------------------------------------------- netns

    def _netns_create(self, name: str) -> None:
        ns.create_netns(name)

    def _netns_delete(self, name: str) -> None:
        self.forget(name)
        ns.delete_netns(name)

    # ----------------------------------------------------------- apply

    def _apply(self, ops: list[Op]) -> int:
        done = 0
        for op in ops:
            try:
                self._apply_one(op)
            except NetlinkError as exc:
                raise DataplaneError(f"{_describe(op)}: {os.strerror(exc.code)}") from exc
            except RtnlError as exc:
                raise DataplaneError(f"{_describe(op)}: {exc.strerror}") from exc
            except DataplaneError as exc:
                raise DataplaneError(f"{_describe(op)}: {exc}") from exc
            except OSError as exc:
                raise DataplaneError(f"{_describe(op)}: {exc}") from exc
            done += 1
        return done

    def _apply_one(self, op: Op) -> None:
        if isinstance(op, Delete):
            self._delete(op.old)
        elif isinstance(op, Create):
            self._create(op.new)
        else:
            self._update(op.old, op.new)

    def _create(self, r: Resource) -> None:
        if isinstance(r, Netns):
            self._netns_create(r.name)
        elif isinstance(r, Sysctl):
            ns.write_sysctl(self._real(r.netns), r.path, r.value)
        elif isinstance(r, Bridge):
            self._bridge(r)
        elif isinstance(r, Vxlan):
            self._vxlan(r)
        elif isinstance(r, Veth):
            self._veth(r)
        elif isinstance(r, Addr):
            self._addr(r)
        elif isinstance(r, Route):
            self._route(r)
        elif isinstance(r, Fdb):
            self._fdb(r)
        elif isinstance(r, Neigh):
            self._neigh(r)
        else:
            nft.replace_table(self._real(r.netns), r.family, r.name, r.body)

    def _update(self, old: Resource, new: Resource) -> None:
        if _needs_recreate(old, new):
            self._delete(old)
            self._create(new)
        else:
            # Everything else converges by re-running its idempotent create.
            self._create(new)

    def _delete(self, r: Resource) -> None:
        if not isinstance(r, Netns) and r.netns is not None and not ns.netns_exists(r.netns):
            return  # gone with its netns
        if isinstance(r, Netns):
            self._netns_delete(r.name)
        elif isinstance(r, Sysctl):
            return
        elif isinstance(r, Bridge | Vxlan | Veth):
            self._link_delete(r.netns, r.name)
        elif isinstance(r, Addr):
            self._gone_ok(lambda: self.ipr(r.netns).addr(
                "del", index=self._index(r.netns, r.dev), **_addr_args(r.cidr)))
        elif isinstance(r, Route):
            self._gone_ok(lambda: self.ipr(r.netns).route(
                "del", family=r.family, dst=_route_dst(r), table=_MAIN_TABLE))
        elif isinstance(r, Fdb):
            # The VXLAN's own entry, then what the bridge may have learned from it.
            self._gone_ok(lambda: self.ipr(r.netns).fdb(
                "del", ifindex=self._index(r.netns, r.dev), lladdr=r.mac, dst=r.dst,
                flags=_NTF_SELF))
            self._gone_ok(lambda: self.ipr(r.netns).fdb(
                "del", ifindex=self._index(r.netns, r.dev), lladdr=r.mac, flags=_NTF_MASTER))
        elif isinstance(r, Neigh):
            self._gone_ok(lambda: self.ipr(r.netns).neigh(
                "del", ifindex=self._index(r.netns, r.dev), dst=r.ip,
                family=_family(r.ip)))
        else:
            nft.delete_table(self._real(r.netns), r.family, r.name)

    @staticmethod
    def _gone_ok(func: Callable[[], object]) -> None:
        try:
            func()
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise
        except RtnlError as exc:
            if exc.errno not in _GONE:
                raise
        except _Missing:
            return

    # ----------------------------------------------------------- link verbs

    def _get_link(self, netns: str | None, name: str) -> Any | None:
        try:
            return self.ipr(netns).link("get", ifname=name)[0]
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise

    def _index(self, netns: str | None, name: str) -> int:
        link = self.raw(netns).link(name)
        if link is None:
            raise _Missing(f"no link {name} in {self._real(netns) or 'host'}")
        return link.index

    def _link_delete(self, netns: str | None, name: str) -> None:
        if netns is not None and not ns.netns_exists(netns):
            return
        try:
            self.ipr(netns).link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise

    def _kind(self, msg: Any) -> str | None:
        kind = _attr(msg, "IFLA_LINKINFO", "IFLA_INFO_KIND")
        return None if kind is None else str(kind)

    def _bridge(self, r: Bridge) -> None:
        ipr = self.ipr(r.netns)
        try:
            ipr.link("add", ifname=r.name, kind="bridge", mtu=r.mtu, state="up")
            return
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        msg = self._get_link(r.netns, r.name)
        if msg is None or self._kind(msg) != "bridge":
            raise DataplaneError(f"{r.name} exists and is not a bridge")
        ipr.link("set", index=msg["index"], mtu=r.mtu, state="up")

    def _vxlan(self, r: Vxlan) -> None:
        here = self._get_link(r.netns, r.name)
        if here is None:
            under = r.underlay_netns
            spec = dict(ifname=r.name, kind="vxlan", vxlan_id=r.vni, vxlan_local=r.local,
                        vxlan_port=r.port, vxlan_learning=0, vxlan_proxy=1, mtu=r.mtu)
            uipr = self.ipr(under)
            try:
                uipr.link("add", **spec)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
                # A stray from an earlier crash in the underlay netns: start over.
                uipr.link("del", ifname=r.name)
                uipr.link("add", **spec)
            if self._real(under) != self._real(r.netns):
                idx = self._index(under, r.name)
                try:
                    uipr.link("set", index=idx, net_ns_fd=ns.netns_path(str(r.netns)))
                except NetlinkError:
                    uipr.link("del", index=idx)
                    raise
            here = self._get_link(r.netns, r.name)
            if here is None:
                raise DataplaneError(f"vxlan {r.name} vanished after the move")
        elif self._kind(here) != "vxlan":
            raise DataplaneError(f"{r.name} exists and is not a vxlan")
        master = self._index(r.netns, r.master)
        self.ipr(r.netns).link("set", index=here["index"], mtu=r.mtu, master=master,
                               state="up")

    def _veth(self, r: Veth) -> None:
        if r.peer is None:
            raise DataplaneError(f"veth {r.name} without a peer name")
        peer_ns = self._real(r.peer_netns)
        if peer_ns is None and self._real(r.netns) is not None:
            raise DataplaneError(f"veth {r.name}: no netns to put {r.peer} in")
        master = None if r.master is None else self._index(r.netns, r.master)
        try:
            self._veth_add(r, master)
        except RtnlError as exc:
            if exc.errno != errno.EEXIST:
                raise
            if self.raw(r.netns).link(r.name) is None:
                raise DataplaneError(f"{r.peer} already exists in {peer_ns}") from exc
            if self._veth_converge(r):
                return
            # Our name, but not our pair (a crash mid-way, a sandbox that died): redo it.
            self._link_delete(r.netns, r.name)
            self._veth_add(r, master)
        if r.placement is Placement.SANDBOX:
            self.raw(r.peer_netns).set_up(self._index(r.peer_netns, r.peer))

    def _veth_add(self, r: Veth, master: int | None) -> None:
        assert r.peer is not None
        peer_ns = self._real(r.peer_netns)
        fd = None
        if peer_ns != self._real(r.netns) and peer_ns is not None:
            fd = os.open(ns.netns_path(peer_ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.raw(r.netns).add_veth(r.name, mtu=r.mtu, master=master, peer=r.peer,
                                       peer_mac=r.peer_mac, peer_netns_fd=fd)
        finally:
            if fd is not None:
                os.close(fd)

    def _veth_converge(self, r: Veth) -> bool:
        """The host end exists: if its peer is the wanted one, set what may drift and say
        ``True``; ``False`` when the pair is not the wanted one."""
        assert r.peer is not None
        link = self.raw(r.netns).link(r.name)
        if link is None or link.kind != "veth":
            return False
        have = self._observe_veth(r.netns, link, r, {})
        if have.peer != r.peer:
            return False
        if r.placement is Placement.PARKED:
            master = {} if r.master is None else {"master": self._index(r.netns, r.master)}
            self.ipr(r.netns).link("set", index=self._index(r.netns, r.name), mtu=r.mtu,
                                   state="up", **master)
            return True
        ipr, pipr = self.ipr(r.netns), self.ipr(r.peer_netns)
        idx, pidx = self._index(r.netns, r.name), self._index(r.peer_netns, r.peer)
        master = {} if r.master is None else {"master": self._index(r.netns, r.master)}
        ipr.link("set", index=idx, mtu=r.mtu, state="up", **master)
        peer_set: dict[str, Any] = {"mtu": r.mtu, "state": "up"}
        if r.peer_mac and have.peer_mac != r.peer_mac:
            peer_set["address"] = r.peer_mac
        pipr.link("set", index=pidx, **peer_set)
        return True

    # ----------------------------------------------------------- addresses, routes, fdb

    def _addr(self, r: Addr) -> None:
        self.raw(r.netns).add_addr(self._index(r.netns, r.dev), r.cidr)

    def _route(self, r: Route) -> None:
        if r.dst == "default":
            self.raw(r.netns).replace_default_route(r.gateway, self._index(r.netns, r.dev))
            return
        self.ipr(r.netns).route("replace", family=r.family, dst=_route_dst(r),
                                gateway=r.gateway, oif=self._index(r.netns, r.dev),
                                table=_MAIN_TABLE)

    def _fdb(self, r: Fdb) -> None:
        self.ipr(r.netns).fdb("replace", ifindex=self._index(r.netns, r.dev), lladdr=r.mac,
                              dst=r.dst, state=_NUD_PERMANENT, flags=_NTF_SELF)

    def _neigh(self, r: Neigh) -> None:
        self.ipr(r.netns).neigh("replace", ifindex=self._index(r.netns, r.dev), dst=r.ip,
                                lladdr=r.mac, state=_NUD_PERMANENT, family=_family(r.ip))

    def _underlay_mtu(self, towards: list[str], local: str) -> int:
        ipr = self.ipr(None)
        mtus: list[int] = []
        for dst in towards:
            try:
                for route in ipr.route("get", dst=dst):
                    mtu = _attr(route, "RTA_METRICS", "RTAX_MTU")
                    oif = route.get_attr("RTA_OIF")
                    if mtu:
                        mtus.append(int(mtu))
                    elif oif is not None:
                        mtus.append(int(ipr.link("get", index=oif)[0].get_attr("IFLA_MTU")))
            except NetlinkError:
                continue
        if not mtus:
            for addr in ipr.addr("dump"):
                if addr.get_attr("IFA_ADDRESS") == local:
                    link = ipr.link("get", index=addr["index"])[0]
                    mtus.append(int(link.get_attr("IFLA_MTU")))
        if not mtus:
            raise DataplaneError(f"no underlay link holds {local} in the host netns")
        return min(mtus)

    # ----------------------------------------------------------- observe

    def _observe(self, scopes: list[Scope], peers: Mapping[str, Veth]) -> tuple[Resource, ...]:
        out: list[Resource] = []
        for scope in scopes:
            real = self._real(scope.netns)
            if scope.netns is not None and not ns.netns_exists(scope.netns):
                continue
            if scope.report_netns and scope.netns is not None:
                out.append(Netns(scope.netns))
            for path in scope.sysctls:
                value = ns.read_sysctl(real, path)
                if value is not None:
                    out.append(Sysctl(scope.netns, path, value))
            for family, name in scope.nft_tables:
                marker = nft.observe_table(real, family, name)
                if marker is not None:
                    out.append(NftTable(scope.netns, family, name, marker))
            out.extend(self._observe_links(scope, peers))
        return tuple(out)

    def _observe_links(self, scope: Scope, peers: Mapping[str, Veth]) -> list[Resource]:
        raw = self.raw(scope.netns)
        if scope.links is not None and not scope.prefixes:
            links = [m for m in (raw.link(n) for n in sorted(scope.links)) if m is not None]
        else:
            links = [m for m in raw.links() if scope.wants(m.name)]
        if not links:
            return []
        names = {m.index: m.name for m in links}
        out: list[Resource] = []
        vxlans: list[Link] = []
        for m in links:
            state = LinkState.UP if m.flags & _IFF_UP else LinkState.DOWN
            mtu = m.mtu or 0
            if m.kind == "vxlan":
                vxlans.append(m)
            if m.kind == "bridge" and Phase.BRIDGE in scope.phases:
                out.append(Bridge(scope.netns, m.name, mtu, state))
            elif m.kind == "vxlan" and Phase.VXLAN in scope.phases:
                local = m.info.get(_IFLA_VXLAN_LOCAL)
                port = m.info.get(_IFLA_VXLAN_PORT)
                out.append(Vxlan(scope.netns, m.name, _native_u32(m.info.get(_IFLA_VXLAN_ID)),
                                 str(ipaddress.IPv4Address(local)) if local else "",
                                 int.from_bytes(port[:2], "big") if port else 0, mtu,
                                 self._name_of(scope.netns, m.master, names) or "", state))
            elif m.kind == "veth" and Phase.VETH in scope.phases:
                out.append(self._observe_veth(scope.netns, m, peers.get(m.name), names))
        if Phase.ADDR in scope.phases:
            out.extend(Addr(scope.netns, names[a.index], _norm_cidr(f"{a.ip}/{a.prefixlen}"))
                       for a in raw.addrs() if a.index in names and a.scope == 0)
        if Phase.ROUTE in scope.phases:
            for family in (socket.AF_INET, socket.AF_INET6):
                out.extend(Route(scope.netns, family, "default", _norm_ip(r.gateway),
                                 names[r.oif])
                           for r in raw.routes(family)
                           if r.dst_len == 0 and r.table == _MAIN_TABLE
                           and r.oif in names and r.gateway is not None)
        if vxlans and Phase.FDB in scope.phases:
            fdb = raw.neighbours(_AF_BRIDGE)
            for vx in vxlans:
                out.extend(Fdb(scope.netns, vx.name, e.mac, _norm_ip(e.ip)) for e in fdb
                           if e.index == vx.index and e.ip is not None and e.mac is not None
                           and e.mac != _ZERO_MAC and e.flags & _NTF_SELF)
        if vxlans and Phase.NEIGH in scope.phases:
            for family in (socket.AF_INET, socket.AF_INET6):
                entries = raw.neighbours(family)
                for vx in vxlans:
                    out.extend(Neigh(scope.netns, vx.name, _norm_ip(e.ip), e.mac)
                               for e in entries
                               if e.index == vx.index and e.state & _NUD_PERMANENT
                               and e.ip is not None and e.mac is not None)
        return out

    def _name_of(self, netns: str | None, index: int | None, known: Mapping[int, str]
                 ) -> str | None:
        if not index:
            return None
        if index in known:
            return known[index]
        for m in self.raw(netns).links():
            if m.index == index:
                return m.name
        return None

    def _observe_veth(self, netns: str | None, m: Link, want: Veth | None,
                      names: Mapping[int, str]) -> Veth:
        master = self._name_of(netns, m.master, names)
        mtu = m.mtu or 0
        up = bool(m.flags & _IFF_UP)
        broken = Veth(netns, m.name, master, mtu, None, None, None,
                      LinkState.UP if up else LinkState.DOWN)
        if want is None or want.peer is None:
            return broken
        if want.placement is Placement.PARKED:
            # The inner end may have been moved and renamed by its runtime: not ours to see.
            return Veth(netns, m.name, master, mtu, want.peer_netns, want.peer, want.peer_mac,
                        LinkState.UP if up else LinkState.DOWN, Placement.PARKED)
        if want.peer_netns is not None and not ns.netns_exists(want.peer_netns):
            return broken
        peer = self.raw(want.peer_netns).link(want.peer)
        if peer is None or peer.kind != "veth" or peer.link != m.index or m.link != peer.index:
            return broken
        both_up = up and bool(peer.flags & _IFF_UP)
        return Veth(netns, m.name, master, mtu if peer.mtu == mtu else -1, want.peer_netns,
                    want.peer, peer.address, LinkState.UP if both_up else LinkState.DOWN)


class _Missing(DataplaneError):
    """A device an op refers to does not exist (fine for a delete)."""


def _native_u32(raw: bytes | None) -> int:
    return int(struct.unpack("=I", raw[:4])[0]) if raw and len(raw) >= 4 else 0


def _needs_recreate(old: Resource, new: Resource) -> bool:
    """Whether ``old`` cannot be changed into ``new`` in place."""
    if type(old) is not type(new):
        return True
    if isinstance(old, Vxlan) and isinstance(new, Vxlan):
        return (old.vni, old.local, old.port) != (new.vni, new.local, new.port)
    if isinstance(old, Veth) and isinstance(new, Veth):
        return (old.peer_netns, old.peer) != (new.peer_netns, new.peer)
    return False


def _family(ip: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


def _addr_args(cidr: str) -> dict[str, Any]:
    iface = ipaddress.ip_interface(cidr)
    args: dict[str, Any] = {"address": str(iface.ip), "prefixlen": iface.network.prefixlen}
    if iface.version == 6:
        args["family"] = socket.AF_INET6
        args["IFA_FLAGS"] = _IFA_F_NODAD
    return args


def _route_dst(r: Route) -> str:
    if r.dst == "default":
        return "::/0" if r.family == socket.AF_INET6 else "0.0.0.0/0"
    return r.dst


def _describe(op: Op) -> str:
    if isinstance(op, Create):
        return f"create {op.new}"
    if isinstance(op, Delete):
        return f"delete {op.old}"
    return f"update {op.old} -> {op.new}"
