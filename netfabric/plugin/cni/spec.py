"""The pure core of ``netfabric-cni`` (CNI spec 1.1.0; 1.0.0 and 0.3.x/0.4.0 results).

Inputs are the runtime's environment and stdin; outputs are a request for the agent
(:func:`parse`), the JSON the runtime reads (:func:`result`, :func:`error_object`,
:func:`version_answer`). No I/O, and no import the interpreter has not loaded at start-up
(no ``json``, ``re``, ``typing``, ``dataclasses``: see :mod:`.fastjson`), because every
container start runs it in a new process.

Error codes are the spec's (1-7, 11, 50, 51) and ours from 100 (:data:`OUR_CODES`).
"""

from __future__ import annotations

from netfabric.plugin.cni import fastjson
from netfabric.plugin.cni.version import CURRENT, SUPPORTED, VersionError, is_version
from netfabric.plugin.cni.version import version_answer as _version_answer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final


__all__ = [
    "COMMANDS",
    "CURRENT",
    "DNS_SERVER",
    "ERR_DECODE",
    "ERR_INVALID_CONFIG",
    "ERR_INVALID_ENV",
    "ERR_IO",
    "ERR_NOT_AVAILABLE",
    "ERR_TRY_LATER",
    "ERR_UNKNOWN_CONTAINER",
    "ERR_UNSUPPORTED_FIELD",
    "ERR_VERSION",
    "OUR_CODES",
    "SUPPORTED",
    "CniError",
    "CniRequest",
    "code_for_kind",
    "error_object",
    "parse",
    "result",
    "version_answer",
]

COMMANDS: Final = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
DNS_SERVER: Final = "127.0.0.11"
"""Where netfabric's resolver answers inside every sandbox it serves."""

ERR_VERSION: Final = 1
ERR_UNSUPPORTED_FIELD: Final = 2
ERR_UNKNOWN_CONTAINER: Final = 3
ERR_INVALID_ENV: Final = 4
ERR_IO: Final = 5
ERR_DECODE: Final = 6
ERR_INVALID_CONFIG: Final = 7
ERR_TRY_LATER: Final = 11
ERR_NOT_AVAILABLE: Final = 50
ERR_LIMITED: Final = 51

OUR_CODES: Final[dict[str, int]] = {
    "NetfabricError": 100,
    "NotFound": 101,
    "AlreadyExists": 102,
    "IPAMError": 103,
    "DataplaneError": 104,
    "ClusterError": 105,
    "InvalidArgument": 106,
}
"""netfabric's own codes: the agent's error kind (or its nearest base) -> code."""

_BASES: Final[dict[str, str]] = {
    "SubnetOverlap": "IPAMError", "AddressInUse": "IPAMError", "AddressHosted": "IPAMError",
    "AddressOutOfRange": "IPAMError", "PoolExhausted": "IPAMError",
    "NotAManager": "ClusterError", "InvalidToken": "ClusterError",
    "NotInCluster": "ClusterError", "InUse": "AlreadyExists",
}
_TRY_LATER_KINDS: Final = frozenset({"AgentUnreachable", "ManagerUnreachable"})

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")


def _valid_container_id(cid: str) -> bool:
    """Letters, digits, '_', '.', '-', starting with a letter or digit (the spec's rule)."""
    return bool(cid) and cid[0] in _ALNUM and all(c in _ID_CHARS for c in cid)


