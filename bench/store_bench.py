"""Store benchmark (issue 16): IPAM allocations through etcd 3.4 beside SQLite, same run.

- ``allocs_per_s_sqlite``: ``Ipam`` over ``SqliteStore`` (WAL, ``synchronous=NORMAL``, one
  commit per allocation) in a fresh temp file, one allocator. The embedded default.
- ``allocs_per_s_etcd``: ``Ipam`` over ``EtcdStore`` (one CAS txn per allocation) against
  etcd members in lab hosts (``--members``, default 3: a real quorum, each write
  replicated), one allocator.
- ``conflicts_per_1000``: 3 managers (threads, each its own ``EtcdStore`` and ``Ipam``, each
  on a different member) allocating at once from one network; lost compare-and-swaps per
  1,000 successful allocations (every conflict is one reload and one retry, so
  ``retries_per_1000`` is the same count); ``allocs_per_s_etcd_3managers`` is their
  aggregate rate, and ``duplicates`` must be 0.
- ``conflicts_per_1000_affinity``: the same 3 managers Calico's way (``SharedIpam`` as the
  block source of a ``HostAllocator`` per manager, its rows under its own prefix): they
  contend only when leasing a /26; ``allocs_per_s_etcd_3managers_affinity`` aggregate.
- ``etcd_failover_s``: with ``--members 3``, one allocator writing in a loop; ``kill -9`` of
  the etcd leader; time until the next allocation succeeds.
- ``failover_s``: agents in lab machines (etcd in its own machine, managers ``m1`` and
  ``m2``, worker ``w1``): ``kill -9`` of the manager the worker talks to, then at once the
  worker's next network change that needs a manager: ``run`` of a container on a network
  new to the worker (``get_network``, then a block lease: both served by a manager only),
  through the library client as an orchestrator would. Time from the kill until that
  ``run`` returns; median of ``--failover-runs`` (default 5); the manager killed is the one
  the worker's ``info`` lists first (the one it asks first). Beside it, same run:
  ``failover_baseline_s``, the same ``run`` with every manager up; ``failover_cut_s``,
  the same failover when the manager's machine is cut off at the switch instead (a dead
  host: its connection attempts go unanswered, so the 0.5 s connect timeout is paid).

The bench thread enters the first lab host's netns (etcd never runs in the root netns); the
lab is removed at the end, also on failure.

    .venv/bin/python bench/store_bench.py --json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.benchlib import alloc_rate, emit, load_average, run_main
from netfabric.errors import StoreConflict, StoreUnavailable
from netfabric.ipam import HostAllocator, Ipam
from netfabric.ipam.shared import SharedIpam
from netfabric.lab.etcd import EtcdLab
from netfabric.lab.topology import Topology
from netfabric.netns import entered
from netfabric.store import SqliteStore
from netfabric.store.etcd import EtcdStore, retry_on_conflict


def sqlite_rate(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="ha-bench-") as d, \
            SqliteStore(os.path.join(d, "s.db")) as store:
        return alloc_rate(store, n)


def etcd_rate(url: str, n: int) -> float:
    with EtcdStore(url, prefix="/bench-single/") as store:
        return alloc_rate(store, n)


def _race(manager: Callable[[int], None], managers: int, barrier: threading.Barrier,
          errors: list[BaseException]) -> float:
    """Run ``manager(i)`` for each manager in its own thread, all let go at once through
    ``barrier``: seconds until the last one is done (the first error raised)."""
    threads = [threading.Thread(target=manager, args=(i,)) for i in range(managers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def contended(lab: EtcdLab, per_manager: int, managers: int = 3) -> dict[str, float]:
    prefix = "/bench-contended/"
    with EtcdStore(lab.url, prefix=prefix) as s0:
        Ipam(s0).request_subnet("n", cidr="10.10.0.0/16")
    got: list[list[str]] = [[] for _ in range(managers)]
    conflicts = [0] * managers
    errors: list[BaseException] = []
    barrier = threading.Barrier(managers + 1)
    hosts = [h.address for h in lab.hosts]

    def manager(i: int) -> None:
        try:
            # each manager talks to its own member first (then the others)
            order = hosts[i % len(hosts):] + hosts[:i % len(hosts)]
            with EtcdStore([(h, 2379) for h in order], prefix=prefix) as store:
                ref = [Ipam(store)]

                def reload() -> None:
                    ref[0] = Ipam(store)

                def counted() -> None:
                    conflicts[i] += 1
                barrier.wait()
                for _ in range(per_manager):
                    got[i].append(retry_on_conflict(lambda: ref[0].allocate("n"), reload,
                                                    attempts=1000, on_conflict=counted).address)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    elapsed = _race(manager, managers, barrier, errors)
    every = [a for g in got for a in g]
    return {"conflicts_per_1000": 1000 * sum(conflicts) / len(every),
            "allocs_per_s_etcd_3managers": len(every) / elapsed,
            "duplicates": len(every) - len(set(every))}


def affinity(lab: EtcdLab, per_manager: int, managers: int = 3) -> dict[str, float]:
    """The same 3 managers, Calico's way: each leases blocks through the shared rows and
    allocates inside them (its rows under its own prefix)."""
    prefix = "/bench-affinity/"
    with EtcdStore(lab.url, prefix=prefix) as s0:
        Ipam(s0).request_subnet("n", cidr="10.12.0.0/16")
    got: list[list[str]] = [[] for _ in range(managers)]
    sources: list[SharedIpam] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(managers + 1)

    def manager(i: int) -> None:
        try:
            with EtcdStore(lab.url, prefix=prefix) as store, \
                    EtcdStore(lab.url, prefix=f"{prefix}hosts/m{i}/") as own:
                source = SharedIpam(store, attempts=1000)
                sources.append(source)
                alloc = HostAllocator(f"m{i}", source, own)
                barrier.wait()
                for _ in range(per_manager):
                    got[i].append(alloc.allocate("n").address)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    elapsed = _race(manager, managers, barrier, errors)
    every = [a for g in got for a in g]
    return {"conflicts_per_1000_affinity": 1000 * sum(s.conflicts for s in sources) / len(every),
            "allocs_per_s_etcd_3managers_affinity": len(every) / elapsed,
            "duplicates_affinity": len(every) - len(set(every))}


def leader_of(lab: EtcdLab) -> int:
    """Index of the member that is the raft leader (asked over each member's status)."""
    import requests

    for i, h in enumerate(lab.hosts):
        st = requests.post(f"http://{h.address}:2379/v3/maintenance/status", json={},
                           timeout=2).json()
        if st.get("leader") == st.get("header", {}).get("member_id"):
            return i
    raise RuntimeError("no etcd leader")


def etcd_failover(lab: EtcdLab) -> float:
    with EtcdStore(lab.url, prefix="/bench-failover/", timeout=1.0) as store:
        ipam = Ipam(store)
        ipam.request_subnet("n", cidr="10.11.0.0/16")
        for _ in range(20):
            ipam.allocate("n")
        leader = lab.hosts[leader_of(lab)]
        lab.kill(leader)
        t0 = time.perf_counter()
        while True:
            try:
                ipam.allocate("n")
                return time.perf_counter() - t0
            except StoreUnavailable:
                pass
            except StoreConflict:  # a write that committed before the answer was lost
                ipam = Ipam(store)
            if time.perf_counter() - t0 > 30:
                raise RuntimeError("etcd did not recover within 30 s")


def manager_failover(runs: int) -> dict[str, object]:
    """``failover_s`` and its same-run baseline (see the module docstring)."""
    import signal
    import statistics

    from netfabric import Client
    from netfabric.lab.ha import ha_cluster

    with tempfile.TemporaryDirectory(prefix="fo-bench-") as tmp, \
            ha_cluster(tmp, managers=["m1", "m2"], workers=["w1"], name="fobench") as (lab, _):
        w1 = Client(lab.agent("w1").url, timeout=60)
        managers = {"m1": Client(lab.agent("m1").url), "m2": Client(lab.agent("m2").url)}
        baseline, took = [], []
        by_addr = {lab.agent(m).address: m for m in managers}

        def talking_to() -> str:
            """The manager the worker asks first (`info` lists it first)."""
            return by_addr[w1.info().managers[0].rpartition(":")[0]]

        talks_to = "m1"
        for i in range(runs):
            for name, client in managers.items():
                client.create_network(f"fo-warm{i}-{name}", driver="overlay",
                                      attachable=True)
            w1.run(f"fo-warm{i}", network=f"fo-warm{i}-{talks_to}")
            t0 = time.perf_counter()
            w1.run(f"fo-base{i}", network=f"fo-warm{i}-"
                   f"{'m2' if talks_to == 'm1' else 'm1'}")
            baseline.append(time.perf_counter() - t0)
            talks_to = talking_to()
            survivor = "m2" if talks_to == "m1" else "m1"
            managers[survivor].create_network(f"fo-net{i}", driver="overlay",
                                              attachable=True)
            victim = lab.agent(talks_to)
            t0 = time.perf_counter()
            lab.stop_agent(victim, sig=signal.SIGKILL)
            w1.run(f"fo-run{i}", network=f"fo-net{i}")
            took.append(time.perf_counter() - t0)
            lab.start_agent(victim)
            lab.wait_ready(victim)
            talks_to = survivor
        # the same, but the manager's machine is cut off at the switch (a host that
        # died, not a process): its SYNs go unanswered, so the connect timeout is paid
        cut = []
        for i in range(runs):
            survivor = "m2" if talks_to == "m1" else "m1"
            managers[talks_to].create_network(f"fo-cwarm{i}", driver="overlay",
                                              attachable=True)
            w1.run(f"fo-cwarm{i}", network=f"fo-cwarm{i}")
            talks_to = talking_to()
            survivor = "m2" if talks_to == "m1" else "m1"
            managers[survivor].create_network(f"fo-cnet{i}", driver="overlay",
                                              attachable=True)
            host = lab.topo.host(talks_to)
            t0 = time.perf_counter()
            lab.topo.set_link(host, up=False)
            try:
                w1.run(f"fo-crun{i}", network=f"fo-cnet{i}")
                cut.append(time.perf_counter() - t0)
            finally:
                lab.topo.set_link(host, up=True)
            time.sleep(1.0)   # the healed manager is gossip-alive again
            talks_to = survivor
    return {"failover_s": statistics.median(took),
            "failover_runs_s": [round(t, 3) for t in took],
            "failover_baseline_s": statistics.median(baseline),
            "failover_cut_s": statistics.median(cut),
            "failover_cut_runs_s": [round(t, 3) for t in cut]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--members", type=int, default=3, help="etcd members (1 or 3)")
    parser.add_argument("-n", type=int, default=1000, help="allocations per single run")
    parser.add_argument("--per-manager", type=int, default=300,
                        help="allocations per manager in the contended run")
    parser.add_argument("--failover-runs", type=int, default=5,
                        help="manager kill -9 runs for failover_s (median)")
    args = parser.parse_args()
    out: dict[str, object] = {"members": args.members}
    out["allocs_per_s_sqlite"] = sqlite_rate(args.n)
    with Topology.build(args.members, prefix="nfhab" + os.urandom(2).hex(),
                        machines=True) as topo, \
            EtcdLab(topo.hosts).start() as lab, entered(topo.hosts[0].netns_path()):
        out["allocs_per_s_etcd"] = etcd_rate(lab.url, args.n)
        out.update(contended(lab, args.per_manager))
        out.update(affinity(lab, args.per_manager))
        out["etcd_failover_s"] = etcd_failover(lab) if args.members >= 3 else None
    out.update(manager_failover(args.failover_runs))
    out["load_average_1m"] = load_average()
    emit(out, args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
