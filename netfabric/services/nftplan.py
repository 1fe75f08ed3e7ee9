"""The nftables ruleset of the service datapath, and the smallest change between two.

Modelled on kube-proxy's nftables mode (``pkg/proxy/nftables/proxier.go``). One table per
netns::

    map service-ips    { ipv4_addr . inet_proto . inet_service : verdict }  VIP -> svc chain
    map service-ports  { inet_proto . inet_service : verdict }   published -> svc chain
    map service-vips   { ipv4_addr : verdict }   every port of a VIP (swarm's VIPs)
    map no-endpoint-*  the same keys -> goto reject-chain (no target: refuse at once)

    nat-prerouting / nat-output (dstnat)  -> services:
        ip daddr . meta l4proto . th dport vmap @service-ips        (the one dispatch rule)
        fib daddr type local ... meta l4proto . th dport vmap @service-ports
        ip daddr vmap @service-vips
    svc-HASH-key:  [jump mark-for-masquerade]
                   numgen random mod N vmap { 0 : goto ep-HASH-ip-port, ... }
    ep-HASH-ip-port: meta l4proto tcp dnat to ip:port
    nat-postrouting (srcnat) -> masquerading: marked packets are masqueraded (fully-random)
    filter-input/forward/output (dstnat-10): ct state new -> endpoints-check (no-endpoint maps)

:func:`render_full` writes the whole table (first sync, or after a failure left the kernel
state unknown); :func:`render_delta` writes one transaction that touches only the chains and
map elements of load balancers that changed, so the cost of a change does not grow with the
number of services. Both are pure functions of values.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from netfabric.errors import InvalidArgument
from netfabric.services.lb import LoadBalancer, Proto, Target

__all__ = [
    "DEFAULT_TABLE",
    "MASQ_MARK",
    "Delta",
    "endpoint_chain",
    "index",
    "render_delta",
    "render_full",
    "service_chain",
]

DEFAULT_TABLE = "netfabric-svc"
MASQ_MARK = 0x4000
"""Packet mark bit that asks ``masquerading`` for source NAT (kube-proxy's value)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_./-]")
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,30}$")
_NAME_MAX = 120


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:10]


def service_chain(key: str) -> str:
    """The chain of load balancer ``key``: a hash (unique) and the key (readable)."""
    return f"svc-{_hash(key)}-{_UNSAFE.sub('_', key)}"[:_NAME_MAX]


def endpoint_chain(key: str, proto: Proto | None, target: Target) -> str:
    """The chain that sends one load balancer's connections to one target (the protocol is
    in the hash: a port that changes protocol gets new chains, never a half-rewritten one)."""
    seed = f"{key}|{proto or 'any'}"
    return f"ep-{_hash(seed)}-{target.ip}-{target.port or 'any'}"


def index(lbs: Iterable[LoadBalancer]) -> dict[str, LoadBalancer]:
    """Load balancers by key; two with one key, or two catching the same frontend, are an
    :class:`InvalidArgument`."""
    out: dict[str, LoadBalancer] = {}
    seen: dict[str, str] = {}
    for lb in lbs:
        if lb.key in out:
            raise InvalidArgument(f"two load balancers named {lb.key}")
        for fe in _frontends(lb):
            if fe in seen:
                raise InvalidArgument(f"{lb.key} and {seen[fe]} both catch {fe}")
            seen[fe] = lb.key
        out[lb.key] = lb
    return out


def _frontends(lb: LoadBalancer) -> list[str]:
    if lb.all_ports:
        return list(lb.vips)
    fes = [f"{vip} . {lb.proto} . {lb.port}" for vip in lb.vips]
    if lb.published:
        fes.append(f"{lb.proto} . {lb.port}")
    return fes


def _elements(lb: LoadBalancer) -> set[tuple[str, str]]:
    """(map, "key : verdict") pairs this load balancer puts into the dispatch maps."""
    if lb.targets:
        verdict, ips, ports = f"goto {service_chain(lb.key)}", "service-ips", "service-ports"
        vips = "service-vips"
    else:
        verdict, ips, ports = "goto reject-chain", "no-endpoint-services", "no-endpoint-ports"
        vips = "no-endpoint-vips"
    if lb.all_ports:
        return {(vips, f"{vip} : {verdict}") for vip in lb.vips}
    out = {(ips, f"{vip} . {lb.proto} . {lb.port} : {verdict}") for vip in lb.vips}
    if lb.published:
        out.add((ports, f"{lb.proto} . {lb.port} : {verdict}"))
    return out


