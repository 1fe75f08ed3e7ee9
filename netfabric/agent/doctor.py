"""`netfabric doctor SOURCE TARGET`: the checks of one path, pure.

The agent gathers what it observes (:class:`PathFacts`: its state, gossip's view, the DNS
records and the kernel's objects read in the adapter) and :func:`check_path` walks the path
in order, each step ok or what is wrong and the fix. A step that cannot be judged because an
earlier one failed is skipped, so the first failing step names the break."""

from __future__ import annotations

import msgspec

from netfabric.api.types import DoctorReport, DoctorStep
from netfabric.model import Endpoint

__all__ = ["VXLAN_OVERHEAD", "DoctorReport", "DoctorStep", "HostFacts", "PathFacts", "check_host",
           "check_path", "dropping_rules"]

VXLAN_OVERHEAD = 50


class PathFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the agent on SOURCE's host observes about the path to TARGET."""

    source: str
    target: str
    source_networks: dict[str, str]
    """Network id -> name, for SOURCE's endpoints."""
    source_ip: dict[str, str] = msgspec.field(default_factory=dict)
    """Network id -> SOURCE's address on it."""
    target_endpoints: tuple[Endpoint, ...] = ()
    """Every endpoint this host knows that TARGET names (any network)."""
    network_names: dict[str, str] = msgspec.field(default_factory=dict)
    target_is_name: bool = True
    dns_answer: tuple[str, ...] | None = None
    """What TARGET resolves to in SOURCE's DNS scope (None: no record)."""
    this_node: str = ""
    local_link: bool = True
    """SOURCE's veth and the network's bridge exist and are up."""
    local_link_detail: str = ""
    fdb: tuple[str, ...] = ()
    """VTEPs the vxlan's FDB sends TARGET's MAC to (on the shared overlay)."""
    neighbour: tuple[str, ...] = ()
    """MACs the vxlan's neighbour entries give TARGET's address."""
    overlay: bool = True
    overlay_mtu: int = 0
    underlay_mtu: int = 0
    nft_drops: tuple[str, ...] = ()
    """This host's nftables rules that drop or reject the path's underlay packets."""
    underlay_probe: bool | None = None
    """Whether the VXLAN probe to TARGET's VTEP was answered (None: not run)."""
    vxlan_port: int = 4789
    members: dict[str, str] = msgspec.field(default_factory=dict)
    """Node id -> ``alive``, ``suspect``, ``dead`` or ``left`` (this node absent)."""
    member_addrs: dict[str, str] = msgspec.field(default_factory=dict)


def _fail(name: str, detail: str, fix: str) -> DoctorStep:
    return DoctorStep(name=name, status="fail", detail=detail, fix=fix)


def _ok(name: str, detail: str) -> DoctorStep:
    return DoctorStep(name=name, status="ok", detail=detail)


def _skip(name: str, why: str) -> DoctorStep:
    return DoctorStep(name=name, status="skip", detail=why)


_ORDER = ("network", "dns", "local-link", "fdb", "neighbour", "mtu", "nftables", "underlay",
          "peer-agent")


