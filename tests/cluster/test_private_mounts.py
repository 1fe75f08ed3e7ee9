"""An agent started in a private mount namespace makes sandboxes everyone can enter.

Issue 19, item 3: ``ip netns exec HOSTNS netfabric agent ...`` (the usual way to run a
program in a netns; a systemd unit with private mounts does the same) runs the agent in its
own mount namespace, so the netns it mounts under /run/netns are invisible outside it, and
``netfabric exec`` failed with 'setting the network namespace ... failed: Invalid argument'.
The CLI now enters a sandbox through the agent's own view of the mounts
(``/proc/<agent pid>/root``, the pid from the agent socket's peer credentials).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab, spawn_in

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(1, state_dir=str(tmp_path)) as lab:
        yield lab


def _start_with_ip_netns_exec(lab: Lab) -> None:
    """Restart node1's agent the way most people run a program in a netns: inside its
    machine, ``ip netns exec nf netfabric agent ...`` (``nf``: the name the agent gave its
    host's netns when it first ran)."""
    agent = lab.agent("node1")
    lab.stop_agent(agent)
    agent.pid = spawn_in(agent.machine_pid, ["ip", "netns", "exec", "nf",
                                             *lab.agent_argv(agent)], log=agent.log)
    lab.save()
    lab.wait_ready(agent)


def test_exec_enters_sandboxes_of_an_agent_in_a_private_mount_namespace(lab: Lab) -> None:
    _start_with_ip_netns_exec(lab)
    agent = lab.agent("node1")
    assert (os.readlink(f"/proc/{agent.pid}/ns/mnt")
            != os.readlink(f"/proc/{agent.machine_pid}/ns/mnt"))
    n1 = Client(agent.url)
    n1.create_network("br")
    n1.run("alpine_host", network="br")
    n1.run("alpine_client", network="br")
    ping = lab.run("node1", ["netfabric", "exec", "alpine_client", "ping", "-c1", "-W2",
                             "alpine_host"])
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # the command runs in the sandbox's netns: it sees the sandbox's eth0 and address
    addr = lab.run("node1", ["netfabric", "exec", "alpine_client", "ip", "-o", "-4", "addr",
                             "show", "dev", "eth0"])
    want = n1.inspect_container("alpine_client").networks[0].ipv4
    assert addr.returncode == 0 and f" {want}/" in addr.stdout, addr.stdout + addr.stderr
    # a restart the usual way finds the same sandboxes and still enters them
    lab.restart_agent(agent)
    ping = lab.run("node1", ["netfabric", "exec", "alpine_client", "ping", "-c1", "-W2",
                             "alpine_host"])
    assert ping.returncode == 0, ping.stdout + ping.stderr
