"""The live topology page (issue 17) in Debian's headless Chromium, run inside a lab host so
it reaches only lab addresses, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``): a screenshot, the DOM shows the lab's hosts and endpoints,
and a container started after the page loaded appears without a reload (server-sent
events)."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from netfabric.lab.cluster import AgentProc, Lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

UI_PORT = 8088
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Browser:
    """Chromium with the DevTools protocol on fds 3 (commands) and 4 (answers)."""

    def __init__(self, host: AgentProc, profile: str) -> None:
        cmd_r, self._cmd = os.pipe()
        self._out, out_w = os.pipe()

        def fds() -> None:
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)

        self.proc = subprocess.Popen(
            host.enter(["chromium", *FLAGS, f"--user-data-dir={profile}",
                        "--remote-debugging-pipe", "about:blank"]),
            pass_fds=(cmd_r, out_w, 3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._out], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._out, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def call(self, method: str, session: bool = True, timeout: float = 30.0,
             **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self._recv(deadline - time.monotonic())
            if got is None:
                break
            if got.get("id") == self._id:
                assert "error" not in got, got
                result: dict[str, Any] = got.get("result", {})
                return result
            self.events.append(got)
        raise AssertionError(f"no answer to {method}")

    def open(self, url: str) -> None:
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", session=False,
                                 targetId=page["targetId"], flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Page.navigate", url=url)

    def eval(self, expr: str) -> Any:
        out = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return out["result"].get("value")

    def close(self) -> None:
        with_pg = self.proc.pid
        try:
            os.killpg(with_pg, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(with_pg, signal.SIGKILL)
            self.proc.wait()
        os.close(self._cmd)
        os.close(self._out)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.up(2, state_dir=str(tmp_path_factory.mktemp("obui")), ui_port=UI_PORT) as lab:
        addr = lab.agent("node1").address
        init = lab.run("node1", ["netfabric", "init", "--advertise-addr", addr])
        assert init.returncode == 0, init.stderr
        token = init.stdout.split("--token ")[1].split()[0]
        assert lab.run("node2", ["netfabric", "join", "--token", token, addr]).returncode == 0
        assert lab.run("node1", ["netfabric", "network", "create", "-d", "overlay",
                                 "--attachable", "obui"]).returncode == 0
        for host, name in (("node1", "ui1"), ("node2", "ui2")):
            run = lab.run(host, ["netfabric", "run", "-d", "--name", name, "--network", "obui"])
            assert run.returncode == 0, run.stderr
        yield lab


@pytest.fixture
def browser(lab: Lab) -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="obchrome-")
    b = Browser(lab.agent("node1"), profile)
    try:
        yield b
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


def _until(pred: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


HOSTS = "JSON.stringify([...document.querySelectorAll('[data-host]')].map(e => e.dataset.host))"
ENDPOINTS = ("JSON.stringify([...document.querySelectorAll('[data-endpoint]')]"
             ".map(e => e.dataset.endpoint).sort())")


def test_page_shows_the_lab_and_follows_it(lab: Lab, browser: Browser,
                                           tmp_path: Any) -> None:
    a1 = lab.agent("node1").address
    url = lab.run("node1", ["netfabric", "ui"]).stdout.strip()
    assert url == f"http://{a1}:{UI_PORT}/", url
    browser.open(url)
    addrs = sorted(a.address for a in lab.agents)
    _until(lambda: sorted(json.loads(browser.eval(HOSTS) or "[]")) == addrs,
           "both hosts drawn")
    _until(lambda: json.loads(browser.eval(ENDPOINTS) or "[]") == ["ui1", "ui2"],
           "both endpoints drawn")
    assert browser.eval("document.getElementById('status').textContent") == "live"
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 5000
    (tmp_path / "ui.png").write_bytes(shot)
    if os.environ.get("NETFABRIC_UI_SHOT"):
        shutil.copy(tmp_path / "ui.png", os.environ["NETFABRIC_UI_SHOT"])
    # No reload from here: a marker set now must survive the update.
    browser.eval("window.__notReloaded = 42")
    run = lab.run("node2", ["netfabric", "run", "-d", "--name", "ui3", "--network", "obui"])
    assert run.returncode == 0, run.stderr
    try:
        _until(lambda: "ui3" in json.loads(browser.eval(ENDPOINTS) or "[]"),
               "ui3 on the page without a reload")
        assert browser.eval("window.__notReloaded") == 42
        names = browser.eval("[...document.querySelectorAll('#names tr[data-name]')]"
                             ".map(e => e.dataset.name).join(',')")
        assert "ui3" in names.split(","), names
    finally:
        lab.run("node2", ["netfabric", "rm", "-f", "ui3"])
    _until(lambda: "ui3" not in json.loads(browser.eval(ENDPOINTS) or "[]"),
           "ui3 gone from the page")