def check_path(f: PathFacts) -> DoctorReport:
    steps: list[DoctorStep] = []
    shared = [e for e in f.target_endpoints if e.network_id in f.source_networks]
    dead = {n: s for n, s in f.members.items() if s != "alive"}

    def finish(reason: str) -> DoctorReport:
        done = {s.name for s in steps}
        steps.extend(_skip(n, reason) for n in _ORDER if n not in done)
        return DoctorReport(source=f.source, target=f.target, steps=tuple(steps))

    # 1. a shared network (the DNS scope)
    src_nets = ", ".join(sorted(f.source_networks.values())) or "no network"
    if not shared:
        if f.target_endpoints:
            theirs = sorted({f.network_names.get(e.network_id, e.network_id)
                             for e in f.target_endpoints})
            steps.append(_fail("network", f"{f.source} is on {src_nets}; {f.target} is on "
                               f"{', '.join(theirs)}: they share no network",
                               f"netfabric network connect {theirs[0]} {f.source}"))
            return finish("no shared network")
        if dead:
            node, state = sorted(dead.items())[0]
            steps.append(_skip("network", f"{f.target} is in no table this host holds"))
            steps.append(_fail("peer-agent", f"the agent of node {node} "
                               f"({f.member_addrs.get(node, '?')}) is {state} in membership: "
                               "its endpoints were withdrawn",
                               f"start `netfabric agent` on {node} again (or `netfabric node "
                               f"rm {node}` if it is gone for good)"))
            return finish("the peer agent is not alive")
        steps.append(_fail("network", f"no endpoint named {f.target} on {src_nets} "
                           "(nor anywhere this host sees)",
                           f"check the name, or `netfabric network connect NET {f.target}`"))
        return finish("target not found")
    target = shared[0]
    net_name = f.source_networks[target.network_id]
    steps.append(_ok("network", f"both on {net_name}"))
    # 2. the name's record on SOURCE's host
    if f.target_is_name:
        want = target.ipv4 or target.ipv6 or ""
        if f.dns_answer is None:
            steps.append(_fail("dns", f"{f.target} has no record in {f.source}'s scope",
                               "netfabric doctor --repair (re-publishes the records)"))
        elif want not in f.dns_answer:
            steps.append(_fail("dns", f"{f.target} resolves to {', '.join(f.dns_answer)}, "
                               f"not {want}", "netfabric doctor --repair"))
        else:
            steps.append(_ok("dns", f"{f.target} -> {want}"))
    else:
        steps.append(_ok("dns", "target given as an address"))
    # 3. the local veth and bridge
    if f.local_link:
        steps.append(_ok("local-link", f.local_link_detail or "veth and bridge up"))
    else:
        steps.append(_fail("local-link", f.local_link_detail, "netfabric doctor --repair"))
    remote = bool(target.vtep) and target.node_id != f.this_node
    if not f.overlay or not remote:
        for name in ("fdb", "neighbour", "mtu", "nftables", "underlay"):
            steps.append(_ok(name, "same host" if not remote else "not an overlay"))
    else:
        ip = target.ipv4 or target.ipv6 or ""
        mac = target.mac
        # 4. FDB and neighbour entries against what gossip says
        if list(f.fdb) == [target.vtep]:
            steps.append(_ok("fdb", f"{mac} -> VTEP {target.vtep}"))
        elif not f.fdb:
            steps.append(_fail("fdb", f"no FDB entry for {mac} (gossip: behind VTEP "
                               f"{target.vtep})", "netfabric doctor --repair"))
        else:
            steps.append(_fail("fdb", f"FDB sends {mac} to {', '.join(f.fdb)}; gossip says "
                               f"{target.vtep}", "netfabric doctor --repair"))
        if list(f.neighbour) == [mac]:
            steps.append(_ok("neighbour", f"{ip} -> {mac}"))
        elif not f.neighbour:
            steps.append(_fail("neighbour", f"no neighbour entry for {ip} (gossip: {mac})",
                               "netfabric doctor --repair"))
        else:
            steps.append(_fail("neighbour", f"stale neighbour entry: {ip} -> "
                               f"{', '.join(f.neighbour)}; gossip says {mac}",
                               "netfabric doctor --repair"))
        # 5. MTU along the path
        need = f.overlay_mtu + VXLAN_OVERHEAD
        if f.underlay_mtu and f.overlay_mtu and f.underlay_mtu < need:
            steps.append(_fail("mtu", f"overlay MTU {f.overlay_mtu} needs {need} on the "
                               f"underlay; the route to {target.vtep} has {f.underlay_mtu}",
                               f"raise the underlay MTU to {need}, or create the network "
                               f"with -o mtu={f.underlay_mtu - VXLAN_OVERHEAD}"))
        else:
            steps.append(_ok("mtu", f"overlay {f.overlay_mtu}, underlay {f.underlay_mtu}"))
        # 6. this host's nftables rules that drop it
        if f.nft_drops:
            steps.append(_fail("nftables", f"{len(f.nft_drops)} rule(s) here drop the VXLAN "
                               f"packets to {target.vtep}: " + "; ".join(f.nft_drops[:3]),
                               "delete them: " + f.nft_drops[0].split(": ", 1)[0]))
        else:
            steps.append(_ok("nftables", "no rule here drops UDP "
                             f"{f.vxlan_port} or {target.vtep}"))
        # 7. the peer's VTEP over the underlay: a VXLAN probe answered from the far side
        port = f.vxlan_port
        if f.underlay_probe is None:
            steps.append(_ok("underlay", "not probed (no IPv4 address on both ends)"))
        elif f.underlay_probe:
            steps.append(_ok("underlay", f"VXLAN probe to {target.vtep}:{port} answered"))
        else:
            steps.append(_fail("underlay", f"no answer over UDP {port} from VTEP "
                               f"{target.vtep} (gossip still hears it): UDP {port} is "
                               "dropped on the way or on the peer",
                               f"allow UDP {port} between the hosts (nftables/iptables, "
                               "cloud security groups) in both directions"))
    # 8. the peer's agent alive in membership
    if remote:
        state = f.members.get(target.node_id, "unknown")
        if state == "alive":
            steps.append(_ok("peer-agent", f"node {target.node_id[:12]} alive"))
        else:
            steps.append(_fail("peer-agent", f"the agent of node {target.node_id[:12]} is "
                               f"{state} in membership",
                               "start `netfabric agent` on that node again"))
    else:
        steps.append(_ok("peer-agent", "same host"))
    return DoctorReport(source=f.source, target=f.target, steps=tuple(steps))


