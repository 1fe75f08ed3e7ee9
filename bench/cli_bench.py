#!/usr/bin/env python3
"""CLI start-up benchmark: what a user waits for before and around one ``netfabric`` call.

Prints one JSON object (with ``--json``), each a median over ``--runs`` fresh processes, ms:

- ``import_ms``: ``python -c "import netfabric"``;
- ``help_ms``: ``netfabric --help``;
- ``info_ms``: ``netfabric info`` against a real agent in a one-host lab (entered with
  ``ip netns exec``, so the figure includes that process too);
- ``info_netns_only_ms``: ``ip netns exec NS true`` alone, to subtract;
- ``python_ms``: ``python -c pass``, the interpreter's own floor.

    sudo .venv/bin/python bench/cli_bench.py --json [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from netfabric.lab.cluster import Lab
from netfabric.lab.topology import exit_on_sigterm


def _median_ms(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)  # warm the cache
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exit_on_sigterm()
    py = sys.executable
    cli = os.path.join(os.path.dirname(py), "netfabric")
    out: dict[str, float | str] = {
        "python_ms": _median_ms([py, "-c", "pass"], args.runs),
        "import_ms": _median_ms([py, "-c", "import netfabric"], args.runs),
        "help_ms": _median_ms([cli, "--help"], args.runs),
    }
    with Lab.up(1) as lab:
        agent = lab.agents[0]
        env = {**os.environ, "NETFABRIC_HOST": agent.url}
        ns = ["ip", "netns", "exec", agent.netns]
        out["info_netns_only_ms"] = _median_ms([*ns, "true"], args.runs)
        out["info_ms"] = _median_ms([*ns, cli, "info"], args.runs, env=env)
    with open("/proc/loadavg", encoding="ascii") as f:
        out["loadavg"] = " ".join(f.read().split()[:3])
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
