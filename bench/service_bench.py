"""Service benchmark: VIP and routing-mesh data paths against straight to one task, and the
cost of a change in the service table, all in the same run.

    sudo .venv/bin/python bench/service_bench.py --json

Data path, on three simulated hosts joined by one netfabric overlay (kernel VXLAN):

- *direct*: a client sandbox on h1 connects straight to one task's overlay address;
- *vip*: the same client connects to the service VIP; the client sandbox's service table
  (:class:`netfabric.dataplane.services.ServiceDatapath`) DNATs each connection to one of the
  tasks, all on h2;
- *mesh*: a client in h1's host netns connects to h3's underlay address on the published
  port; h3's service table DNATs it over its leg on the overlay (the ingress network) to a
  task on h2, masqueraded so replies come back through h3.

Connections per second: one client connection at a time (connect, request, reply, close),
so the figure is the path's per-connection latency, not the servers' capacity. Each round
runs the three paths back to back (in rotating order); the ratios are the medians of the
per-round ratios, which cancels most of a shared machine's drifting load. Throughput: one iperf3 TCP
stream per path (through a one-target service, as iperf3 opens two connections).

Control plane: a table holding 1,000 services of 3 targets each; the time to add one more
service, and to change one target of one service, each a median of ``--changes`` runs.

Each simulated host is a lab machine (its own network, mount and PID namespaces); the
drivers and service tables run inside them, in processes of this script started there, as
the agent would (each machine's netns named ``nf``, sandboxes under its /run/netns).
Everything is removed at exit whatever happens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import (
    IPERF_PORT,
    Place,
    emit,
    held_inside,
    hold,
    inside,
    iperf,
    load_average,
    place_argv,
    run_main,
    sh,
    wait_listening,
)
from netfabric.dataplane.services import CliNft, ServiceDatapath
from netfabric.drivers.overlay import OverlayDriver
from netfabric.lab.topology import Host, Topology
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.netns import name_own_netns
from netfabric.services import LoadBalancer, Proto, Target

SUBNET = "10.43.0"
VIP, BULK_VIP = f"{SUBNET}.250", f"{SUBNET}.251"
WEB_PORT, MESH_PORT, MESH_IPERF_PORT = 80, 8080, 8201
TASKS = 3
HOST_NETNS = "nf"
"""The name each in-machine process gives its machine's netns, as the agent does."""
CLIENT_NS = "nfcl"
"""The client sandbox, in h1's machine; the tasks' are nft0, nft1... in h2's."""

_SERVER = textwrap.dedent("""
    import socket, sys, threading
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(512)
    body = b"HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n"
    def serve():
        while True:
            c, _ = s.accept()
            try:
                c.recv(4096); c.sendall(body)
            except OSError:
                pass
            c.close()
    for _ in range(3):
        threading.Thread(target=serve, daemon=True).start()
    threading.Event().wait()
""")

_CLIENT = textwrap.dedent("""
    import socket, sys, time
    addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    done = errors = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        try:
            with socket.create_connection((addr, port), timeout=2) as c:
                c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                while c.recv(4096):
                    pass
            done += 1
        except OSError:
            errors += 1
    print(done / (time.perf_counter() - t0), errors)
""")


def endpoint(net: Network, octet: int, host: Host, sandbox: str) -> Endpoint:
    return Endpoint(id=f"{net.id}e{octet}", network_id=net.id, sandbox=sandbox,
                    node_id=host.name, mac=f"02:42:0a:2b:00:{octet:02x}",
                    ipv4=f"{SUBNET}.{octet}", prefixlen=24, vtep=host.address)


def task_sandbox(i: int) -> str:
    return f"nft{i}"


def plan(addresses: Sequence[str]) -> tuple[Network, list[tuple[int, Endpoint, str, str]]]:
    """The overlay and where each endpoint goes: (host index, endpoint, netns, ifname): the
    client on h1, the tasks on h2, the mesh node's ingress leg in h3's own netns."""
    hosts = [Host(name=f"h{i + 1}", netns=HOST_NETNS, address=a, index=i + 1, mtu=1500)
             for i, a in enumerate(addresses)]
    net = Network(id="svbench00000001", name="svbench", driver=Driver.OVERLAY,
                  scope=Scope.SWARM, subnets=(SubnetSpec(f"{SUBNET}.0/24", f"{SUBNET}.1"),),
                  vni=4343)
    out = [(0, endpoint(net, 10, hosts[0], "client"), CLIENT_NS, "eth0"),
           (2, endpoint(net, 3, hosts[2], "ingress"), HOST_NETNS, "nfingress0")]
    out += [(1, endpoint(net, 20 + i, hosts[1], f"task{i}"), task_sandbox(i), "eth0")
            for i in range(TASKS)]
    return net, out


