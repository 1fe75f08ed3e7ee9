"""`netfabric lab up/exec/down` as separate processes (the state file carries the lab), and
the README's usage flow; nothing is left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netfabric.lab.machine import machine_pids

pytestmark = [pytest.mark.timeout(120)]


def _nf(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netfabric.cli.main", *argv],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "NETFABRIC_LAB_DIR": str(state)})


def test_lab_up_exec_down_across_processes(tmp_path: Path) -> None:
    up = _nf(tmp_path, "lab", "up", "--hosts", "2", "--join")
    assert up.returncode == 0, up.stderr
    prefix = up.stdout.split()[1]
    try:
        steps = [
            ("node1", ["netfabric", "network", "create", "-d", "overlay", "--attachable",
                       "myoverlay"]),
            ("node1", ["netfabric", "run", "-d", "--network", "myoverlay", "--name", "web"]),
            ("node2", ["netfabric", "run", "-d", "--network", "myoverlay", "--name",
                       "client"]),
        ]
        for host, argv in steps:
            proc = _nf(tmp_path, "lab", "exec", host, "--", *argv)
            assert proc.returncode == 0, proc.stderr
        ping = _nf(tmp_path, "lab", "exec", "node2", "--", "netfabric", "exec", "client",
                   "ping", "-c2", "-i0.2", "web")
        assert ping.returncode == 0 and "2 received" in ping.stdout, ping.stdout + ping.stderr
        nodes = _nf(tmp_path, "lab", "exec", "node1", "--", "netfabric", "node", "ls",
                    "--format", "json")
        assert nodes.returncode == 0 and '"Hostname":"node2"' in nodes.stdout
        # `netfabric` is on PATH for a shell too, and a closed pipe ends quietly
        shell = _nf(tmp_path, "lab", "exec", "node1", "--", "sh", "-c",
                    "netfabric network ls --format json | head -1; netfabric ps -q | wc -l")
        assert shell.returncode == 0 and shell.stderr == "", shell.stderr
        assert shell.stdout.startswith('{"CreatedAt":') and shell.stdout.split()[-1] == "1"
        bad = _nf(tmp_path, "lab", "exec", "node9", "--", "true")
        assert bad.returncode == 1 and "no host 'node9'" in bad.stderr
        second = _nf(tmp_path, "lab", "up", "--hosts", "1")
        assert second.returncode == 1 and f"lab {prefix} is already up" in second.stderr
        assert len(list(tmp_path.glob("*.json"))) == 1
    finally:
        down = _nf(tmp_path, "lab", "down")
    assert down.returncode == 0, down.stderr
    assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
    assert not machine_pids(prefix), "machines left running"
    assert not list(tmp_path.iterdir())
    again = _nf(tmp_path, "lab", "down")
    assert again.returncode == 1 and "no lab is up" in again.stderr
