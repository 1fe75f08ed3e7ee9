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

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netfabric.ipam import Ipam
from netfabric.lab.machine import Machine
from netfabric.lab.topology import exit_on_sigterm
from netfabric.store import Store

__all__ = ["IPERF_PORT", "Place", "alloc_rate", "emit", "held_inside", "hold", "inside", "iperf",
           "load_average", "place_argv", "run_main", "sh", "wait_listening"]

IPERF_PORT = 5201
Place = tuple[Machine, str | None]
"""Where a program runs: a lab machine, and a netns under its /run/netns (``None``: the
machine's own)."""


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


def sh(argv: Sequence[str]) -> str:
    """Run a program; its output, or RuntimeError with what it said."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def place_argv(place: Place, argv: Sequence[str]) -> list[str]:
    """``argv`` run at ``place``."""
    machine, netns = place
    return machine.argv(["ip", "netns", "exec", netns, *argv] if netns else list(argv))


def wait_listening(place: Place, port: int) -> None:
    """Until a TCP socket listens on ``port`` at ``place`` (5 s at most)."""
    for _ in range(100):
        if f":{port} " in sh(place_argv(place, ["ss", "-ltnH"])):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} in {place[1] or place[0].hostname}")


def iperf(server: Place, client: Place, dst: str, seconds: float, *,
          port: int = IPERF_PORT) -> float:
    """Gbit/s received, one iperf3 TCP stream from ``client`` to ``dst:port``; the server
    listens on :data:`IPERF_PORT` at ``server`` (``port`` differs behind a DNAT)."""
    proc = subprocess.Popen(place_argv(server, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(server, IPERF_PORT)
        out = sh(place_argv(client, ["iperf3", "-c", dst, "-p", str(port), "-t", str(seconds),
                                     "-J"]))
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def hold() -> None:
    """In a part started by :func:`held_inside`: say it is ready, then keep what it made
    until the bench closes its stdin."""
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.read()


@contextlib.contextmanager
def held_inside(script: str, parts: Sequence[tuple[Machine, Sequence[str]]]) -> Iterator[None]:
    """Start ``python SCRIPT ARGS`` in each machine (a part that sets up what that host runs,
    e.g. a driver, and calls :func:`hold`), wait until every one is ready, and end them all
    on exit, whatever happens."""
    procs = [subprocess.Popen(m.argv([sys.executable, script, *args]), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for m, args in parts]
    try:
        for (m, args), proc in zip(parts, procs, strict=True):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line or json.loads(line) != {"ready": True}:
                raise RuntimeError(f"{Path(script).name} {' '.join(args)} in {m.hostname} "
                                   "did not start")
        yield
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
