"""Time from ``run --ip`` of an address to the first ping reply a watching container gets.

Issue 19, item 2. On a 3-host lab (overlay ``ov``, IPv4 + IPv6), container c3 on node3
pings an address every 10 ms; this measures, from the start of the ``run`` call, when the
first reply arrives:

- fresh: an address nobody used, run on node2;
- moved: an address c3 talked to on node1 (``x``, removed), run again on node2 (``y``).

The goal is the same figure for both (c3's neighbour entry of a moved address must not be
a blackhole). Also prints how long the ``run`` call itself took. Usage::

    .venv/bin/python bench/moved_address.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netfabric import Client
from netfabric.lab.cluster import Lab
from netfabric.lab.walkthrough import form_cluster
from tests.cluster.test_moved_address import first_reply_after


def _talk(lab: Lab, target: str) -> None:
    proc = lab.run("node3", ["netfabric", "exec", "c3", "ping", "-c2", "-i0.1", "-W2", target])
    if proc.returncode != 0:
        raise SystemExit(f"c3 cannot reach {target}: {proc.stdout}{proc.stderr}")


def measure(rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"fresh": [], "moved": [], "run_call": []}
    with tempfile.TemporaryDirectory(prefix="df-moved-") as tmp, Lab.up(3, state_dir=tmp) as lab:
        form_cluster(lab)
        n1, n2, n3 = (Client(lab.agent(f"node{i}").url) for i in (1, 2, 3))
        n1.create_network("ov", driver="overlay", attachable=True, subnet="10.0.9.0/24",
                          ipv6=True)
        n3.run("c3", network="ov")
        calls: list[float] = []

        def run_on_n2(name: str, ip: str) -> None:
            t = time.monotonic()
            n2.run(name, network="ov", ip=ip)
            calls.append(time.monotonic() - t)

        for i in range(rounds):
            fresh = f"10.0.9.{100 + i}"
            took = first_reply_after(lab, "node3", "c3", fresh,
                                     lambda i=i, a=fresh: run_on_n2(f"f{i}", a), wait=3)
            out["fresh"].append(float("inf") if took is None else took)
            n2.remove_container(f"f{i}")

            moved = f"10.0.9.{200 + i}"
            n1.run(f"x{i}", network="ov", ip=moved)
            _talk(lab, moved)
            n1.remove_container(f"x{i}")
            took = first_reply_after(lab, "node3", "c3", moved,
                                     lambda i=i, a=moved: run_on_n2(f"y{i}", a), wait=3)
            out["moved"].append(float("inf") if took is None else took)
            n2.remove_container(f"y{i}")
        out["run_call"] = calls
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with open("/proc/loadavg", encoding="ascii") as f:
        load = f.read().split()[:3]
    res = measure(args.rounds)
    summary = {k: {"median_ms": round(statistics.median(v) * 1000, 1),
                   "max_ms": round(max(v) * 1000, 1), "n": len(v)} for k, v in res.items()}
    if args.json:
        print(json.dumps({"loadavg": load, **summary}))
    else:
        print(f"load average before: {' '.join(load)}")
        for k, s in summary.items():
            print(f"{k:9} median {s['median_ms']:7.1f} ms   max {s['max_ms']:7.1f} ms   "
                  f"(n={s['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
