"""The simulated-host harness on the real kernel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from netfabric.errors import LabError
from netfabric.lab.machine import machine_pids
from netfabric.lab.topology import Topology, clean, list_netns, new_prefix
from tests.conftest import HostsFactory

REPO = Path(__file__).resolve().parents[2]


def test_three_hosts_reach_each_other(hosts: HostsFactory) -> None:
    topo = hosts(3, mtu=1400)
    assert len({h.address for h in topo.hosts}) == 3
    for a in topo.hosts:
        mtu = topo.exec(a, ["cat", "/sys/class/net/eth0/mtu"], check=True).stdout.strip()
        assert mtu == "1400"
        for b in topo.hosts:
            if a is not b:
                proc = topo.exec(a, ["ping", "-c1", "-W2", b.address])
                assert proc.returncode == 0, proc.stdout + proc.stderr


def test_names_carry_the_prefix(hosts: HostsFactory) -> None:
    topo = hosts(2)
    mine = [ns for ns in list_netns() if ns.startswith(topo.prefix)]
    assert sorted(mine) == sorted([topo.switch_netns, *(h.netns for h in topo.hosts)])


def test_cut_and_heal(hosts: HostsFactory) -> None:
    topo = hosts(2)
    a, b = topo.hosts
    topo.set_link(b, up=False)
    assert topo.exec(a, ["ping", "-c1", "-W1", b.address]).returncode != 0
    topo.set_link(b, up=True)
    assert topo.exec(a, ["ping", "-c1", "-W2", b.address]).returncode == 0


def _child(tmp_path: Path, body: str) -> subprocess.Popen[str]:
    test = tmp_path / "test_child.py"
    test.write_text(textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), str(test)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_failing_test_leaves_no_namespace(tmp_path: Path) -> None:
    marker = tmp_path / "prefix"
    child = _child(tmp_path, f"""
        def test_fails_halfway(hosts):
            topo = hosts(2)
            open({str(marker)!r}, "w").write(topo.prefix)
            assert False, "deliberate failure halfway"
        """)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 1, out
    assert "deliberate failure halfway" in out
    prefix = marker.read_text()
    assert prefix.startswith("nf")
    assert [ns for ns in list_netns() if ns.startswith(prefix)] == []


def test_crashed_run_is_cleaned(tmp_path: Path) -> None:
    marker = tmp_path / "prefix"
    child = _child(tmp_path, f"""
        import time
        def test_hangs(hosts):
            topo = hosts(2)
            open({str(marker)!r}, "w").write(topo.prefix)
            time.sleep(60)
        """)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline, "child never built its hosts"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        prefix = marker.read_text()
        assert any(ns.startswith(prefix) for ns in list_netns()), "kill -9 should leave them"
        removed = clean(prefix)
        assert removed and [ns for ns in list_netns() if ns.startswith(prefix)] == []
    finally:
        child.kill()
        child.communicate()
        if marker.exists() and marker.read_text():
            clean(marker.read_text())


def test_build_failure_rolls_back() -> None:
    topo = Topology(prefix="nfzz" + os.urandom(2).hex()[:3], mtu=1500)
    try:
        topo.create(2)
        # A second host with a name already taken fails; destroy still removes all.
        with pytest.raises(LabError):
            topo.add_host("h1")
    finally:
        topo.destroy()
    assert [ns for ns in list_netns() if ns.startswith(topo.prefix)] == []


def _descendants(pid: int) -> list[str]:
    """The command names of ``pid``'s children, their children, and so on (read from
    /proc/PID/task/*/children: quick enough to see a short-lived ping)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/comm", encoding="ascii", errors="replace") as f:
                    out.append(f.read().strip())
            except OSError:
                continue
            out += _descendants(kid)
    return out


LAB_MACHINES = 5   # `lab ping --hosts 4`: four machines and the switch


@pytest.mark.parametrize("phase", ["build", "pings", "teardown"])
def test_sigterm_to_a_lab_command_leaves_nothing(phase: str) -> None:
    """SIGTERM during the build, the pings or the teardown: the command stops by its handler
    (exit 143) and nothing is left: no machine, no netns. The command is frozen (SIGSTOP)
    the moment its phase is seen, so the signal lands in that phase and not after the
    command has finished."""
    for _attempt in range(3):
        prefix = new_prefix()
        proc = subprocess.Popen([sys.executable, "-m", "netfabric.cli.main", "lab", "ping",
                                 "--hosts", "4", "--prefix", prefix], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            peak = 0
            while proc.poll() is None:
                assert time.monotonic() < deadline, f"never saw the {phase} phase"
                count = len(machine_pids(prefix))
                peak = max(peak, count)
                if (phase == "build" and 0 < count < LAB_MACHINES) or \
                        (phase == "pings" and "ping" in _descendants(proc.pid)) or \
                        (phase == "teardown" and peak == LAB_MACHINES and 0 < count < peak):
                    proc.send_signal(signal.SIGSTOP)
                    break
                time.sleep(0.002)
            if proc.poll() is not None:
                continue   # finished before its phase was seen (a loaded machine): again
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
            assert proc.wait(timeout=30) == 128 + signal.SIGTERM
            assert machine_pids(prefix) == []
            assert [ns for ns in list_netns() if ns.startswith(prefix)] == []
            return
        finally:
            proc.kill()
            proc.wait()
            clean(prefix)
    pytest.fail(f"the command finished before its {phase} phase could be caught, 3 times")
