"""How the CLI prints: Docker-like tables, JSON, and ``-f '{{.Path}}'`` templates.

Pure functions from typed API values to text, so the formats are unit tested without an
agent.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from netfabric.api.types import ContainerInfo, NetworkInfo, NodeInfo, to_wire
from netfabric.errors import InvalidArgument

__all__ = [
    "container_rows",
    "docker_container",
    "docker_network",
    "network_rows",
    "node_rows",
    "render_template",
    "short",
    "table",
]

_PAD = 3


def short(ident: str) -> str:
    """Docker's 12-character short id."""
    return ident[:12]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, three spaces apart, as Docker's tabwriter prints them."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(header), *rows]:
        cells = [cell.ljust(widths[i] + _PAD) for i, cell in enumerate(row[:-1])]
        lines.append(("".join(cells) + row[-1]).rstrip())
    return "\n".join(lines)


def network_rows(nets: Sequence[NetworkInfo]) -> str:
    return table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                 [[short(n.id), n.name, n.driver, n.scope] for n in nets])


def _ago(ts: float) -> str:
    secs = max(0, int(time.time() - ts))
    if secs < 60:
        return f"{secs} seconds ago" if secs != 1 else "1 second ago"
    if secs < 3600:
        return f"{secs // 60} minutes ago" if secs >= 120 else "About a minute ago"
    return f"{secs // 3600} hours ago" if secs >= 7200 else "About an hour ago"


def container_rows(cons: Sequence[ContainerInfo]) -> str:
    return table(["CONTAINER ID", "NAMES", "NETWORKS", "IP ADDRESSES", "CREATED"],
                 [[short(c.id), c.name, ",".join(e.network for e in c.networks),
                   ",".join(e.ipv4 or "" for e in c.networks), _ago(c.created)]
                  for c in cons])


def node_rows(nodes: Sequence[NodeInfo]) -> str:
    return table(["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"],
                 [[n.id + (" *" if n.is_self else ""), n.hostname, str(n.status),
                   str(n.availability).capitalize(), n.manager_status] for n in nodes])


def docker_container(c: ContainerInfo) -> dict[str, Any]:
    """A container in the shape of ``docker inspect`` (the fields that make sense here)."""
    return {
        "Id": c.id, "Name": "/" + c.name, "Created": c.created, "Node": c.node,
        "NetworkSettings": {
            "SandboxKey": c.netns_path,
            "Networks": {e.network: {
                "NetworkID": e.network_id, "EndpointID": e.endpoint_id,
                "Gateway": e.gateway or "", "IPAddress": e.ipv4 or "",
                "IPPrefixLen": e.prefixlen, "GlobalIPv6Address": e.ipv6 or "",
                "MacAddress": e.mac, "Aliases": list(e.aliases)} for e in c.networks}},
    }


def docker_network(n: NetworkInfo) -> dict[str, Any]:
    """A network in the shape of ``docker network inspect``."""
    return {
        "Name": n.name, "Id": n.id, "Created": n.created, "Scope": n.scope,
        "Driver": n.driver, "EnableIPv6": n.ipv6, "Internal": n.internal,
        "Attachable": n.attachable,
        "IPAM": {"Driver": "default", "Config": [
            {"Subnet": s, "Gateway": g, **({"IPRange": r} if r else {})}
            for s, g, r in zip(n.subnets, n.gateways, n.ip_ranges or ("",) * len(n.subnets),
                               strict=False)]},
        "Containers": {e.endpoint_id: {"Name": e.container, "EndpointID": e.endpoint_id,
                                       "MacAddress": e.mac,
                                       "IPv4Address": f"{e.ipv4}/{e.prefixlen}" if e.ipv4
                                       else "", "Node": e.node}
                       for e in n.endpoints},
        "Options": dict(n.options), "VNI": n.vni, "MTU": n.mtu,
    }


def _go(value: Any) -> str:
    """Go's ``%v``: maps as ``map[k:v ...]`` with sorted keys, lists as ``[a b]``."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


_ACTION = re.compile(r"\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}")


def render_template(template: str, obj: dict[str, Any]) -> str:
    """The subset of Go templates Docker users type: ``{{.A.B}}`` and ``{{json .A}}``."""

    def lookup(match: re.Match[str]) -> str:
        value: Any = obj
        for part in filter(None, match.group(2).split(".")):
            if not isinstance(value, dict) or part not in value:
                raise InvalidArgument(
                    f"template: can't evaluate field {part} in {template!r}")
            value = value[part]
        return json.dumps(to_wire(value)) if match.group(1) else _go(value)

    out = _ACTION.sub(lookup, template)
    if "{{" in out:
        raise InvalidArgument(f"template: unsupported action in {template!r} "
                              "(supported: {{.Field.Sub}} and {{json .Field}})")
    return out
