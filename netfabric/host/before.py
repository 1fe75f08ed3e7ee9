"""What this host's kernel settings were before the agent first ran, for ``netfabric reset``.

The drivers turn on forwarding in the host netns (a bridge network routes its containers'
traffic; the routing mesh routes to masqueraded backends). The agent records the settings
it may change once, the first time it starts with an empty state directory, in
``host-before.json`` there; ``netfabric reset`` writes them back.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Final

__all__ = ["HOST_SYSCTLS", "RECORD", "record", "restore"]

RECORD: Final = "host-before.json"
HOST_SYSCTLS: Final = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")
"""The host-netns sysctls netfabric's drivers may set (see netfabric.drivers.bridge)."""


def _read(path: str) -> str | None:
    try:
        with open(os.path.join("/proc/sys", path), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def record(data_dir: str) -> None:
    """Note the settings of :data:`HOST_SYSCTLS` unless already noted (the first start)."""
    path = os.path.join(data_dir, RECORD)
    if os.path.exists(path):
        return
    values = {p: v for p in HOST_SYSCTLS if (v := _read(p)) is not None}
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"sysctls": values}, f, indent=1)
    os.replace(tmp, path)


def restore(data_dir: str) -> list[str]:
    """Write back what :func:`record` noted, where it differs now; one line per change."""
    try:
        with open(os.path.join(data_dir, RECORD), encoding="utf-8") as f:
            values = json.load(f).get("sysctls", {})
    except (OSError, ValueError, AttributeError):
        return []
    done = []
    for path, value in sorted(values.items()):
        if path not in HOST_SYSCTLS or _read(path) in (None, str(value)):
            continue
        name = path.replace("/", ".")
        try:
            with open(os.path.join("/proc/sys", path), "w", encoding="ascii") as f:
                f.write(str(value))
        except OSError as exc:
            done.append(f"sysctl {name}: NOT restored to {value}: {exc.strerror}")
            continue
        done.append(f"sysctl {name}: restored to {value}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(data_dir, RECORD))
    return done
