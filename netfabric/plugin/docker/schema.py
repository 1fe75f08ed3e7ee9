"""libnetwork's remote plugin wire schema: one typed request/response pair per verb.

Requests are msgspec Structs in Docker's field names, decoded from untrusted JSON by
:func:`parse_request`: msgspec checks every field's type and shape (ids, string maps, list
sizes) and the ``__post_init__`` hooks check and normalise addresses and CIDRs, so a bad
request is one :class:`~netfabric.errors.InvalidArgument` naming the verb and the field path,
and a handler only ever sees well-formed input. Responses render themselves with
:meth:`to_json` in Docker's field names. Observed payloads (dockerd 20.10) are in
shared/reference/dockerd-remote-plugin-observed.md: ``Options`` may be ``null``, a retried
request may come with an empty body, and ``ReleaseAddress`` carries a bare address where
``RequestAddress`` answers ``a/len``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

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
_MAC_OPTION: Final = "com.docker.network.endpoint.macaddress"

# -- field types: msgspec checks these and names the field path on failure --------------------

Id = Annotated[str, Meta(pattern=r"^[0-9A-Za-z_.-]{1,128}$",
                         description="letters, digits, '_.-', at most 128")]
"""A Docker network, endpoint or pool id."""
Text = Annotated[str, Meta(max_length=4096)]
Key = Annotated[str, Meta(max_length=256)]
StrMap = dict[Key, Text]
"""A map of string options (``-o k=v``, ``--ipam-opt``)."""
Mac = Annotated[str, Meta(pattern=r"^(([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})?$")]


def _pairs(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """A string map as sorted pairs, for stable equality."""
    return tuple(sorted((value or {}).items()))


def _cidr(key: str, text: str, *, host: bool) -> str:
    """A CIDR; with ``host`` an address with its prefix length (``a/len``), else a network."""
    try:
        if host:
            return str(ipaddress.ip_interface(text))
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        raise ValueError(f"{key} is not a valid {'address/len' if host else 'CIDR'}: "
                         f"{text[:80]!r}") from None


def _address(key: str, text: str) -> str:
    """A bare address; Docker sometimes sends ``a/len`` where ``a`` is meant."""
    try:
        return str(ipaddress.ip_interface(text).ip)
    except ValueError:
        raise ValueError(f"{key} is not an IP address: {text[:80]!r}") from None


class _Wire(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the request Structs: Docker's field names, unknown fields ignored."""


# ---------------------------------------------------------------------------------------------
# requests


class ActivateRequest(_Wire, frozen=True):
    """``Plugin.Activate``: the handshake; the body is empty."""


class GetCapabilitiesRequest(_Wire, frozen=True):
    """``NetworkDriver.GetCapabilities``, ``IpamDriver.GetCapabilities`` and
    ``IpamDriver.GetDefaultAddressSpaces``: no fields."""


class IPData(_Wire, frozen=True):
    """One entry of ``IPv4Data``/``IPv6Data``: the pool and gateway IPAM gave the network."""

    pool: Text = msgspec.field(name="Pool")
    address_space: Text = msgspec.field(name="AddressSpace", default="")
    gateway: Text = msgspec.field(name="Gateway", default="")
    aux: dict[Annotated[str, Meta(max_length=64)], Text] | None = msgspec.field(
        name="AuxAddresses", default=None)

    def __post_init__(self) -> None:
        force_setattr(self, "pool", _cidr("Pool", self.pool, host=False))
        force_setattr(self, "gateway",
                      _cidr("Gateway", self.gateway, host=True) if self.gateway else "")
        force_setattr(self, "aux", {k: _cidr("AuxAddresses", v, host=True)
                                    for k, v in (self.aux or {}).items()})

    @property
    def aux_addresses(self) -> tuple[tuple[str, str], ...]:
        return _pairs(self.aux)


IPDataList = Annotated[tuple[IPData, ...], Meta(max_length=64)]


