"""Real podman 4.3 on its CNI backend inside a simulated host, on netfabric's CNI plugin.

Every podman command runs on the host (``Lab.exec_argv``). Its CNI side is on podman's
defaults, as on a real host: ``netfabric cni install`` run in the machine puts the conflist
in the machine's own ``/etc/cni/net.d`` and the plugin in its ``/opt/cni/bin`` (both
private to each machine), where podman looks by default. The rest of podman's state is in
one per-host directory: storage root, run root, tmp dir and a containers.conf with what
this VM needs (``network_backend = "cni"``, ``cgroupfs`` and file events: no systemd;
lowered ``default_ulimits``: the sandbox lacks CAP_SYS_RESOURCE). ``CONTAINERS_CONF`` is
exported, so conmon's cleanup process reads it too.

podman names its netns ``/run/netns/netns-<uuid>``, where the agent must see them: on a
host that is a netns of the VM, podman shares the VM's mount namespace with the agent; on a
host that is a machine, both run in the machine's. :meth:`Podman.close` removes every
container (podman's own ``rm -f``, so each gets its CNI DEL), then the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

from netfabric.errors import LabError
from netfabric.lab.cluster import AgentProc, Lab
from netfabric.lab.dockerd import IMAGE, busybox_rootfs_tar
from netfabric.plugin.cni.install import BIN_DIR, CONF_DIR

__all__ = ["REFERENCE_PLUGINS", "Podman", "plugin_socket", "podman_missing"]

REFERENCE_PLUGINS: Final = "/usr/lib/cni"
PODMAN: Final = "podman"


def podman_missing() -> str | None:
    """Why podman cannot run here, or None."""
    if shutil.which(PODMAN) is None:
        return "podman is not installed (apt-get install -y podman)"
    if not os.path.exists(os.path.join(REFERENCE_PLUGINS, "bridge")):
        return "containernetworking-plugins is not installed"
    return None


def plugin_socket(agent: AgentProc) -> str | None:
    """The agent socket the plugin is told: none (the default) inside a machine, where the
    agent runs on its defaults; the lab's path on a netns host."""
    return None if getattr(agent, "machine_pid", 0) else agent.socket


@dataclass
class Podman:
    """podman on one lab host; ``run(...)`` is ``podman ...`` there."""

    lab: Lab
    agent: AgentProc
    base: str
    conflists: list[str] = field(default_factory=list)
    """The conflists this podman's networks added (removed by :meth:`close`)."""

    conf_dir: ClassVar[str] = CONF_DIR
    """podman's default CNI config dir, inside the machine."""
    bin_dir: ClassVar[str] = BIN_DIR
    """The CNI plugin dir ``netfabric cni install`` writes (one of podman's defaults)."""

    def host_path(self, inside: str) -> str:
        """Where, from here, the machine's file ``inside`` is."""
        return self.agent.path(inside)

    @property
    def containers_conf(self) -> str:
        return os.path.join(self.base, "containers.conf")

    @classmethod
    def start(cls, lab: Lab, agent: AgentProc, base: str, *,
              networks: Sequence[str] = ()) -> Podman:
        """podman's directory for ``agent``'s host, the busybox image imported, and a
        conflist (and the plugin) for each netfabric network in ``networks``."""
        why = podman_missing()
        if why:
            raise LabError(why)
        pm = cls(lab, agent, base)
        os.makedirs(base, exist_ok=True)
        try:
            with open(pm.containers_conf, "w", encoding="utf-8") as f:
                f.write("[containers]\n"
                        'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n'
                        "[network]\n"
                        'network_backend = "cni"\n'
                        "[engine]\n"
                        'cgroup_manager = "cgroupfs"\n'
                        'events_logger = "file"\n'
                        f'tmp_dir = "{os.path.join(base, "tmp")}"\n')
            for net in networks:
                pm.add_network(net)
            proc = pm.run(["import", "-", IMAGE], input_bytes=busybox_rootfs_tar())
            if proc.returncode != 0:
                raise LabError(f"podman import failed: {proc.stderr.strip()}")
        except BaseException:
            pm.close()
            raise
        return pm

    def add_network(self, network: str, *, name: str | None = None) -> None:
        """``netfabric cni install [--name NAME] NETWORK`` in the machine, as a user does."""
        argv = ["netfabric", "cni", "install", *(["--name", name] if name else [])]
        socket = plugin_socket(self.agent)
        if socket:
            argv += ["--socket", socket]
        self.lab.run(self.agent.name, [*argv, network], check=True)
        self.conflists.append(name or network)

    def add_conflist(self, name: str, conflist: dict[str, object]) -> None:
        """Another CNI network for podman (e.g. the reference bridge plugin's)."""
        path = self.host_path(os.path.join(self.conf_dir, f"{name}.conflist"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(conflist, f)
        self.conflists.append(name)

    def argv(self, args: Sequence[str]) -> list[str]:
        return self.lab.exec_argv(self.agent, [
            PODMAN, "--root", os.path.join(self.base, "root"),
            "--runroot", os.path.join(self.base, "run"), *args])

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": self.containers_conf}

    def run(self, args: Sequence[str], *, timeout: float = 120.0,
            input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(self.argv(args), input=input_bytes, capture_output=True,
                                  timeout=timeout, check=False, env=self.env())
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"podman {' '.join(args)} timed out after {timeout:g}s") from exc
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           proc.stdout.decode(errors="replace"),
                                           proc.stderr.decode(errors="replace"))

    def ok(self, args: Sequence[str], *, timeout: float = 120.0) -> str:
        proc = self.run(args, timeout=timeout)
        if proc.returncode != 0:
            raise LabError(f"podman {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def close(self) -> None:
        """Every container removed (each with its CNI DEL), then podman's directory."""
        with contextlib.suppress(LabError, OSError):
            self.run(["rm", "-af", "-t", "0"], timeout=120)
        root = os.path.join(self.base, "root")
        with contextlib.suppress(LabError, OSError):
            # storage may hold overlay mounts: podman's own reset unmounts them
            self.run(["system", "reset", "-f"], timeout=120)
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-R", root], capture_output=True, check=False)
        shutil.rmtree(self.base, ignore_errors=True)
        for name in self.conflists:
            with contextlib.suppress(OSError):
                os.unlink(self.host_path(os.path.join(self.conf_dir, f"{name}.conflist")))
        self.conflists.clear()
