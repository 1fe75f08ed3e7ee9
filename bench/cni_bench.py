"""CNI benchmark: netfabric-cni against podman's own CNI ``bridge`` plugin, same run.

    sudo .venv/bin/python bench/cni_bench.py --json

One simulated host with an agent and real podman 4.3 on its CNI backend, two networks side
by side: a netfabric bridge network through netfabric-cni, and a reference conflist
(``bridge`` + ``host-local`` IPAM, what ``podman network create`` writes). Measured:

- **run to ping by name**: ``podman run -d`` of a new container, then ``podman exec`` of
  ``ping -c1 -W1 peer`` until the first reply, where ``peer`` is a container already on the
  network. On netfabric the name comes from netfabric's DNS; the bridge plugin brings no DNS
  (podman's CNI backend has none), so its run gets ``--add-host peer:IP`` (a hosts-file
  entry, the cheapest resolution there is). Alternating, median of N each;
  ``run_to_ping_ratio_vs_bridge`` = netfabric / bridge (goal <= 1.2).
- **VERSION** (podman runs it for every plugin on every command) and **ADD** latency of the
  plugin executed directly as a runtime does (ADD then DEL on a fresh netns each time),
  median and p99; the bridge plugin's figures beside them.

Everything is made under a fresh lab prefix and removed at exit whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import emit, run_main
from netfabric.client import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.podman import REFERENCE_PLUGINS, Podman, plugin_socket

REF_SUBNET = "10.236.0.0/24"
NF_SUBNET = "10.237.0.0/24"


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _exec_plugin(plugin: str, env: dict[str, str], conf: bytes) -> float:
    t = time.perf_counter()
    proc = subprocess.run([plugin], input=conf, env=env, capture_output=True, check=False)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{plugin} {env.get('CNI_COMMAND')}: {proc.stdout!r} {proc.stderr!r}")
    return took


def plugin_latency(lab: Lab, pm: Podman, n: int) -> dict[str, float]:
    agent = lab.agents[0]
    nf_plugin = os.path.join(pm.bin_dir, "netfabric")   # in the machine
    ref_plugin = os.path.join(REFERENCE_PLUGINS, "bridge")
    nf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "nfb", "type": "netfabric",
                          "network": "nfb"}
    if plugin_socket(agent):
        nf["socket"] = plugin_socket(agent)
    nf_conf = json.dumps(nf).encode()
    ref_conf = json.dumps({"cniVersion": "1.0.0", "name": "refb", "type": "bridge",
                           "bridge": "cnbench0", "isGateway": True, "ipMasq": False,
                           "ipam": {"type": "host-local", "subnet": REF_SUBNET,
                                    "dataDir": os.path.join(pm.base, "ipam")}}).encode()
    base = {"PATH": os.environ["PATH"], "CNI_PATH": f"{pm.bin_dir}:{REFERENCE_PLUGINS}",
            "CNI_IFNAME": "eth0"}
    out: dict[str, list[float]] = {k: [] for k in (
        "version", "add", "bridge_version", "bridge_add")}

    def on_host(argv: list[str]) -> list[str]:
        return lab.exec_argv(agent, argv)
    for i in range(n):
        for label, plugin, conf in (("", nf_plugin, nf_conf), ("bridge_", ref_plugin,
                                                               ref_conf)):
            here = pm.host_path(plugin) if plugin == nf_plugin else plugin
            out[label + "version"].append(_exec_plugin(
                here, {**base, "CNI_COMMAND": "VERSION"}, conf))
            ns = f"{lab.prefix}-cb{i}{label[:1]}"
            subprocess.run(on_host(["ip", "netns", "add", ns]), check=True)
            try:
                env = {**base, "CNI_CONTAINERID": f"bench{i}{label[:1]}",
                       "CNI_NETNS": f"/run/netns/{ns}"}
                # the plugin runs in the host's netns, as a runtime there runs it
                t = time.perf_counter()
                add = subprocess.run(on_host([plugin]), input=conf, capture_output=True,
                                     env={**env, "CNI_COMMAND": "ADD"}, check=False)
                took = time.perf_counter() - t
                if add.returncode != 0:
                    raise RuntimeError(f"{plugin} ADD: {add.stdout!r}")
                out[label + "add"].append(took)
                subprocess.run(on_host([plugin]), input=conf, capture_output=True,
                               env={**env, "CNI_COMMAND": "DEL"}, check=True)
            finally:
                subprocess.run(on_host(["ip", "netns", "del", ns]), check=False)
    res: dict[str, float] = {}
    for key, values in out.items():
        ms = [v * 1000 for v in values]
        res[f"{key}_p50_ms"] = round(statistics.median(ms), 1)
        res[f"{key}_p99_ms"] = round(_pct(ms, 0.99), 1)
    return res


def run_to_ping(pm: Podman, network: str, name: str, extra: list[str]) -> float:
    t = time.perf_counter()
    pm.ok(["run", "-d", "--name", name, "--network", network, *extra, "nfbox",
           "sleep", "600"])
    deadline = t + 30
    while True:
        if pm.run(["exec", name, "ping", "-c1", "-W1", "peer"]).returncode == 0:
            took = time.perf_counter() - t
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name} on {network} never pinged peer")
    pm.ok(["rm", "-f", "-t", "0", name])
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--runs", type=int, default=7, help="podman runs per network (default 7)")
    ap.add_argument("--calls", type=int, default=30,
                    help="direct plugin calls per measure (default 30)")
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    base = tempfile.mkdtemp(prefix="cnpm-")
    with Lab.up(1) as lab:
        agent = lab.agents[0]
        Client(agent.url).create_network("nfb", driver="bridge", subnet=NF_SUBNET)
        pm = Podman.start(lab, agent, base, networks=["nfb"])
        try:
            pm.add_conflist("refb", {
                "cniVersion": "0.4.0", "name": "refb",
                "plugins": [{"type": "bridge", "bridge": "cnbr0", "isGateway": True,
                             "ipMasq": True, "hairpinMode": True,
                             "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                                      "ranges": [[{"subnet": REF_SUBNET}]],
                                      # not /var/lib/cni/networks: nothing outside the lab
                                      "dataDir": os.path.join(base, "ipam-refb")}}]})
            pm.ok(["run", "-d", "--name", "peer", "--network", "nfb", "nfbox", "sleep", "900"])
            pm.ok(["run", "-d", "--name", "refpeer", "--network", "refb", "nfbox", "sleep",
                   "900"])
            ref_ip = pm.ok(["inspect", "-f",
                            "{{(index .NetworkSettings.Networks \"refb\").IPAddress}}",
                            "refpeer"]).strip()
            nf_runs: list[float] = []
            ref_runs: list[float] = []
            for i in range(args.runs):
                nf_runs.append(run_to_ping(pm, "nfb", f"nf{i}", []))
                ref_runs.append(run_to_ping(pm, "refb", f"rf{i}",
                                            ["--add-host", f"peer:{ref_ip}"]))
            pm.ok(["rm", "-f", "-t", "0", "peer", "refpeer"])
            lat = plugin_latency(lab, pm, args.calls)
        finally:
            pm.close()
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    nf_ms = statistics.median(nf_runs) * 1000
    ref_ms = statistics.median(ref_runs) * 1000
    result: dict[str, Any] = {
        "run_to_ping_ms": round(nf_ms, 1),
        "bridge_run_to_ping_ms": round(ref_ms, 1),
        "run_to_ping_ratio_vs_bridge": round(nf_ms / ref_ms, 3),
        "runs": args.runs, "calls": args.calls,
        **lat,
        "loadavg_before": " ".join(load_before), "loadavg_after": " ".join(load_after),
    }
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
