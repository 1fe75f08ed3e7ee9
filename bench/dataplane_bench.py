"""Dataplane benchmark: attach latency and overlay throughput, each against a same-run baseline.

    sudo .venv/bin/python bench/dataplane_bench.py --json

Attach latency: N endpoints (netns, veth into it, MTU, MAC, address, up, default route)
through ``OverlayDriver.attach`` against the same steps three ways: through pyroute2 in
process (what a Python user would write; the fair baseline), through ``ip -batch`` (three
processes: netns add, one batch per side), and through six ``ip`` processes (mostly process
start-up, kept for the record).

Throughput: iperf3 TCP between two simulated hosts, three ways in the same run: the
overlay built by netfabric, the same kernel VXLAN plumbed by hand with ``ip``, and the raw
underlay; at underlay MTU 1500 and 9000. ``--gro`` turns GRO on for the simulated underlay
NICs (veths have it off by default, physical NICs on); ``--gro both`` (the default)
measures both in the same topology and takes the headline figures from GRO off.

Each simulated host is a lab machine (its own network, mount and PID namespaces, as a host
of its own); the driver runs inside it, in a process of this script started there, as the
agent would (the machine's netns named ``nf``, sandboxes under the machine's /run/netns).
Everything is removed at exit whatever happens; traffic flows only between the machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyroute2 import IPRoute, NetNS
from pyroute2 import netns as pyroute2_netns

from bench.benchlib import emit, held_inside, hold, inside, iperf, load_average, run_main
from netfabric.drivers.overlay import BRIDGE_NF_SYSCTLS, OverlayDriver
from netfabric.lab.topology import Host, Topology
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.netns import name_own_netns

HOST_NETNS = "nf"
"""The name the driver's process gives its machine's netns, as the agent does."""


def sh(argv: Sequence[str], *, check: bool = True) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def overlay_net(vni: int, subnet: str = "10.40") -> Network:
    return Network(id=f"bench{vni:08d}", name=f"bench{vni}", driver=Driver.OVERLAY,
                   scope=Scope.SWARM, subnets=(SubnetSpec(f"{subnet}.0.0/16", f"{subnet}.0.1"),),
                   vni=vni)


def endpoint(net: Network, i: int, host: Host, subnet: str = "10.40") -> Endpoint:
    hi, lo = divmod(i + 2, 256)
    return Endpoint(id=f"{net.id}e{i}", network_id=net.id, sandbox=f"s{i}", node_id=host.name,
                    mac=f"02:42:0a:28:{hi:02x}:{lo:02x}", ipv4=f"{subnet}.{hi}.{lo}",
                    prefixlen=16, vtep=host.address)


# ---------------------------------------------------------------- attach latency

def bench_attach(n: int) -> dict[str, float]:
    """The attach figures, measured inside a one-machine lab."""
    with Topology.build(1, machines=True) as topo:
        (h1,) = topo.hosts
        result: dict[str, float] = inside(topo.machine(h1), __file__,
                                          ["--inside-attach", str(n), h1.address])
        return result


def attach_inside(n: int, address: str) -> dict[str, float]:
    """In the machine: the driver's attaches against the three baselines."""
    name_own_netns(HOST_NETNS)
    h1 = Host(name="h1", netns=HOST_NETNS, address=address, index=1, mtu=1500)
    prefix = "nfb"
    net = overlay_net(4242)
    with OverlayDriver(host_netns=h1.netns, advertise_addr=h1.address) as drv:
        # The network's netns, bridge and vxlan come with the first endpoint: not timed.
        warm = f"{prefix}-w"
        drv.kernel.ensure_netns(warm)
        drv.attach(net, endpoint(net, 0, h1), sandbox_netns=warm)
        ov = drv.netns_of(net.id)
        assert ov is not None
        ours: list[float] = []
        for i in range(1, n + 1):
            sb = f"{prefix}-a{i}"
            t0 = time.perf_counter()
            drv.kernel.ensure_netns(sb)
            drv.attach(net, endpoint(net, i, h1), sandbox_netns=sb)
            ours.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        noop = drv.reconcile()  # everything in place: a full read-back finds nothing to do
        reconcile_ms = (time.perf_counter() - t0) * 1e3
        assert noop == 0, f"reconcile after attach ran {noop} ops"
        cli: list[float] = []
        for i in range(1, n + 1):
            sb, veth = f"{prefix}-b{i}", f"vb{i}"
            ep = endpoint(net, n + i, h1)
            t0 = time.perf_counter()
            sh(["ip", "netns", "add", sb])
            sh(["ip", "-n", ov, "link", "add", veth, "mtu", "1450", "type", "veth", "peer",
                "name", "eth0", "mtu", "1450", "address", ep.mac, "netns", sb])
            sh(["ip", "-n", ov, "link", "set", veth, "master", "br0", "up"])
            sh(["ip", "-n", sb, "addr", "add", f"{ep.ipv4}/16", "dev", "eth0"])
            sh(["ip", "-n", sb, "link", "set", "eth0", "up"])
            sh(["ip", "-n", sb, "route", "add", "default", "via", "10.40.0.1"])
            cli.append((time.perf_counter() - t0) * 1e3)
        batch: list[float] = []
        for i in range(1, n + 1):
            sb, veth = f"{prefix}-c{i}", f"vc{i}"
            ep = endpoint(net, 2 * n + i, h1)
            t0 = time.perf_counter()
            sh(["ip", "netns", "add", sb])
            ip_batch(ov, [f"link add {veth} mtu 1450 type veth peer name eth0 mtu 1450 "
                          f"address {ep.mac} netns {sb}",
                          f"link set {veth} master br0 up"])
            ip_batch(sb, [f"addr add {ep.ipv4}/16 dev eth0", "link set eth0 up",
                          "route add default via 10.40.0.1"])
            batch.append((time.perf_counter() - t0) * 1e3)
    # pyroute2's NetNS forks a helper, which can deadlock in this (threaded) process: the
    # pyroute2 user's program is its own process, started once, not timed.
    child = subprocess.run([sys.executable, __file__, "--pyroute2-child", ov,
                            prefix, str(n)], capture_output=True, text=True,
                           timeout=600, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"pyroute2 baseline failed: {child.stderr[-2000:]}")
    pyroute = [float(v) for v in json.loads(child.stdout)]
    ours_med, cli_med = statistics.median(ours), statistics.median(cli)
    batch_med, pyroute_med = statistics.median(batch), statistics.median(pyroute)
    return {
        "attach_endpoints": n,
        "attach_median_ms": round(ours_med, 2),
        "attach_p99_ms": round(pct(ours, 99), 2),
        "pyroute2_median_ms": round(pyroute_med, 2),
        "pyroute2_p99_ms": round(pct(pyroute, 99), 2),
        "attach_vs_pyroute2": round(ours_med / pyroute_med, 3),
        "ip_batch_median_ms": round(batch_med, 2),
        "ip_batch_p99_ms": round(pct(batch, 99), 2),
        "attach_vs_ip_batch": round(ours_med / batch_med, 3),
        "ip_cli_median_ms": round(cli_med, 2),
        "ip_cli_p99_ms": round(pct(cli, 99), 2),
        "attach_vs_ip_cli": round(ours_med / cli_med, 3),
        "reconcile_noop_ms": round(reconcile_ms, 1),
    }


