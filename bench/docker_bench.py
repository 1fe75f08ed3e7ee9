#!/usr/bin/env python3
"""Docker plugin benchmark: ``docker run --network`` to a working ping by name.

Two simulated hosts, each with its netfabric agent and its own dockerd (dockerd 20.10).
Each sample starts a waiter first, ``docker exec PINGER sh -c 'until ping -i 0.02 NAME |
grep -q "bytes from"; do sleep 0.02; done'`` (once NAME resolves, a ping every 20 ms until
the first reply: no 1 s ping timeout hides when the path came up), then times from just
before ``docker run -d --network NET --name NAME`` until the waiter exits, i.e. until the
pinger reaches the new container by name:

- ``run_to_ping_ms_netfabric``: NET is a netfabric overlay; the new container runs on host
  B and the pinger on host A (across hosts: the name travels through gossip);
- ``run_to_ping_ms_docker_bridge``: same run, Docker's own ``bridge`` driver on host A, the
  pinger and the new container on that host (Docker's embedded DNS answers);
- ``ratio``: netfabric / docker bridge, medians (goal <= 1.2).

    sudo .venv/bin/python bench/docker_bench.py --json [--samples 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.benchlib import emit, load_average, run_main
from netfabric.lab.dockerd import IMAGE, Dockerd, DockerLab, busybox_rootfs_tar

NF = ("-d", "netfabric", "--ipam-driver", "netfabric")
WAIT_TIMEOUT_S = 30.0


def sample(runner: Dockerd, pinger_host: Dockerd, pinger: str, network: str,
           name: str) -> float:
    """Milliseconds from ``docker run`` to the pinger's first successful ping by name."""
    waiter = subprocess.Popen(
        ["docker", "-H", pinger_host.url, "exec", pinger, "sh", "-c",
         f"until ping -c 500 -i 0.02 {name} 2>/dev/null | grep -q 'bytes from'; "
         "do sleep 0.02; done"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # the waiter's exec is set up before the clock starts
        t0 = time.monotonic()
        runner.docker("run", "-d", "--network", network, "--name", name, IMAGE, "sleep", "600")
        waiter.wait(timeout=WAIT_TIMEOUT_S)
        return (time.monotonic() - t0) * 1000.0
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--samples", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nfdockerbench-") as state_dir:
        lab = DockerLab.up(2, state_dir=state_dir)
        assert isinstance(lab, DockerLab)
        try:
            a, b = lab.start_cluster(busybox_rootfs_tar())
            for d in (a, b):
                d.docker("network", "create", *NF, "-o", "type=overlay", "benchnet")
            a.docker("network", "create", "-d", "bridge", "dockerbr")
            a.docker("run", "-d", "--network", "benchnet", "--name", "nfpinger", IMAGE,
                     "sleep", "3600")
            a.docker("run", "-d", "--network", "dockerbr", "--name", "brpinger", IMAGE,
                     "sleep", "3600")
            nf: list[float] = []
            br: list[float] = []
            for i in range(args.samples + 1):   # the first round warms up both paths
                x = sample(b, a, "nfpinger", "benchnet", f"nf{i}")
                y = sample(a, a, "brpinger", "dockerbr", f"br{i}")
                if i:
                    nf.append(x)
                    br.append(y)
                b.docker("rm", "-f", f"nf{i}")
                a.docker("rm", "-f", f"br{i}")
        finally:
            lab.down()
    out = {
        "run_to_ping_ms_netfabric": round(statistics.median(nf), 1),
        "run_to_ping_ms_docker_bridge": round(statistics.median(br), 1),
        "ratio": round(statistics.median(nf) / statistics.median(br), 3),
        "samples": args.samples,
        "netfabric_ms": [round(v, 1) for v in nf],
        "docker_bridge_ms": [round(v, 1) for v in br],
        "load_average_1m": load_average(),
    }
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
