"""What every benchmark shares: its start (repository on the path, SIGTERM cleans up), its
output (one JSON object with ``--json``, else ``key: value`` lines), the load average to
record beside its figures, the allocation-rate loop of the IPAM and store benches, and the
way a bench runs a part of itself inside a lab machine (as the agent would run there).

A bench starts with::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.benchlib import emit, run_main
    ...
    if __name__ == "__main__":
        run_main(main)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netfabric.ipam import Ipam
from netfabric.lab.machine import Machine
from netfabric.lab.topology import exit_on_sigterm
from netfabric.store import Store

__all__ = ["alloc_rate", "emit", "inside", "load_average", "run_main"]


def run_main(main: Callable[[], int]) -> None:
    """Run a bench's ``main``: SIGTERM unwinds it (so its lab is removed), its exit code is
    the process's."""
    exit_on_sigterm()
    raise SystemExit(main())


def emit(result: Mapping[str, object], as_json: bool) -> None:
    """Print the figures: one JSON object (``--json``), or one ``key: value`` per line."""
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def load_average() -> float:
    """The 1-minute load average, to record beside figures measured on a shared machine."""
    return round(os.getloadavg()[0], 2)


def alloc_rate(store: Store, n: int, cidr: str = "10.9.0.0/16") -> float:
    """Allocations per second of ``n`` addresses through netfabric's IPAM on ``store``."""
    ipam = Ipam(store)
    ipam.request_subnet("n", cidr=cidr)
    t0 = time.perf_counter()
    for _ in range(n):
        ipam.allocate("n")
    return n / (time.perf_counter() - t0)


def inside(machine: Machine, script: str, args: Sequence[str], *,
           timeout: float = 900.0) -> Any:
    """Run ``python SCRIPT ARGS`` inside a lab machine (its network, mount and PID
    namespaces: its own /run/netns, as the agent there sees it) and return the JSON value
    it prints last. The script's part runs there as it would on a host of its own."""
    proc = subprocess.run(machine.argv([sys.executable, script, *args]), capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {' '.join(args)} in {machine.hostname}: "
                           f"{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
