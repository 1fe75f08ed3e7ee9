"""How the CLI prints: Docker's listing contexts, tables, ``--format`` and inspect objects.

Pure functions from typed API values to text, so the formats are unit tested without an
agent. Each listing (``network ls``, ``ps``, ``node ls``) is a :class:`Listing`: Docker's field
names for that listing, their column headers and the default table, so ``--format`` accepts
what Docker's does: ``table``, ``json``, ``table {{.ID}}\\t{{.Name}}`` and any template.
Templates run on :mod:`netfabric.cli.gotemplate`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from netfabric.api.types import ContainerInfo, NetworkInfo, NodeInfo, Role
from netfabric.cli.gotemplate import FUNCS, GoTime, Struct, Template, TemplateError, json_data

__all__ = [
    "CONTAINERS",
    "NETWORKS",
    "NODES",
    "Listing",
    "docker_container",
    "docker_network",
    "docker_node",
    "format_inspect",
    "format_list",
    "go_time",
    "human_duration",
    "rfc3339",
    "short",
    "tabwriter",
]

MIN_WIDTH = 10
PADDING = 3
"""``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)``: the writer of every Docker table."""


def short(ident: str) -> str:
    """Docker's 12-character short id."""
    return ident[:12]


def tabwriter(text: str) -> str:
    """Go's tabwriter as Docker sets it up: each tab-terminated cell padded to the widest of
    its column plus 3, at least 10; the text after a line's last tab is not a cell."""
    lines = text.split("\n")
    cells = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in cells:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, MIN_WIDTH), len(cell) + PADDING)
    return "\n".join("".join(c.ljust(widths[i]) for i, c in enumerate(row[:-1])) + row[-1]
                     for row in cells)


def human_duration(seconds: float) -> str:
    """go-units' ``HumanDuration``: the words of Docker's CREATED and STATUS columns."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = secs // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def rfc3339(ts: float) -> str:
    """Go's ``time.RFC3339Nano`` in UTC (what ``docker inspect`` prints for Created)."""
    dt = datetime.fromtimestamp(ts, UTC)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def go_time(ts: float, *, fraction: bool = True) -> str:
    """Go's ``time.Time.String()`` in UTC, as the CREATED AT column prints it."""
    dt = datetime.fromtimestamp(ts, UTC)
    frac = f"{dt.microsecond:06d}".rstrip("0") if fraction else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _label_getter(labels: Mapping[str, str]) -> Callable[[str], str]:
    return lambda key: labels.get(key, "")


@dataclass(frozen=True, slots=True)
class Listing:
    """One ``ls`` verb as Docker formats it.

    ``headers`` maps each field of the context to its column header; ``default`` is the
    table the verb prints without ``--format``; ``context`` builds one row's fields.
    """

    kind: str
    headers: Mapping[str, str]
    default: str
    context: Callable[[Any, bool], dict[str, Any]]


def _network_ctx(n: NetworkInfo, trunc: bool) -> dict[str, Any]:
    labels = dict(getattr(n, "labels", ()) or ())
    return {
        "ID": short(n.id) if trunc else n.id, "Name": n.name, "Driver": n.driver,
        "Scope": n.scope, "IPv4": "true" if any(":" not in s for s in n.subnets) else "false",
        "IPv6": "true" if n.ipv6 else "false",
        "Internal": "true" if n.internal else "false", "Labels": _labels(labels),
        "Label": _label_getter(labels), "CreatedAt": go_time(n.created),
    }


NETWORKS = Listing(
    kind="network",
    headers={"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
             "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
             "CreatedAt": "CREATED AT"},
    default="table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    context=_network_ctx,
)