class CniError(Exception):
    """A failure the runtime gets as the spec's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details


def code_for_kind(kind: str) -> int:
    """The CNI code for an agent error kind (a :mod:`netfabric.errors` class name)."""
    if kind in _TRY_LATER_KINDS:
        return ERR_TRY_LATER
    return OUR_CODES.get(kind) or OUR_CODES.get(_BASES.get(kind, ""), 100)


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


class CniRequest:
    """One call of the plugin, as the agent's ``cni`` verb takes it (:meth:`to_agent`).

    ``name`` is the network configuration's (the conflist's) name, podman's network name;
    ``network`` the netfabric network (the config's ``network``, else its ``name``);
    ``args`` CNI_ARGS (``K8S_POD_NAME``, ``IP``, ``MAC``; unknown keys with IgnoreUnknown)."""

    __slots__ = ("aliases", "args", "command", "container_id", "ifname", "ips", "mac", "name",
                 "netns", "network", "port_mappings", "prev_result", "valid_attachments",
                 "version")

    def __init__(self, *, command: str, version: str, name: str, network: str,
                 container_id: str = "", netns: str = "", ifname: str = "",
                 args: dict[str, str] | None = None, aliases: tuple[str, ...] = (),
                 ips: tuple[str, ...] = (), mac: str = "",
                 port_mappings: tuple[dict[str, Any], ...] = (),
                 valid_attachments: tuple[tuple[str, str], ...] = (),
                 prev_result: dict[str, Any] | None = None) -> None:
        self.command = command
        self.version = version
        self.name = name
        self.network = network
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args: dict[str, str] = dict(args or {})
        self.aliases = aliases
        self.ips = ips
        self.mac = mac
        self.port_mappings = port_mappings
        self.valid_attachments = valid_attachments
        self.prev_result = prev_result

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    def to_agent(self) -> dict[str, Any]:
        return {
            "command": self.command, "name": self.name, "network": self.network,
            "container_id": self.container_id, "netns": self.netns, "ifname": self.ifname,
            "pod_name": self.pod_name, "aliases": list(self.aliases),
            "ip": (self.ips[0] if self.ips else self.args.get("IP", "")),
            "mac": self.mac or self.args.get("MAC", ""),
            "port_mappings": [dict(p) for p in self.port_mappings],
            "valid_attachments": [list(v) for v in self.valid_attachments],
        }


def _env(env: Mapping[str, str], key: str, required: bool) -> str:
    value = env.get(key, "")
    if required and not value:
        raise CniError(ERR_INVALID_ENV, f"{key} is not set: the runtime must pass it")
    return value


def _decode(stdin: bytes) -> dict[str, Any]:
    try:
        conf = fastjson.loads(stdin.decode() or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CniError(ERR_DECODE, f"network configuration on stdin is not JSON: {exc}") from exc
    if not isinstance(conf, dict):
        raise CniError(ERR_DECODE, "network configuration on stdin must be a JSON object")
    return conf


def _version_of(conf: Mapping[str, Any]) -> str:
    v = conf.get("cniVersion", "")
    if not is_version(v):
        raise CniError(ERR_INVALID_CONFIG, f"cniVersion {v!r} is not a version like 1.0.0")
    if v not in SUPPORTED:
        raise CniError(ERR_VERSION, f"cniVersion {v} is not supported by netfabric "
                       f"(supported: {', '.join(SUPPORTED)})")
    return str(v)


def _cni_args(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CniError(ERR_INVALID_ENV, f"CNI_ARGS item {part!r} is not KEY=VALUE")
        out[key] = value
    known = {"IgnoreUnknown", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID",
             "K8S_POD_UID", "IP", "MAC"}
    unknown = sorted(set(out) - known)
    if unknown and out.get("IgnoreUnknown", "").lower() not in ("1", "true"):
        raise CniError(ERR_INVALID_ENV, f"unknown CNI_ARGS {', '.join(unknown)} "
                       "(pass IgnoreUnknown=1 to ignore them)")
    return out


def _str_list(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CniError(ERR_INVALID_CONFIG, f"{what} must be a list of strings")
    return tuple(value)


def _runtime(conf: Mapping[str, Any], name: str) -> tuple[tuple[str, ...], tuple[str, ...], str,
                                                        tuple[dict[str, Any], ...]]:
    rc = conf.get("runtimeConfig") or {}
    if not isinstance(rc, dict):
        raise CniError(ERR_INVALID_CONFIG, "runtimeConfig must be an object")
    aliases_map = rc.get("aliases") or {}
    if not isinstance(aliases_map, dict):
        raise CniError(ERR_INVALID_CONFIG, "runtimeConfig.aliases must map networks to names")
    aliases = _str_list(aliases_map.get(name), f"runtimeConfig.aliases.{name}")
    ips = tuple(ip.split("/")[0] for ip in _str_list(rc.get("ips"), "runtimeConfig.ips"))
    if len(ips) > 1:
        raise CniError(ERR_UNSUPPORTED_FIELD, f"netfabric gives one IPv4 address per interface; "
                       f"runtimeConfig.ips asks for {len(ips)}: {', '.join(ips)}")
    mac = rc.get("mac") or ""
    if not isinstance(mac, str):
        raise CniError(ERR_INVALID_CONFIG, "runtimeConfig.mac must be a string")
    ports_raw = rc.get("portMappings") or []
    if not isinstance(ports_raw, list):
        raise CniError(ERR_INVALID_CONFIG, "runtimeConfig.portMappings must be a list")
    ports: list[dict[str, Any]] = []
    for p in ports_raw:
        if not isinstance(p, dict):
            raise CniError(ERR_INVALID_CONFIG, "each port mapping must be an object")
        host, cont = p.get("hostPort"), p.get("containerPort")
        proto = str(p.get("protocol") or "tcp").lower()
        ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536
                 for v in (host, cont))
        if not ok or proto not in ("tcp", "udp", "sctp"):
            raise CniError(ERR_INVALID_CONFIG, f"bad port mapping {fastjson.dumps(p)}: "
                           "hostPort and containerPort 1-65535, protocol tcp|udp|sctp")
        ports.append({"hostPort": host, "containerPort": cont, "protocol": proto,
                      "hostIP": str(p.get("hostIP") or "")})
    return aliases, ips, mac, tuple(ports)


def parse(env: Mapping[str, str], stdin: bytes) -> CniRequest:
    """The request of one plugin call, or :class:`CniError` with the spec's code."""
    command = _env(env, "CNI_COMMAND", True)
    if command not in COMMANDS:
        raise CniError(ERR_INVALID_ENV, f"CNI_COMMAND {command!r} is not one of "
                       f"{', '.join(COMMANDS)}")
    conf = _decode(stdin)
    version = _version_of(conf)
    if command == "VERSION":
        return CniRequest(command=command, version=version, name="", network="")
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(ERR_INVALID_CONFIG, "the network configuration has no \"name\"")
    ctype = conf.get("type")
    if ctype is not None and ctype != "netfabric":
        raise CniError(ERR_INVALID_CONFIG, f"type {ctype!r} is not netfabric")
    network = conf.get("network", name)
    if not isinstance(network, str) or not network:
        raise CniError(ERR_INVALID_CONFIG, "\"network\" must name a netfabric network")
    vt = _vtuple(version)
    if command == "CHECK" and vt < (0, 4, 0):
        raise CniError(ERR_VERSION, f"CHECK needs cniVersion 0.4.0 or later (got {version})")
    if command in ("GC", "STATUS"):
        if vt < (1, 1, 0):
            raise CniError(ERR_VERSION, f"{command} needs cniVersion 1.1.0 (got {version})")
        valid: list[tuple[str, str]] = []
        raw_valid = conf.get("cni.dev/valid-attachments", [])
        if command == "GC":
            if not isinstance(raw_valid, list):
                raise CniError(ERR_INVALID_CONFIG, "cni.dev/valid-attachments must be a list")
            for a in raw_valid:
                if not (isinstance(a, dict) and isinstance(a.get("containerID"), str)
                        and isinstance(a.get("ifname"), str)):
                    raise CniError(ERR_INVALID_CONFIG, "each valid attachment needs "
                                   "containerID and ifname")
                valid.append((a["containerID"], a["ifname"]))
        return CniRequest(command=command, version=version, name=name, network=network,
                          valid_attachments=tuple(valid))
    container_id = _env(env, "CNI_CONTAINERID", True)
    if not _valid_container_id(container_id):
        raise CniError(ERR_INVALID_ENV, f"CNI_CONTAINERID {container_id!r} must be letters, "
                       "digits, '_', '.', '-', starting with a letter or digit")
    netns = _env(env, "CNI_NETNS", command != "DEL")
    ifname = _env(env, "CNI_IFNAME", True)
    if len(ifname) > 15 or ifname in (".", "..") or any(c in ifname for c in "/: \t\n"):
        raise CniError(ERR_INVALID_ENV, f"CNI_IFNAME {ifname!r} is not a valid interface name")
    args = _cni_args(env.get("CNI_ARGS", ""))
    aliases, ips, mac, ports = _runtime(conf, name)
    prev = conf.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(ERR_INVALID_CONFIG, "prevResult must be an object")
    return CniRequest(command=command, version=version, name=name, network=network,
                      container_id=container_id, netns=netns, ifname=ifname, args=args,
                      aliases=aliases, ips=ips, mac=mac, port_mappings=ports,
                      prev_result=prev)


def version_answer(stdin: bytes) -> dict[str, Any]:
    """VERSION: the versions this plugin speaks (the request's version must be valid)."""
    try:
        return _version_answer(stdin)
    except VersionError as exc:
        raise CniError(exc.code, str(exc)) from exc


def result(req: CniRequest, att: Mapping[str, Any]) -> dict[str, Any]:
    """The ADD result in ``req.version``'s format, chained after ``req.prev_result``.

    ``att`` is the agent's answer: ifname, mac, netns, address (``ip/len``), gateway,
    default_route, dns (nameservers)."""
    old = _vtuple(req.version) < (1, 0, 0)
    prev = dict(req.prev_result or {})
    interfaces = [dict(i) for i in prev.get("interfaces") or [] if isinstance(i, dict)]
    ips = [dict(i) for i in prev.get("ips") or [] if isinstance(i, dict)]
    routes = [dict(r) for r in prev.get("routes") or [] if isinstance(r, dict)]
    index = len(interfaces)
    interfaces.append({"name": att["ifname"], "mac": att["mac"], "sandbox": att["netns"]})
    ip: dict[str, Any] = {"address": att["address"], "interface": index}
    if att.get("gateway"):
        ip["gateway"] = att["gateway"]
    if old:
        ip["version"] = "4"
    for i in ips:
        if old:
            i.setdefault("version", "6" if ":" in str(i.get("address", "")) else "4")
        else:
            i.pop("version", None)
    ips.append(ip)
    if att.get("default_route") and att.get("gateway"):
        routes.append({"dst": "0.0.0.0/0", "gw": att["gateway"]})
    dns = dict(prev.get("dns") or {})
    servers = list(dns.get("nameservers") or [])
    for s in att.get("dns") or []:
        if s not in servers:
            servers.append(s)
    if servers:
        dns["nameservers"] = servers
    out: dict[str, Any] = {"cniVersion": req.version, "interfaces": interfaces, "ips": ips}
    if routes:
        out["routes"] = routes
    if dns:
        out["dns"] = dns
    return out


def error_object(version: str, err: CniError) -> dict[str, Any]:
    """The spec's error object (one line of message a person can act on)."""
    out: dict[str, Any] = {"cniVersion": version if version in SUPPORTED else CURRENT,
                           "code": err.code, "msg": err.msg.splitlines()[0] if err.msg else ""}
    if err.details:
        out["details"] = err.details
    return out
