"""Workers and their managers (issue 16), on agents in lab machines with real kill -9. One
lab: etcd in a machine of its own (``etcd1``), managers ``node1`` and ``node2``, worker
``node3``, which joins before ``node2`` does.

- the worker hears of the manager that joined after it (gossip), and keeps it in its state;
- when the manager it talks to is killed, its next change that needs a manager is served by
  the other one within a bound;
- while no manager answers, it keeps handing out addresses from the blocks it leased, and
  what needs a manager fails fast with one line naming every manager tried;
- a demoted manager leaves its list at the next answer, a promoted one joins it.

The choice logic itself: tests/unit/test_manager_failover.py."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from netfabric.lab.cluster import Lab
from netfabric.lab.ha import ha_cluster
from netfabric.lab.topology import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

M1, M2 = "198.51.100.1:2377", "198.51.100.2:2377"
FAILOVER_BOUND_S = 3.0
"""Issue 16's goal for the time from a manager's kill -9 to the worker's next change."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # node3 joins before node2: it can only hear of node2 from gossip
    with ha_cluster(str(tmp_path_factory.mktemp("fo")), managers=["node1", "node2"],
                    workers=["node3"], joins=["node3", "node2"], name="fofail") as (lab, _):
        yield lab


def nf(lab: Lab, host: str, *argv: str, code: int = 0) -> str:
    proc = lab.run(host, ["netfabric", *argv], timeout=60)
    assert proc.returncode == code, (argv, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout if code == 0 else proc.stderr


def _known(lab: Lab, host: str) -> list[str]:
    """The managers ``host`` keeps in its state file."""
    with open(lab.agent(host).path("/var/lib/netfabric/agent-state.json"), "rb") as f:
        return list(json.load(f)["cluster"]["managers"])


def _ip(lab: Lab, host: str, name: str) -> str:
    return nf(lab, host, "inspect", "-f",
              "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).strip()


def test_a_worker_learns_of_a_manager_that_joined_after_it(lab: Lab) -> None:
    assert wait_for(lambda: sorted(_known(lab, "node3")) == [M1, M2], 5), _known(lab, "node3")


def test_the_worker_fails_over_when_its_manager_is_killed(lab: Lab) -> None:
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "fo-a")
    nf(lab, "node3", "run", "-d", "--network", "fo-a", "--name", "fo-a1")  # node1 answers
    nf(lab, "node2", "network", "create", "-d", "overlay", "--attachable", "fo-b")
    m1 = lab.agent("node1")
    lab.stop_agent(m1, sig=signal.SIGKILL)
    killed = time.monotonic()
    try:
        # fo-b is new to the worker: attaching needs a manager (get_network, lease_block)
        nf(lab, "node3", "run", "-d", "--network", "fo-b", "--name", "fo-b1")
        took = time.monotonic() - killed
        assert _ip(lab, "node3", "fo-b1")
        print(f"worker served by node2 {took:.2f}s after node1's kill -9")
        assert took < FAILOVER_BOUND_S, f"failover took {took:.2f}s"
    finally:
        lab.start_agent(m1)
        lab.wait_ready(m1)


def test_a_worker_allocates_from_its_blocks_while_no_manager_answers(lab: Lab) -> None:
    managers = [lab.agent("node1"), lab.agent("node2")]
    nf(lab, "node3", "run", "-d", "--network", "fo-a", "--name", "fo-c0")
    for m in managers:
        lab.stop_agent(m, sig=signal.SIGKILL)
    try:
        addresses = {_ip(lab, "node3", "fo-a1"), _ip(lab, "node3", "fo-c0")}
        for i in range(1, 5):
            start = time.monotonic()
            nf(lab, "node3", "run", "-d", "--network", "fo-a", "--name", f"fo-c{i}")
            took = time.monotonic() - start
            assert took < 5, f"run took {took:.1f}s with no manager"
            addresses.add(_ip(lab, "node3", f"fo-c{i}"))
        assert len(addresses) == 6, addresses
        # a network the worker has never seen needs a manager: one line, fast, naming both
        start = time.monotonic()
        err = nf(lab, "node3", "run", "-d", "--network", "fo-unknown", "--name", "fo-x",
                 code=125)
        took = time.monotonic() - start
        # in the order tried: the one the worker asked last first (node2 after the failover
        # above, or node1 again if an answer moved it back)
        assert err.strip() in (
            f"Error: no manager could serve get_network: {a}: Connection refused; "
            f"{b}: Connection refused" for a, b in ((M1, M2), (M2, M1))), err
        assert took < 3, f"the refusal took {took:.1f}s"
    finally:
        for m in managers:
            lab.start_agent(m)
        for m in managers:
            lab.wait_ready(m)
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "fo-d")
    nf(lab, "node3", "run", "-d", "--network", "fo-d", "--name", "fo-d1")
    held = json.loads(nf(lab, "node2", "network", "inspect", "-f", "{{json .Containers}}",
                         "fo-d"))
    assert [c["Name"] for c in held.values()] == ["fo-d1"], held


def test_a_demoted_manager_is_dropped_and_a_promoted_one_learned(lab: Lab) -> None:
    nf(lab, "node1", "node", "demote", "node2")
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "fo-e")
    nf(lab, "node3", "run", "-d", "--network", "fo-e", "--name", "fo-e1")  # a manager answers
    assert wait_for(lambda: _known(lab, "node3") == [M1], 5), _known(lab, "node3")
    nf(lab, "node1", "node", "promote", "node2")
    assert wait_for(lambda: sorted(_known(lab, "node3")) == [M1, M2], 10), \
        _known(lab, "node3")
