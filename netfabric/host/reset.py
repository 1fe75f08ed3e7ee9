"""``netfabric reset``: remove everything netfabric made on this host (as ``kubeadm reset``).

A running agent is stopped first (SIGTERM, then SIGKILL). Then: the resolv.conf as
``netfabric docker setup`` found it, every netns named PREFIX or PREFIX-... (sandboxes,
overlays, the name of the host's own netns), the links the drivers make in the host netns
(bridges ``nfb-``, veths ``nfbv``/``nfd``, VXLAN ``nfvx``), the nftables tables named
``netfabric`` or ``netfabric-...``, and the files: what ``netfabric cni install`` wrote (its
conflists and plugin, and the directories it made), the forwarding sysctls as the agent
found them on its first start (:mod:`netfabric.host.before`), each sandbox's /etc/netns
directory, the state directory, the API and plugin sockets, the pid file. Each removal is
reported; what is absent is skipped, so a second reset removes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netfabric import netns as ns
from netfabric.errors import NetfabricError
from netfabric.host import before
from netfabric.host.docker import RESOLV_CONF, DockerSetup
from netfabric.plugin.cni.install import BIN_DIR, CONF_DIR, uninstall

__all__ = ["LINK_PREFIXES", "NFT_TABLE", "Reset", "agent_pidfile"]

LINK_PREFIXES = ("nfb-", "nfbv", "nfd", "nfvx")
"""Links the drivers make in the host netns (see netfabric.drivers and the Docker plugin)."""
NFT_TABLE = "netfabric"
"""nftables tables netfabric makes are named this, or this and ``-...``."""
STOP_TIMEOUT_S = 10.0
ETC_NETNS = "/etc/netns"


def agent_pidfile(socket: str) -> str:
    """Where the agent serving ``socket`` writes its pid."""
    return os.path.join(os.path.dirname(socket), "agent.pid")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


@dataclass(frozen=True, slots=True)
class Reset:
    data_dir: str
    socket: str
    netns_prefix: str
    plugin_socket: str
    resolv_conf: str = RESOLV_CONF
    cni_conf_dir: str = CONF_DIR
    cni_bin_dir: str = BIN_DIR

    def run(self) -> list[str]:
        """Remove it all; returns what was removed, one line each."""
        done = self.stop_agent()
        done += DockerSetup(resolv_conf=self.resolv_conf, data_dir=self.data_dir).undo()
        done += self.remove_netns()
        done += self.remove_links()
        done += self.remove_nft()
        done += uninstall(self.data_dir, conf_dir=self.cni_conf_dir, bin_dir=self.cni_bin_dir)
        done += before.restore(self.data_dir)
        done += self.remove_files()
        return done

    def stop_agent(self) -> list[str]:
        path = agent_pidfile(self.socket)
        try:
            with open(path, encoding="ascii") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return []
        if not _alive(pid):
            return []
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.02)
            return [f"agent (pid {pid}): killed, it did not stop on SIGTERM"]
        return [f"agent (pid {pid}): stopped"]

    def remove_netns(self) -> list[str]:
        try:
            names = sorted(os.listdir(ns.NETNS_DIR))
        except FileNotFoundError:
            return []
        done = []
        mine = [n for n in names if n == self.netns_prefix
                or n.startswith(self.netns_prefix + "-")]
        # the host's own name last: the others are reached through it by nobody, but a
        # failure half-way leaves the host reachable by name
        for name in sorted(mine, key=lambda n: n == self.netns_prefix):
            try:
                ns.delete_netns(name)
            except NetfabricError as exc:
                done.append(f"netns {name}: NOT removed: {exc}")
                continue
            done.append(f"netns {name}")
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(ETC_NETNS)):
                if name == self.netns_prefix or name.startswith(self.netns_prefix + "-"):
                    shutil.rmtree(os.path.join(ETC_NETNS, name), ignore_errors=True)
                    done.append(f"directory {ETC_NETNS}/{name}")
        return done

    def remove_links(self) -> list[str]:
        done = []
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = str(link.get_attr("IFLA_IFNAME"))
                if not name.startswith(LINK_PREFIXES):
                    continue
                try:
                    ipr.link("del", index=link["index"])
                except NetlinkError as exc:
                    if exc.code not in (19,):   # ENODEV: went with its peer
                        done.append(f"link {name}: NOT removed: {exc}")
                    continue
                done.append(f"link {name}")
        return done

    def remove_nft(self) -> list[str]:
        """Every table named ``netfabric`` or ``netfabric-...`` in the host netns."""
        try:
            listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                                    timeout=30, check=False)
        except FileNotFoundError:
            return []
        done = []
        for line in listed.stdout.splitlines():
            words = line.split()
            if len(words) != 3 or words[0] != "table":
                continue
            family, table = words[1], words[2]
            if table != NFT_TABLE and not table.startswith(NFT_TABLE + "-"):
                continue
            gone = subprocess.run(["nft", "delete", "table", family, table],
                                  capture_output=True, text=True, timeout=30, check=False)
            done.append(f"nftables table {family} {table}" if gone.returncode == 0 else
                        f"nftables table {family} {table}: NOT removed: {gone.stderr.strip()}")
        return done

    def remove_files(self) -> list[str]:
        done = []
        for path in (self.plugin_socket, self.socket, agent_pidfile(self.socket)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                done.append(f"file {path}")
        if os.path.isdir(self.data_dir):
            entries = list(os.scandir(self.data_dir))
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            try:
                os.rmdir(self.data_dir)
                done.append(f"directory {self.data_dir}")
            except OSError:   # a mount point: emptied, kept
                if entries:
                    done.append(f"directory {self.data_dir}: emptied")
        plugins = os.path.dirname(self.plugin_socket)
        for path in (os.path.dirname(self.socket), plugins, os.path.dirname(plugins)):
            with contextlib.suppress(OSError):
                os.rmdir(path)   # only if empty: it may hold others' files
                done.append(f"directory {path}")
        return done
