"""``netfabric docker setup [--undo]``: make the local dockerd use netfabric.

dockerd finds the plugin by itself (the agent serves ``/run/docker/plugins/netfabric.sock``).
What it must be told is where names live. A container on a netfabric network asks Docker's
embedded DNS, which knows only this dockerd's containers and forwards every other name to
the servers of the *host's* resolv.conf, a loopback one asked from the host's netns (a
``dns`` setting in daemon.json would not do: dockerd takes a loopback address there as the
container's own). So the setup puts netfabric's resolver, ``127.0.0.11`` in the host netns
(served by the agent, which forwards other names to the host's servers and never to
itself), first in ``/etc/resolv.conf``, and keeps the host's own servers after it: a
process of the host, or a container on Docker's default bridge, moves on to them when the
agent does not answer.

The change is idempotent and recorded in the agent's state directory so that ``--undo``
restores the file exactly (a symlink too, as systemd-resolved makes), or, if the file was
rewritten since (by DHCP, say), only takes the line out. dockerd reads the file for each
new container: no restart is needed.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from netfabric.errors import InvalidArgument

__all__ = ["NETFABRIC_DNS", "RESOLV_CONF", "DockerSetup"]

RESOLV_CONF = "/etc/resolv.conf"
NETFABRIC_DNS = "127.0.0.11"
RECORD = "docker-setup.json"
_LINE = f"nameserver {NETFABRIC_DNS}"
_MARK = "# netfabric docker setup: netfabric's resolver first (netfabric docker setup --undo)"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write(path: str, text: str) -> None:
    """Replace a symlink (e.g. systemd-resolved's); write a file in place, so that a file
    bind-mounted on the path (a container's, a machine's) takes the change."""
    if os.path.islink(path):
        tmp = path + ".netfabric.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _first_nameserver(text: str) -> str | None:
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            return words[1]
    return None


@dataclass(frozen=True, slots=True)
class DockerSetup:
    """The setup of one host: its resolv.conf and netfabric's state directory."""

    resolv_conf: str = RESOLV_CONF
    data_dir: str = "/var/lib/netfabric"

    @property
    def record(self) -> str:
        return os.path.join(self.data_dir, RECORD)

    def apply(self) -> list[str]:
        """Put netfabric's resolver first; returns what was done (empty: it already was)."""
        text = _read(self.resolv_conf)
        if _first_nameserver(text) == NETFABRIC_DNS:
            return []
        link = os.readlink(self.resolv_conf) if os.path.islink(self.resolv_conf) else None
        kept = [line for line in text.splitlines()
                if line.split()[:2] != ["nameserver", NETFABRIC_DNS] and line != _MARK]
        # glibc reads three nameservers: ours and the first two of the host's
        servers = [i for i, line in enumerate(kept) if line.split()[:1] == ["nameserver"]]
        kept = [line for i, line in enumerate(kept) if i not in servers[2:]]
        new = "\n".join([_MARK, _LINE, *kept]) + "\n"
        if not os.path.exists(self.record):
            os.makedirs(self.data_dir, exist_ok=True)
            with open(self.record, "w", encoding="utf-8") as f:
                json.dump({"resolv_conf": self.resolv_conf, "original": text,
                           "symlink": link, "written": new}, f)
        _write(self.resolv_conf, new)
        return [f"{self.resolv_conf}: nameserver {NETFABRIC_DNS} (netfabric's resolver) first, "
                "the host's servers after it"]

    def undo(self) -> list[str]:
        """Restore what :meth:`apply` changed; returns what was done."""
        try:
            with open(self.record, encoding="utf-8") as f:
                record = json.load(f)
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise InvalidArgument(f"{self.record} is unreadable ({exc})") from exc
        current = _read(self.resolv_conf)
        if current == record.get("written"):
            link = record.get("symlink")
            if link:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.resolv_conf)
                os.symlink(link, self.resolv_conf)
            else:
                _write(self.resolv_conf, str(record.get("original", "")))
            done = [f"{self.resolv_conf}: restored as it was"]
        else:   # rewritten since: take our line out only
            lines = [line for line in current.splitlines()
                     if line.split()[:2] != ["nameserver", NETFABRIC_DNS] and line != _MARK]
            _write(self.resolv_conf, "\n".join(lines) + "\n" if lines else "")
            done = [f"{self.resolv_conf}: netfabric's nameserver line removed (the file "
                    "was rewritten since)"]
        os.unlink(self.record)
        return done
