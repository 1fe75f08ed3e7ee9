#!/usr/bin/env python3
"""A tiny orchestrator on netfabric's library API (run as root).

It brings up a 3-host lab (or uses the one `netfabric lab up --join` made), creates an
attachable overlay on the manager, places six replicas of a "service" across the hosts
(round-robin over the nodes that are Ready and Active), prints where each landed, and pings
every replica by name from the first one. Everything goes through ``netfabric.Client``:
typed objects back, ``netfabric.NetfabricError`` subclasses on refusal.

    sudo .venv/bin/python examples/orchestrator.py          # builds and removes its own lab
"""

from __future__ import annotations

import subprocess
import sys

import netfabric
from netfabric.lab.cluster import Lab
from netfabric.lab.walkthrough import form_cluster

REPLICAS = 6
NETWORK = "appnet"
SERVICE = "appserver"


def place(lab: Lab) -> int:
    clients = {a.name: netfabric.Client(a.url) for a in lab.agents}
    manager = clients[lab.agents[0].name]
    nodes = [n for n in manager.nodes()
             if n.status == "Ready" and n.availability == "active"]
    print(f"{len(nodes)} schedulable nodes: {', '.join(n.hostname for n in nodes)}")
    net = manager.create_network(NETWORK, driver="overlay", attachable=True)
    print(f"overlay {net.name} {net.subnets[0]} (VNI {net.vni})")
    placed: list[tuple[str, str, str]] = []
    for i in range(1, REPLICAS + 1):
        node = nodes[(i - 1) % len(nodes)].hostname
        name = f"{SERVICE}.{i}"
        con = clients[node].run(name, network=NETWORK, aliases=[SERVICE])
        placed.append((name, node, con.networks[0].ipv4 or "?"))
    print(f"\n{'TASK':<14}{'NODE':<8}ADDRESS")
    for name, node, ip in placed:
        print(f"{name:<14}{node:<8}{ip}")
    first_name, first_node, _ = placed[0]
    agent = lab.agent(first_node)
    print(f"\npinging every replica by name from {first_name} on {first_node}:")
    failures = 0
    for name, node, ip in placed[1:]:
        proc = subprocess.run(
            lab.exec_argv(agent, ["netfabric", "exec", first_name, "ping",
                                  "-c1", "-W2", name]),
            capture_output=True, text=True, check=False)
        ok = proc.returncode == 0 and f"({ip})" in proc.stdout
        failures += not ok
        print(f"  {name:<14} on {node}: {'ok' if ok else 'FAILED'}")
    return 1 if failures else 0


def main() -> int:
    try:
        with Lab.up(3) as lab:
            form_cluster(lab)
            return place(lab)
    except netfabric.NetfabricError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
