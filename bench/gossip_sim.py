"""Gossip at scale on the simulator: dissemination, failure detection, false positives,
bandwidth, and the simulator's own run time. Prints one JSON object.

    .venv/bin/python bench/gossip_sim.py --nodes 1000 --loss 0.01 --duration 60 --json

What it measures: N real GossipCore instances (LAN profile) on a virtual clock; every
datagram is msgpack-encoded, AES-GCM sealed, delivered with 0.5-3 ms latency or lost with
probability --loss, then opened and decoded; push/pull streams are delivered whole.
The cluster starts warm (every node knows the roster; see Simulator(warm=True)).

- dissemination: every 5 s from t=5 a random live node (never the one that will crash)
  writes a new entry; each live node's delay until it has it. The p99 is over all
  (entry, live node) pairs, and a pair still missing at the end counts as never delivered
  (an infinite delay, not as absent). The max is over all entries, the late ones included:
  an entry not on every live node at the end has not disseminated, so the max is then
  null and ``entries_not_disseminated`` says how many (``pairs_missing``: how many
  deliveries), with ``dissemination_max_s_of_complete`` the max over the others;
- detection: at 40 % of the run one node crashes; first and last live node to mark it
  dead (which drops its entries in the same step);
- false_positives: live nodes that any node declared dead;
- refutations / stale_corrected: how often a node refuted a suspicion of itself, and how
  often a peer answered a suspicion of an already-refuted incarnation with the newer alive;
- bytes_per_node_per_s: all datagram and stream bytes sent, per node, per simulated s.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netfabric.gossip.config import GossipConfig
from netfabric.gossip.events import EntryCreated, Event, MemberDead
from netfabric.gossip.sim import Simulator

NET = "bench"


def memberlist_lan() -> GossipConfig:
    """memberlist's DefaultLANConfig numbers on this implementation (probe 1 s, timeout
    0.5 s, SuspicionMult 4, SuspicionMaxTimeoutMult 6, K = SuspicionMult - 2, gossip
    200 ms to 3 nodes, RetransmitMult 4, push/pull 30 s): to compare profile for profile."""
    return GossipConfig(probe_interval=1.0, probe_timeout=0.5, suspicion_mult=4.0,
                        suspicion_max_timeout_mult=6.0, suspicion_confirmations=2,
                        gossip_interval=0.2, gossip_nodes=3, retransmit_mult=4,
                        push_pull_interval=30.0, dead_keep_time=30.0)


PROFILES = {"lan": GossipConfig.lan, "local": GossipConfig.local, "wan": GossipConfig.wan,
            "memberlist-lan": memberlist_lan}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1)]


def run(nodes: int, loss: float, seed: int, duration: float, profile: str) -> dict[str, object]:
    t0 = time.perf_counter()
    c0 = time.process_time()
    sim = Simulator(nodes, config=PROFILES[profile](), loss=loss, seed=seed, networks=[NET],
                    record_events=False)
    build_s = time.perf_counter() - t0
    rng = random.Random(seed)
    written: dict[str, float] = {}
    got: dict[str, dict[int, float]] = {}
    crash: dict[str, object] = {}
    dead_seen: dict[int, float] = {}
    false_dead: set[str] = set()

    def on_event(i: int, ev: Event, now: float) -> None:
        if isinstance(ev, EntryCreated) and ev.key in written:
            got[ev.key].setdefault(i, now)
        elif isinstance(ev, MemberDead):
            if ev.node == crash.get("node"):
                dead_seen.setdefault(i, now)
            else:
                false_dead.add(ev.node)

    sim.on_event = on_event

    def write(k: int) -> None:
        i = rng.choice([s.index for s in sim.live() if s.index != victim])
        key = f"probe{k}"
        written[key] = sim.now
        got[key] = {i: sim.now}
        sim.do(i, lambda c: c.set_entry("t", NET, key, b"10.0.0.1 02:42:0a:00:00:01", sim.now))

    crash_at = max(10.0, 0.4 * duration)
    victim = rng.randrange(nodes)

    def do_crash() -> None:
        crash["node"] = sim.core(victim).node_id
        crash["at"] = sim.now
        sim.crash(victim)

    sim.do(victim, lambda c: c.set_entry("t", NET, "victim", b"x", sim.now))
    k = 0
    t = 5.0
    while t < duration - 5:
        sim.call(t, lambda k=k: write(k))
        k += 1
        t += 5.0
    sim.call(crash_at, do_crash)
    bytes0 = 0
    sim.run_until(duration)
    wall_s = time.perf_counter() - t0

    live = {s.index for s in sim.live()}
    delays: list[float] = []
    full: list[float] = []
    incomplete = 0
    missing = 0
    for key, at in written.items():
        seen = {i: t for i, t in got[key].items() if i in live}
        delays += [t - at for t in seen.values()]
        delays += [math.inf] * (len(live) - len(seen))  # never delivered, not absent
        missing += len(live) - len(seen)
        if len(seen) == len(live):
            full.append(max(seen.values()) - at)
        else:
            incomplete += 1
    others = [t for i, t in dead_seen.items() if i in live]
    crash_t = float(crash.get("at", 0.0))  # type: ignore[arg-type]
    total_bytes = sum(s.bytes_sent for s in sim.nodes) - bytes0
    return {
        "nodes": nodes, "loss": loss, "seed": seed, "duration_s": duration, "profile": profile,
        "dissemination_p99_s": _r(percentile(delays, 99)),
        "dissemination_max_s": _r(max(full) if full and not incomplete else None),
        "dissemination_max_s_of_complete": _r(max(full) if full else None),
        "entries_written": len(written), "entries_not_disseminated": incomplete,
        "pairs_missing": missing,
        "detect_first_s": _r(min(others) - crash_t if others else None),
        "detect_all_s": _r(max(others) - crash_t if len(others) == len(live) else None),
        "detected_by": len(others), "live_nodes": len(live),
        "false_positives": len(false_dead),
        "refutations": sum(s.core.counters.refutations for s in sim.nodes),
        "stale_corrected": sum(s.core.counters.stale_corrected for s in sim.nodes),
        "bytes_per_node_per_s": round(total_bytes / nodes / duration, 1),
        "datagrams_delivered": sim.delivered,
        "wall_s": round(wall_s, 1), "build_s": round(build_s, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def _r(x: float | None) -> float | None:
    return None if x is None or math.isinf(x) else round(x, 3)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--loss", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--profile", choices=sorted(PROFILES), default="lan")
    p.add_argument("--json", action="store_true", help="one JSON line (default: indented)")
    a = p.parse_args()
    result = run(a.nodes, a.loss, a.seed, a.duration, a.profile)
    print(json.dumps(result) if a.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
