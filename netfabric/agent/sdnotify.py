"""``sd_notify``: tell a service manager (systemd's ``Type=notify``) that the agent is ready
or stopping. Without ``$NOTIFY_SOCKET`` it does nothing."""

from __future__ import annotations

import contextlib
import os
import socket

__all__ = ["notify"]


def notify(state: str) -> bool:
    """Send ``state`` (``READY=1``, ``STOPPING=1``, ...); ``True`` if a manager listens."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path or not path.startswith(("/", "@")):
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), address)
        return True
    return False
