"""A Docker container on a netfabric network reaches a netfabric service's VIP (issue 14's
limit: Docker and CNI sandboxes had no VIP tables), on real dockerd in two machines: the
service's task is a netfabric container on the other host; the Docker container's netns
(Join's SandboxKey) gets the VIP load balancer, by address and by name, and gives it up when
the container goes; after a kill -9 and restart of the agent it is taken back with the
container's other endpoints."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.lab.dockerd import IMAGE, DockerLab, busybox_rootfs_tar
from netfabric.lab.topology import wait_for

pytestmark = pytest.mark.slow

NF = ("-d", "netfabric", "--ipam-driver", "netfabric")


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[DockerLab, Path]]:
    with tempfile.TemporaryDirectory(prefix="svdocker-") as state_dir:
        lab = DockerLab.up(2, state_dir=state_dir)
        assert isinstance(lab, DockerLab)
        try:
            lab.start_cluster(busybox_rootfs_tar())
            yield lab, Path(state_dir)
        finally:
            lab.down()


def test_a_docker_container_reaches_a_service_vip(lab: tuple[DockerLab, Path]) -> None:
    dlab, state = lab
    a = dlab.dockerds["node1"]
    node2 = dlab.agent("node2")
    manager, worker = Client(dlab.agent("node1").url), Client(node2.url)
    manager.create_network("svnet", driver="overlay", attachable=True)
    a.docker("network", "create", *NF, "-o", "type=overlay", "svnet")   # the same network
    vip = manager.create_service("web", networks=["svnet"])["vips"][0]["addr"]
    root = state / "www"
    root.mkdir()
    (root / "index.html").write_text("web1\n")
    task = worker.run("web1", network="svnet")
    subprocess.run(node2.enter(["ip", "netns", "exec", task.netns, "busybox", "httpd",
                                "-p", "80", "-h", str(root)]), check=True, timeout=10)
    worker.add_backend("web", "web1")

    def get(container: str, url: str) -> str:
        # (busybox 1.35's wget -T segfaults, the image has no timeout(1): docker's deadline)
        try:
            proc = a.docker("exec", container, "wget", "-q", "-O", "-", url, check=False,
                            timeout=10)
        except subprocess.TimeoutExpired:
            return "TIMEOUT"
        return proc.stdout.strip() if proc.returncode == 0 else f"FAILED {proc.stderr}"

    a.docker("run", "-d", "--network", "svnet", "--name", "dc1", "--stop-timeout", "1",
             IMAGE, "sleep", "600")
    assert wait_for(lambda: get("dc1", f"http://{vip}/") == "web1", 15), _why(dlab, "dc1")
    assert [get("dc1", f"http://{vip}/") for _ in range(5)] == ["web1"] * 5
    assert wait_for(lambda: get("dc1", "http://web/") == "web1", 15), get("dc1", "http://web/")
    # The container goes (its tables with it); a new one gets them again.
    a.docker("rm", "-f", "dc1")
    a.docker("run", "-d", "--network", "svnet", "--name", "dc2", "--stop-timeout", "1",
             IMAGE, "sleep", "600")
    assert wait_for(lambda: get("dc2", f"http://{vip}/") == "web1", 15)
    # node1's agent is killed and restarted under dc2: it takes dc2's netns back, so a
    # change of the service's tasks still reaches dc2's load balancer.
    node1 = dlab.agent("node1")
    dlab.stop_agent(node1)
    dlab.start_agent(node1)
    dlab.wait_ready(node1)
    (root / "web2").mkdir()
    (root / "web2" / "index.html").write_text("web2\n")
    task2 = worker.run("web2", network="svnet")
    subprocess.run(node2.enter(["ip", "netns", "exec", task2.netns, "busybox", "httpd",
                                "-p", "80", "-h", str(root / "web2")]), check=True, timeout=10)
    worker.add_backend("web", "web2")
    worker.remove_backend("web", "web1")
    assert wait_for(lambda: [get("dc2", f"http://{vip}/") for _ in range(4)] == ["web2"] * 4,
                    15), _why(dlab, "dc2")
    a.docker("rm", "-f", "dc2")
    for name in ("web1", "web2"):
        worker.remove_container(name, force=True)
    manager.remove_service("web")


def _why(dlab: DockerLab, container: str) -> str:
    """The container's netns ruleset and the agent's warnings, for a failure message."""
    a = dlab.dockerds["node1"]
    key = json.loads(a.docker("inspect", container).stdout)[0]["NetworkSettings"]["SandboxKey"]
    agent = dlab.agent("node1")
    rules = subprocess.run(agent.enter(["nsenter", f"--net={key}", "nft", "list", "ruleset"]),
                           capture_output=True, text=True, timeout=10)
    log = Path(agent.log).read_text(errors="replace").splitlines()
    return "\n".join([key, rules.stdout, rules.stderr,
                      *[x for x in log if "WARNING" in x or "ERROR" in x][-10:]])
