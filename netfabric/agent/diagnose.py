"""The reads behind `netfabric doctor SOURCE TARGET`: the agent's state, gossip's view, the
DNS records and the overlay's kernel objects gathered into
:class:`~netfabric.agent.doctor.PathFacts` (the checks themselves are pure, in
:mod:`netfabric.agent.doctor`)."""

from __future__ import annotations

import asyncio
import ipaddress
import json

from netfabric.agent.context import AgentContext
from netfabric.agent.doctor import HostFacts, PathFacts, dropping_rules
from netfabric.agent.ports import DnsStats, KernelInspect
from netfabric.agent.state import SandboxRecord
from netfabric.agent.views import endpoint
from netfabric.agent.vxprobe import probe
from netfabric.dataplane.reconcile import diff
from netfabric.dataplane.resources import Create, Delete, Fdb, Neigh, Resource, Update, Vxlan
from netfabric.model import Driver, Endpoint

__all__ = ["gather_host", "gather_path"]


def _is_addr(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _names(e: Endpoint, target: str) -> bool:
    if _is_addr(target):
        return any(ip and ipaddress.ip_address(ip) == ipaddress.ip_address(target)
                   for ip in (e.ipv4, e.ipv6))
    t = target.lower()
    return e.sandbox.lower() == t or t in (a.lower() for a in e.aliases)


def _link_drift(desired: list[Resource], observed: tuple[Resource, ...]) -> list[str]:
    have = {r.key: r for r in observed}
    out = []
    for r in desired:
        if isinstance(r, Fdb | Neigh):
            continue
        cur = have.get(r.key)
        if cur is None:
            out.append(f"missing {type(r).__name__.lower()} {getattr(r, 'name', r.key)}")
        elif cur != r:
            out.append(f"{type(r).__name__.lower()} {getattr(r, 'name', r.key)} differs")
    return out


async def _ruleset() -> object:
    """This netns's nftables ruleset as JSON ({} when nft is missing or fails)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "nft", "-j", "list", "ruleset", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        parsed: object = json.loads(out) if proc.returncode == 0 else {}
        return parsed
    except (OSError, TimeoutError, ValueError):
        return {}


async def gather_path(ctx: AgentContext, sb: SandboxRecord, target: str) -> PathFacts:
    me = ctx.ledger.state.node_id
    nets = {n.id: n for n in ctx.ledger.networks()}
    src_nets = {ep.network_id: (nets[ep.network_id].name if ep.network_id in nets
                                else ep.network) for ep in sb.endpoints}
    cands: list[Endpoint] = []
    for other in ctx.ledger.state.sandboxes.values():
        if other.id == sb.id:
            continue
        cands += [endpoint(other, ep, node_id=me, vtep=ctx.address or "")
                  for ep in other.endpoints]
    for nid in nets:
        cands += [e for e in ctx.mesh.endpoints(nid) if e.node_id != me]
    found = tuple(e for e in cands if _names(e, target))
    is_name = not _is_addr(target)
    dns = None
    if is_name and isinstance(ctx.names, DnsStats):
        dns = ctx.names.lookup(sorted(src_nets), target)
    facts: dict[str, object] = {}
    shared = [e for e in found if e.network_id in src_nets]
    if shared and shared[0].network_id in nets:
        t = shared[0]
        net = nets[t.network_id]
        facts["overlay"] = net.driver is Driver.OVERLAY
        if net.driver is Driver.OVERLAY and isinstance(ctx.kernel, KernelInspect):
            desired, observed, under = await ctx.thread(ctx.kernel.inspect, net)
            mac = t.mac.lower()
            ip = t.ipv4 or t.ipv6 or ""
            facts["fdb"] = tuple(sorted(r.dst for r in observed
                                        if isinstance(r, Fdb) and r.mac.lower() == mac))
            facts["neighbour"] = tuple(sorted(r.mac.lower() for r in observed
                                              if isinstance(r, Neigh) and ip and
                                              ipaddress.ip_address(r.ip)
                                              == ipaddress.ip_address(ip)))
            facts["overlay_mtu"] = next((r.mtu for r in desired if isinstance(r, Vxlan)), 0)
            facts["underlay_mtu"] = under
            src = next((ep for ep in sb.endpoints if ep.network_id == t.network_id), None)
            remote = t.node_id != me and bool(t.vtep)
            if remote and src is not None and src.ipv4 and t.ipv4 and net.vni is not None:
                facts["underlay_probe"] = await probe(
                    vtep=t.vtep, port=ctx.config.vxlan_port, vni=net.vni, src_mac=src.mac,
                    src_ip=src.ipv4, dst_mac=t.mac, dst_ip=t.ipv4)
            facts["vxlan_port"] = ctx.config.vxlan_port
            if remote:
                facts["nft_drops"] = dropping_rules(await _ruleset(), port=ctx.config.vxlan_port,
                                                    addrs={t.vtep})
            drift = _link_drift(desired, observed)
            facts["local_link"] = not drift
            facts["local_link_detail"] = ("; ".join(drift[:4]) if drift
                                          else "veth, bridge and vxlan as they must be")
    members = {m.node_id: "alive" if m.alive else "dead" for m in ctx.mesh.members()
               if m.node_id != me}
    addrs = {m.node_id: m.address for m in ctx.mesh.members()}
    return PathFacts(source=sb.name, target=target, source_networks=src_nets,
                     source_ip={ep.network_id: ep.ipv4 or ep.ipv6 or "" for ep in sb.endpoints},
                     target_endpoints=found,
                     network_names={nid: n.name for nid, n in nets.items()},
                     target_is_name=is_name, dns_answer=dns, this_node=me,
                     members=members, member_addrs=addrs, **facts)  # type: ignore[arg-type]


def _describe(op: object) -> str:
    if isinstance(op, Create):
        return f"missing {_what(op.new)}"
    if isinstance(op, Delete):
        return f"extra {_what(op.old)}"
    if isinstance(op, Update):
        return f"stale {_what(op.old)} (want {_what(op.new)})"
    return str(op)


def _what(r: Resource) -> str:
    if isinstance(r, Fdb):
        return f"fdb {r.mac} dst {r.dst}"
    if isinstance(r, Neigh):
        return f"neighbour {r.ip} lladdr {r.mac}"
    return f"{type(r).__name__.lower()} {getattr(r, 'name', '')}".strip()


async def gather_host(ctx: AgentContext) -> HostFacts:
    """Every overlay of this host with a local endpoint: the kernel against the desired
    state from gossip, and gossip's remote names against the DNS records."""
    me = ctx.ledger.state.node_id
    used = {ep.network_id for sb in ctx.ledger.state.sandboxes.values() for ep in sb.endpoints}
    drift: dict[str, tuple[str, ...]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    for net in ctx.ledger.networks():
        if net.id not in used or net.driver is not Driver.OVERLAY:
            continue
        if isinstance(ctx.kernel, KernelInspect):
            desired, observed, _ = await ctx.thread(ctx.kernel.inspect, net)
            drift[net.name] = tuple(_describe(op) for op in diff(desired, observed))
        gone = []
        if isinstance(ctx.names, DnsStats):
            for e in ctx.mesh.endpoints(net.id):
                ip = e.ipv4 or e.ipv6
                if e.node_id == me or not ip:
                    continue
                answer = ctx.names.lookup([net.id], e.sandbox)
                if answer is None or ip not in answer:
                    gone.append(e.sandbox)
        missing[net.name] = tuple(sorted(gone))
    return HostFacts(drift=drift, missing_names=missing)
