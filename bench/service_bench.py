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

Everything lives in namespaces with a fresh ``nf`` prefix, removed at exit whatever happens.
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
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import emit, load_average, run_main
from netfabric.dataplane.services import CliNft, ServiceDatapath
from netfabric.drivers.overlay import OverlayDriver
from netfabric.lab.topology import Host, Topology
from netfabric.model import Driver, Endpoint, Network, Scope, SubnetSpec
from netfabric.services import LoadBalancer, Proto, Target

SUBNET = "10.43.0"
VIP, BULK_VIP = f"{SUBNET}.250", f"{SUBNET}.251"
WEB_PORT, MESH_PORT, IPERF_PORT, MESH_IPERF_PORT = 80, 8080, 5201, 8201
TASKS = 3

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


def sh(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class Lab:
    topo: Topology
    client_ns: str
    tasks: list[tuple[str, str]]  # (sandbox, address)
    mesh: Host
    procs: list[subprocess.Popen[bytes]]
    datapaths: list[ServiceDatapath]
    drivers: list[OverlayDriver]

    def close(self) -> None:
        for dp in self.datapaths:
            dp.close()
        for p in self.procs:
            p.kill()
            p.wait()
        for d in self.drivers:
            d.close()


def endpoint(net: Network, octet: int, host: Host, sandbox: str) -> Endpoint:
    return Endpoint(id=f"{net.id}e{octet}", network_id=net.id, sandbox=sandbox,
                    node_id=host.name, mac=f"02:42:0a:2b:00:{octet:02x}",
                    ipv4=f"{SUBNET}.{octet}", prefixlen=24, vtep=host.address)


def build(topo: Topology) -> Lab:
    h1, h2, h3 = topo.hosts
    net = Network(id="svbench00000001", name="svbench", driver=Driver.OVERLAY,
                  scope=Scope.SWARM, subnets=(SubnetSpec(f"{SUBNET}.0/24", f"{SUBNET}.1"),),
                  vni=4343)
    drivers = {h.name: OverlayDriver(host_netns=h.netns, advertise_addr=h.address)
               for h in topo.hosts}
    lab = Lab(topo, f"{topo.prefix}-cl", [], h3, [], [], list(drivers.values()))
    try:
        eps = []
        placements: list[tuple[Host, Endpoint, str, str]] = [
            (h1, endpoint(net, 10, h1, "client"), lab.client_ns, "eth0"),
            (h3, endpoint(net, 3, h3, "ingress"), h3.netns, "nfingress0")]
        for i in range(TASKS):
            sb = f"{topo.prefix}-t{i}"
            ep = endpoint(net, 20 + i, h2, f"task{i}")
            placements.append((h2, ep, sb, "eth0"))
            lab.tasks.append((sb, str(ep.ipv4)))
        for host, ep, sb, ifname in placements:
            d = drivers[host.name]
            if sb != host.netns:
                d.kernel.ensure_netns(sb)
            d.attach(net, ep, sandbox_netns=sb, ifname=ifname)
            if sb == host.netns:
                # The driver parks a leg in the host netns unconfigured (as for Docker's
                # Join); the mesh node configures its ingress leg itself.
                sh(["ip", "-n", sb, "addr", "add", f"{ep.ipv4}/24", "dev", ifname])
                sh(["ip", "-n", sb, "link", "set", ifname, "up"])
            eps.append(ep)
        for d in drivers.values():
            d.set_peers(net.id, eps)
        for sb, _ in lab.tasks:
            lab.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", sb, sys.executable, "-c", _SERVER, str(WEB_PORT)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        first = lab.tasks[0][1]
        targets = tuple(Target(ip, WEB_PORT) for _, ip in lab.tasks)
        client = ServiceDatapath(lab.client_ns)
        lab.datapaths.append(client)
        client.sync([
            LoadBalancer("web/tcp/80", Proto.TCP, WEB_PORT, targets, vips=(VIP,)),
            LoadBalancer("bulk/tcp/5201", Proto.TCP, IPERF_PORT,
                         (Target(first, IPERF_PORT),), vips=(BULK_VIP,))])
        mesh = ServiceDatapath(h3.netns)
        lab.datapaths.append(mesh)
        mesh.sync([
            LoadBalancer("web/tcp/8080", Proto.TCP, MESH_PORT, targets, published=True,
                         masquerade=True),
            LoadBalancer("bulk/tcp/8201", Proto.TCP, MESH_IPERF_PORT,
                         (Target(first, IPERF_PORT),), published=True, masquerade=True)])
        for sb, ip in lab.tasks:
            wait_listening(sb, WEB_PORT)
            rate(lab.client_ns, ip, WEB_PORT, 0.2)
        return lab
    except BaseException:
        lab.close()
        raise


def wait_listening(ns: str, port: int) -> None:
    for _ in range(100):
        if f":{port} " in sh(["ip", "netns", "exec", ns, "ss", "-ltnH"]):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} in {ns}")


def rate(ns: str, addr: str, port: int, seconds: float) -> float:
    out = sh(["ip", "netns", "exec", ns, sys.executable, "-c", _CLIENT, addr, str(port),
              str(seconds)]).split()
    if int(out[1]):
        raise RuntimeError(f"{out[1]} failed connections to {addr}:{port} from {ns}")
    return float(out[0])


def iperf(server_ns: str, client_ns: str, dst: str, port: int, seconds: float) -> float:
    """Gbit/s received, one TCP stream."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p",
                               str(IPERF_PORT)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_listening(server_ns, IPERF_PORT)
        out = sh(["ip", "netns", "exec", client_ns, "iperf3", "-c", dst, "-p", str(port),
                  "-t", str(seconds), "-J"])
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def bench_datapath(seconds: float, rounds: int, iperf_seconds: float) -> dict[str, object]:
    with Topology.build(3) as topo:
        lab = build(topo)
        try:
            h1 = topo.hosts[0]
            paths = {"direct": (lab.client_ns, lab.tasks[0][1], WEB_PORT),
                     "vip": (lab.client_ns, VIP, WEB_PORT),
                     "mesh": (h1.netns, lab.mesh.address, MESH_PORT)}
            cps: dict[str, list[float]] = {k: [] for k in paths}
            order = list(paths)
            for r in range(rounds):
                # Rotate which path goes first, so none always runs in the same slot.
                for name in order[r % 3:] + order[:r % 3]:
                    ns, addr, port = paths[name]
                    cps[name].append(rate(ns, addr, port, seconds))
            task0 = lab.tasks[0]
            bulk = {"direct": (lab.client_ns, task0[1], IPERF_PORT),
                    "vip": (lab.client_ns, BULK_VIP, IPERF_PORT),
                    "mesh": (h1.netns, lab.mesh.address, MESH_IPERF_PORT)}
            gbit: dict[str, list[float]] = {k: [] for k in bulk}
            for _ in range(max(1, rounds // 2)):
                for name, (ns, addr, port) in bulk.items():
                    gbit[name].append(iperf(task0[0], ns, addr, port, iperf_seconds))
        finally:
            lab.close()
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
    suffix = "_cli" if cli else ""
    with Topology.build(1) as topo:
        ns = topo.hosts[0].netns
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
    args = ap.parse_args(argv)
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