def _container_ctx(c: ContainerInfo, trunc: bool) -> dict[str, Any]:
    eps = sorted(c.networks, key=lambda e: e.network)
    labels = dict(getattr(c, "labels", ()) or ())
    age = time.time() - c.created
    return {
        "ID": short(c.id) if trunc else c.id, "Names": c.name, "Image": "", "Command": "",
        "CreatedAt": go_time(c.created, fraction=False),
        "RunningFor": human_duration(age) + " ago", "Ports": "", "State": "running",
        "Status": "Up " + human_duration(age), "Size": "0B", "Labels": _labels(labels),
        "Label": _label_getter(labels), "Mounts": "", "LocalVolumes": "0",
        "Networks": ",".join(e.network for e in eps),
        # netfabric's own: no image or process to show, so the addresses and the node
        "IPAddresses": ",".join(e.ipv4 or e.ipv6 or "" for e in eps), "Node": c.node,
    }


CONTAINERS = Listing(
    kind="container",
    headers={"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND",
             "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
             "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS",
             "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS",
             "IPAddresses": "IP ADDRESSES", "Node": "NODE"},
    default="table {{.ID}}\t{{.Names}}\t{{.Networks}}\t{{.IPAddresses}}\t{{.RunningFor}}",
    context=_container_ctx,
)


def _node_ctx(n: NodeInfo, trunc: bool) -> dict[str, Any]:
    return {
        "ID": n.id, "Self": n.is_self, "Hostname": n.hostname, "Status": str(n.status),
        "Availability": str(n.availability).capitalize(), "ManagerStatus": n.manager_status,
        "EngineVersion": "", "TLSStatus": "Ready",
    }


NODES = Listing(
    kind="node",
    headers={"ID": "ID", "Self": "", "Hostname": "HOSTNAME", "Status": "STATUS",
             "Availability": "AVAILABILITY", "ManagerStatus": "MANAGER STATUS",
             "EngineVersion": "ENGINE VERSION", "TLSStatus": "TLS STATUS"},
    default="table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t"
            "{{.Availability}}\t{{.ManagerStatus}}",
    context=_node_ctx,
)

# In the header row every function hands back the header it is given (Docker's
# HeaderFunctions), so `table {{upper .Name}}` still prints NAME.
_HEADER_FUNCS = {**FUNCS, **{name: (lambda v, *_: v) for name in
                             ("json", "split", "join", "title", "lower", "upper", "pad",
                              "truncate")}}


def format_list(listing: Listing, items: Sequence[Any], fmt: str | None, *,
                quiet: bool = False, trunc: bool = True) -> str:
    """The text of an ``ls`` verb, as Docker's formatter writes it (no trailing newline).

    ``fmt``: None/"" or "table" (the default table), "json" (one object per line), "table
    TEMPLATE" (a header row, then aligned rows) or any other template (one line per item,
    ``\\t`` and ``\\n`` written as escapes become a tab and a newline). ``quiet`` wins: IDs only.
    """
    if quiet:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        fmt = listing.default
    elif fmt == "json":
        fmt = "{{json .}}"
    is_table = fmt.startswith("table")
    body = fmt[len("table"):] if is_table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    tmpl = Template(body, strict=True)
    rows = []
    for item in items:
        ctx = listing.context(item, trunc)
        if fmt == "{{json .}}":
            rows.append(json.dumps(json_data(ctx), separators=(",", ":"), ensure_ascii=False))
        else:
            rows.append(tmpl.execute(ctx))
    if not is_table:
        return "\n".join(rows)
    header_ctx: dict[str, Any] = {**listing.headers, "Label": lambda key: "LABEL"}
    try:
        header = Template(body, funcs=_HEADER_FUNCS).execute(header_ctx)
    except TemplateError:
        header = ""
    return tabwriter("\n".join([header, *rows]))


# -- inspect objects ---------------------------------------------------------------------------

