"""The overlay driver: kernel VXLAN across hosts, one netns per network per host.

On each host that has endpoints on a network there is a netns ``<prefix>-ov<vni>`` holding
``br0`` (with the gateway addresses) and a vxlan device. The vxlan is made in the host
netns, so its UDP socket (port 4789 by default) sits on the underlay and sends from the
advertise address (``local``), then moved into the network's netns. It has no learning and
answers ARP/ND itself (``proxy``) from neighbour entries: for every remote endpoint a static
FDB entry (MAC → VTEP) and neighbour entry (IP → MAC), written with replace semantics, so an
IP that moves to another host with a new MAC is followed at once and nothing floods.

Sandboxes hang off ``br0`` through veths whose inner end is ``eth0``/``ethN``. The network
netns appears with the first local endpoint and goes with the last. MTU is the underlay MTU
of the route to the peers minus 50 (VXLAN over IPv4), unless ``-o mtu=N`` says otherwise.

Desired state is computed by pure functions (:func:`desired_network`), programmed by
reconcile: :meth:`OverlayDriver.reconcile` repairs everything; attach, detach and
``set_peers`` reconcile only what they touch, so they stay fast with many endpoints.
The peer table is an input (``set_peers``): the agent feeds it from gossip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netfabric.dataplane.kernel import Kernel, Scope
from netfabric.dataplane.reconcile import diff
from netfabric.dataplane.resources import (
    Addr,
    Bridge,
    Fdb,
    Neigh,
    Netns,
    Phase,
    Resource,
    Sysctl,
    Vxlan,
)
from netfabric.drivers.common import (
    Attachment,
    LocalEndpoint,
    attachment,
    check_ifname,
    gateway_cidrs,
    mac_for,
    network_mtu,
    parked_or,
    sandbox_side,
    short_id,
)
from netfabric.errors import DataplaneError, InvalidArgument
from netfabric.model import Driver, Endpoint, Network
from netfabric.model import Scope as NetworkScope

__all__ = [
    "DEFAULT_VXLAN_PORT",
    "VXLAN_OVERHEAD",
    "OverlayConfig",
    "OverlayDriver",
    "desired_network",
    "host_veth_name",
    "overlay_netns",
    "peer_entries",
    "vxlan_name",
]

DEFAULT_VXLAN_PORT = 4789
"""IANA's VXLAN port (RFC 7348)."""

VXLAN_OVERHEAD = 50
"""Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) bytes."""

BRIDGE = "br0"
MAX_VNI = (1 << 24) - 1

BRIDGE_NF_SYSCTLS = (
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/bridge/bridge-nf-call-arptables",
)
"""Set to 0 in each overlay netns: with br_netfilter loaded (Docker loads it) every frame
br0 forwards would go through the netns' iptables hooks (there are no rules to run there)."""


@dataclass(frozen=True, slots=True)
class OverlayConfig:
    """One host's view: how its netns are named and where its VTEP is."""

    prefix: str
    """Start of every netns this host's overlays create (e.g. the host netns name)."""
    advertise_addr: str
    """The underlay address peers send to; the vxlan's ``local``."""
    vxlan_port: int = DEFAULT_VXLAN_PORT
    """UDP destination port of the VXLAN packets."""
    sysctls: tuple[str, ...] = ()
    """Paths of :data:`BRIDGE_NF_SYSCTLS` this kernel has, set to 0 in each overlay netns."""


def overlay_netns(prefix: str, vni: int) -> str:
    return f"{prefix}-ov{vni}"


def vxlan_name(vni: int) -> str:
    return f"nfvx{vni}"


def host_veth_name(endpoint_id: str) -> str:
    return "ve" + short_id(endpoint_id, 12)


def _vni(network: Network) -> int:
    if network.vni is None or not 1 <= network.vni <= MAX_VNI:
        raise InvalidArgument(f"overlay network {network.name} needs a VNI in 1..{MAX_VNI}")
    return network.vni


