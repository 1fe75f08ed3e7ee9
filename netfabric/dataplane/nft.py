"""nftables: our own tables, whole, replaced atomically with ``nft -f -``.

Nothing outside our tables is read or written. A table carries a comment ``nf:<digest>:<n>``
(digest of the body, number of rules) so that :func:`observe_table` can tell an intact table
from one that was changed or emptied by hand without parsing nft's listing.

``nft`` runs inside the host netns via ``nsenter --net`` when the host is named, so the
calling process and thread never change netns.
"""

from __future__ import annotations

import hashlib
import subprocess

from netfabric.errors import DataplaneError
from netfabric.netns import netns_path

__all__ = ["count_rules", "delete_table", "digest", "observe_table", "replace_table"]

_NFT = "nft"
_TIMEOUT = 20.0
_STRUCTURAL = ("table ", "chain ", "type ", "comment ", "}", "policy ", "set ", "map ",
               "elements ", "flags ")


def digest(body: str) -> str:
    """The marker stored in a table's comment for ``body``."""
    return f"nf:{hashlib.sha256(body.encode()).hexdigest()[:16]}:{count_rules(body)}"


def count_rules(listing: str) -> int:
    """Rules in an nft table text (our rendering or ``nft list table``): one per line."""
    n = 0
    for raw in listing.splitlines():
        line = raw.strip()
        if not line or line.startswith(_STRUCTURAL) or line.startswith("#"):
            continue
        n += 1
    return n


def _run(netns: str | None, argv: list[str], script: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    prefix = ["nsenter", f"--net={netns_path(netns)}"] if netns is not None else []
    try:
        return subprocess.run([*prefix, _NFT, *argv], input=script, capture_output=True,
                              text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError(f"nft {' '.join(argv)}: {exc}") from exc


def _script(family: str, name: str, body: str) -> str:
    return (f"table {family} {name} {{}}\n"
            f"delete table {family} {name}\n"
            f"table {family} {name} {{\n"
            f"\tcomment \"{digest(body)}\"\n"
            f"{body}\n}}\n")


def replace_table(netns: str | None, family: str, name: str, body: str) -> None:
    """Make table ``family name`` hold exactly ``body``, in one nft transaction."""
    proc = _run(netns, ["-f", "-"], _script(family, name, body))
    if proc.returncode != 0:
        raise DataplaneError(f"nft table {family} {name}: {proc.stderr.strip()}")


def delete_table(netns: str | None, family: str, name: str) -> None:
    """Remove the table; an absent table is success."""
    proc = _run(netns, ["delete", "table", family, name])
    if proc.returncode != 0 and "No such file" not in proc.stderr:
        raise DataplaneError(f"nft delete table {family} {name}: {proc.stderr.strip()}")


def observe_table(netns: str | None, family: str, name: str) -> str | None:
    """The table's marker as it stands (``None``: no table). A table whose rule count no
    longer matches its comment reports a marker that matches no body."""
    proc = _run(netns, ["list", "table", family, name])
    if proc.returncode != 0:
        if "No such file" in proc.stderr:
            return None
        raise DataplaneError(f"nft list table {family} {name}: {proc.stderr.strip()}")
    marker = ""
    for raw in proc.stdout.splitlines():
        line = raw.strip()
        if line.startswith("comment "):
            marker = line.split('"')[1] if '"' in line else ""
    parts = marker.split(":")
    if len(parts) != 3 or str(count_rules(proc.stdout)) != parts[2]:
        return "nf:drift"
    return marker