def ip_batch(netns: str, lines: Sequence[str]) -> None:
    """Several ``ip`` commands in one ``ip -n NETNS -batch -`` process."""
    proc = subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip -n {netns} -batch: {proc.stderr.strip()}")


def pyroute2_child(ov: str, prefix: str, n: int) -> None:
    """In a fresh process: ``n`` pyroute2 attaches into ``ov``'s br0; prints the ms."""
    net = overlay_net(4242)
    host = Host(name="h1", netns="", address="198.51.100.1", index=1, mtu=1500)
    out = []
    with NetNS(ov) as ovh:
        br0 = ovh.link_lookup(ifname="br0")[0]
        for i in range(1, n + 1):
            ep = endpoint(net, 3 * n + i, host)
            t0 = time.perf_counter()
            pyroute2_attach(ovh, br0, f"{prefix}-d{i}", f"vd{i}", ep)
            out.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps(out))


def pyroute2_attach(ovh: NetNS, br0: int, sb: str, veth: str, ep: Endpoint) -> None:
    """The same steps through pyroute2, in process, as a Python user would write them: the
    overlay netns handle kept open; the sandbox side from inside it (``pushns``)."""
    pyroute2_netns.create(sb)
    ovh.link("add", ifname=veth, kind="veth", mtu=1450,
             peer={"ifname": "eth0", "mtu": 1450, "address": ep.mac, "net_ns_fd": sb})
    idx = ovh.link_lookup(ifname=veth)[0]
    ovh.link("set", index=idx, master=br0, state="up")
    pyroute2_netns.pushns(sb)
    try:
        with IPRoute() as s:
            eth0 = s.link_lookup(ifname="eth0")[0]
            s.addr("add", index=eth0, address=str(ep.ipv4), prefixlen=16)
            s.link("set", index=eth0, state="up")
            s.route("add", dst="0.0.0.0/0", gateway="10.40.0.1")
    finally:
        pyroute2_netns.popns()


