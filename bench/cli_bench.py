#!/usr/bin/env python3
"""CLI start-up benchmark: what a user waits for before and around one ``netfabric`` call.

Prints one JSON object (with ``--json``), each a median over ``--runs`` fresh processes, ms
of wall time and, as ``*_cpu_ms``, of the process's own CPU time (user + system), which a
loaded machine inflates far less than wall time:

- ``import_ms``: ``python -c "import netfabric"``;
- ``help_ms``: ``netfabric --help``;
- ``info_ms``: ``netfabric info`` against a real agent in a one-host lab (entered with
  nsenter, so the figure includes that process too);
- ``info_machine_only_ms``: entering the agent's machine to run ``true``, to subtract;
- ``python_ms``: ``python -c pass``, the interpreter's own floor.

    sudo .venv/bin/python bench/cli_bench.py --json [--runs 30] [--venv OTHER/.venv]

``--venv`` times another checkout's interpreter and CLI (e.g. main's, for a before/after
figure under the same load); the lab's agent is always this checkout's.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.benchlib import emit, load_average, run_main
from netfabric.lab.cluster import Lab


def _median_ms(argv: list[str], runs: int,
               env: dict[str, str] | None = None) -> tuple[float, float]:
    """(median wall ms, median CPU ms) of ``runs`` fresh processes of ``argv``."""
    walls, cpus = [], []
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd="/")  # warm up
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd="/")
        walls.append((time.perf_counter() - t0) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return round(statistics.median(walls), 1), round(statistics.median(cpus), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--venv", help="time this virtualenv's python and netfabric")
    args = parser.parse_args()
    py = os.path.join(args.venv, "bin", "python") if args.venv else sys.executable
    cli = os.path.join(os.path.dirname(py), "netfabric")
    out: dict[str, float | str] = {}

    def measure(key: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        out[f"{key}_ms"], out[f"{key}_cpu_ms"] = _median_ms(argv, args.runs, env)

    measure("python", [py, "-c", "pass"])
    measure("import", [py, "-c", "import netfabric"])
    measure("help", [cli, "--help"])
    with Lab.up(1) as lab:
        agent = lab.agents[0]   # `info` inside its machine, on the default socket
        env = {k: v for k, v in os.environ.items() if k != "NETFABRIC_HOST"}
        measure("info_machine_only", agent.enter(["true"]))
        measure("info", agent.enter([cli, "info"]), env)
    out["load_average_1m"] = load_average()
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
