"""Services through real agents on 3 hosts, with real clients (busybox wget, dig, getent):
VIP and dnsrr names, ``tasks.NAME``, spread over backends on two nodes, a backend removed
under a stream of new connections, and a killed node's backends leaving the VIP."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from netfabric import Client
from netfabric.errors import NotAManager
from netfabric.lab.cluster import AgentProc, Lab
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEAD_NODE_BUDGET_S = 15.0
"""A killed node's backends leave every VIP within the ``local`` profile's failure detection
(probe 0.3 s, suspicion a few probes) plus the sync; measured 1.6 s at load 12."""


_HOSTS: list[AgentProc] = []
"""The lab's machines, where ``sh`` looks for a sandbox's netns."""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab.up(3, state_dir=str(tmp_path)) as lab:
        form_cluster(lab)
        _HOSTS[:] = lab.agents
        try:
            yield lab
        finally:
            _HOSTS.clear()


def sh_host(netns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """``argv`` on the machine that holds sandbox ``netns`` (or is named ``netns``: a host
    netns of the lab, ``AgentProc.netns``)."""
    host = next(a for a in _HOSTS if netns == a.netns
                or os.path.exists(a.path(f"/run/netns/{netns}")))
    return subprocess.run(host.enter(argv), capture_output=True, text=True, timeout=timeout,
                          check=False)


def sh(netns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """``argv`` in sandbox ``netns`` inside the machine that holds it, or on the machine
    itself when ``netns`` names one."""
    if any(netns == a.netns for a in _HOSTS):
        return sh_host(netns, *argv, timeout=timeout)
    return sh_host(netns, "ip", "netns", "exec", netns, *argv, timeout=timeout)


def wget(netns: str, url: str) -> str:
    # (busybox 1.35's wget -T segfaults: the deadline comes from timeout(1) instead)
    proc = sh(netns, "timeout", "3", "busybox", "wget", "-q", "-O", "-", url)
    return proc.stdout.strip() if proc.returncode == 0 else "FAILED"


def dig(netns: str, name: str) -> list[str]:
    proc = sh(netns, "dig", "+short", "+tries=1", "+time=2", name, "@127.0.0.11")
    return proc.stdout.split()


def kill_all(netns: str) -> None:
    """SIGKILL what runs in sandbox ``netns`` (inside its machine: PIDs are the machine's)."""
    pids = sh_host(netns, "ip", "netns", "pids", netns).stdout.split()
    assert pids, f"nothing runs in {netns}"
    assert sh_host(netns, "kill", "-KILL", *pids).returncode == 0


def poll(fn: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_vip_dnsrr_tasks_spread_removal_and_dead_node(lab: Lab, tmp_path: Path) -> None:
    n1, n2, n3 = (Client(a.url) for a in lab.agents)
    n1.create_network("app", driver="overlay", attachable=True)
    with pytest.raises(NotAManager):
        n2.create_service("web", networks=["app"])
    web = n1.create_service("web", networks=["app"])
    vip = web["vips"][0]["addr"]
    n1.create_service("db", networks=["app"], endpoint_mode="dnsrr")
    tasks: dict[str, tuple[Client, str, str]] = {}   # name -> (client, netns, ip)
    for client, name in ((n2, "web1"), (n3, "web2"), (n3, "web3"), (n2, "db1"), (n3, "db2")):
        con = client.run(name, network="app")
        root = tmp_path / name
        root.mkdir()
        (root / "index.html").write_text(name + "\n")
        # busybox httpd daemonizes; the lab's teardown kills what runs in its namespaces.
        assert sh(con.netns, "busybox", "httpd", "-p", "80", "-h", str(root)).returncode == 0
        tasks[name] = (client, con.netns, con.networks[0].ipv4 or "")
        client.add_backend("web" if name.startswith("web") else "db", name)
    c1 = n1.run("c1", network="app").netns
    webs = {"web1", "web2", "web3"}

    # Names: the VIP, every task, and dnsrr's rotation; as the seed's `database`.
    assert poll(lambda: dig(c1, "web") == [vip]), dig(c1, "web")
    assert poll(lambda: sorted(dig(c1, "tasks.web")) == sorted(tasks[w][2] for w in webs))
    db_ips = sorted(tasks[d][2] for d in ("db1", "db2"))
    assert poll(lambda: sorted(dig(c1, "db")) == db_ips)
    assert len({tuple(dig(c1, "db")) for _ in range(10)}) == 2, "dnsrr answers never rotate"
    assert sh(c1, "getent", "hosts", "web").stdout.split()[0] == vip
    # The database resolves from a web task, by name only.
    assert wget(tasks["web1"][1], "http://db/") in ("db1", "db2")

    # Spread over backends on two nodes (binomial(120, 1/3): sd 5.2; 15 is ~4 sd).
    assert poll(lambda: wget(c1, "http://web/") in webs)
    seen = Counter(wget(c1, f"http://{vip}/") for _ in range(120))
    assert set(seen) == webs and min(seen.values()) >= 25, seen

    # web3 leaves under a stream of new connections from node1, then its task stops: after
    # the removal is applied on node1 (its DNS, synced after its kernel, drops web3 from
    # tasks.web; gossip carries the removal in tens of ms) no connection goes to web3 and
    # none fails, before or after web3's server is killed.
    stream: list[tuple[float, str]] = []
    stop = threading.Event()

    def pour() -> None:
        while not stop.is_set():
            stream.append((time.monotonic(), wget(c1, "http://web/")))

    pourer = threading.Thread(target=pour)
    pourer.start()
    try:
        time.sleep(0.5)
        n3.remove_backend("web", "web3")
        two = sorted(tasks[w][2] for w in ("web1", "web2"))
        assert poll(lambda: sorted(dig(c1, "tasks.web")) == two)
        applied = time.monotonic()
        kill_all(tasks["web3"][1])   # the task stops
        time.sleep(1.5)
    finally:
        stop.set()
        pourer.join()
    after = Counter(r for t, r in stream if t >= applied)
    assert set(after) <= {"web1", "web2"} and sum(after.values()) >= 5, after
    assert "FAILED" not in {r for _, r in stream}, Counter(r for _, r in stream)

    # Restarts: the manager announces its definitions again, a worker its backends.
    for agent in lab.agents[:2]:
        lab.restart_agent(agent)
    assert poll(lambda: dig(c1, "web") == [vip] and sorted(dig(c1, "tasks.web")) == two,
                timeout=20), (dig(c1, "web"), dig(c1, "tasks.web"))
    assert poll(lambda: {wget(c1, "http://web/") for _ in range(20)} == {"web1", "web2"})

    # kill -9 of node3's agent: its backends (web2) leave the VIP within failure detection.
    t0 = time.monotonic()
    lab.stop_agent(lab.agents[2])
    gone = poll(lambda: Counter(wget(c1, "http://web/") for _ in range(10)) ==
                Counter({"web1": 10}), timeout=DEAD_NODE_BUDGET_S)
    assert gone, f"web2 still in the VIP {time.monotonic() - t0:.1f}s after its node died"
    assert dig(c1, "db") == [tasks["db1"][2]]
    n1.remove_service("db")
    assert poll(lambda: dig(c1, "db") == [])
    assert [s["name"] for s in n1.services()] == ["web"]


def test_routing_mesh_on_every_node_and_host_mode_where_a_task_runs(lab: Lab,
                                                                     tmp_path: Path) -> None:
    """The seed's atsea shape: ``appserver`` publishes 8080 (ingress), ``database`` is dnsrr
    with a host-mode port; every node's underlay address answers 8080, node1 with no task
    too; the host-mode port answers only where the database task runs."""
    n1, n2, n3 = (Client(a.url) for a in lab.agents)
    n1.create_network("atsea", driver="overlay", attachable=True)
    n1.create_service("appserver", networks=["atsea"], publish=["8080:80"])
    n1.create_service("database", networks=["atsea"], endpoint_mode="dnsrr",
                      publish=["mode=host,target=1433"])
    assert "ingress" in {n.name for n in n1.networks()}
    for client, name, port, svc in ((n2, "app1", "80", "appserver"),
                                    (n3, "app2", "80", "appserver"),
                                    (n2, "db1", "1433", "database")):
        con = client.run(name, network="atsea")
        root = tmp_path / name
        root.mkdir()
        (root / "index.html").write_text(name + "\n")
        assert sh(con.netns, "busybox", "httpd", "-p", port, "-h", str(root)).returncode == 0
        client.add_backend(svc, name)
    hosts = [a.netns for a in lab.agents]
    addrs = [a.address for a in lab.agents]
    for i, addr in enumerate(addrs):
        asker = hosts[(i + 1) % 3]      # from another node's host netns
        assert poll(lambda a=asker, d=addr: wget(a, f"http://{d}:8080/") in ("app1", "app2")), \
            f"port 8080 does not answer on node{i + 1}"
        seen = Counter(wget(asker, f"http://{addr}:8080/") for _ in range(30))
        assert set(seen) == {"app1", "app2"}, (addr, seen)
    assert poll(lambda: wget(hosts[0], f"http://{addrs[1]}:1433/") == "db1")
    assert wget(hosts[1], f"http://{addrs[0]}:1433/") == "FAILED"
    assert wget(hosts[1], f"http://{addrs[2]}:1433/") == "FAILED"
    # The application knows only the name `database`.
    app1 = n2.inspect_container("app1").netns
    assert wget(app1, "http://database:1433/") == "db1"
    inspect = n1.inspect_service("appserver")
    assert inspect["ports"] == ["*:8080->80/tcp"] and len(inspect["backends"]) == 2


def test_600_connections_to_a_vip_of_6_tasks_spread_evenly(lab: Lab, tmp_path: Path) -> None:
    n1 = Client(lab.agents[0].url)
    n1.create_network("app", driver="overlay", attachable=True)
    vip = n1.create_service("web", networks=["app"])["vips"][0]["addr"]
    names = set()
    for i in range(6):
        agent = lab.agents[i % 3]
        client, name = Client(agent.url), f"web{i + 1}"
        con = client.run(name, network="app")
        root = tmp_path / name
        root.mkdir()
        (root / "index.html").write_text(name + "\n")
        assert sh(con.netns, "busybox", "httpd", "-p", "80", "-h", str(root)).returncode == 0
        client.add_backend("web", name)
        names.add(name)
    c1 = n1.run("c1", network="app").netns
    assert poll(lambda: len(dig(c1, "tasks.web")) == 6)
    loop = f"for i in $(seq 600); do busybox wget -q -O - http://{vip}/ || echo FAILED; done"
    out = sh(c1, "sh", "-c", loop, timeout=240).stdout.split()
    seen = Counter(out)
    assert set(seen) == names and sum(seen.values()) == 600, seen
    assert all(60 <= n <= 140 for n in seen.values()), seen


def _running(client: Client, name: str) -> list[dict[str, object]]:
    return [t for t in client.service_ps(name)
            if t["desired"] == "running" and t["state"] == "running"]


def test_task_runner_atsea_flow_scale_drain_and_replacement(lab: Lab, tmp_path: Path) -> None:
    """The seed's services part with the task runner: database (dnsrr, host-mode 1433),
    appserver publishing 8080; scale to 6; every node's 8080 answers; drain node2 and the 6
    run on the others; a task whose process dies is replaced; `database` resolves from an
    appserver task."""
    n1 = Client(lab.agents[0].url)
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("atsea\n")
    n1.create_network("atsea", driver="overlay", attachable=True)
    n1.create_service("database", networks=["atsea"], endpoint_mode="dnsrr",
                      publish=["mode=host,target=1433"],
                      command=["busybox", "httpd", "-f", "-p", "1433", "-h", str(root)])
    n1.create_service("appserver", networks=["atsea"], publish=["8080:8080"],
                      command=["busybox", "httpd", "-f", "-p", "8080", "-h", str(root)])
    assert poll(lambda: len(_running(n1, "appserver")) == 1, timeout=20), \
        n1.service_ps("appserver")
    n1.scale_service("appserver", 6)
    assert poll(lambda: len(_running(n1, "appserver")) == 6, timeout=30), \
        n1.service_ps("appserver")
    nodes = Counter(str(t["node"]) for t in _running(n1, "appserver"))
    assert nodes == Counter({"node1": 2, "node2": 2, "node3": 2}), nodes
    hosts = [a.netns for a in lab.agents]
    for i, agent in enumerate(lab.agents):
        asker = hosts[(i + 1) % 3]
        assert poll(lambda a=asker, d=agent.address: wget(a, f"http://{d}:8080/") == "atsea")

    # Drain node2: its tasks move; 6 run on node1 and node3; history stays in ps.
    n1.update_node("node2", availability="drain")
    assert poll(lambda: len(_running(n1, "appserver")) == 6 and
                {str(t["node"]) for t in _running(n1, "appserver")} <= {"node1", "node3"},
                timeout=30), n1.service_ps("appserver")
    shut = [t for t in n1.service_ps("appserver") if t["node"] == "node2"]
    assert shut and all(t["desired"] == "shutdown" for t in shut), shut
    got = {(i, a.name): wget(hosts[i], f"http://{a.address}:8080/")
           for i in range(3) for a in lab.agents}
    assert set(got.values()) == {"atsea"}, got   # the drained node2 too

    # `database` from an appserver task, by name only.
    task = _running(n1, "appserver")[0]
    owner = next(a for a in lab.agents if a.name == task["node"])
    sandbox = next(c for c in Client(owner.url).containers()
                   if c.name.startswith(f"appserver.{task['slot']}."))
    db = _running(n1, "database")
    assert len(db) == 1
    assert poll(lambda: sh(sandbox.netns, "getent", "hosts", "database").returncode == 0)
    assert wget(sandbox.netns, "http://database:1433/") == "atsea"

    # A task whose process dies is replaced in its slot; ps shows the failure.
    kill_all(sandbox.netns)
    assert poll(lambda: any(t["slot"] == task["slot"] and t["state"] == "failed"
                            for t in n1.service_ps("appserver")), timeout=20)
    assert poll(lambda: len(_running(n1, "appserver")) == 6, timeout=30)

    n1.remove_service("appserver")
    assert poll(lambda: not any(c.name.startswith("appserver.")
                                for a in lab.agents for c in Client(a.url).containers()),
                timeout=30)


def test_rolling_update_fails_no_request_and_a_failing_one_pauses_then_rolls_back(
        lab: Lab, tmp_path: Path) -> None:
    """The seed's upgrade and rollback, where the command is what an image is to Docker."""
    n1 = Client(lab.agents[0].url)
    roots = {}
    for version in ("v1", "v2"):
        roots[version] = tmp_path / version
        roots[version].mkdir()
        (roots[version] / "index.html").write_text(version + "\n")

    def httpd(version: str) -> list[str]:
        return ["busybox", "httpd", "-f", "-p", "8080", "-h", str(roots[version])]

    n1.create_network("atsea", driver="overlay", attachable=True)
    n1.create_service("appserver", networks=["atsea"], publish=["8080:8080"], replicas=3,
                      command=httpd("v1"))
    assert poll(lambda: len(_running(n1, "appserver")) == 3, timeout=30)
    hosts = [a.netns for a in lab.agents]
    url = f"http://{lab.agents[1].address}:8080/"
    assert poll(lambda: wget(hosts[0], url) == "v1")

    # A successful update under a steady stream of requests to the published port.
    stream: list[str] = []
    stop = threading.Event()

    def pour() -> None:
        while not stop.is_set():
            stream.append(wget(hosts[0], url))

    pourer = threading.Thread(target=pour)
    pourer.start()
    try:
        n1.update_service("appserver", command=httpd("v2"), failure_action="pause")
        assert poll(lambda: n1.inspect_service("appserver")["update_status"]["state"] ==
                    "completed", timeout=60), n1.inspect_service("appserver")
        time.sleep(1.0)
    finally:
        stop.set()
        pourer.join()
    seen = Counter(stream)
    assert "FAILED" not in seen and seen["v2"] > 0 and seen["v1"] > 0, seen
    assert {wget(hosts[0], url) for _ in range(10)} == {"v2"}

    # A new command that fails to start: the update pauses, the v2 tasks keep serving.
    n1.update_service("appserver", command=["false"], failure_action="pause")
    assert poll(lambda: n1.inspect_service("appserver")["update_status"]["state"] ==
                "paused", timeout=30), n1.service_ps("appserver")
    status = n1.inspect_service("appserver")["update_status"]
    assert "paused due to failure" in status["message"]
    assert any(t["state"] == "failed" and "non-zero exit" in str(t["error"])
               for t in n1.service_ps("appserver"))
    assert {wget(hosts[0], url) for _ in range(10)} == {"v2"}
    # --rollback returns to the previous command.
    n1.update_service("appserver", rollback=True)
    assert poll(lambda: n1.inspect_service("appserver")["update_status"]["state"] ==
                "rollback_completed", timeout=30), n1.inspect_service("appserver")
    assert n1.inspect_service("appserver")["command"] == httpd("v2")
    assert len(_running(n1, "appserver")) == 3
    assert {wget(hosts[0], url) for _ in range(10)} == {"v2"}
