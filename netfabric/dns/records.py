"""The records view the resolver answers from: names and addresses, keyed by network.

The agent feeds it (from its own attaches now, from the gossip endpoint and service tables
later). Every mutation reports the exact ``(network, names)`` it touched to subscribers, so
the resolver's answer cache drops only the entries those names produced. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from netfabric.errors import InvalidArgument, NotFound

__all__ = [
    "ChangeListener",
    "NameTarget",
    "Records",
    "ServiceMode",
    "normalize_name",
    "reverse_name",
]

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_MAX_NAME = 253
_T = TypeVar("_T")

ChangeListener = Callable[[str, frozenset[str]], None]
"""Called as ``listener(network_id, names)`` after names on a network changed."""


class ServiceMode(StrEnum):
    """How a service name resolves: to its virtual IP, or to every task (DNS round robin)."""

    VIP = "vip"
    DNSRR = "dnsrr"


@dataclass(frozen=True, slots=True)
class NameTarget:
    """What one owner (an endpoint or a service) contributes to one name."""

    ipv4: tuple[IPv4, ...] = ()
    ipv6: tuple[IPv6, ...] = ()
    shuffle: bool = False


def normalize_name(name: str) -> str:
    """Lower-case, without the trailing dot; raise InvalidArgument if it is no DNS name."""
    if not isinstance(name, str):
        raise InvalidArgument(f"a DNS name must be a string, got {type(name).__name__}")
    norm = name.strip().lower().removesuffix(".")
    if not norm or len(norm) > _MAX_NAME:
        raise InvalidArgument(f"invalid DNS name {name!r}: empty or longer than {_MAX_NAME}")
    for label in norm.split("."):
        if not _LABEL.match(label):
            raise InvalidArgument(f"invalid DNS name {name!r}: bad label {label!r}")
    return norm


def reverse_name(address: IPv4 | IPv6) -> str:
    """The PTR owner name of an address, lower-case and without the trailing dot."""
    return address.reverse_pointer.lower()


def _v4(value: str | None, what: str) -> tuple[IPv4, ...]:
    if value is None:
        return ()
    try:
        return (IPv4(value),)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid IPv4 address for {what}: {value!r}") from exc


def _v6(value: str | None, what: str) -> tuple[IPv6, ...]:
    if value is None:
        return ()
    try:
        return (IPv6(value),)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"invalid IPv6 address for {what}: {value!r}") from exc


def _ips(values: Iterable[str], what: str) -> tuple[tuple[IPv4, ...], tuple[IPv6, ...]]:
    v4: list[IPv4] = []
    v6: list[IPv6] = []
    for value in values:
        try:
            addr = ipaddress.ip_address(value)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"invalid address for {what}: {value!r}") from exc
        if isinstance(addr, IPv4):
            v4.append(addr)
        else:
            v6.append(addr)
    return tuple(v4), tuple(v6)


Owner = tuple[str, str]
"""``("ep", endpoint_id)`` or ``("svc", service_name)``: who put a record there."""


@dataclass(frozen=True, slots=True)
class _Entry:
    """Everything one owner published on one network, to undo it exactly."""

    names: dict[str, NameTarget]
    ptrs: dict[str, str]


class Records:
    """Names of endpoints and services, per network, with exact change notification."""

    def __init__(self) -> None:
        # network -> name -> owner -> target
        self._names: dict[str, dict[str, dict[Owner, NameTarget]]] = {}
        # network -> reverse name -> owner -> PTR target name
        self._ptrs: dict[str, dict[str, dict[Owner, str]]] = {}
        # network -> owner -> what it published
        self._owned: dict[str, dict[Owner, _Entry]] = {}
        self._listeners: list[ChangeListener] = []

    # --- subscription ------------------------------------------------------------------

    def subscribe(self, listener: ChangeListener) -> None:
        """Call ``listener(network_id, names)`` after every change."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: ChangeListener) -> None:
        self._listeners.remove(listener)

    # --- endpoints ---------------------------------------------------------------------

    def set_endpoint(self, network_id: str, name: str, *, aliases: Iterable[str] = (),
                     ipv4: str | None = None, ipv6: str | None = None,
                     endpoint_id: str | None = None) -> None:
        """Publish (or replace) one endpoint: its name and aliases resolve to its addresses,
        and each address has a PTR back to its name. ``endpoint_id`` defaults to the name."""
        _check_network(network_id)
        norm = normalize_name(name)
        names = [norm, *(normalize_name(a) for a in aliases)]
        v4 = _v4(ipv4, norm)
        v6 = _v6(ipv6, norm)
        target = NameTarget(ipv4=v4, ipv6=v6)
        addrs: tuple[IPv4 | IPv6, ...] = (*v4, *v6)
        entry = _Entry(names=dict.fromkeys(names, target),
                       ptrs={reverse_name(a): norm for a in addrs})
        self._replace(network_id, ("ep", endpoint_id or norm), entry)

    def remove_endpoint(self, network_id: str, name: str, *,
                        endpoint_id: str | None = None) -> None:
        """Withdraw an endpoint; NotFound if it was never published on that network."""
        owner = ("ep", endpoint_id or normalize_name(name))
        if owner not in self._owned.get(network_id, {}):
            raise NotFound(f"no DNS endpoint {name!r} on network {network_id!r}")
        self._replace(network_id, owner, None)

    # --- services ----------------------------------------------------------------------

    def set_service(self, network_id: str, name: str, *, mode: ServiceMode,
                    vip: str | None = None, tasks: Iterable[str] = (),
                    aliases: Iterable[str] = ()) -> None:
        """Publish a service: ``name`` (and aliases) resolve to the VIP in VIP mode, or to
        every task address, shuffled per answer, in DNSRR mode; ``tasks.<name>`` always
        resolves to every task address, shuffled."""
        _check_network(network_id)
        norm = normalize_name(name)
        names = [norm, *(normalize_name(a) for a in aliases)]
        t4, t6 = _ips(tasks, f"tasks of {norm}")
        tasks_target = NameTarget(ipv4=t4, ipv6=t6, shuffle=True)
        ptrs: dict[str, str] = {}
        if mode is ServiceMode.VIP:
            if vip is None:
                raise InvalidArgument(f"service {norm!r} in VIP mode needs a vip")
            v4, v6 = _ips([vip], f"vip of {norm}")
            main = NameTarget(ipv4=v4, ipv6=v6)
            vips: tuple[IPv4 | IPv6, ...] = (*v4, *v6)
            ptrs = {reverse_name(a): norm for a in vips}
        elif mode is ServiceMode.DNSRR:
            if vip is not None:
                raise InvalidArgument(f"service {norm!r} in DNSRR mode has no vip")
            main = tasks_target
        else:
            raise InvalidArgument(f"unknown service mode {mode!r}")
        entry_names = dict.fromkeys(names, main)
        entry_names[normalize_name(f"tasks.{norm}")] = tasks_target
        self._replace(network_id, ("svc", norm), _Entry(names=entry_names, ptrs=ptrs))

    def remove_service(self, network_id: str, name: str) -> None:
        """Withdraw a service; NotFound if it was never published on that network."""
        owner = ("svc", normalize_name(name))
        if owner not in self._owned.get(network_id, {}):
            raise NotFound(f"no DNS service {name!r} on network {network_id!r}")
        self._replace(network_id, owner, None)

    def remove_network(self, network_id: str) -> None:
        """Withdraw everything published on a network (it was deleted or left)."""
        for owner in list(self._owned.get(network_id, {})):
            self._replace(network_id, owner, None)

    # --- lookups (the resolver's side) -------------------------------------------------

    def lookup(self, networks: Iterable[str], name: str) -> NameTarget | None:
        """Merge what ``name`` (normalized) means on each of ``networks``; None if nothing."""
        v4: dict[IPv4, None] = {}
        v6: dict[IPv6, None] = {}
        shuffle = False
        found = False
        for net in networks:
            owners = self._names.get(net, {}).get(name)
            if not owners:
                continue
            found = True
            for target in owners.values():
                v4.update(dict.fromkeys(target.ipv4))
                v6.update(dict.fromkeys(target.ipv6))
                shuffle = shuffle or target.shuffle
        if not found:
            return None
        return NameTarget(ipv4=tuple(v4), ipv6=tuple(v6), shuffle=shuffle)

    def lookup_ptr(self, networks: Iterable[str], rname: str) -> tuple[str, ...]:
        """Names for a reverse owner name (normalized) on ``networks``, sorted."""
        out: set[str] = set()
        for net in networks:
            out.update(self._ptrs.get(net, {}).get(rname, {}).values())
        return tuple(sorted(out))

    def networks(self) -> frozenset[str]:
        return frozenset(self._owned)

    # --- internals ---------------------------------------------------------------------

    def _replace(self, network_id: str, owner: Owner, new: _Entry | None) -> None:
        owned = self._owned.setdefault(network_id, {})
        old = owned.pop(owner, None)
        touched: set[str] = set()
        names = self._names.setdefault(network_id, {})
        ptrs = self._ptrs.setdefault(network_id, {})
        if old is not None:
            for n in old.names:
                _drop(names, n, owner)
                touched.add(n)
            for r in old.ptrs:
                _drop(ptrs, r, owner)
                touched.add(r)
        if new is not None:
            owned[owner] = new
            for n, target in new.names.items():
                names.setdefault(n, {})[owner] = target
                touched.add(n)
            for r, target_name in new.ptrs.items():
                ptrs.setdefault(r, {})[owner] = target_name
                touched.add(r)
        if not owned:
            del self._owned[network_id]
            self._names.pop(network_id, None)
            self._ptrs.pop(network_id, None)
        if old == new:
            return
        changed = frozenset(touched)
        for listener in list(self._listeners):
            listener(network_id, changed)


def _drop(table: dict[str, dict[Owner, _T]], key: str, owner: Owner) -> None:
    owners = table.get(key)
    if owners is None:
        return
    owners.pop(owner, None)
    if not owners:
        del table[key]


def _check_network(network_id: str) -> None:
    if not isinstance(network_id, str) or not network_id:
        raise InvalidArgument(f"invalid network id {network_id!r}")
