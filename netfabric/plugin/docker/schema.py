"""libnetwork's remote plugin wire schema: one typed request/response pair per verb.

Requests are parsed from untrusted JSON into frozen values by :func:`parse_request`, which
checks every field Docker sends (types, id shapes, CIDRs) and raises
:class:`~netfabric.errors.InvalidArgument` naming the verb and field, so a handler only ever
sees well-formed input. Responses render themselves with :meth:`to_json` in Docker's field
names. Observed payloads (dockerd 20.10) are in shared/reference/dockerd-remote-plugin-observed.md:
``Options`` may be ``null``, a retried request may come with an empty body, and
``ReleaseAddress`` carries a bare address where ``RequestAddress`` answers ``a/len``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from netfabric.errors import InvalidArgument

__all__ = [
    "GATEWAY_ADDRESS_TYPE",
    "IMPLEMENTS",
    "MAX_BODY",
    "VERBS",
    "ActivateRequest",
    "ActivateResponse",
    "AddressSpacesResponse",
    "CreateEndpointRequest",
    "CreateEndpointResponse",
    "CreateNetworkRequest",
    "DiscoverRequest",
    "EmptyResponse",
    "EndpointRequest",
    "ErrorResponse",
    "ExternalConnectivityRequest",
    "GetCapabilitiesRequest",
    "IPAMCapabilitiesResponse",
    "IPData",
    "JoinRequest",
    "JoinResponse",
    "NetworkCapabilitiesResponse",
    "NetworkRequest",
    "OperInfoResponse",
    "ReleaseAddressRequest",
    "ReleasePoolRequest",
    "Request",
    "RequestAddressRequest",
    "RequestAddressResponse",
    "RequestPoolRequest",
    "RequestPoolResponse",
    "Response",
    "StaticRoute",
    "parse_request",
]

IMPLEMENTS: Final = ("NetworkDriver", "IpamDriver")
GATEWAY_ADDRESS_TYPE: Final = "com.docker.network.gateway"
"""``Options.RequestAddressType`` of the gateway request made at ``network create``."""
MAX_BODY: Final = 1 << 20
"""Largest request body accepted (bytes); Docker's are well under 4 KiB."""