def infra(cfg: OverlayConfig, network: Network, mtu: int) -> list[Resource]:
    """The network's netns, bridge, gateway addresses and vxlan."""
    vni = _vni(network)
    name = overlay_netns(cfg.prefix, vni)
    out: list[Resource] = [Netns(name), Bridge(name, BRIDGE, mtu)]
    out += [Addr(name, BRIDGE, cidr) for cidr in gateway_cidrs(network)]
    out.append(Vxlan(name, vxlan_name(vni), vni, cfg.advertise_addr, cfg.vxlan_port, mtu,
                     BRIDGE, underlay_netns=None))
    out += [Sysctl(name, path, "0") for path in cfg.sysctls]
    return out


def peer_entries(cfg: OverlayConfig, network: Network, peers: Iterable[Endpoint],
                 local_ids: Iterable[str] = ()) -> list[Resource]:
    """FDB and neighbour entries for the remote endpoints of ``network``.

    Endpoints of this host (by VTEP or id) and of other networks are skipped. When two
    entries claim one IP (a move in flight), the later one in ``peers`` wins.
    """
    vni = _vni(network)
    name, dev = overlay_netns(cfg.prefix, vni), vxlan_name(vni)
    skip = set(local_ids)
    out: list[Resource] = []
    for ep in peers:
        if ep.network_id != network.id or ep.id in skip or not ep.vtep:
            continue
        if ep.vtep == cfg.advertise_addr:
            continue
        mac = mac_for(ep)
        out.append(Fdb(name, dev, mac, str(ipaddress.ip_address(ep.vtep))))
        if ep.ipv4:
            out.append(Neigh(name, dev, str(ipaddress.IPv4Address(ep.ipv4)), mac))
        if ep.ipv6:
            out.append(Neigh(name, dev, str(ipaddress.IPv6Address(ep.ipv6)), mac))
    return out


def endpoint_side(cfg: OverlayConfig, network: Network, local: LocalEndpoint,
                  mtu: int) -> list[Resource]:
    return sandbox_side(network, local, link_netns=overlay_netns(cfg.prefix, _vni(network)),
                        master=BRIDGE, mtu=mtu,
                        default_route=not network.internal and local.ifname == "eth0")


def desired_network(cfg: OverlayConfig, network: Network, locals_: Sequence[LocalEndpoint],
                    peers: Iterable[Endpoint], mtu: int) -> list[Resource]:
    """Everything one overlay network needs on this host: nothing without local endpoints."""
    if not locals_:
        return []
    out = infra(cfg, network, mtu)
    for local in locals_:
        out += endpoint_side(cfg, network, local, mtu)
    out += peer_entries(cfg, network, peers, (lo.endpoint.id for lo in locals_))
    return out


def _sandbox_scope(local: LocalEndpoint) -> Scope:
    """What of a sandbox is ours to read: the addresses and routes of our interface."""
    assert local.sandbox is not None
    return Scope(local.sandbox, links=frozenset({local.ifname}),
                 phases=frozenset({Phase.ADDR, Phase.ROUTE}))


def _ip_table(eps: Iterable[Endpoint]) -> dict[str, str]:
    out: dict[str, str] = {}
    for ep in eps:
        for ip in (ep.ipv4, ep.ipv6):
            if ip:
                out[str(ipaddress.ip_address(ip))] = mac_for(ep)
    return out


def _changed_ips(old: Iterable[Endpoint], new: Iterable[Endpoint]) -> set[str]:
    """IPs that are new, or now belong to another MAC than before.

    A local sandbox may hold a neighbour entry for each: a stale MAC, or an INCOMPLETE /
    FAILED entry from asking before the address existed, which the kernel retries only
    every ``retrans_time`` (1 s). Dropping those entries makes the next packet ask again,
    and the vxlan answers at once from the entry just written."""
    before, after = _ip_table(old), _ip_table(new)
    return {ip for ip, mac in after.items() if before.get(ip) != mac}