class _NetworkOptions(_Wire, frozen=True):
    generic: StrMap | None = msgspec.field(name=_GENERIC, default=None)
    enable_ipv6: bool | None = msgspec.field(name=_ENABLE_IPV6, default=None)


class CreateNetworkRequest(_Wire, frozen=True):
    """``NetworkDriver.CreateNetwork``: a Docker network id, its ``-o`` options and pools.

    The network's *name* is not in any request of the protocol; the plugin learns it from
    dockerd's API once the network exists (see handlers)."""

    network_id: Id = msgspec.field(name="NetworkID")
    opts: _NetworkOptions | None = msgspec.field(name="Options", default=None)
    ipv4: IPDataList | None = msgspec.field(name="IPv4Data", default=None)
    ipv6_pools: IPDataList | None = msgspec.field(name="IPv6Data", default=None)

    @property
    def ipv4_data(self) -> tuple[IPData, ...]:
        return self.ipv4 or ()

    @property
    def ipv6_data(self) -> tuple[IPData, ...]:
        return self.ipv6_pools or ()

    @property
    def options(self) -> tuple[tuple[str, str], ...]:
        return _pairs(self.opts.generic if self.opts else None)

    @property
    def ipv6(self) -> bool:
        return bool(self.opts and self.opts.enable_ipv6)

    def option(self, key: str, default: str = "") -> str:
        return dict(self.options).get(key, default)


class NetworkRequest(_Wire, frozen=True):
    """``NetworkDriver.DeleteNetwork``: just the network id."""

    network_id: Id = msgspec.field(name="NetworkID")


class _Interface(_Wire, frozen=True):
    address: Text = msgspec.field(name="Address", default="")
    address_ipv6: Text = msgspec.field(name="AddressIPv6", default="")
    mac: Mac = msgspec.field(name="MacAddress", default="")

    def __post_init__(self) -> None:
        force_setattr(self, "address",
                      _cidr("Address", self.address, host=True) if self.address else "")
        force_setattr(self, "address_ipv6", _cidr("AddressIPv6", self.address_ipv6, host=True)
                      if self.address_ipv6 else "")
        force_setattr(self, "mac", self.mac.lower())


class _EndpointOptions(_Wire, frozen=True):
    dns_servers: list[Text] | None = msgspec.field(name=_DNS_SERVERS, default=None)

    def __post_init__(self) -> None:
        force_setattr(self, "dns_servers",
                      [_address(_DNS_SERVERS, d) for d in (self.dns_servers or [])[:8]])


class CreateEndpointRequest(_Wire, frozen=True):
    """``NetworkDriver.CreateEndpoint``: the address IPAM gave, and ``--dns`` if any."""

    network_id: Id = msgspec.field(name="NetworkID")
    endpoint_id: Id = msgspec.field(name="EndpointID")
    interface: _Interface | None = msgspec.field(name="Interface", default=None)
    opts: _EndpointOptions | None = msgspec.field(name="Options", default=None)

    @property
    def address(self) -> str:
        return self.interface.address if self.interface else ""

    @property
    def address_ipv6(self) -> str:
        return self.interface.address_ipv6 if self.interface else ""

    @property
    def mac(self) -> str:
        return self.interface.mac if self.interface else ""

    @property
    def dns_servers(self) -> tuple[str, ...]:
        return tuple(self.opts.dns_servers or ()) if self.opts else ()


class EndpointRequest(_Wire, frozen=True):
    """``EndpointOperInfo``, ``DeleteEndpoint``, ``Leave`` and
    ``RevokeExternalConnectivity``: network and endpoint ids."""

    network_id: Id = msgspec.field(name="NetworkID")
    endpoint_id: Id = msgspec.field(name="EndpointID")


class ExternalConnectivityRequest(_Wire, frozen=True):
    """``ProgramExternalConnectivity``: ids plus port options (unused by netfabric)."""

    network_id: Id = msgspec.field(name="NetworkID")
    endpoint_id: Id = msgspec.field(name="EndpointID")
    opts: dict[str, Any] | None = msgspec.field(name="Options", default=None)


