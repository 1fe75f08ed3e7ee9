"""The bridge driver: one Linux bridge per local network in the host netns.

The bridge ``nfb-<id>`` carries the gateway addresses; sandboxes hang off it through veths
``nfbv<id>`` whose inner end is ``eth0``/``ethN``. One nftables table of ours
(``inet netfabric``) holds all policy, rebuilt whole on every change:

- egress from a non-internal network's subnets is masqueraded when it leaves by another
  interface than its bridge;
- forwarding from one netfabric bridge to another is dropped (network isolation);
- an ``internal`` network forwards nothing in or out: no egress, no default route.

Desired state comes from pure functions (:func:`desired_bridges`, :func:`render_nft`) and
is programmed by reconcile, as in the overlay driver.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from netfabric.dataplane import nft
from netfabric.dataplane.kernel import Kernel, Scope
from netfabric.dataplane.reconcile import diff
from netfabric.dataplane.resources import Addr, Bridge, NftTable, Phase, Resource, Sysctl
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
from netfabric.errors import DataplaneError, InUse, InvalidArgument
from netfabric.model import Driver, Endpoint, Network

__all__ = [
    "BRIDGE_PREFIX",
    "NFT_FAMILY",
    "NFT_TABLE",
    "VETH_PREFIX",
    "BridgeDriver",
    "bridge_name",
    "desired_bridges",
    "host_veth_name",
    "render_nft",
]

BRIDGE_PREFIX = "nfb-"
VETH_PREFIX = "nfbv"
NFT_FAMILY = "inet"
NFT_TABLE = "netfabric"
DEFAULT_MTU = 1500
IP_FORWARD = "net/ipv4/ip_forward"
IP6_FORWARD = "net/ipv6/conf/all/forwarding"


def bridge_name(network_id: str) -> str:
    return BRIDGE_PREFIX + short_id(network_id, 8)


def host_veth_name(endpoint_id: str) -> str:
    return VETH_PREFIX + short_id(endpoint_id, 11)


def render_nft(networks: Sequence[Network]) -> str:
    """The body of our table for these bridge networks (sorted, so stable)."""
    forward: list[str] = []
    nat: list[str] = []
    for net in sorted(networks, key=lambda n: n.id):
        br = bridge_name(net.id)
        forward.append(f'iifname "{br}" oifname "{BRIDGE_PREFIX}*" oifname != "{br}" drop')
        if net.internal:
            forward.append(f'iifname "{br}" oifname != "{br}" drop')
            forward.append(f'oifname "{br}" iifname != "{br}" drop')
            continue
        for sub in net.subnets:
            cidr = ipaddress.ip_network(sub.cidr, strict=False)
            fam = "ip" if cidr.version == 4 else "ip6"
            nat.append(f'{fam} saddr {cidr} oifname != "{br}" masquerade')
    lines = ["\tchain forward {",
             "\t\ttype filter hook forward priority filter; policy accept;",
             *(f"\t\t{r}" for r in forward), "\t}",
             "\tchain postrouting {",
             "\t\ttype nat hook postrouting priority srcnat; policy accept;",
             *(f"\t\t{r}" for r in nat), "\t}"]
    return "\n".join(lines)


def network_side(network: Network) -> list[Resource]:
    br = bridge_name(network.id)
    out: list[Resource] = [Bridge(None, br, network_mtu(network) or DEFAULT_MTU)]
    out += [Addr(None, br, cidr) for cidr in gateway_cidrs(network)]
    return out


def host_side(networks: Sequence[Network]) -> list[Resource]:
    """Forwarding sysctls and the nft table; nothing at all without networks."""
    if not networks:
        return []
    out: list[Resource] = [Sysctl(None, IP_FORWARD, "1")]
    if any(ipaddress.ip_network(s.cidr, strict=False).version == 6
           for n in networks for s in n.subnets):
        out.append(Sysctl(None, IP6_FORWARD, "1"))
    body = render_nft(networks)
    out.append(NftTable(None, NFT_FAMILY, NFT_TABLE, nft.digest(body), body))
    return out


def endpoint_side(network: Network, local: LocalEndpoint) -> list[Resource]:
    mtu = network_mtu(network) or DEFAULT_MTU
    return sandbox_side(network, local, link_netns=None, master=bridge_name(network.id),
                        mtu=mtu, default_route=not network.internal and local.ifname == "eth0")


def desired_bridges(networks: Sequence[Network],
                    endpoints: Mapping[str, Iterable[LocalEndpoint]]) -> list[Resource]:
    """Everything the bridge networks of this host need."""
    out = host_side(networks)
    for net in networks:
        out += network_side(net)
        for local in endpoints.get(net.id, ()):
            out += endpoint_side(net, local)
    return out


@dataclass
class _NetState:
    network: Network
    locals: dict[str, LocalEndpoint]


class BridgeDriver:
    """Bridge networks on one host (``host_netns``; ``None``: this process's netns).

    Methods block: call them from an executor thread, not the event loop.
    """

    def __init__(self, *, host_netns: str | None, kernel: Kernel | None = None) -> None:
        self._own_kernel = kernel is None
        self.kernel = kernel or Kernel(host_netns=host_netns)
        self._nets: dict[str, _NetState] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------- public API

    def create_network(self, network: Network) -> None:
        """Make the bridge, its gateway addresses and policy; idempotent."""
        if network.driver != Driver.BRIDGE:
            raise InvalidArgument(f"network {network.name} is not a bridge network")
        with self._lock:
            before = self._nets.get(network.id)
            self._nets[network.id] = _NetState(network, before.locals if before else {})
            try:
                self._sync_network(network.id)
            except BaseException:
                if before is None:
                    del self._nets[network.id]
                else:
                    self._nets[network.id] = before
                self._rollback_network(network.id)
                raise

    def delete_network(self, network_id: str) -> None:
        """Remove a network's bridge and rules; refused while endpoints remain."""
        with self._lock:
            st = self._nets.get(network_id)
            if st is None:
                return
            if st.locals:
                raise InUse(f"network {st.network.name} has {len(st.locals)} endpoint(s)")
            del self._nets[network_id]
            self._sync_network(network_id)

    def attach(self, network: Network, endpoint: Endpoint, *, sandbox_netns: str | None,
               ifname: str = "eth0") -> Attachment:
        """Plug ``endpoint`` into ``sandbox_netns`` as ``ifname`` (creating the network if
        needed); idempotent. A failure undoes this call's work.

        ``sandbox_netns=None`` (or the host netns itself) parks the inner end in the host
        netns as ``ifname``, unconfigured, for a runtime to take (Docker's Join)."""
        if endpoint.network_id != network.id:
            raise InvalidArgument(f"endpoint {endpoint.id} is not on network {network.id}")
        if network.id not in self._nets:
            self.create_network(network)
        local = LocalEndpoint(endpoint, parked_or(sandbox_netns, self.kernel.host_netns),
                              check_ifname(ifname),
                              host_veth_name(endpoint.id))
        mac_for(endpoint)
        with self._lock:
            st = self._nets[network.id]
            st.locals[endpoint.id] = local
            want = endpoint_side(st.network, local)
            try:
                self.kernel.ensure(want)  # idempotent creates: the hot path reads nothing
            except BaseException:
                del st.locals[endpoint.id]
                with contextlib.suppress(DataplaneError):  # report the original error
                    self._converge([self._veth_scope(local)], [])
                raise
            return attachment(st.network, local, network_mtu(st.network) or DEFAULT_MTU)

    def detach(self, network_id: str, endpoint_id: str) -> None:
        """Unplug an endpoint; unknown endpoints are a no-op."""
        with self._lock:
            st = self._nets.get(network_id)
            if st is None or endpoint_id not in st.locals:
                return
            local = st.locals.pop(endpoint_id)
            self._converge([self._veth_scope(local)], [])

    def reconcile(self) -> int:
        """Repair everything of ours in the host netns and the sandboxes; returns ops run."""
        with self._lock:
            nets = [st.network for st in self._nets.values()]
            want = desired_bridges(nets, {k: st.locals.values() for k, st in self._nets.items()})
            scopes = [self._host_scope(links=None)]
            for st in self._nets.values():
                scopes += [self._sandbox_scope(lo) for lo in st.locals.values() if not lo.parked]
            return self._converge(scopes, want)

    def close(self) -> None:
        if self._own_kernel:
            self.kernel.close()

    def __enter__(self) -> BridgeDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------- internals

    def _host_scope(self, *, links: frozenset[str] | None) -> Scope:
        sysctls = (IP_FORWARD, IP6_FORWARD)
        table = ((NFT_FAMILY, NFT_TABLE),)
        if links is None:
            return Scope(None, links=frozenset(), prefixes=(BRIDGE_PREFIX, VETH_PREFIX),
                         nft_tables=table, sysctls=sysctls)
        return Scope(None, links=links, phases=frozenset({Phase.BRIDGE, Phase.ADDR}),
                     nft_tables=table, sysctls=sysctls)

    @staticmethod
    def _sandbox_scope(local: LocalEndpoint) -> Scope:
        assert local.sandbox is not None
        return Scope(local.sandbox, links=frozenset({local.ifname}),
                     phases=frozenset({Phase.ADDR, Phase.ROUTE}))

    @staticmethod
    def _veth_scope(local: LocalEndpoint) -> Scope:
        return Scope(None, links=frozenset({local.host_ifname}), phases=frozenset({Phase.VETH}))

    def _sync_network(self, network_id: str) -> None:
        nets = [st.network for st in self._nets.values()]
        want = host_side(nets)
        if network_id in self._nets:
            want += network_side(self._nets[network_id].network)
        scope = self._host_scope(links=frozenset({bridge_name(network_id)}))
        observed = self.kernel.observe([scope], desired=want)
        # Sysctls we do not want any more are left as they are (they are never "ours").
        keys = {r.key for r in want}
        observed = tuple(r for r in observed if not isinstance(r, Sysctl) or r.key in keys)
        self.kernel.apply(diff(want, observed))

    def _rollback_network(self, network_id: str) -> None:
        with contextlib.suppress(DataplaneError):  # report the original error
            self._sync_network(network_id)

    def _converge(self, scopes: list[Scope], want: list[Resource]) -> int:
        observed = self.kernel.observe(scopes, desired=want)
        keys = {r.key for r in want}
        observed = tuple(r for r in observed if not isinstance(r, Sysctl) or r.key in keys)
        return self.kernel.apply(diff(want, observed))