@dataclass
class _NetState:
    network: Network
    locals: dict[str, LocalEndpoint]
    peers: tuple[Endpoint, ...]
    mtu: int | None = None
    ready: bool = False


class OverlayDriver:
    """Overlay networks on one host.

    ``host_netns`` names the host's netns (``None``: the netns of this process).
    ``prefix`` starts every netns made here (default: ``host_netns``); it must start with
    ``nf`` and be unique per host on the machine. Methods block: call them from an executor
    thread, not the event loop.
    """

    def __init__(self, *, host_netns: str | None, advertise_addr: str,
                 prefix: str | None = None, vxlan_port: int = DEFAULT_VXLAN_PORT,
                 kernel: Kernel | None = None) -> None:
        prefix = prefix or host_netns
        if not prefix or not prefix.startswith("nf"):
            raise InvalidArgument(f"overlay netns prefix must start with 'nf', got {prefix!r}")
        try:
            ipaddress.IPv4Address(advertise_addr)
        except ValueError as exc:
            raise InvalidArgument(f"advertise address {advertise_addr!r} is not IPv4") from exc
        if not 1 <= vxlan_port <= 65535:
            raise InvalidArgument(f"vxlan port must be 1..65535, got {vxlan_port}")
        self.config = OverlayConfig(prefix, advertise_addr, vxlan_port)
        self._own_kernel = kernel is None
        self.kernel = kernel or Kernel(host_netns=host_netns)
        self._nets: dict[str, _NetState] = {}
        self._lock = threading.Lock()
        self._probed = False

    # ----------------------------------------------------------- public API

    def attach(self, network: Network, endpoint: Endpoint, *, sandbox_netns: str | None,
               ifname: str = "eth0") -> Attachment:
        """Plug ``endpoint`` into ``sandbox_netns`` as ``ifname``; idempotent. A failure
        undoes what this call made and raises :class:`DataplaneError`.

        ``sandbox_netns=None`` (or the host netns itself) parks the inner end in the host
        netns as ``ifname``, unconfigured, for a runtime to take (Docker's Join)."""
        if network.driver != Driver.OVERLAY:
            raise InvalidArgument(f"network {network.name} is not an overlay network")
        if endpoint.network_id != network.id:
            raise InvalidArgument(f"endpoint {endpoint.id} is not on network {network.id}")
        _vni(network)
        local = LocalEndpoint(endpoint, parked_or(sandbox_netns, self.kernel.host_netns),
                              check_ifname(ifname),
                              host_veth_name(endpoint.id))
        mac_for(endpoint)
        with self._lock:
            st = self._nets.get(network.id)
            if st is None:
                st = self._nets[network.id] = _NetState(network, {}, ())
            st.network = network
            before = dict(st.locals)
            st.locals[endpoint.id] = local
            try:
                mtu = self._mtu(st)
                self._sync_endpoint(st, local, mtu)
            except BaseException:
                st.locals = before
                self._rollback(st, local)
                raise
            if endpoint.id not in before and before:
                # the other local sandboxes may have asked for this address before it
                # existed here (see _changed_ips)
                self._forget(before.values(), set(_ip_table([endpoint])))
            return attachment(network, local, mtu)

    def _forget(self, locals_: Iterable[LocalEndpoint], ips: set[str]) -> None:
        """Drop the neighbour entries of ``ips`` in the sandboxes of ``locals_``."""
        self.kernel.forget_neighbours(
            (lo.sandbox, lo.ifname, ip) for lo in locals_
            if lo.sandbox is not None for ip in sorted(ips))

    def detach(self, network_id: str, endpoint_id: str) -> None:
        """Unplug an endpoint; the last one takes the network's netns with it. Unknown
        endpoints are a no-op (detach is idempotent)."""
        with self._lock:
            st = self._nets.get(network_id)
            if st is None or endpoint_id not in st.locals:
                return
            local = st.locals.pop(endpoint_id)
            ns_name = overlay_netns(self.config.prefix, _vni(st.network))
            if st.locals:
                scope = Scope(ns_name, links=frozenset({local.host_ifname}),
                              phases=frozenset({Phase.VETH}))
                self._converge([scope], [])
            else:
                self._converge([Scope(ns_name, report_netns=True)], [])
                st.ready = False
                st.mtu = None
                if not st.peers:
                    del self._nets[network_id]

    def set_peers(self, network_id: str, peers: Iterable[Endpoint]) -> None:
        """Replace the remote endpoints of a network (the agent's view of gossip).

        Peers of a network with no local endpoint are kept and programmed when the first
        local endpoint arrives."""
        peers = tuple(peers)
        for ep in peers:
            if ep.network_id != network_id:
                raise InvalidArgument(f"peer {ep.id} is on {ep.network_id}, not {network_id}")
            mac_for(ep)
        with self._lock:
            st = self._nets.get(network_id)
            if st is None:
                if peers:
                    self._pending_peers(network_id, peers)
                return
            changed = _changed_ips(st.peers, peers)
            st.peers = peers
            if not st.locals or not st.ready:
                if not st.locals and not peers:
                    del self._nets[network_id]
                return
            ns_name = overlay_netns(self.config.prefix, _vni(st.network))
            scope = Scope(ns_name, links=frozenset({vxlan_name(_vni(st.network))}),
                          phases=frozenset({Phase.FDB, Phase.NEIGH}))
            want = peer_entries(self.config, st.network, peers, st.locals)
            self._converge([scope], want)
            if changed:
                self._forget(st.locals.values(), changed)

    def reconcile(self) -> int:
        """Bring every overlay netns of this host to the desired state, removing netns of
        networks no longer wanted; returns the number of kernel ops it took."""
        with self._lock:
            self._probe_sysctls()
            desired: list[Resource] = []
            scopes: list[Scope] = []
            wanted_ns: set[str] = set()
            for st in self._nets.values():
                if not st.locals:
                    continue
                mtu = self._mtu(st)
                desired += desired_network(self.config, st.network,
                                           list(st.locals.values()), st.peers, mtu)
                wanted_ns.add(overlay_netns(self.config.prefix, _vni(st.network)))
                scopes += [_sandbox_scope(lo) for lo in st.locals.values() if not lo.parked]
            existing = set(self.kernel.list_netns(f"{self.config.prefix}-ov"))
            for name in sorted(existing | wanted_ns):
                scopes.append(Scope(name, report_netns=True, sysctls=self.config.sysctls
                                    if name in wanted_ns else ()))
            # A vxlan left in the host netns by a crash between create and move.
            scopes.append(Scope(None, links=frozenset(), prefixes=("nfvx",),
                                phases=frozenset({Phase.VXLAN})))
            for name in wanted_ns:
                self.kernel.keep(name)
            observed = self.kernel.observe(scopes, desired=desired)
            ops = diff(desired, observed)
            done = self.kernel.apply(ops)
            for st in self._nets.values():
                st.ready = bool(st.locals)
            return done

    def inspect(self, network_id: str) -> tuple[list[Resource], tuple[Resource, ...], int]:
        """What one network must have on this host, what it has (its netns and the local
        sandboxes' sides), and the underlay MTU towards its peers; repairs nothing."""
        with self._lock:
            st = self._nets.get(network_id)
            if st is None or not st.locals:
                return [], (), 0
            mtu = self._mtu(st)
            desired = desired_network(self.config, st.network, list(st.locals.values()),
                                      st.peers, mtu)
            scopes = [_sandbox_scope(lo) for lo in st.locals.values() if not lo.parked]
            scopes.append(Scope(overlay_netns(self.config.prefix, _vni(st.network)),
                                report_netns=True, sysctls=self.config.sysctls))
            vteps = sorted({p.vtep for p in st.peers
                            if p.vtep and p.vtep != self.config.advertise_addr})
            under = self.kernel.underlay_mtu(vteps, local=self.config.advertise_addr)
            return desired, self.kernel.observe(scopes, desired=desired), under

    def netns_of(self, network_id: str) -> str | None:
        """The network's netns on this host while it has local endpoints."""
        st = self._nets.get(network_id)
        if st is None or not st.locals:
            return None
        return overlay_netns(self.config.prefix, _vni(st.network))

    def close(self) -> None:
        """Release sockets and the worker thread; kernel state stays as it is."""
        if self._own_kernel:
            self.kernel.close()

    def __enter__(self) -> OverlayDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------- internals

    def _pending_peers(self, network_id: str, peers: tuple[Endpoint, ...]) -> None:
        # No Network object yet: remember the peers under a placeholder until attach.
        placeholder = Network(id=network_id, name=network_id, driver=Driver.OVERLAY,
                              scope=NetworkScope.SWARM, vni=None)
        self._nets[network_id] = _NetState(placeholder, {}, peers)

    def _mtu(self, st: _NetState) -> int:
        explicit = network_mtu(st.network)
        if explicit is not None:
            return explicit
        if st.mtu is None:
            vteps = sorted({p.vtep for p in st.peers
                            if p.vtep and p.vtep != self.config.advertise_addr})
            under = self.kernel.underlay_mtu(vteps, local=self.config.advertise_addr)
            st.mtu = under - VXLAN_OVERHEAD
        return st.mtu

    def _converge(self, scopes: list[Scope], want: list[Resource]) -> int:
        observed = self.kernel.observe(scopes, desired=want)
        return self.kernel.apply(diff(want, observed))

    def _probe_sysctls(self) -> None:
        """Learn once which :data:`BRIDGE_NF_SYSCTLS` exist (br_netfilter may be absent)."""
        if not self._probed:
            present = self.kernel.present_sysctls(BRIDGE_NF_SYSCTLS)
            self.config = dataclasses.replace(self.config, sysctls=present)
            self._probed = True

    def _sync_endpoint(self, st: _NetState, local: LocalEndpoint, mtu: int) -> None:
        self._probe_sysctls()
        cfg = self.config
        ns_name = overlay_netns(cfg.prefix, _vni(st.network))
        want = endpoint_side(cfg, st.network, local, mtu)
        if st.ready:
            # The network is in place: idempotent creates, no read-back (the hot path).
            self.kernel.ensure(want)
            return
        want = [*infra(cfg, st.network, mtu), *want,
                *peer_entries(cfg, st.network, st.peers, st.locals)]
        self.kernel.keep(ns_name)
        scopes = [] if local.parked else [_sandbox_scope(local)]
        scopes += [
                  # Other veths in a netns left by an earlier run are not this call's business.
                  Scope(ns_name, report_netns=True, phases=frozenset(Phase) - {Phase.VETH},
                        sysctls=cfg.sysctls),
                  Scope(ns_name, links=frozenset({local.host_ifname}),
                        phases=frozenset({Phase.VETH}))]
        self._converge(scopes, want)
        st.ready = True

    def _rollback(self, st: _NetState, local: LocalEndpoint) -> None:
        """Undo a failed attach: remove the endpoint's veth, and the netns if it was new."""
        ns_name = overlay_netns(self.config.prefix, _vni(st.network))
        with contextlib.suppress(DataplaneError):  # report the original error
            if st.locals and st.ready:
                self._converge([Scope(ns_name, links=frozenset({local.host_ifname}),
                                      phases=frozenset({Phase.VETH}))], [])
            elif not st.locals:
                self._converge([Scope(ns_name, report_netns=True)], [])
                st.ready = False
                st.mtu = None
