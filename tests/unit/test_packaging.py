"""What `pip install .` and the systemd unit give a host: runtime dependencies only, a unit
that systemd accepts (Type=notify, restart on failure, state in /var/lib/netfabric), and
the agent's sd_notify."""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from netfabric.agent.sdnotify import notify

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "netfabric.service"
TEST_ONLY = {"docker", "scapy", "pytest", "hypothesis"}


def test_the_package_imports_no_test_dependency() -> None:
    for path in (REPO / "netfabric").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and
                     node.level == 0 else [])
            for name in names:
                assert name.split(".")[0] not in TEST_ONLY, f"{path}: imports {name}"


def test_pip_install_requires_runtime_dependencies_only(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("netfabric-*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        entry = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        requires = [line.split(":", 1)[1].strip() for line in z.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
        assert "netfabric = netfabric.cli.main:main" in z.read(entry).decode()
    runtime = {r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip()
               for r in requires if "extra ==" not in r}
    assert {"pyroute2", "dnslib"} <= runtime and not runtime & TEST_ONLY, runtime


@pytest.mark.skipif(shutil.which("systemd-analyze") is None and os.geteuid() != 0,
                    reason="needs systemd-analyze (apt-get install systemd)")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "Restart=on-failure", "StateDirectory=netfabric",
                 "ExecStart=/usr/local/bin/netfabric agent $NETFABRIC_AGENT_ARGS"):
        assert line in text.splitlines(), line
    # verify checks that ExecStart's program exists: point it at this netfabric
    unit = tmp_path / "netfabric.service"
    netfabric = Path(sys.executable).parent / "netfabric"
    unit.write_text(text.replace("/usr/local/bin/netfabric", str(netfabric)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_sd_notify_reaches_the_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1")
        assert s.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("READY=1")
