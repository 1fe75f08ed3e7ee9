"""Ten gossip runtime nodes as processes, each in its own machine, over UDP and TCP."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netfabric.lab.topology import Host
from tests.conftest import HostsFactory

REPO = Path(__file__).resolve().parents[2]


class NodeProc:
    """One ``python -m netfabric.gossip.node`` inside a machine, JSON lines on stdio (killing
    it kills the node: the machine's entry makes the node die with it)."""

    def __init__(self, host: Host, *args: str) -> None:
        self.host = host
        self.proc = subprocess.Popen(
            host.enter([sys.executable, "-m", "netfabric.gossip.node", "--bind", host.address,
                        "--secret", "test cluster secret", "--profile", "local", *args]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, cwd=REPO)

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"{self.host.name}: no answer in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError(f"{self.host.name}: node exited ({self.proc.poll()})")
        out: dict[str, Any] = json.loads(line)
        return out

    def ready(self, timeout: float = 20.0) -> dict[str, Any]:
        return self._line(timeout)

    def ask(self, timeout: float = 5.0, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def alive_members(self) -> set[str]:
        return {m["node"] for m in self.ask(op="members")["members"]
                if m["state"] in ("ALIVE", "SUSPECT")}

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture
def procs() -> Iterator[list[NodeProc]]:
    made: list[NodeProc] = []
    try:
        yield made
    finally:
        for p in made:
            p.kill()


@pytest.mark.slow
def test_ten_processes_converge_and_detect_a_kill(hosts: HostsFactory,
                                                   procs: list[NodeProc]) -> None:
    topo = hosts(10, machines=True)
    seed = f"{topo.hosts[0].address}:7946"
    for i, host in enumerate(topo.hosts):
        procs.append(NodeProc(host, "--node-id", f"node{i}", "--network", "net1",
                              *(["--seeds", seed] if i else [])))
        if i == 0:
            assert procs[0].ready()["node"] == "node0"
    for p in procs[1:]:
        assert p.ready()["ready"]
    everyone = {f"node{i}" for i in range(10)}
    wait_until(lambda: all(p.alive_members() == everyone for p in procs), 20, "membership")

    # a table entry converges everywhere, over UDP gossip
    assert procs[0].ask(op="set", table="endpoints", network="net1", key="ep0",
                        value="10.0.0.2")["ok"]
    assert procs[5].ask(op="set", table="endpoints", network="net1", key="ep5",
                        value="10.0.0.7")["ok"]

    def has(key: str, p: NodeProc) -> bool:
        return key in p.ask(op="entries", table="endpoints", network="net1")["entries"]

    took = wait_until(lambda: all(has("ep0", p) and has("ep5", p) for p in procs), 10,
                      "entry convergence")
    assert took < 10

    # kill -9 one node: every other node marks it dead and drops its entry
    procs[5].kill()
    others = [p for i, p in enumerate(procs) if i != 5]
    took = wait_until(lambda: all("node5" not in p.alive_members() and not has("ep5", p)
                                  for p in others), 20, "failure detection")
    assert all(has("ep0", p) for p in others)
    counters = [p.ask(op="counters")["counters"] for p in others]
    assert all(c["auth_failed"] == 0 and c["decode_failed"] == 0 for c in counters)
    # TCP push/pull ran beyond the joins: a periodic digest exchange (every 5 s in the local
    # profile) was served over TCP and found both states equal
    wait_until(lambda: sum(p.ask(op="counters")["counters"]["streams_in_sync"]
                           for p in others) > 0, 15, "a periodic push/pull over TCP")
    print(f"detected kill -9 in {took:.1f}s")