_GENERIC: Final = "com.docker.network.generic"
_ENABLE_IPV6: Final = "com.docker.network.enable_ipv6"
_DNS_SERVERS: Final = "com.docker.network.endpoint.dnsservers"
_ID_RE: Final = re.compile(r"[0-9A-Za-z_.-]{1,128}")
_MAC_RE: Final = re.compile(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")
_MAX_STR: Final = 4096


# ---------------------------------------------------------------------------------------------
# field readers: each raises InvalidArgument naming the verb and field


def _fail(verb: str, key: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"{verb}: field {key!r} {why}")


def _get_str(verb: str, obj: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise _fail(verb, key, "is required")
        return ""
    if not isinstance(value, str):
        raise _fail(verb, key, f"must be a string, got {type(value).__name__}")
    if len(value) > _MAX_STR:
        raise _fail(verb, key, "is too long")
    return value


def _get_id(verb: str, obj: Mapping[str, Any], key: str) -> str:
    value = _get_str(verb, obj, key, required=True)
    if not _ID_RE.fullmatch(value):
        raise _fail(verb, key, "is not an id (letters, digits, '_.-', at most 128): "
                               f"{value[:80]!r}")
    return value


def _get_bool(verb: str, obj: Mapping[str, Any], key: str) -> bool:
    value = obj.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(verb, key, f"must be true or false, got {type(value).__name__}")
    return value


def _get_map(verb: str, obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(verb, key, f"must be an object, got {type(value).__name__}")
    return value


def _str_map(verb: str, key: str, value: object) -> tuple[tuple[str, str], ...]:
    """A map of string options (``-o k=v``, ``--ipam-opt``), sorted for stable equality."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _fail(verb, key, f"must be an object of strings, got {type(value).__name__}")
    out: list[tuple[str, str]] = []
    for k, v in value.items():
        if not isinstance(v, str) or len(k) > 256 or len(v) > _MAX_STR:
            raise _fail(verb, f"{key}.{k}"[:120], "must be a short string")
        out.append((k, v))
    return tuple(sorted(out))


def _cidr(verb: str, key: str, text: str, *, host: bool) -> str:
    """A CIDR; with ``host`` an address with its prefix length (``a/len``), else a network."""
    try:
        if host:
            return str(ipaddress.ip_interface(text))
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError as exc:
        raise _fail(verb, key, f"is not a valid {'address/len' if host else 'CIDR'}: "
                               f"{text[:80]!r}") from exc


def _address(verb: str, key: str, text: str) -> str:
    """A bare address; Docker sometimes sends ``a/len`` where ``a`` is meant."""
    try:
        return str(ipaddress.ip_interface(text).ip)
    except ValueError as exc:
        raise _fail(verb, key, f"is not an IP address: {text[:80]!r}") from exc


# ---------------------------------------------------------------------------------------------
# requests


@dataclass(frozen=True, slots=True)
class ActivateRequest:
    """``Plugin.Activate``: the handshake; the body is empty."""

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> ActivateRequest:
        return cls()


@dataclass(frozen=True, slots=True)
class GetCapabilitiesRequest:
    """``NetworkDriver.GetCapabilities``, ``IpamDriver.GetCapabilities`` and
    ``IpamDriver.GetDefaultAddressSpaces``: no fields."""

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> GetCapabilitiesRequest:
        return cls()


@dataclass(frozen=True, slots=True)
class IPData:
    """One entry of ``IPv4Data``/``IPv6Data``: the pool and gateway IPAM gave the network."""

    address_space: str
    pool: str
    gateway: str = ""
    aux_addresses: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, verb: str, key: str, obj: object) -> IPData:
        if not isinstance(obj, dict):
            raise _fail(verb, key, "entries must be objects")
        pool = _cidr(verb, f"{key}.Pool", _get_str(verb, obj, "Pool", required=True), host=False)
        gw = _get_str(verb, obj, "Gateway")
        aux = obj.get("AuxAddresses")
        aux_items: list[tuple[str, str]] = []
        if aux is not None:
            if not isinstance(aux, dict):
                raise _fail(verb, f"{key}.AuxAddresses", "must be an object")
            for name, addr in aux.items():
                if not isinstance(addr, str):
                    raise _fail(verb, f"{key}.AuxAddresses", "values must be strings")
                aux_items.append((str(name)[:64], _cidr(verb, f"{key}.AuxAddresses", addr,
                                                        host=True)))
        return cls(address_space=_get_str(verb, obj, "AddressSpace"), pool=pool,
                   gateway=_cidr(verb, f"{key}.Gateway", gw, host=True) if gw else "",
                   aux_addresses=tuple(sorted(aux_items)))


def _ip_data(verb: str, obj: Mapping[str, Any], key: str) -> tuple[IPData, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 64:
        raise _fail(verb, key, "must be a list (at most 64 entries)")
    return tuple(IPData.parse(verb, key, item) for item in value)


@dataclass(frozen=True, slots=True)
class CreateNetworkRequest:
    """``NetworkDriver.CreateNetwork``: a Docker network id, its ``-o`` options and pools.

    The network's *name* is not in any request of the protocol; the plugin learns it from
    dockerd's API once the network exists (see handlers)."""

    network_id: str
    options: tuple[tuple[str, str], ...] = ()
    ipv6: bool = False
    ipv4_data: tuple[IPData, ...] = ()
    ipv6_data: tuple[IPData, ...] = ()

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> CreateNetworkRequest:
        opts = _get_map(verb, obj, "Options")
        ipv6 = opts.get(_ENABLE_IPV6, False)
        if not isinstance(ipv6, bool):
            raise _fail(verb, f"Options.{_ENABLE_IPV6}", "must be true or false")
        return cls(network_id=_get_id(verb, obj, "NetworkID"),
                   options=_str_map(verb, f"Options.{_GENERIC}", opts.get(_GENERIC)),
                   ipv6=ipv6, ipv4_data=_ip_data(verb, obj, "IPv4Data"),
                   ipv6_data=_ip_data(verb, obj, "IPv6Data"))

    def option(self, key: str, default: str = "") -> str:
        return dict(self.options).get(key, default)


@dataclass(frozen=True, slots=True)
class NetworkRequest:
    """``NetworkDriver.DeleteNetwork``: just the network id."""

    network_id: str

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> NetworkRequest:
        return cls(network_id=_get_id(verb, obj, "NetworkID"))


@dataclass(frozen=True, slots=True)
class CreateEndpointRequest:
    """``NetworkDriver.CreateEndpoint``: the address IPAM gave, and ``--dns`` if any."""

    network_id: str
    endpoint_id: str
    address: str = ""
    address_ipv6: str = ""
    mac: str = ""
    dns_servers: tuple[str, ...] = ()

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> CreateEndpointRequest:
        iface = _get_map(verb, obj, "Interface")
        addr = _get_str(verb, iface, "Address")
        addr6 = _get_str(verb, iface, "AddressIPv6")
        mac = _get_str(verb, iface, "MacAddress")
        if mac and not _MAC_RE.fullmatch(mac):
            raise _fail(verb, "Interface.MacAddress", f"is not a MAC address: {mac[:40]!r}")
        opts = _get_map(verb, obj, "Options")
        dns = opts.get(_DNS_SERVERS) or []
        if not isinstance(dns, list) or not all(isinstance(d, str) for d in dns):
            raise _fail(verb, f"Options.{_DNS_SERVERS}", "must be a list of addresses")
        return cls(network_id=_get_id(verb, obj, "NetworkID"),
                   endpoint_id=_get_id(verb, obj, "EndpointID"),
                   address=_cidr(verb, "Interface.Address", addr, host=True) if addr else "",
                   address_ipv6=(_cidr(verb, "Interface.AddressIPv6", addr6, host=True)
                                 if addr6 else ""),
                   mac=mac.lower(),
                   dns_servers=tuple(_address(verb, f"Options.{_DNS_SERVERS}", d)
                                     for d in dns[:8]))


@dataclass(frozen=True, slots=True)
class EndpointRequest:
    """``EndpointOperInfo``, ``DeleteEndpoint``, ``Leave`` and
    ``RevokeExternalConnectivity``: network and endpoint ids."""

    network_id: str
    endpoint_id: str

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> EndpointRequest:
        return cls(network_id=_get_id(verb, obj, "NetworkID"),
                   endpoint_id=_get_id(verb, obj, "EndpointID"))


@dataclass(frozen=True, slots=True)
class ExternalConnectivityRequest:
    """``ProgramExternalConnectivity``: ids plus port options (unused by netfabric)."""

    network_id: str
    endpoint_id: str

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> ExternalConnectivityRequest:
        _get_map(verb, obj, "Options")
        return cls(network_id=_get_id(verb, obj, "NetworkID"),
                   endpoint_id=_get_id(verb, obj, "EndpointID"))


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """``NetworkDriver.Join``: the sandbox (a netns path in dockerd's mount namespace)."""

    network_id: str
    endpoint_id: str
    sandbox_key: str

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> JoinRequest:
        _get_map(verb, obj, "Options")
        return cls(network_id=_get_id(verb, obj, "NetworkID"),
                   endpoint_id=_get_id(verb, obj, "EndpointID"),
                   sandbox_key=_get_str(verb, obj, "SandboxKey"))


@dataclass(frozen=True, slots=True)
class DiscoverRequest:
    """``DiscoverNew``/``DiscoverDelete``: node discovery, which netfabric's gossip does."""

    discovery_type: int

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> DiscoverRequest:
        dtype = obj.get("DiscoveryType")
        if not isinstance(dtype, int) or isinstance(dtype, bool):
            raise _fail(verb, "DiscoveryType", "must be an integer")
        return cls(discovery_type=dtype)


@dataclass(frozen=True, slots=True)
class RequestPoolRequest:
    """``IpamDriver.RequestPool``: ``--subnet``/``--ip-range`` when given, else empty."""

    address_space: str
    pool: str = ""
    sub_pool: str = ""
    v6: bool = False
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> RequestPoolRequest:
        pool = _get_str(verb, obj, "Pool")
        sub = _get_str(verb, obj, "SubPool")
        v6 = _get_bool(verb, obj, "V6")
        pool = _cidr(verb, "Pool", pool, host=False) if pool else ""
        sub = _cidr(verb, "SubPool", sub, host=False) if sub else ""
        if sub and not pool:
            raise _fail(verb, "SubPool", "needs a Pool (--ip-range needs --subnet)")
        if pool:
            net = ipaddress.ip_network(pool)
            if (net.version == 6) != v6:
                raise _fail(verb, "Pool", f"{pool} does not match V6={v6}")
            if sub and not ipaddress.ip_network(sub).subnet_of(net):  # type: ignore[arg-type]
                raise _fail(verb, "SubPool", f"{sub} is not inside {pool}")
        return cls(address_space=_get_str(verb, obj, "AddressSpace", required=True),
                   pool=pool, sub_pool=sub,
                   v6=v6, options=_str_map(verb, "Options", obj.get("Options")))


@dataclass(frozen=True, slots=True)
class ReleasePoolRequest:
    """``IpamDriver.ReleasePool``."""

    pool_id: str

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> ReleasePoolRequest:
        return cls(pool_id=_get_id(verb, obj, "PoolID"))


@dataclass(frozen=True, slots=True)
class RequestAddressRequest:
    """``IpamDriver.RequestAddress``: a specific address (``--ip``, gateway) or any."""

    pool_id: str
    address: str = ""
    gateway: bool = False
    mac: str = ""

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> RequestAddressRequest:
        addr = _get_str(verb, obj, "Address")
        opts = _str_map(verb, "Options", obj.get("Options"))
        kind = dict(opts).get("RequestAddressType", "")
        mac = dict(opts).get("com.docker.network.endpoint.macaddress", "")
        return cls(pool_id=_get_id(verb, obj, "PoolID"),
                   address=_address(verb, "Address", addr) if addr else "",
                   gateway=kind == GATEWAY_ADDRESS_TYPE, mac=mac)


@dataclass(frozen=True, slots=True)
class ReleaseAddressRequest:
    """``IpamDriver.ReleaseAddress``: Docker sends the bare address."""

    pool_id: str
    address: str

    @classmethod
    def parse(cls, verb: str, obj: Mapping[str, Any]) -> ReleaseAddressRequest:
        return cls(pool_id=_get_id(verb, obj, "PoolID"),
                   address=_address(verb, "Address", _get_str(verb, obj, "Address",
                                                               required=True)))


Request = (ActivateRequest | GetCapabilitiesRequest | CreateNetworkRequest | NetworkRequest
           | CreateEndpointRequest | EndpointRequest | ExternalConnectivityRequest | JoinRequest
           | DiscoverRequest | RequestPoolRequest | ReleasePoolRequest | RequestAddressRequest
           | ReleaseAddressRequest)

VERBS: Final[Mapping[str, type[Request]]] = {
    "Plugin.Activate": ActivateRequest,
    "NetworkDriver.GetCapabilities": GetCapabilitiesRequest,
    "NetworkDriver.CreateNetwork": CreateNetworkRequest,
    "NetworkDriver.DeleteNetwork": NetworkRequest,
    "NetworkDriver.CreateEndpoint": CreateEndpointRequest,
    "NetworkDriver.EndpointOperInfo": EndpointRequest,
    "NetworkDriver.DeleteEndpoint": EndpointRequest,
    "NetworkDriver.Join": JoinRequest,
    "NetworkDriver.Leave": EndpointRequest,
    "NetworkDriver.DiscoverNew": DiscoverRequest,
    "NetworkDriver.DiscoverDelete": DiscoverRequest,
    "NetworkDriver.ProgramExternalConnectivity": ExternalConnectivityRequest,
    "NetworkDriver.RevokeExternalConnectivity": EndpointRequest,
    "IpamDriver.GetCapabilities": GetCapabilitiesRequest,
    "IpamDriver.GetDefaultAddressSpaces": GetCapabilitiesRequest,
    "IpamDriver.RequestPool": RequestPoolRequest,
    "IpamDriver.ReleasePool": ReleasePoolRequest,
    "IpamDriver.RequestAddress": RequestAddressRequest,
    "IpamDriver.ReleaseAddress": ReleaseAddressRequest,
}
"""Every verb netfabric implements, with the request type its body parses into."""

_BODYLESS: Final = frozenset({"Plugin.Activate", "NetworkDriver.GetCapabilities",
                              "IpamDriver.GetCapabilities", "IpamDriver.GetDefaultAddressSpaces"})


def parse_request(verb: str, body: bytes) -> Request:
    """Decode and check one request body; raise :class:`InvalidArgument` with a clear reason.

    Verbs without fields accept an empty body; every other verb needs a JSON object.
    """
    kind = VERBS.get(verb)
    if kind is None:
        raise InvalidArgument(f"unknown verb {verb[:80]!r}: netfabric implements "
                              f"{', '.join(sorted(VERBS))}")
    if len(body) > MAX_BODY:
        raise InvalidArgument(f"{verb}: request body larger than {MAX_BODY} bytes")
    if not body.strip():
        if verb in _BODYLESS:
            return kind.parse(verb, {})
        raise InvalidArgument(f"{verb}: empty request body (expected a JSON object)")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{verb}: request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{verb}: request body must be a JSON object, "
                              f"got {type(obj).__name__}")
    return kind.parse(verb, obj)


# ---------------------------------------------------------------------------------------------
# responses


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """Any verb's failure, shown to the user by Docker.

    libnetwork reads ``Err`` for NetworkDriver verbs but ``Error`` for IpamDriver verbs (its
    ipams/remote/api ``Response`` has a field ``Error``; an IPAM answer with only ``Err``
    reads as success and dockerd says "No address returned"). Both keys carry the message.
    """

    err: str

    def to_json(self) -> dict[str, Any]:
        return {"Err": self.err, "Error": self.err}


@dataclass(frozen=True, slots=True)
class EmptyResponse:
    """Success with nothing to say (``{}``)."""

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class ActivateResponse:
    implements: tuple[str, ...] = IMPLEMENTS

    def to_json(self) -> dict[str, Any]:
        return {"Implements": list(self.implements)}


@dataclass(frozen=True, slots=True)
class NetworkCapabilitiesResponse:
    """Scope ``local``: no swarm, no cluster store; netfabric spans hosts itself."""

    scope: str = "local"
    connectivity_scope: str = "global"

    def to_json(self) -> dict[str, Any]:
        return {"Scope": self.scope, "ConnectivityScope": self.connectivity_scope}


@dataclass(frozen=True, slots=True)
class OperInfoResponse:
    value: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"Value": dict(self.value)}


@dataclass(frozen=True, slots=True)
class CreateEndpointResponse:
    """Only the MAC, when netfabric chose it: echoing ``Address`` is an error for Docker."""

    mac: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"Interface": {"MacAddress": self.mac}} if self.mac else {}