# ---------------------------------------------------------------- throughput

SANDBOX = "nfsb"
"""netfabric's sandbox in each machine of the throughput lab."""
HAND_OVERLAY, HAND_SANDBOX = "nfhv", "nfhs"
"""The hand-plumbed overlay's netns and sandbox in each machine."""
def set_gro(topo: Topology, *, on: bool) -> None:
    state = "on" if on else "off"
    for h in topo.hosts:
        topo.machine(h).run(["ethtool", "-K", "eth0", "gro", state], check=True)
        topo.on_switch(["ethtool", "-K", f"p-{h.name}", "gro", state])


def hand_plumbed_half(i: int, address: str, peer: str, mtu: int, vni: int) -> None:
    """In a machine: its half of the same kernel VXLAN as netfabric's, made with ``ip`` only
    (sandbox address 10.41.0.I; the other half is 10.41.0.(5 - I))."""
    ov, sb, inner = HAND_OVERLAY, HAND_SANDBOX, str(mtu - 50)
    sh(["ip", "netns", "add", ov])
    sh(["ip", "netns", "add", sb])
    # As netfabric does (OverlayDriver: BRIDGE_NF_SYSCTLS): br0's frames skip the
    # netns' iptables hooks that br_netfilter would run.
    for path in BRIDGE_NF_SYSCTLS:
        if Path("/proc/sys", path).exists():
            sh(["ip", "netns", "exec", ov, "sysctl", "-qw", f"{path.replace('/', '.')}=0"])
    sh(["ip", "-n", ov, "link", "add", "br0", "mtu", inner, "type", "bridge"])
    sh(["ip", "-n", ov, "link", "set", "br0", "up"])
    sh(["ip", "link", "add", "hvx", "mtu", inner, "type", "vxlan", "id", str(vni), "local",
        address, "dstport", "4789", "nolearning", "proxy"])
    sh(["ip", "link", "set", "hvx", "netns", ov])
    sh(["ip", "-n", ov, "link", "set", "hvx", "master", "br0", "up"])
    sh(["ip", "-n", ov, "link", "add", "hv", "mtu", inner, "type", "veth", "peer", "name",
        "eth0", "mtu", inner, "address", f"02:42:0a:29:00:0{i}", "netns", sb])
    sh(["ip", "-n", ov, "link", "set", "hv", "master", "br0", "up"])
    sh(["ip", "-n", sb, "addr", "add", f"10.41.0.{i}/24", "dev", "eth0"])
    sh(["ip", "-n", sb, "link", "set", "eth0", "up"])
    other = 5 - i
    sh(["bridge", "-n", ov, "fdb", "append", f"02:42:0a:29:00:0{other}", "dev", "hvx",
        "dst", peer, "self", "permanent"])
    sh(["ip", "-n", ov, "neigh", "add", f"10.41.0.{other}", "lladdr",
        f"02:42:0a:29:00:0{other}", "dev", "hvx", "nud", "permanent"])


def _throughput_endpoints(address1: str, address2: str, mtu: int) -> tuple[Network,
                                                                         list[Endpoint]]:
    net = overlay_net(4343, "10.42")
    hosts = [Host(name=f"h{i}", netns="", address=a, index=i, mtu=mtu)
             for i, a in ((1, address1), (2, address2))]
    return net, [endpoint(net, i + 1, h, "10.42") for i, h in enumerate(hosts)]


