"""No duplicate address, ever: random `run`/`rm` on several hosts interleaved with kill -9
and restart of agents, the manager's included. Checked in the agents' answers and in the
kernel (the addresses actually configured in every sandbox)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client, InUse, ManagerUnreachable, PoolExhausted
from netfabric.lab.cluster import Lab
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SEED = int(os.environ.get("NETFABRIC_CHURN_SEED", "8"))
OPS = 60


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(3, state_dir=str(tmp_path)) as lab:
        form_cluster(lab)
        yield lab


def _kernel_addresses(lab: Lab) -> list[str]:
    out: list[str] = []
    for agent in lab.agents:
        for netns in lab.netns(agent.name, "nf-c"):
            proc = lab.run(agent.name, ["ip", "-n", netns, "-4", "-o", "addr", "show"])
            out += [line.split()[3].split("/")[0] for line in proc.stdout.splitlines()
                    if " lo " not in line]
    return out


def _agent_addresses(lab: Lab) -> list[str]:
    out: list[str] = []
    for agent in lab.agents:
        if agent.alive():
            for con in Client(agent.url).containers():
                out += [e.ipv4 for e in con.networks if e.ipv4 and e.network == "churn"]
    return out


def _assert_unique(addresses: list[str], what: str) -> None:
    dups = [a for a, n in Counter(addresses).items() if n > 1]
    assert not dups, f"duplicate {what} addresses: {dups}"


def test_no_duplicate_address_under_churn_and_kill9(lab: Lab) -> None:
    rng = random.Random(SEED)
    Client(lab.agents[0].url).create_network("churn", driver="overlay", attachable=True,
                                             subnet="10.77.0.0/24")   # workers lease /26 blocks
    names: dict[str, list[str]] = {a.name: [] for a in lab.agents}
    counter = 0
    refused: Counter[str] = Counter()
    for _ in range(OPS):
        agent = rng.choice(lab.agents)
        roll = rng.random()
        if not agent.alive() or roll < 0.12:
            if agent.alive():
                lab.stop_agent(agent, sig=signal.SIGKILL)
            lab.start_agent(agent)
            lab.wait_ready(agent)
            continue
        nf = Client(agent.url)
        try:
            if names[agent.name] and roll < 0.45:
                victim = names[agent.name].pop(rng.randrange(len(names[agent.name])))
                nf.remove_container(victim)
            else:
                counter += 1
                name = f"c{counter}"
                nf.run(name, network="churn")
                names[agent.name].append(name)
        except (PoolExhausted, ManagerUnreachable) as exc:
            # The refusals a user expects: every address of the subnet (or of the worker's
            # blocks) in use, or no manager answering a block lease. Anything else (an agent
            # crash: "internal agent error", an unreachable local agent, a NotFound on rm of a
            # container this test ran) fails here.
            refused[type(exc).__name__] += 1
        if rng.random() < 0.1:   # kill the manager now and then, mid-churn
            manager = lab.agents[0]
            lab.stop_agent(manager, sig=signal.SIGKILL)
            lab.start_agent(manager)
            lab.wait_ready(manager)
        _assert_unique(_kernel_addresses(lab), "kernel")
    _assert_unique(_agent_addresses(lab), "agent")
    # A worker with room in its leased block runs containers while the manager is down.
    manager_proc = lab.agents[0]
    for agent in lab.agents:
        if not agent.alive():
            lab.start_agent(agent)
            lab.wait_ready(agent)
    worker = lab.agents[1]
    Client(worker.url).run("while-down-0", network="churn")
    lab.stop_agent(manager_proc, sig=signal.SIGKILL)
    Client(worker.url).run("while-down-1", network="churn")
    Client(worker.url).remove_container("while-down-1")
    Client(worker.url).remove_container("while-down-0")
    lab.start_agent(manager_proc)
    lab.wait_ready(manager_proc)
    _assert_unique(_kernel_addresses(lab), "kernel")
    live = sum(len(v) for v in names.values())
    assert live > 0 and sum(refused.values()) < OPS // 4, refused
    # Nothing leaked either: with every container removed (addresses a manager could not
    # take back while it was down are given back once it answers), the network goes.
    for agent in lab.agents:
        if not agent.alive():
            lab.start_agent(agent)
            lab.wait_ready(agent)
        for name in names[agent.name]:
            Client(agent.url).remove_container(name)
    nf_manager = Client(lab.agents[0].url)
    deadline = time.monotonic() + 15
    while True:
        try:
            nf_manager.remove_network("churn")
            break
        except InUse:
            assert time.monotonic() < deadline, "addresses leaked: the network stays in use"
            time.sleep(0.5)