class JoinRequest(_Wire, frozen=True):
    """``NetworkDriver.Join``: the sandbox (a netns path in dockerd's mount namespace)."""

    network_id: Id = msgspec.field(name="NetworkID")
    endpoint_id: Id = msgspec.field(name="EndpointID")
    sandbox_key: Text = msgspec.field(name="SandboxKey", default="")
    opts: dict[str, Any] | None = msgspec.field(name="Options", default=None)


class DiscoverRequest(_Wire, frozen=True):
    """``DiscoverNew``/``DiscoverDelete``: node discovery, which netfabric's gossip does."""

    discovery_type: int = msgspec.field(name="DiscoveryType")


class RequestPoolRequest(_Wire, frozen=True):
    """``IpamDriver.RequestPool``: ``--subnet``/``--ip-range`` when given, else empty."""

    address_space: Text = msgspec.field(name="AddressSpace")
    pool: Text = msgspec.field(name="Pool", default="")
    sub_pool: Text = msgspec.field(name="SubPool", default="")
    v6: bool = msgspec.field(name="V6", default=False)
    opts: StrMap | None = msgspec.field(name="Options", default=None)

    def __post_init__(self) -> None:
        if not self.address_space:
            raise ValueError("AddressSpace is required")
        pool = _cidr("Pool", self.pool, host=False) if self.pool else ""
        sub = _cidr("SubPool", self.sub_pool, host=False) if self.sub_pool else ""
        v6 = self.v6
        if sub and not pool:
            raise ValueError("SubPool needs a Pool (--ip-range needs --subnet)")
        if pool:
            net = ipaddress.ip_network(pool)
            if (net.version == 6) != v6:
                raise ValueError(f"Pool {pool} does not match V6={v6}")
            if sub and not ipaddress.ip_network(sub).subnet_of(net):  # type: ignore[arg-type]
                raise ValueError(f"SubPool {sub} is not inside {pool}")
        force_setattr(self, "pool", pool)
        force_setattr(self, "sub_pool", sub)

    @property
    def options(self) -> tuple[tuple[str, str], ...]:
        return _pairs(self.opts)


class RequestAddressRequest(_Wire, frozen=True):
    """``IpamDriver.RequestAddress``: a specific address (``--ip``, gateway) or any."""

    pool_id: Id = msgspec.field(name="PoolID")
    address: Text = msgspec.field(name="Address", default="")
    opts: StrMap | None = msgspec.field(name="Options", default=None)

    def __post_init__(self) -> None:
        force_setattr(self, "address", _address("Address", self.address) if self.address else "")

    @property
    def gateway(self) -> bool:
        return (self.opts or {}).get("RequestAddressType", "") == GATEWAY_ADDRESS_TYPE

    @property
    def mac(self) -> str:
        return (self.opts or {}).get(_MAC_OPTION, "")


class ReleasePoolRequest(_Wire, frozen=True):
    """``IpamDriver.ReleasePool``."""

    pool_id: Id = msgspec.field(name="PoolID")


class ReleaseAddressRequest(_Wire, frozen=True):
    """``IpamDriver.ReleaseAddress``: Docker sends the bare address."""

    pool_id: Id = msgspec.field(name="PoolID")
    address: Text = msgspec.field(name="Address")

    def __post_init__(self) -> None:
        force_setattr(self, "address", _address("Address", self.address))


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
_DECODERS: Final = {kind: msgspec.json.Decoder(kind) for kind in set(VERBS.values())}


def parse_request(verb: str, body: bytes) -> Request:
    """Decode and check one request body; raise :class:`InvalidArgument` with a clear reason
    (the verb, and the field path msgspec found wrong).

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
            return _DECODERS[kind].decode(b"{}")
        raise InvalidArgument(f"{verb}: empty request body (expected a JSON object)")
    try:
        return _DECODERS[kind].decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(f"{verb}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"{verb}: request body is not valid JSON: {exc}") from None


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