def half_inside(index: int, address: str, peer: str, mtu: int) -> None:
    """In machine h<index>: netfabric's endpoint (the driver, as the agent runs it) and the
    hand-plumbed half, kept until stdin closes."""
    name_own_netns(HOST_NETNS)
    a1, a2 = (address, peer) if index == 1 else (peer, address)
    net, eps = _throughput_endpoints(a1, a2, mtu)
    with OverlayDriver(host_netns=HOST_NETNS, advertise_addr=address) as d:
        d.kernel.ensure_netns(SANDBOX)
        d.attach(net, eps[index - 1], sandbox_netns=SANDBOX)
        d.set_peers(net.id, eps)
        hand_plumbed_half(index + 1, address, peer, mtu, 4344)
        hold()


def bench_throughput(mtu: int, seconds: float, rounds: int, *, gro: str) -> dict[str, float]:
    """Median-of-``rounds`` Gbit/s for the three paths; with ``gro="both"`` first with the
    underlay's GRO off (the veth default), then on, in the same topology."""
    with Topology.build(2, mtu=mtu, machines=True) as topo:
        h1, h2 = topo.hosts
        m1, m2 = topo.machine(h1), topo.machine(h2)
        parts = [(m, ["--inside-half", str(i), h.address, peer.address, str(mtu)])
                 for i, (m, h, peer) in enumerate(((m1, h1, h2), (m2, h2, h1)), start=1)]
        with held_inside(__file__, parts):
            _, eps = _throughput_endpoints(h1.address, h2.address, mtu)
            out: dict[str, float] = {}
            # Headline figures come from the last setting: GRO off, the veth default, which
            # measured better for the overlay (GRO on puts veths on their NAPI path).
            settings = {"both": ("on", "off"), "on": ("on",), "off": ("off",)}[gro]
            for setting in settings:
                set_gro(topo, on=setting == "on")
                runs: dict[str, list[float]] = {"overlay": [], "hand": [], "underlay": []}
                for _ in range(rounds):  # interleaved, so load drift hits all three alike
                    runs["overlay"].append(iperf((m2, SANDBOX), (m1, SANDBOX),
                                                 str(eps[1].ipv4), seconds))
                    runs["hand"].append(iperf((m2, HAND_SANDBOX), (m1, HAND_SANDBOX),
                                              "10.41.0.3", seconds))
                    runs["underlay"].append(iperf((m2, None), (m1, None), h2.address, seconds))
                med = {k: statistics.median(v) for k, v in runs.items()}
                tag = f"{mtu}_gro_{setting}"
                out[f"overlay_gbps_{tag}"] = round(med["overlay"], 2)
                out[f"hand_vxlan_gbps_{tag}"] = round(med["hand"], 2)
                out[f"underlay_gbps_{tag}"] = round(med["underlay"], 2)
                out[f"ratio_vs_hand_{tag}"] = round(med["overlay"] / med["hand"], 3)
                out[f"overlay_over_underlay_{tag}"] = round(
                    med["overlay"] / med["underlay"], 3)
            headline = settings[-1]
            out[f"ratio_vs_hand_{mtu}"] = out[f"ratio_vs_hand_{mtu}_gro_{headline}"]
            out[f"overlay_over_underlay_{mtu}"] = out[
                f"overlay_over_underlay_{mtu}_gro_{headline}"]
            return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one iperf3 run")
    ap.add_argument("--rounds", type=int, default=2, help="iperf3 runs per path and MTU")
    ap.add_argument("--gro", choices=("on", "off", "both"), default="both",
                    help="GRO on the simulated underlay NICs (both: headline from off)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--pyroute2-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--inside-attach", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--inside-half", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inside_attach:
        count, address = args.inside_attach
        print(json.dumps(attach_inside(int(count), address)))
        return 0
    if args.inside_half:
        index, address, peer, mtu = args.inside_half
        half_inside(int(index), address, peer, int(mtu))
        return 0
    if args.pyroute2_child:
        ov, prefix, count = args.pyroute2_child
        pyroute2_child(ov, prefix, int(count))
        return 0
    result: dict[str, object] = {"gro": args.gro}
    result.update(bench_attach(args.endpoints))
    if not args.skip_throughput:
        for mtu in (1500, 9000):
            result.update(bench_throughput(mtu, args.seconds, args.rounds, gro=args.gro))
        result["ratio_vs_hand"] = min(float(str(result["ratio_vs_hand_1500"])),
                                      float(str(result["ratio_vs_hand_9000"])))
    result["load_average_1m"] = load_average()
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
