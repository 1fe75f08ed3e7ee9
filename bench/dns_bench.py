"""DNS benchmark: dnsperf against our server and against dnsmasq, same names, same run.

Both servers run inside one lab machine (its own network, mount and PID namespaces, as a
host of its own): ours as ``python -m netfabric.dns.runner`` in the machine, serving
127.0.0.11:53 in sandbox s1 (a netns under the machine's /run/netns); dnsmasq
in sandbox s2 on 127.0.0.11:53 with the same 1000 names from a hosts file. dnsperf runs
inside each sandbox (UDP, ``-c 4``), first flat out for ``qps``, then at half of our
maximum rate with ``-v`` to read every query's latency for ``p99_ms_at_half_load``. The
flat-out runs alternate between the two servers (``--rounds``, medians reported), so load
from elsewhere on the machine hits both alike, after the same warm-up run on each.

Two query mixes, same run: ``all-hits`` (the 1000 names over and over: after the warm-up
every answer of ours comes from its reply cache) and ``miss`` (keys ``miss_*``): both
servers also know ``--miss-names`` more names (100,000 by default) and the queries walk
them shuffled, so within a run a name is asked about once: ours answers each through its
resolver, not its cache; dnsmasq answers from its hosts table either way.

    .venv/bin/python bench/dns_bench.py --json [--mode thread|loop] [--no-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import emit, load_average, run_main
from netfabric.lab.machine import Machine
from netfabric.lab.topology import Topology

NAMES = 1000


def _run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)


def _must(argv: Sequence[str]) -> None:
    proc = _run(argv)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr}")


def _address(i: int) -> str:
    block = i // 250
    return f"10.{80 + block // 256}.{block % 256}.{i % 250 + 1}"


def _dnsperf(m: Machine, netns: str, datafile: str, *, clients: int, seconds: float,
             qps_limit: int | None = None, verbose: bool = False) -> tuple[float, list[float]]:
    argv = ["ip", "netns", "exec", netns, "dnsperf", "-s", "127.0.0.11", "-d", datafile,
            "-c", str(clients), "-l", str(seconds), "-q", "200", "-t", "2"]
    if qps_limit is not None:
        argv += ["-Q", str(qps_limit)]
    if verbose:
        argv += ["-v"]
    proc = _run(m.argv(argv), timeout=seconds + 30)
    match = re.search(r"Queries per second:\s+([\d.]+)", proc.stdout)
    if match is None:
        raise RuntimeError(f"dnsperf failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    lost = re.search(r"Queries lost:\s+(\d+)", proc.stdout)
    if lost and int(lost.group(1)) > 0:
        print(f"# {netns}: dnsperf lost {lost.group(1)} queries", file=sys.stderr)
    latencies: list[float] = []
    if verbose:
        for line in proc.stdout.splitlines():
            # "> NOERROR name12 A 0.000081"
            if line.startswith("> "):
                try:
                    latencies.append(float(line.rsplit(None, 1)[1]))
                except (ValueError, IndexError):
                    continue
    return float(match.group(1)), latencies


def _p99_ms(latencies: list[float]) -> float:
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3)


class _Runner:
    def __init__(self, m: Machine, args: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            m.argv([sys.executable, "-m", "netfabric.dns.runner", "--no-upstream", *args]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=str(Path(__file__).resolve().parents[1]))
        assert self.proc.stdout is not None
        if json.loads(self.proc.stdout.readline()) != {"ready": True}:
            raise RuntimeError("DNS runner did not start")

    def call_many(self, cmds: list[dict[str, object]]) -> list[dict[str, object]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("".join(json.dumps(c) + "\n" for c in cmds))
        self.proc.stdin.flush()
        out = [json.loads(self.proc.stdout.readline()) for _ in cmds]
        bad = [o for o in out if not o["ok"]]
        if bad:
            raise RuntimeError(f"runner refused: {bad[:3]}")
        return out

    def stop(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def _rounds(m: Machine, s1: str, s2: str, datafile: str, *, clients: int, seconds: float,
            rounds: int) -> tuple[list[float], list[float]]:
    ours_qps: list[float] = []
    theirs_qps: list[float] = []
    for _ in range(rounds):  # interleaved, so load from elsewhere hits both alike
        ours_qps.append(_dnsperf(m, s1, datafile, clients=clients, seconds=seconds)[0])
        theirs_qps.append(_dnsperf(m, s2, datafile, clients=clients, seconds=seconds)[0])
    return ours_qps, theirs_qps


def bench(*, mode: str, cache: bool, seconds: float, clients: int, rounds: int,
          miss_names: int) -> dict[str, object]:
    topo = Topology.build(1, machines=True)
    m = topo.machine(topo.hosts[0])
    tmp = tempfile.mkdtemp(prefix="nf-dns-bench-")
    dnsmasq: subprocess.Popen[bytes] | None = None
    ours: _Runner | None = None
    total = NAMES + miss_names
    try:
        s1, s2 = f"{topo.prefix}-s1", f"{topo.prefix}-s2"
        for ns in (s1, s2):
            _must(m.argv(["ip", "netns", "add", ns]))
            _must(m.argv(["ip", "-n", ns, "link", "set", "lo", "up"]))
        datafile = os.path.join(tmp, "queries")
        missfile = os.path.join(tmp, "queries-miss")
        hostsfile = os.path.join(tmp, "hosts")
        with open(datafile, "w") as fh:
            fh.writelines(f"name{i} A\n" for i in range(NAMES))
        order = list(range(NAMES, total))
        random.Random(1).shuffle(order)
        with open(missfile, "w") as fh:
            fh.writelines(f"name{i} A\n" for i in order)
        with open(hostsfile, "w") as fh:
            fh.writelines(f"{_address(i)} name{i}\n" for i in range(total))
        os.chmod(tmp, 0o755)
        for f in (hostsfile, datafile, missfile):
            os.chmod(f, 0o644)
        dnsmasq = subprocess.Popen(m.argv(
            ["ip", "netns", "exec", s2, "dnsmasq", "--keep-in-foreground",
             "--conf-file=/dev/null", "--no-resolv", "--no-hosts", f"--addn-hosts={hostsfile}",
             "--listen-address=127.0.0.11", "--bind-interfaces", "--pid-file", "--port=53",
             "--local-ttl=2", "--cache-size=10000", "--log-facility=/dev/null"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args = ["--mode", mode, "--seed", "1"]
        if not cache:
            args += ["--cache-entries", "0"]
        ours = _Runner(m, args)
        cmds: list[dict[str, object]] = [
            {"op": "set_endpoint", "network": "bench", "name": f"name{i}", "ipv4": _address(i)}
            for i in range(total)]
        cmds.append({"op": "add_sandbox", "netns": s1, "networks": ["bench"]})
        for k in range(0, len(cmds), 5000):
            ours.call_many(cmds[k:k + 5000])
        last = f"name{total - 1}"
        for ns in (s1, s2):  # both up and answering every name before measuring
            deadline = time.monotonic() + 30
            while _address(total - 1) not in _run(m.argv([
                    "ip", "netns", "exec", ns, "dig", "@127.0.0.11", "+short", "+time=1",
                    "+tries=1", last])).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no DNS answer in {ns}")
                time.sleep(0.1)
        for ns in (s1, s2):  # the same warm-up for both servers
            _dnsperf(m, ns, datafile, clients=clients, seconds=1)
        ours_qps, theirs_qps = _rounds(m, s1, s2, datafile, clients=clients, seconds=seconds,
                                       rounds=rounds)
        qps = statistics.median(ours_qps)
        dnsmasq_qps = statistics.median(theirs_qps)
        half = max(1, int(qps / 2))
        _, lat = _dnsperf(m, s1, datafile, clients=clients, seconds=min(seconds, 3),
                          qps_limit=half, verbose=True)
        _, mq_lat = _dnsperf(m, s2, datafile, clients=clients, seconds=min(seconds, 3),
                             qps_limit=half, verbose=True)
        before = ours.call_many([{"op": "stats"}])[0]["result"]
        miss_ours, miss_theirs = _rounds(m, s1, s2, missfile, clients=clients, seconds=seconds,
                                         rounds=rounds)
        stats = ours.call_many([{"op": "stats"}])[0]["result"]
        miss_qps, miss_dnsmasq_qps = statistics.median(miss_ours), statistics.median(miss_theirs)
        return {
            "qps": round(qps, 1),
            "dnsmasq_qps": round(dnsmasq_qps, 1),
            "ratio": round(qps / dnsmasq_qps, 3) if dnsmasq_qps else None,
            "p99_ms_at_half_load": _p99_ms(lat),
            "dnsmasq_p99_ms_at_half_load": _p99_ms(mq_lat),
            "half_load_qps": half,
            "qps_rounds": [round(q) for q in ours_qps],
            "dnsmasq_qps_rounds": [round(q) for q in theirs_qps],
            "miss_qps": round(miss_qps, 1),
            "miss_dnsmasq_qps": round(miss_dnsmasq_qps, 1),
            "miss_ratio": round(miss_qps / miss_dnsmasq_qps, 3) if miss_dnsmasq_qps else None,
            "miss_qps_rounds": [round(q) for q in miss_ours],
            "miss_dnsmasq_qps_rounds": [round(q) for q in miss_theirs],
            "mode": mode,
            "cache": cache,
            "names": NAMES,
            "miss_names": miss_names,
            "clients": clients,
            "seconds": seconds,
            "load_avg_1m": load_average(),
            "server_counters_before_miss_runs": before,
            "server_counters": stats,
        }
    finally:
        if ours is not None:
            ours.stop()
        if dnsmasq is not None:
            dnsmasq.kill()
            dnsmasq.wait()
        topo.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--mode", choices=["thread", "loop"], default="thread")
    parser.add_argument("--no-cache", dest="cache", action="store_false",
                        help="disable the reply cache (every query through dnslib)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved dnsperf runs per server; medians are reported")
    parser.add_argument("--miss-names", type=int, default=100_000,
                        help="extra names for the cache-miss mix (each asked once a pass)")
    args = parser.parse_args(argv)
    result = bench(mode=args.mode, cache=args.cache, seconds=args.seconds,
                   clients=args.clients, rounds=args.rounds, miss_names=args.miss_names)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
