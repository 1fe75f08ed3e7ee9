#!/usr/bin/env python3
"""Cluster benchmark: name propagation and failure purge across agents in simulated hosts.

Prints one JSON object (with ``--json``):

- ``getent_p50_ms_3_hosts`` / ``getent_p99_ms_3_hosts``: from ``container run`` on host A
  (the library call, as an orchestrator makes it) to ``getent hosts NAME`` succeeding in a
  sandbox on host B, 3 hosts;
- ``getent_p99_ms_20_agents``: the same with 20 agents (A and B drawn at random);
- ``kill9_to_purged_s``: from ``kill -9`` of an agent to its names being gone from every
  peer's DNS and its MACs from every peer's FDB, 10 agents: the median of ``--kills``
  kills (each of another worker, restarted and seen again by every peer before the next),
  with the min and max beside it.

Every figure is measured per gossip profile (``--profiles``, default ``local,lan``): keys
without a suffix are ``local`` (fast failure detection, what the multi-agent tests use);
keys ending in ``_lan`` are the default profile of ``netfabric agent``, what users run. A
comparison with memberlist holds only profile for profile.

Same-run baseline: ``getent_local_p50_ms``, a getent of a name already resolvable, so the
cost of the polling itself (an ``ip netns exec getent`` process) is visible.

    sudo .venv/bin/python bench/cluster_bench.py --json [--samples 40]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.benchlib import emit, load_average, run_main
from netfabric import Client
from netfabric.lab.cluster import AgentProc, Lab
from netfabric.lab.walkthrough import form_cluster

POLL_TIMEOUT_S = 10.0


Sandbox = tuple[AgentProc, str]
"""A sandbox: the host (machine) it is on and its netns there."""


def _getent_ok(where: Sandbox, name: str) -> bool:
    host, netns = where
    return subprocess.run(host.enter(["ip", "netns", "exec", netns, "getent", "hosts", name]),
                          capture_output=True, check=False).returncode == 0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[idx]


def _cluster(n: int, state_dir: str, profile: str) -> Lab:
    lab = Lab.up(n, state_dir=state_dir, gossip_profile=profile)
    try:
        form_cluster(lab)
        Client(lab.agents[0].url).create_network("bench", driver="overlay", attachable=True,
                                                 subnet="10.123.0.0/16")
    except BaseException:
        lab.down()
        raise
    return lab


def run_to_getent(lab: Lab, samples: int,
                  rng: random.Random) -> tuple[list[float], float, list[float]]:
    """Latencies (ms) of run-on-A to getent-on-B, the local getent baseline (ms), and the
    time (ms) of the run call alone."""
    probes: dict[str, Sandbox] = {}
    for agent in lab.agents:
        con = Client(agent.url).run(f"probe-{agent.name}", network="bench")
        probes[agent.name] = (agent, con.netns)
    time.sleep(1.0)
    a0, b0 = lab.agents[0], lab.agents[1]
    base = []
    for _ in range(10):
        t = time.perf_counter()
        assert _getent_ok(probes[b0.name], f"probe-{a0.name}")
        base.append((time.perf_counter() - t) * 1000)
    out = []
    calls = []
    for i in range(samples):
        a, b = rng.sample(lab.agents, 2)
        name = f"w{i}"
        t0 = time.perf_counter()
        Client(a.url).run(name, network="bench")
        calls.append((time.perf_counter() - t0) * 1000)
        while not _getent_ok(probes[b.name], name):
            if time.perf_counter() - t0 > POLL_TIMEOUT_S:
                raise RuntimeError(f"{name} never resolved on {b.name}")
        out.append((time.perf_counter() - t0) * 1000)
    return out, statistics.median(base), calls


def _fdb_has(netns_list: list[Sandbox], mac: str) -> bool:
    for host, ns in netns_list:
        proc = subprocess.run(host.enter(["bridge", "-n", ns, "fdb", "show"]),
                              capture_output=True, text=True, check=False)
        if mac in proc.stdout:
            return True
    return False


def _wait_resolved(netns: dict[str, Sandbox], peers: list[str], name: str) -> None:
    deadline = time.monotonic() + 60
    while missing := [p for p in peers if not _getent_ok(netns[p], name)]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} never reached {missing}")
        time.sleep(0.1)


def kill9_to_purged(lab: Lab, kills: int) -> list[float]:
    """Seconds from kill -9 to purged, for ``kills`` kills of different workers (each
    restarted, and its name back on every peer, before the next kill)."""
    netns: dict[str, Sandbox] = {}
    macs: dict[str, str] = {}
    for agent in lab.agents:
        con = Client(agent.url).run(f"k-{agent.name}", network="bench")
        netns[agent.name] = (agent, con.netns)
        macs[agent.name] = con.networks[0].mac
    out = []
    for k in range(kills):
        victim = lab.agents[-1 - k % (len(lab.agents) - 1)]
        peers = [a for a in lab.agents if a is not victim]
        name = f"k-{victim.name}"
        _wait_resolved(netns, [p.name for p in peers], name)
        overlay_ns = [(p, n) for p in peers for n in lab.netns(p.name, "nf-ov")]
        deadline = time.monotonic() + 30
        while not _fdb_has(overlay_ns, macs[victim.name]):
            if time.monotonic() > deadline:
                raise RuntimeError("no FDB entry for the victim before the kill")
            time.sleep(0.1)
        t0 = time.perf_counter()
        lab.stop_agent(victim, sig=signal.SIGKILL, wait=False)
        pending = {p.name for p in peers}
        fdb_gone = False
        while pending or not fdb_gone:
            for peer in list(pending):
                if not _getent_ok(netns[peer], name):
                    pending.discard(peer)
            if not fdb_gone:
                fdb_gone = not _fdb_has(overlay_ns, macs[victim.name])
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"not purged after 60 s: {sorted(pending)} "
                                   f"fdb_gone={fdb_gone}")
        out.append(time.perf_counter() - t0)
        lab.stop_agent(victim, sig=signal.SIGKILL)
        lab.start_agent(victim)
        lab.wait_ready(victim)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--samples", type=int, default=40, help="run->getent samples per size")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profiles", default="local,lan",
                    help="gossip profiles to measure, comma-separated (default local,lan)")
    ap.add_argument("--kills", type=int, default=5, help="kill -9 samples (median reported)")
    ap.add_argument("--parts", default="3,20,kill9",
                    help="which measurements, comma-separated (default 3,20,kill9)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    result: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory(prefix="nfbench") as tmp:
        parts = set(args.parts.split(","))
        for profile in args.profiles.split(","):
            sfx = "" if profile == "local" else f"_{profile}"
            if "3" in parts:
                lab = _cluster(3, os.path.join(tmp, f"3{sfx}"), profile)
                try:
                    lat3, base, calls3 = run_to_getent(lab, args.samples, rng)
                finally:
                    lab.down()
                result[f"getent_p50_ms_3_hosts{sfx}"] = round(_pct(lat3, 50), 1)
                result[f"getent_p99_ms_3_hosts{sfx}"] = round(_pct(lat3, 99), 1)
                result[f"getent_local_p50_ms{sfx}"] = round(base, 1)
                result[f"run_call_p50_ms_3_hosts{sfx}"] = round(_pct(calls3, 50), 1)
            if "20" in parts:
                lab = _cluster(20, os.path.join(tmp, f"20{sfx}"), profile)
                try:
                    lat20, _, calls20 = run_to_getent(lab, args.samples, rng)
                finally:
                    lab.down()
                result[f"getent_p50_ms_20_agents{sfx}"] = round(_pct(lat20, 50), 1)
                result[f"getent_p99_ms_20_agents{sfx}"] = round(_pct(lat20, 99), 1)
                result[f"run_call_p50_ms_20_agents{sfx}"] = round(_pct(calls20, 50), 1)
                result[f"run_call_p99_ms_20_agents{sfx}"] = round(_pct(calls20, 99), 1)
            if "kill9" in parts:
                lab = _cluster(10, os.path.join(tmp, f"10{sfx}"), profile)
                try:
                    purges = kill9_to_purged(lab, args.kills)
                finally:
                    lab.down()
                result[f"kill9_to_purged_s{sfx}"] = round(statistics.median(purges), 2)
                result[f"kill9_to_purged_min_s{sfx}"] = round(min(purges), 2)
                result[f"kill9_to_purged_max_s{sfx}"] = round(max(purges), 2)
                result[f"kills{sfx}"] = len(purges)
        result["load_avg_1m"] = load_average()
        result["samples"] = args.samples
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
