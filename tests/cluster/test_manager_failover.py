"""Workers and their managers (issue 16), on agents in lab machines with real kill -9:
while no manager answers, a worker keeps handing out addresses from the blocks it leased;
what needs a manager fails fast with one line naming every manager tried; once a manager
is back, the worker is served again. The choice logic itself:
tests/unit/test_manager_failover.py."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from netfabric.lab.cluster import Lab
from netfabric.lab.walkthrough import form_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path_factory.mktemp("fo"))) as lab:
        form_cluster(lab)
        yield lab


def nf(lab: Lab, host: str, *argv: str, code: int = 0) -> str:
    proc = lab.run(host, ["netfabric", *argv], timeout=60)
    assert proc.returncode == code, (argv, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout if code == 0 else proc.stderr


def test_a_worker_allocates_from_its_blocks_while_no_manager_answers(lab: Lab) -> None:
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable",
       "--subnet", "10.61.0.0/24", "fo-ov")
    nf(lab, "node2", "run", "-d", "--network", "fo-ov", "--name", "fo-a")   # leases a block
    manager = lab.agent("node1")
    lab.stop_agent(manager, sig=signal.SIGKILL)
    try:
        addresses = set()
        for i in range(5):
            start = time.monotonic()
            nf(lab, "node2", "run", "-d", "--network", "fo-ov", "--name", f"fo-b{i}")
            took = time.monotonic() - start
            assert took < 5, f"run took {took:.1f}s with the manager down"
            addresses.add(nf(lab, "node2", "inspect", "-f",
                             "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                             f"fo-b{i}").strip())
        assert len(addresses) == 5 and all(a.startswith("10.61.0.") for a in addresses), \
            addresses
        # a network the worker has never seen needs a manager: one line, fast, naming it
        start = time.monotonic()
        err = nf(lab, "node2", "run", "-d", "--network", "fo-unknown", "--name", "fo-c",
                 code=125)
        took = time.monotonic() - start
        assert err.strip() == ("Error: cannot reach a manager at 198.51.100.1:2377: "
                               "Connection refused"), err
        assert took < 3, f"the refusal took {took:.1f}s"
        assert "Traceback" not in err
    finally:
        lab.start_agent(manager)
        lab.wait_ready(manager)
    nf(lab, "node1", "network", "create", "-d", "overlay", "--attachable", "fo-ov2")
    nf(lab, "node2", "run", "-d", "--network", "fo-ov2", "--name", "fo-d")
    held = json.loads(nf(lab, "node1", "network", "inspect", "-f", "{{json .Containers}}",
                         "fo-ov2"))
    assert [c["Name"] for c in held.values()] == ["fo-d"], held