def task_addresses() -> list[str]:
    return [f"{SUBNET}.{20 + i}" for i in range(TASKS)]


def host_inside(index: int, addresses: Sequence[str]) -> None:
    """In machine h<index+1>: its endpoints through the driver (as the agent makes them),
    the task servers (h2), the client's service table (h1) or the mesh's (h3); kept until
    stdin closes."""
    name_own_netns(HOST_NETNS)
    net, placements = plan(addresses)
    procs: list[subprocess.Popen[bytes]] = []
    datapaths: list[ServiceDatapath] = []
    with OverlayDriver(host_netns=HOST_NETNS, advertise_addr=addresses[index]) as d:
        try:
            for host, ep, sb, ifname in placements:
                if host != index:
                    continue
                if sb != HOST_NETNS:
                    d.kernel.ensure_netns(sb)
                d.attach(net, ep, sandbox_netns=sb, ifname=ifname)
                if sb == HOST_NETNS:
                    # The driver parks a leg in the host netns unconfigured (as for Docker's
                    # Join); the mesh node configures its ingress leg itself.
                    sh(["ip", "addr", "add", f"{ep.ipv4}/24", "dev", ifname])
                    sh(["ip", "link", "set", ifname, "up"])
            d.set_peers(net.id, [ep for _, ep, _, _ in placements])
            tasks = task_addresses()
            targets = tuple(Target(ip, WEB_PORT) for ip in tasks)
            if index == 1:
                for i in range(TASKS):
                    procs.append(subprocess.Popen(
                        ["ip", "netns", "exec", task_sandbox(i), sys.executable, "-c",
                         _SERVER, str(WEB_PORT)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            elif index == 0:
                client = ServiceDatapath(CLIENT_NS)
                datapaths.append(client)
                client.sync([
                    LoadBalancer("web/tcp/80", Proto.TCP, WEB_PORT, targets, vips=(VIP,)),
                    LoadBalancer("bulk/tcp/5201", Proto.TCP, IPERF_PORT,
                                 (Target(tasks[0], IPERF_PORT),), vips=(BULK_VIP,))])
            else:
                mesh = ServiceDatapath(HOST_NETNS)
                datapaths.append(mesh)
                mesh.sync([
                    LoadBalancer("web/tcp/8080", Proto.TCP, MESH_PORT, targets,
                                 published=True, masquerade=True),
                    LoadBalancer("bulk/tcp/8201", Proto.TCP, MESH_IPERF_PORT,
                                 (Target(tasks[0], IPERF_PORT),), published=True,
                                 masquerade=True)])
            hold()
        finally:
            for dp in datapaths:
                dp.close()
            for p in procs:
                p.kill()
                p.wait()


def rate(place: Place, addr: str, port: int, seconds: float) -> float:
    out = sh(place_argv(place, [sys.executable, "-c", _CLIENT, addr, str(port),
                                str(seconds)])).split()
    if int(out[1]):
        raise RuntimeError(f"{out[1]} failed connections to {addr}:{port} from {place[1]}")
    return float(out[0])


def bench_datapath(seconds: float, rounds: int, iperf_seconds: float) -> dict[str, object]:
    with Topology.build(3, machines=True) as topo:
        machines = [topo.machine(h) for h in topo.hosts]
        addresses = [h.address for h in topo.hosts]
        parts = [(m, ["--inside-host", str(i), *addresses]) for i, m in enumerate(machines)]
        with held_inside(__file__, parts):
            client: Place = (machines[0], CLIENT_NS)
            h1: Place = (machines[0], None)
            tasks = task_addresses()
            task0: Place = (machines[1], task_sandbox(0))
            for i, ip in enumerate(tasks):
                wait_listening((machines[1], task_sandbox(i)), WEB_PORT)
                rate(client, ip, WEB_PORT, 0.2)
            paths = {"direct": (client, tasks[0], WEB_PORT),
                     "vip": (client, VIP, WEB_PORT),
                     "mesh": (h1, addresses[2], MESH_PORT)}
            cps: dict[str, list[float]] = {k: [] for k in paths}
            order = list(paths)
            for r in range(rounds):
                # Rotate which path goes first, so none always runs in the same slot.
                for name in order[r % 3:] + order[:r % 3]:
                    place, addr, port = paths[name]
                    cps[name].append(rate(place, addr, port, seconds))
            bulk = {"direct": (client, tasks[0], IPERF_PORT),
                    "vip": (client, BULK_VIP, IPERF_PORT),
                    "mesh": (h1, addresses[2], MESH_IPERF_PORT)}
            gbit: dict[str, list[float]] = {k: [] for k in bulk}
            for _ in range(max(1, rounds // 2)):
                for name, (place, addr, port) in bulk.items():
                    gbit[name].append(iperf(task0, place, addr, iperf_seconds, port=port))
    med = {k: statistics.median(v) for k, v in cps.items()}
    gmed = {k: statistics.median(v) for k, v in gbit.items()}
    # Each round runs the three paths back to back: the ratio within a round cancels the
    # machine's load as it drifts between rounds; the key is the median of those ratios.
    vip_ratio = statistics.median(v / d for v, d in zip(cps["vip"], cps["direct"], strict=True))
    mesh_ratio = statistics.median(m / d for m, d in zip(cps["mesh"], cps["direct"],
                                                         strict=True))
    return {
        "cps_direct": round(med["direct"], 1), "cps_vip": round(med["vip"], 1),
        "cps_mesh": round(med["mesh"], 1),
        "vip_over_direct": round(vip_ratio, 3),
        "mesh_over_direct": round(mesh_ratio, 3),
        "gbit_direct": round(gmed["direct"], 2), "gbit_vip": round(gmed["vip"], 2),
        "gbit_mesh": round(gmed["mesh"], 2),
        "throughput_vip_over_direct": round(gmed["vip"] / gmed["direct"], 3),
        "throughput_mesh_over_direct": round(gmed["mesh"] / gmed["direct"], 3),
        "cps_rounds": {k: [round(x) for x in v] for k, v in cps.items()},
    }


def service(i: int, targets: int = 3) -> LoadBalancer:
    hi, lo = divmod(i, 250)
    return LoadBalancer(f"s{i}/tcp/80", Proto.TCP, 80,
                        tuple(Target(f"10.{100 + hi}.{lo}.{j + 1}", 8080)
                              for j in range(targets)), vips=(f"10.200.{hi}.{lo + 1}",))


def bench_control(n: int, changes: int, *, cli: bool) -> dict[str, float]:
    """The control-plane figures, measured inside a one-machine lab."""
    with Topology.build(1, machines=True) as topo:
        result: dict[str, float] = inside(
            topo.machine(topo.hosts[0]), __file__,
            ["--inside-control", str(n), str(changes), "cli" if cli else "lib"])
        return result


def control_inside(n: int, changes: int, *, cli: bool) -> dict[str, float]:
    suffix = "_cli" if cli else ""
    name_own_netns(HOST_NETNS)
    ns = HOST_NETNS
    dp = ServiceDatapath(ns, table="svbench", runner=CliNft(ns) if cli else None)
    try:
        state = {i: service(i) for i in range(n)}
        t0 = time.perf_counter()
        dp.sync(state.values())
        full_ms = (time.perf_counter() - t0) * 1e3
        adds, edits = [], []
        for k in range(changes):
            state[n + k] = service(n + k)
            t0 = time.perf_counter()
            dp.sync(state.values())
            adds.append((time.perf_counter() - t0) * 1e3)
            del state[n + k]
            dp.sync(state.values())
        for k in range(changes):
            i = (k * 37) % n
            old = state[i]
            state[i] = LoadBalancer(old.key, old.proto, old.port,
                                    (*old.targets[:-1], Target(f"10.99.0.{k + 1}", 8080)),
                                    vips=old.vips)
            t0 = time.perf_counter()
            dp.sync(state.values())
            edits.append((time.perf_counter() - t0) * 1e3)
        assert dp.full_syncs == 1, "a change fell back to a full rewrite"
        rules = len(dp.listing().splitlines())
    finally:
        dp.close()
    return {f"full_sync_ms_at_{n}{suffix}": round(full_ms, 1),
            f"add_service_ms_at_{n}{suffix}": round(statistics.median(adds), 2),
            f"add_service_ms_at_{n}_max{suffix}": round(max(adds), 2),
            f"backend_change_ms{suffix}": round(statistics.median(edits), 2),
            f"backend_change_ms_max{suffix}": round(max(edits), 2),
            f"table_lines_at_{n}{suffix}": rules}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=0.5, help="one connection-rate round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iperf-seconds", type=float, default=3.0)
    ap.add_argument("--skip-datapath", action="store_true")
    ap.add_argument("--inside-host", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--inside-control", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inside_host:
        host_inside(int(args.inside_host[0]), args.inside_host[1:])
        return 0
    if args.inside_control:
        n, changes, how = args.inside_control
        print(json.dumps(control_inside(int(n), int(changes), cli=how == "cli")))
        return 0
    result: dict[str, object] = {"loadavg_start": load_average()}
    result.update(bench_control(args.services, args.changes, cli=False))
    result.update(bench_control(args.services, max(3, args.changes // 4), cli=True))
    if not args.skip_datapath:
        result.update(bench_datapath(args.seconds, args.rounds, args.iperf_seconds))
    result["loadavg_end"] = load_average()
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