class HostFacts(msgspec.Struct, frozen=True, kw_only=True):
    """Per network of this host: the kernel's drift from what the cluster's view needs
    (one line per object missing, stale or extra), and remote names missing from DNS."""

    drift: dict[str, tuple[str, ...]]
    missing_names: dict[str, tuple[str, ...]]
    repaired: bool = False


def check_host(f: HostFacts) -> DoctorReport:
    """`netfabric doctor` with no arguments: one kernel and one DNS step per network."""
    steps: list[DoctorStep] = []
    fix = "" if f.repaired else "netfabric doctor --repair"
    for net in sorted(set(f.drift) | set(f.missing_names)):
        drift = f.drift.get(net, ())
        if drift:
            steps.append(_fail(f"kernel:{net}", f"{len(drift)} object(s) off: "
                               + "; ".join(drift[:5]), fix))
        else:
            steps.append(_ok(f"kernel:{net}", "FDB, neighbours, links as gossip says"))
        missing = f.missing_names.get(net, ())
        if missing:
            steps.append(_fail(f"dns:{net}", "no record for " + ", ".join(missing[:5]), fix))
        else:
            steps.append(_ok(f"dns:{net}", "every remote endpoint's name resolves"))
    return DoctorReport(source="host", target="cluster", steps=tuple(steps))


def dropping_rules(ruleset: object, *, port: int, addrs: set[str]) -> tuple[str, ...]:
    """Rules of an ``nft -j list ruleset`` document with a drop or reject verdict that
    match UDP ``port`` or one of ``addrs``: ``"nft delete rule FAMILY TABLE CHAIN handle N:
    WHAT"`` each."""
    out: list[str] = []
    items = ruleset.get("nftables", []) if isinstance(ruleset, dict) else []
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict):
            continue
        exprs = rule.get("expr") or []
        verdict = any(isinstance(e, dict) and ("drop" in e or "reject" in e) for e in exprs)
        if not verdict:
            continue
        hits = []
        for e in exprs:
            m = e.get("match") if isinstance(e, dict) else None
            if not isinstance(m, dict) or m.get("op", "==") not in ("==", "in"):
                continue
            left, right = m.get("left"), m.get("right")
            field = left.get("payload", {}) if isinstance(left, dict) else {}
            name = f"{field.get('protocol')} {field.get('field')}"
            values = right.get("set", []) if isinstance(right, dict) else [right]
            if name in ("udp dport", "udp sport", "th dport") and port in values:
                hits.append(f"{name} {port}")
            elif name in ("ip daddr", "ip saddr") and addrs & {str(v) for v in values}:
                hits.append(f"{name} {sorted(addrs & {str(v) for v in values})[0]}")
        if hits:
            where = (f"nft delete rule {rule.get('family')} {rule.get('table')} "
                     f"{rule.get('chain')} handle {rule.get('handle')}")
            out.append(f"{where}: {', '.join(hits)}")
    return tuple(out)
