"""Seeing the fabric (issue 17): `netfabric info`'s gossip view and the agent's /metrics,
scraped by a real Prometheus server inside a lab host.

One lab for the module: node1 a manager, node2 its worker, both serving /metrics."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from netfabric import Client
from netfabric.lab.cluster import Lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

METRICS_PORT = 9464
PROM_PORT = 9090


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path_factory.mktemp("oblab")),
                metrics_port=METRICS_PORT) as lab:
        addr = lab.agent("node1").address
        init = lab.run("node1", ["netfabric", "init", "--advertise-addr", addr])
        assert init.returncode == 0, init.stderr
        token = init.stdout.split("--token ")[1].split()[0]
        join = lab.run("node2", ["netfabric", "join", "--token", token, addr])
        assert join.returncode == 0, join.stderr
        yield lab


def _gossip(lab: Lab, host: str) -> dict[str, object]:
    proc = lab.run(host, ["netfabric", "info", "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    plain = out[0] if isinstance(out, list) else out
    gossip = plain["Gossip"]
    assert isinstance(gossip, dict)
    return gossip


def _wait(pred: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_info_shows_the_gossip_view(lab: Lab) -> None:
    _wait(lambda: _gossip(lab, "node1")["Members"]["alive"] == 2, "2 alive members")
    g = _gossip(lab, "node1")
    assert g["Members"] == {"alive": 2, "suspect": 0, "dead": 0, "left": 0}
    assert g["HealthScore"] == 0
    assert g["Counters"]["datagrams_in"] > 0 and g["Counters"]["bytes_out"] > 0
    # Garbage and packets sealed with another key, sent to node1's gossip port from node2's
    # host, are counted as unauthenticated, not decoded.
    before = g["Unauthenticated"]
    a1 = lab.agent("node1").address
    for _ in range(5):
        sent = lab.run("node2", ["python3", "-c",
                                 "import socket; s = socket.socket(socket.AF_INET, "
                                 "socket.SOCK_DGRAM); "
                                 f"s.sendto(b'\\x00' * 64, ({a1!r}, 7946))"])
        assert sent.returncode == 0, sent.stderr
    _wait(lambda: _gossip(lab, "node1")["Unauthenticated"] >= before + 5,
          "5 more unauthenticated packets")
    # The human form says the same.
    text = lab.run("node1", ["netfabric", "info"]).stdout
    assert "Gossip:" in text and "2 alive" in text and "Health score:   0" in text, text
    assert f"Unauthenticated: {_gossip(lab, 'node1')['Unauthenticated']}" in text, text


def test_info_when_a_member_dies(lab: Lab) -> None:
    node2 = lab.agent("node2")
    lab.stop_agent(node2)
    try:
        _wait(lambda: _gossip(lab, "node1")["Members"]["dead"] == 1, "node2 dead", 30)
        assert _gossip(lab, "node1")["Members"]["alive"] == 1
    finally:
        lab.start_agent(node2)
        lab.wait_ready(node2)
    _wait(lambda: _gossip(lab, "node1")["Members"]["alive"] == 2, "node2 back", 30)
    assert Client(node2.url).info().gossip is not None


# -- /metrics, scraped by a real Prometheus in node1's netns --------------------------------

def _get(lab: Lab, host: str, url: str) -> str:
    proc = lab.run(host, ["curl", "-sS", "--max-time", "5", url])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in an exposition, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.split()[-1])
    return None


def test_metrics_endpoint(lab: Lab) -> None:
    a1 = lab.agent("node1").address
    text = _get(lab, "node1", f"http://{a1}:{METRICS_PORT}/metrics")
    assert "# TYPE netfabric_gossip_messages_total counter" in text, text[:400]
    assert _sample(text, "netfabric_gossip_members", state="alive") == 2, text
    assert (_sample(text, "netfabric_gossip_messages_total", direction="in") or 0) > 0
    assert "# TYPE netfabric_dns_answer_seconds histogram" in text
    # The score the previous test's dead peer raised, as info shows it.
    assert _sample(text, "netfabric_gossip_health_score") is not None
    assert _get(lab, "node1", f"http://{a1}:{METRICS_PORT}/nope").startswith("not found")


@pytest.fixture
def prometheus(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's prometheus in node1's machine, scraping both agents every second."""
    work = str(tmp_path_factory.mktemp("obprom"))
    targets = ", ".join(f"'{a.address}:{METRICS_PORT}'" for a in lab.agents)
    with open(os.path.join(work, "prometheus.yml"), "w", encoding="utf-8") as f:
        f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n"
                f"  - job_name: netfabric\n    static_configs: [{{targets: [{targets}]}}]\n")
    node1 = lab.agent("node1")
    with open(os.path.join(work, "prometheus.log"), "wb") as log:
        proc = subprocess.Popen(
            node1.enter(["prometheus", f"--config.file={work}/prometheus.yml",
                         f"--storage.tsdb.path={work}/data",
                         f"--web.listen-address=127.0.0.1:{PROM_PORT}"]),
            stdout=log, stderr=log, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{PROM_PORT}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _query(lab: Lab, prom: str, expr: str) -> dict[str, float]:
    """instance -> value of an instant query on node1's Prometheus ({} until it answers)."""
    proc = lab.run("node1", ["curl", "-sS", "--max-time", "5",
                             f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}"])
    if proc.returncode != 0 or not proc.stdout:
        return {}
    body = json.loads(proc.stdout)
    assert body["status"] == "success", body
    return {r["metric"].get("instance", ""): float(r["value"][1])
            for r in body["data"]["result"]}


def test_prometheus_scrapes_two_agents(lab: Lab, prometheus: str) -> None:
    instances = {f"{a.address}:{METRICS_PORT}" for a in lab.agents}
    _wait(lambda: set(_query(lab, prometheus, "up == 1")) == instances,
          "prometheus scraping both agents", 60)
    alive = _query(lab, prometheus, 'netfabric_gossip_members{state="alive"}')
    assert alive == dict.fromkeys(instances, 2.0), alive
    # Traffic moves a counter: containers on an overlay, a name asked over DNS.
    nf = ["netfabric"]
    assert lab.run("node1", [*nf, "network", "create", "-d", "overlay", "--attachable",
                             "obnet"]).returncode == 0
    try:
        for host, name in (("node1", "oba"), ("node2", "obb")):
            run = lab.run(host, [*nf, "run", "-d", "--name", name, "--network", "obnet"])
            assert run.returncode == 0, run.stderr
        inst2 = f"{lab.agent('node2').address}:{METRICS_PORT}"
        expr = f'sum by (instance) (netfabric_dns_queries_total{{instance="{inst2}"}})'
        _wait(lambda: bool(_query(lab, prometheus, expr)), "the DNS counter scraped", 30)
        before = sum(_query(lab, prometheus, expr).values())
        for _ in range(3):
            ask = lab.run("node2", [*nf, "exec", "obb", "getent", "hosts", "oba"])
            assert ask.returncode == 0, ask.stderr
        _wait(lambda: sum(_query(lab, prometheus, expr).values()) >= before + 3,
              "3 more DNS queries counted by prometheus", 30)
        _wait(lambda: _query(lab, prometheus,
                             'netfabric_endpoints{network="obnet",location="remote"}')
              == dict.fromkeys(instances, 1.0), "one remote endpoint seen by each", 30)
        hist = _query(lab, prometheus, "netfabric_dns_answer_seconds_count")
        assert hist.get(f"{lab.agent('node2').address}:{METRICS_PORT}", 0) >= 3, hist
    finally:
        lab.run("node2", [*nf, "rm", "-f", "obb"])
        lab.run("node1", [*nf, "rm", "-f", "oba"])
        lab.run("node1", [*nf, "network", "rm", "obnet"])