def _base(table: str) -> str:
    mark = f"0x{MASQ_MARK:x}"
    return f"""table ip {table} {{
\tmap service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
\tmap service-ports {{ type inet_proto . inet_service : verdict; }}
\tmap no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; }}
\tmap no-endpoint-ports {{ type inet_proto . inet_service : verdict; }}
\tmap service-vips {{ type ipv4_addr : verdict; }}
\tmap no-endpoint-vips {{ type ipv4_addr : verdict; }}
\tchain reject-chain {{
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}}
\tchain endpoints-check {{
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services
\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-ports
\t\tip daddr vmap @no-endpoint-vips
\t}}
\tchain filter-input {{
\t\ttype filter hook input priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}}
\tchain filter-forward {{
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}}
\tchain filter-output {{
\t\ttype filter hook output priority -110; policy accept;
\t\tct state new jump endpoints-check
\t}}
\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-ports
\t\tip daddr vmap @service-vips
\t}}
\tchain nat-prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}}
\tchain nat-output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}}
\tchain mark-for-masquerade {{
\t\tmeta mark set meta mark | {mark}
\t}}
\tchain masquerading {{
\t\tmeta mark & {mark} == 0 return
\t\tmeta mark set meta mark ^ {mark}
\t\tmasquerade fully-random
\t}}
\tchain nat-postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tjump masquerading
\t}}
}}
"""


def _service_rules(table: str, lb: LoadBalancer) -> list[str]:
    chain = service_chain(lb.key)
    lines = []
    if lb.masquerade:
        lines.append(f"add rule ip {table} {chain} jump mark-for-masquerade")
    arms = ", ".join(f"{i} : goto {endpoint_chain(lb.key, lb.proto, t)}"
                     for i, t in enumerate(lb.targets))
    lines.append(f"add rule ip {table} {chain} numgen random mod {len(lb.targets)} "
                 f"vmap {{ {arms} }}")
    return lines


def _chains(lb: LoadBalancer | None) -> dict[str, Target]:
    """The endpoint chains of ``lb`` by name (none without targets)."""
    if lb is None:
        return {}
    return {endpoint_chain(lb.key, lb.proto, t): t for t in lb.targets}


def _endpoint_rule(table: str, chain: str, lb: LoadBalancer, target: Target) -> str:
    if target.port is None:
        return f"add rule ip {table} {chain} dnat to {target.ip}"
    return (f"add rule ip {table} {chain} meta l4proto {lb.proto} "
            f"dnat to {target.ip}:{target.port}")


def _check_table(table: str) -> None:
    if not _TABLE.match(table):
        raise InvalidArgument(f"bad nft table name {table!r}")


@dataclass(frozen=True, slots=True)
class Delta:
    """One nft transaction and what it changes.

    ``removed_targets`` lists (load balancer as it was, target) pairs that no longer
    receive its traffic: the adapter deletes their UDP conntrack entries after applying.
    """

    script: str
    changed: tuple[str, ...]
    removed_targets: tuple[tuple[LoadBalancer, Target], ...]

    @property
    def empty(self) -> bool:
        return not self.script


def render_full(table: str, lbs: Mapping[str, LoadBalancer]) -> str:
    """The whole table holding ``lbs``, replacing whatever table of that name exists."""
    _check_table(table)
    head = f"table ip {table}\ndelete table ip {table}\n{_base(table)}"
    return head + render_delta(table, {}, lbs).script


def render_delta(table: str, old: Mapping[str, LoadBalancer],
                 new: Mapping[str, LoadBalancer]) -> Delta:
    """The transaction taking the table from ``old`` to ``new`` (as :func:`index` built
    them). Chains are added before the elements that point to them, and deleted after."""
    _check_table(table)
    add_chains: list[str] = []
    rules: list[str] = []
    del_elements: list[str] = []
    add_elements: list[str] = []
    drop_chains: list[str] = []
    changed: list[str] = []
    removed: list[tuple[LoadBalancer, Target]] = []

    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        changed.append(key)
        was = _chains(before)
        now = _chains(after)
        chain = service_chain(key)
        if after is not None and now:
            if was:
                rules.append(f"flush chain ip {table} {chain}")
            else:
                add_chains.append(f"add chain ip {table} {chain}")
            for name in sorted(now.keys() - was.keys()):
                add_chains.append(f"add chain ip {table} {name}")
                rules.append(_endpoint_rule(table, name, after, now[name]))
            rules.extend(_service_rules(table, after))
        if before is not None:
            removed.extend((before, was[name]) for name in sorted(was.keys() - now.keys()))
        els_before = _elements(before) if before else set()
        els_after = _elements(after) if after else set()
        for m, el in sorted(els_before - els_after):
            del_elements.append(f"delete element ip {table} {m} {{ {el.split(' : ')[0]} }}")
        for m, el in sorted(els_after - els_before):
            add_elements.append(f"add element ip {table} {m} {{ {el} }}")
        if was and not now:
            drop_chains.append(f"flush chain ip {table} {chain}")
        for name in sorted(was.keys() - now.keys()):
            drop_chains.append(f"delete chain ip {table} {name}")
        if was and not now:
            drop_chains.append(f"delete chain ip {table} {chain}")
    lines = [*add_chains, *rules, *del_elements, *add_elements, *drop_chains]
    return Delta(script="".join(line + "\n" for line in lines), changed=tuple(changed),
                 removed_targets=tuple(removed))