def docker_container(c: ContainerInfo) -> Struct:
    """A container in the shape of ``docker inspect`` (Docker's ContainerJSON, the fields
    that make sense for a sandbox), fields in Docker's order."""
    labels = dict(getattr(c, "labels", ()) or ())
    hostname = getattr(c, "hostname", "") or c.id[:12]
    created = rfc3339(c.created)
    networks = {e.network: Struct({
        "IPAMConfig": None, "Links": None, "Aliases": list(e.aliases) or None,
        "NetworkID": e.network_id, "EndpointID": e.endpoint_id,
        "Gateway": e.gateway or "", "IPAddress": e.ipv4 or "",
        "IPPrefixLen": e.prefixlen if e.ipv4 else 0, "IPv6Gateway": "",
        "GlobalIPv6Address": e.ipv6 or "", "GlobalIPv6PrefixLen": 64 if e.ipv6 else 0,
        "MacAddress": e.mac, "DriverOpts": None}) for e in c.networks}
    return Struct({
        "Id": c.id, "Created": created,
        "State": Struct({"Status": "running", "Running": True, "Paused": False,
                         "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                         "ExitCode": 0, "Error": "", "StartedAt": created,
                         "FinishedAt": "0001-01-01T00:00:00Z"}),
        "Name": "/" + c.name,
        "Config": Struct({"Hostname": hostname, "Labels": labels}),
        "NetworkSettings": Struct({"SandboxKey": c.netns_path, "Networks": networks}),
        "Node": c.node,
    })


def docker_network(n: NetworkInfo) -> Struct:
    """A network in the shape of ``docker network inspect`` (Docker's NetworkResource),
    fields in Docker's order; ``VNI``, ``MTU`` and each container's ``Node`` are ours."""
    ranges = n.ip_ranges or ("",) * len(n.subnets)
    config = [Struct({"Subnet": s, "IPRange": r, "Gateway": g, "AuxiliaryAddresses": None},
                     omitempty={"Subnet", "IPRange", "Gateway", "AuxiliaryAddresses"})
              for s, g, r in zip(n.subnets, n.gateways, ranges, strict=False)]
    containers = {e.endpoint_id: Struct({
        "Name": e.container, "EndpointID": e.endpoint_id, "MacAddress": e.mac,
        "IPv4Address": f"{e.ipv4}/{e.prefixlen}" if e.ipv4 else "",
        "IPv6Address": f"{e.ipv6}/64" if e.ipv6 else "", "Node": e.node})
        for e in n.endpoints}
    return Struct({
        "Name": n.name, "Id": n.id, "Created": GoTime(rfc3339(n.created), go_time(n.created)),
        "Scope": n.scope, "Driver": n.driver, "EnableIPv6": n.ipv6,
        "IPAM": Struct({"Driver": "default", "Options": {}, "Config": config}),
        "Internal": n.internal, "Attachable": n.attachable and n.scope == "swarm",
        "Ingress": False, "ConfigFrom": Struct({"Network": ""}), "ConfigOnly": False,
        "Containers": containers, "Options": dict(n.options),
        "Labels": dict(getattr(n, "labels", ()) or ()), "VNI": n.vni, "MTU": n.mtu,
    }, omitempty={"VNI", "MTU"})


def docker_node(n: NodeInfo) -> Struct:
    """A node in the shape of ``docker node inspect``."""
    obj = Struct({
        "ID": n.id,
        "Spec": Struct({"Labels": {}, "Role": str(n.role),
                        "Availability": str(n.availability)}),
        "Description": Struct({"Hostname": n.hostname}),
        "Status": Struct({"State": str(n.status).lower(), "Addr": n.address}),
    })
    if n.role is Role.MANAGER:
        obj["ManagerStatus"] = Struct({"Leader": n.leader,
                                       "Reachability": n.reachability or "reachable",
                                       "Addr": f"{n.address}:2377" if n.address else ""})
    return obj


def format_inspect(objs: Sequence[Mapping[str, Any]], fmt: str | None) -> str:
    """``docker inspect``'s output: an indented JSON array, one compact object per line
    (``json``), or the template's result per object."""
    if not fmt:
        return json.dumps(json_data(list(objs)), indent=4, ensure_ascii=False)
    if fmt == "json":
        return "\n".join(json.dumps(json_data(o), separators=(",", ":"), ensure_ascii=False)
                         for o in objs)
    tmpl = Template(fmt)
    return "\n".join(tmpl.execute(o) for o in objs)