@dataclass(frozen=True, slots=True)
class StaticRoute:
    destination: str
    next_hop: str = ""

    def to_json(self) -> dict[str, Any]:
        if self.next_hop:
            return {"Destination": self.destination, "RouteType": 0, "NextHop": self.next_hop}
        return {"Destination": self.destination, "RouteType": 1}


@dataclass(frozen=True, slots=True)
class JoinResponse:
    """The veth Docker moves into the sandbox (renamed ``eth<N>``) and the gateway."""

    src_name: str
    gateway: str = ""
    gateway_ipv6: str = ""
    static_routes: tuple[StaticRoute, ...] = ()
    dst_prefix: str = "eth"
    disable_gateway_service: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"InterfaceName": {"SrcName": self.src_name,
                                                 "DstPrefix": self.dst_prefix},
                               "DisableGatewayService": self.disable_gateway_service}
        if self.gateway:
            out["Gateway"] = self.gateway
        if self.gateway_ipv6:
            out["GatewayIPv6"] = self.gateway_ipv6
        if self.static_routes:
            out["StaticRoutes"] = [r.to_json() for r in self.static_routes]
        return out


@dataclass(frozen=True, slots=True)
class IPAMCapabilitiesResponse:
    requires_mac_address: bool = False
    requires_request_replay: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"RequiresMACAddress": self.requires_mac_address,
                "RequiresRequestReplay": self.requires_request_replay}


@dataclass(frozen=True, slots=True)
class AddressSpacesResponse:
    local: str
    global_: str

    def to_json(self) -> dict[str, Any]:
        return {"LocalDefaultAddressSpace": self.local,
                "GlobalDefaultAddressSpace": self.global_}


@dataclass(frozen=True, slots=True)
class RequestPoolResponse:
    pool_id: str
    pool: str

    def to_json(self) -> dict[str, Any]:
        return {"PoolID": self.pool_id, "Pool": self.pool, "Data": {}}


@dataclass(frozen=True, slots=True)
class RequestAddressResponse:
    address: str
    """``a/len``, as Docker wants it."""

    def to_json(self) -> dict[str, Any]:
        return {"Address": self.address, "Data": {}}


Response = (ErrorResponse | EmptyResponse | ActivateResponse | NetworkCapabilitiesResponse
            | OperInfoResponse | CreateEndpointResponse | JoinResponse
            | IPAMCapabilitiesResponse | AddressSpacesResponse | RequestPoolResponse
            | RequestAddressResponse)
