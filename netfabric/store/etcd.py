"""The :class:`~netfabric.store.base.Store` on etcd 3.4, for several managers.

Every row is one etcd key under a prefix (default ``/netfabric/``)::

    n/<network id>                       network record (canonical JSON)
    N/<network name>                     the id of the network of that name (uniqueness)
    p/<address space>                    the last subnet taken from that space (CAS unit)
    s/<network id>/<cidr>                subnet row
    b/<network id>/<cidr>/<index>        block row: owner and one byte per address
    h/<network id>/<cidr>/<address>      holder row
    o/<kind>/<key>                       an object of a layer above IPAM (a service)

**Compare-and-swap.** The store remembers the ``mod_revision`` of every key as it last read
or wrote it. Each write (or each outermost :meth:`EtcdStore.transaction`, as one etcd txn)
succeeds only if every key it touches still has that revision (absent keys: revision 0).
The /26 block row is therefore the unit of CAS, as in Calico: two managers allocating from
one block conflict, two allocating in different blocks do not. A lost race raises
:class:`~netfabric.errors.StoreConflict` and writes nothing; the allocator's memory is left
unchanged too, so the caller reloads (``Ipam(store)`` re-reads, which refreshes the
revisions) and retries: :func:`retry_on_conflict`.

**Leases.** :meth:`EtcdStore.hold` puts a key bound to an etcd lease with a TTL, only if no
one holds it: the owner keeps it by :meth:`Holding.refresh`, and it disappears by itself
when the owner stops (the primitive for a leader election or a manager's liveness).

**Watches.** :meth:`EtcdStore.watch` calls back with every change under the prefix, as soon
as etcd commits it, so every manager sees the others' writes.

Client: etcd3gw (etcd's HTTP/JSON gateway, synchronous like this protocol, TLS through
requests). Measured here against aetcd (gRPC, asyncio): 679 vs 1,270 single puts/s at
load 7.5, but aetcd needs an event loop of its own behind a synchronous Store and pulls in
grpcio and protobuf; one allocation is one round trip either way. Several endpoints are
tried in turn: a dead member costs one connection error, not the call.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from netfabric.errors import (
    AlreadyExists,
    InvalidArgument,
    StoreConflict,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)
from netfabric.model import Network
from netfabric.store.base import (
    BlockRecord,
    HolderRecord,
    Snapshot,
    SubnetRecord,
    decode_network,
    encode_network,
)

__all__ = ["RESYNC", "TLS_PARAMS", "EtcdStore", "EtcdTls", "Holding", "check_tls_files",
           "cluster_prefix", "parse_etcd_url", "retry_on_conflict", "store_tls", "with_tls"]

T = TypeVar("T")

DEFAULT_PREFIX = "/netfabric/"
RESYNC = "*"
"""The key :meth:`EtcdStore.watch` reports when its stream (re)opens: re-read everything."""
WATCH_IDLE_S = 30.0
"""Seconds a watch stream may stay silent (etcd sends progress on an idle watch) before it
is opened again, on the next member."""
WATCH_RETRY_S = 0.5
DEFAULT_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 1.0
"""Seconds a member has to accept the connection: a member cut off costs this, not the read
timeout, before the next is tried."""


@dataclass(frozen=True, slots=True)
class EtcdTls:
    """Client TLS to etcd: the CA that signed the members, and this client's cert and key."""

    ca: str
    cert: str | None = None
    key: str | None = None


class _Subnet(msgspec.Struct, frozen=True):
    space: str
    gateway: str
    ip_range: str | None
    block_prefix: int


class _Block(msgspec.Struct, frozen=True):
    owner: str
    data: bytes


def cluster_prefix(cluster_id: str) -> str:
    """Where one cluster's rows live in a shared etcd."""
    return f"{DEFAULT_PREFIX}{cluster_id}/"


TLS_PARAMS = ("cacert", "cert", "key")
"""The query parameters of a store url that name its TLS files (as libpq's ``sslrootcert``,
``sslcert``, ``sslkey``): ``etcd://a:2379?cacert=/etc/etcd/ca.pem&cert=...&key=...``."""


def parse_etcd_url(url: str) -> list[tuple[str, int]]:
    """``etcd://a:2379,b:2379`` (or ``etcds://``, with an optional ``?cacert=...`` query:
    :func:`store_tls`) -> [(host, port), ...]; InvalidArgument naming the url otherwise."""
    scheme, sep, rest = url.partition("://")
    rest = rest.partition("?")[0]
    if not sep or scheme not in ("etcd", "etcds") or not rest:
        raise InvalidArgument(f"store url {url!r}: expected etcd://host:2379[,host:2379...]")
    out = []
    for part in rest.rstrip("/").split(","):
        try:
            split = urlsplit("//" + part.strip())
            host, port = split.hostname, split.port or 2379
        except ValueError as exc:
            raise InvalidArgument(f"store url {url!r}: {exc}") from None
        if not host:
            raise InvalidArgument(f"store url {url!r}: empty host in {part!r}")
        out.append((host, port))
    return out


def store_tls(url: str) -> EtcdTls | None:
    """The client TLS a store url asks for (its ``cacert``, ``cert`` and ``key``
    parameters), or None for plain HTTP. Only the names are checked here:
    :func:`check_tls_files` reads the files."""
    from urllib.parse import parse_qs

    query = url.partition("?")[2]
    if not query:
        return None
    try:
        params = parse_qs(query, strict_parsing=True)
    except ValueError as exc:
        raise InvalidArgument(f"store url {url!r}: malformed query: {exc}") from None
    unknown = sorted(set(params) - set(TLS_PARAMS))
    if unknown:
        raise InvalidArgument(f"store url {url!r}: unknown parameter {unknown[0]!r} (use "
                              "cacert, cert, key)")
    one = {k: v[-1] for k, v in params.items()}
    if "cacert" not in one:
        raise InvalidArgument(f"store url {url!r}: TLS needs cacert= (the CA that signed the "
                              "etcd members' certificates)")
    if ("cert" in one) != ("key" in one):
        raise InvalidArgument(f"store url {url!r}: a client certificate needs both cert= "
                              "and key=")
    return EtcdTls(ca=one["cacert"], cert=one.get("cert"), key=one.get("key"))


def with_tls(url: str, tls: EtcdTls | None) -> str:
    """``url`` with its TLS parameters replaced by ``tls`` (none: plain)."""
    from urllib.parse import urlencode

    base = url.partition("?")[0]
    if tls is None:
        return base
    params = {"cacert": tls.ca, **({"cert": tls.cert} if tls.cert else {}),
              **({"key": tls.key} if tls.key else {})}
    return f"{base}?{urlencode(params, safe='/')}"


def check_tls_files(tls: EtcdTls) -> None:
    """Read the CA, certificate and key as TLS would: InvalidArgument naming the file and
    what is wrong with it (missing, unreadable, not PEM, key not matching the cert)."""
    import ssl

    for what, path in (("CA certificate", tls.ca), ("client certificate", tls.cert),
                       ("client key", tls.key)):
        if path is None:
            continue
        if not os.path.isabs(path):
            raise InvalidArgument(f"etcd {what} {path!r}: give an absolute path")
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise InvalidArgument(f"etcd {what} {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=tls.ca)
    except ssl.SSLError as exc:
        raise InvalidArgument(f"etcd CA certificate {tls.ca}: not a PEM certificate "
                              f"({exc.reason or exc})") from None
    if tls.cert is not None:
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except ssl.SSLError as exc:
            raise InvalidArgument(f"etcd client certificate {tls.cert} with key {tls.key}: "
                                  f"not a PEM certificate and its matching key "
                                  f"({exc.reason or exc})") from None


_NO_QUORUM = ("no leader", "timed out", "deadline exceeded", "leader changed",
              "not capable", "stopped")
"""etcd's words for a member that cannot serve now (no leader, lost quorum, stopping): the
next member may."""


def _etcd_words(text: str) -> str:
    """etcd's own error message out of its JSON body."""
    try:
        body = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text[:160]
    return str(body.get("message") or body.get("error") or text)[:160] \
        if isinstance(body, dict) else text[:160]


def _ssl_reason(exc: Exception) -> str:
    """The TLS alert or check that failed, from under requests' and urllib3's wrapping."""
    import re

    text = str(exc)
    found = re.findall(r"\[SSL[^\]]*\] ([^(]+?) \(_ssl", text) or \
        re.findall(r"(tlsv1 alert [a-z ]+|certificate verify failed[^'\")]*)", text)
    return found[-1].strip() if found else text[-160:]


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _range_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return _b64(bytes(raw))


class Holding:
    """A key held under an etcd lease: kept while refreshed, gone after the TTL otherwise."""

    def __init__(self, store: EtcdStore, key: str, lease_id: int, ttl: int) -> None:
        self._store, self.key, self.lease_id, self.ttl = store, key, lease_id, ttl

    def refresh(self) -> bool:
        """Keep the lease alive another TTL; False when it already expired (ownership lost)."""
        answer = self._store._post("/lease/keepalive", {"ID": self.lease_id})
        return int(answer.get("result", {}).get("TTL", 0)) > 0

    def release(self) -> None:
        """Give the key up now (revoke the lease: the key goes with it)."""
        self._store._post("/kv/lease/revoke", {"ID": self.lease_id})


class EtcdStore:
    """Rows in etcd; ``EtcdStore("etcd://10.0.0.1:2379,10.0.0.2:2379")``."""

    def __init__(self, url: str | Sequence[tuple[str, int]], *, prefix: str = DEFAULT_PREFIX,
                 tls: EtcdTls | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        import requests  # a dependency of docker-py already; loaded only for etcd stores

        if isinstance(url, str):
            self._endpoints = parse_etcd_url(url)
            tls = tls if tls is not None else store_tls(url)
        else:
            self._endpoints = list(url)
        if not self._endpoints:
            raise InvalidArgument("etcd store needs at least one endpoint")
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise InvalidArgument(f"etcd prefix must start and end with '/': {prefix!r}")
        self._prefix = prefix
        self._scheme = "https" if tls is not None else "http"
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy, no CA bundle from the environment
        # clientv3's WithRequireLeader through the gateway: a member that has lost its
        # leader (cut off from the quorum) answers "no leader" at once instead of holding
        # the request until its own timeout, and the next member is tried
        self._session.headers["Grpc-Metadata-hasleader"] = "true"
        if tls is not None:
            self._session.verify = tls.ca
            if tls.cert is not None:
                self._session.cert = (tls.cert, tls.key) if tls.key else tls.cert
        self._timeout = timeout
        self._current = 0
        self._lock = threading.RLock()
        self._revs: dict[str, int] = {}
        self._depth = 0
        self._ops: dict[str, bytes | None] = {}
        self._compares: dict[str, int] = {}
        self._range_deletes: list[str] = []
        self._closed = False
        self._watchers: list[Callable[[], None]] = []

    # -- transport ---------------------------------------------------------------------

    @property
    def location(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self._endpoints)
        return f"etcd://{hosts}{self._prefix}"

    def _url(self, index: int, path: str) -> str:
        host, port = self._endpoints[index]
        if ":" in host:
            host = f"[{host}]"
        return f"{self._scheme}://{host}:{port}/v3{path}"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import requests

        if self._closed:
            raise StoreError(f"store {self.location} is closed")
        errors = []
        unconfirmed = False
        n = len(self._endpoints)
        for step in range(n):
            index = (self._current + step) % n
            try:
                # verify and cert per request: an environment's REQUESTS_CA_BUNDLE would
                # otherwise win over the session's CA (requests merges it in first)
                resp = self._session.post(self._url(index, path), json=body,
                                          timeout=(min(CONNECT_TIMEOUT_S, self._timeout),
                                                   self._timeout), verify=self._session.verify,
                                          cert=self._session.cert)
            except requests.exceptions.SSLError as exc:
                errors.append(f"{self._endpoints[index][0]}: TLS handshake failed: "
                              f"{self._tls_reason(exc)}")
                continue
            except requests.RequestException as exc:
                if isinstance(exc, requests.exceptions.ReadTimeout):
                    unconfirmed = True   # sent: etcd may still commit it
                if self._hung_up_on_tls(exc):
                    errors.append(f"{self._endpoints[index][0]}: TLS handshake failed: "
                                  f"{self._tls_reason(exc)}")
                    continue
                why = self._request_reason(exc)
                errors.append(f"{self._endpoints[index][0]}: {why}")
                continue
            if resp.status_code != 200:
                text = resp.text.strip()[:200]
                if resp.status_code == 503 or any(w in text for w in _NO_QUORUM):
                    if "deadline exceeded" in text or "timed out" in text:
                        unconfirmed = True
                    errors.append(f"{self._endpoints[index][0]}: {_etcd_words(text)}")
                    continue
                if "HTTPS server" in text:
                    errors.append(f"{self._endpoints[index][0]}: it serves TLS: give the CA "
                                  "and a client certificate (--store-cacert, --store-cert, "
                                  "--store-key)")
                    continue
                raise StoreError(f"etcd {self.location} refused {path}: "
                                 f"{resp.status_code} {text}")
            self._current = index
            result: dict[str, Any] = resp.json()
            return result
        outcome = ("nothing was changed" if not (unconfirmed and path == "/kv/txn") else
                   "the change was not confirmed: etcd may still apply it, and a retry is "
                   "safe (every write compares revisions)")
        raise StoreUnavailable(f"etcd {self.location} unavailable (no member answered with "
                               f"quorum: {'; '.join(errors)}); {outcome}")

    def _hung_up_on_tls(self, exc: Exception) -> bool:
        """A TLS 1.3 member that wants a client certificate refuses it only after the
        client's side of the handshake is done: its alert races our request, and the
        connection is often just reset or ended. Without a client certificate that is the
        handshake failing, not a member that is down."""
        import requests

        if self._scheme != "https" or self._session.cert is not None or \
                not isinstance(exc, requests.exceptions.ConnectionError) or \
                isinstance(exc, requests.exceptions.ConnectTimeout):
            return False
        text = str(exc)
        return any(w in text for w in ("reset by peer", "without response", "[Errno 104]",
                                       "Broken pipe", "[Errno 32]"))

    def _tls_reason(self, exc: Exception) -> str:
        """The alert or check that failed; where the member gave none (it hung up), why
        it may have, in words that say what to give."""
        reason = _ssl_reason(exc)
        if reason != str(exc)[-160:]:
            found = reason
        else:
            found = "the member ended the connection without saying why"
        if self._session.cert is None and "verify failed" not in found:
            found += (" (does it require a client certificate? give --store-cert and "
                      "--store-key)")
        return found

    def _request_reason(self, exc: Exception) -> str:
        """Why a member did not answer, in a few words (not requests' and urllib3's
        nested reprs)."""
        import errno as _errno
        import re

        import requests

        text = str(exc.args[0] if exc.args else exc)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"no connection in {min(CONNECT_TIMEOUT_S, self._timeout):g}s"
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return f"no answer in {self._timeout:g}s"
        if "without response" in text:
            if self._scheme == "http":   # etcd serving TLS hangs up on plain HTTP
                return ("it closed the connection without an answer: if it serves TLS, "
                        "give the CA and a client certificate (--store-cacert, "
                        "--store-cert, --store-key)")
            return "it closed the connection without an answer"
        found = re.search(r"\[Errno (\d+)\]", text)
        if found:
            code = int(found.group(1))
            return os.strerror(code) if code in _errno.errorcode else text[-160:]
        return f"{type(exc).__name__}: {text[-160:]}"

    def _key(self, *parts: str) -> str:
        return self._prefix + "/".join(parts)

    # -- reads -------------------------------------------------------------------------

    def _range(self, prefix: str) -> list[tuple[str, bytes, int]]:
        answer = self._post("/kv/range", {"key": _b64(prefix), "range_end": _range_end(prefix)})
        out = []
        for kv in answer.get("kvs", []):
            key = _unb64(kv["key"]).decode()
            out.append((key, _unb64(kv.get("value", "")), int(kv.get("mod_revision", 0))))
        return out

    def load(self) -> Snapshot:
        with self._lock:
            rows = self._range(self._prefix)
            self._revs = {key: rev for key, _, rev in rows}
        subnets, blocks, holders = [], [], []
        plen = len(self._prefix)
        for key, value, _ in rows:
            kind, _, rest = key[plen:].partition("/")
            try:
                if kind == "s":
                    net, _, cidr = rest.partition("/")
                    s = msgspec.json.decode(value, type=_Subnet)
                    subnets.append(SubnetRecord(net, s.space, cidr, s.gateway, s.ip_range,
                                                s.block_prefix))
                elif kind == "b":
                    net, _, tail = rest.partition("/")
                    cidr, _, idx = tail.rpartition("/")
                    b = msgspec.json.decode(value, type=_Block)
                    blocks.append(BlockRecord(net, cidr, int(idx), b.owner, b.data))
                elif kind == "h":
                    net, _, tail = rest.partition("/")
                    cidr, _, address = tail.rpartition("/")
                    holders.append(HolderRecord(net, cidr, address, value.decode()))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                raise StoreCorrupt(f"etcd {self.location}: key {key} is malformed: "
                                   f"{exc}") from None
        return Snapshot(subnets=tuple(subnets), blocks=tuple(blocks), holders=tuple(holders))

    # -- writes ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            self._depth += 1
            try:
                yield
                if outer:
                    self._commit()
            finally:
                self._depth -= 1
                if outer:
                    self._ops, self._compares, self._range_deletes = {}, {}, []

    def _write(self, key: str, value: bytes | None) -> None:
        with self._lock:
            if key not in self._compares:
                self._compares[key] = self._revs.get(key, 0)
            self._ops[key] = value
            if self._depth == 0:
                try:
                    self._commit()
                finally:
                    self._ops, self._compares, self._range_deletes = {}, {}, []

    def _delete_range(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._ops if k.startswith(prefix)]:
                del self._ops[key]
            self._range_deletes.append(prefix)
            if self._depth == 0:
                try:
                    self._commit()
                finally:
                    self._ops, self._compares, self._range_deletes = {}, {}, []

    def _commit(self) -> None:
        if not self._ops and not self._range_deletes:
            return
        compare = [{"key": _b64(k), "target": "MOD", "result": "EQUAL", "mod_revision": str(rev)}
                   for k, rev in self._compares.items()]
        success: list[dict[str, Any]] = []
        for prefix in self._range_deletes:
            success.append({"request_delete_range": {"key": _b64(prefix),
                                                     "range_end": _range_end(prefix)}})
        for key, value in self._ops.items():
            if value is None:
                success.append({"request_delete_range": {"key": _b64(key)}})
            else:
                success.append({"request_put": {"key": _b64(key), "value": _b64(value)}})
        answer = self._post("/kv/txn", {"compare": compare, "success": success})
        if not answer.get("succeeded", False):
            # Lost the race: forget what we believed about these keys (load() refreshes).
            for key in self._compares:
                self._revs.pop(key, None)
            keys = ", ".join(sorted(k[len(self._prefix):] for k in self._compares))
            raise StoreConflict(f"etcd {self.location}: another manager changed {keys} "
                                "first; nothing was written")
        revision = int(answer["header"]["revision"])
        for prefix in self._range_deletes:
            for key in [k for k in self._revs if k.startswith(prefix)]:
                del self._revs[key]
        for key, value in self._ops.items():
            if value is None:
                self._revs.pop(key, None)
            else:
                self._revs[key] = revision

    def put_subnet(self, record: SubnetRecord) -> None:
        """The subnet row, with the address space's pool key (``p/<space>``) in the same
        txn: two managers that each picked a subnet from what they last read write one key
        in common, so the later one loses the compare-and-swap and picks again (subnet
        rows of different networks share no key, and would overlap unnoticed)."""
        value = msgspec.json.encode(_Subnet(record.space, record.gateway, record.ip_range,
                                            record.block_prefix))
        with self.transaction():
            self._write(self._key("p", record.space), record.cidr.encode())
            self._write(self._key("s", record.network_id, record.cidr), value)

    def delete_subnet(self, network_id: str, cidr: str) -> None:
        with self.transaction():
            self._write(self._key("s", network_id, cidr), None)
            self._delete_range(self._key("b", network_id, cidr) + "/")
            self._delete_range(self._key("h", network_id, cidr) + "/")

    def put_block(self, network_id: str, subnet: str, index: int, owner: str,
                  data: bytes | bytearray) -> None:
        value = msgspec.json.encode(_Block(owner, bytes(data)))
        self._write(self._key("b", network_id, subnet, str(index)), value)

    def delete_block(self, network_id: str, subnet: str, index: int) -> None:
        self._write(self._key("b", network_id, subnet, str(index)), None)

    def put_holder(self, network_id: str, subnet: str, address: str, holder: str) -> None:
        self._write(self._key("h", network_id, subnet, address), holder.encode())

    def delete_holder(self, network_id: str, subnet: str, address: str) -> None:
        self._write(self._key("h", network_id, subnet, address), None)

    def put_network(self, network: Network) -> None:
        """The network row and its name row (``N/<name>`` -> id) in one txn, the name row
        compared to what was just read: two managers creating one name at once both see
        it free, and the later txn fails and is retried, to find the name taken
        (AlreadyExists, Docker's line, nothing written). A row of before name rows (none
        for its name) is found by its record and gets its name row on its next write."""
        name_key = self._key("N", network.name)
        with self.transaction():
            owner = self._name_owner(name_key)
            if owner is None:   # a network of before name rows may have it
                owner = next((n.id for n in self.list_networks()
                              if n.name == network.name and n.id != network.id), None)
                if owner is None:
                    self._write(name_key, network.id.encode())
            if owner is not None and owner != network.id:
                raise AlreadyExists(f"network with name {network.name} already exists")
            self._write(self._key("n", network.id), encode_network(network).encode())

    def _name_owner(self, name_key: str) -> str | None:
        """The id a name row holds (None: no row), its revision read into the current
        transaction's compare-and-swap: a name taken or freed meanwhile fails the txn."""
        kvs = self._post("/kv/range", {"key": _b64(name_key)}).get("kvs", [])
        if name_key not in self._ops:
            self._compares[name_key] = int(kvs[0].get("mod_revision", 0)) if kvs else 0
        return _unb64(kvs[0].get("value", "")).decode() if kvs else None

    def get_network(self, network_id: str) -> Network | None:
        key = self._key("n", network_id)
        answer = self._post("/kv/range", {"key": _b64(key)})
        kvs = answer.get("kvs", [])
        if not kvs:
            with self._lock:
                self._revs.pop(key, None)
            return None
        with self._lock:
            self._revs[key] = int(kvs[0].get("mod_revision", 0))
        return self._decode(key, _unb64(kvs[0].get("value", "")))

    def _decode(self, key: str, value: bytes) -> Network:
        try:
            return decode_network(value)
        except InvalidArgument as exc:
            raise StoreCorrupt(f"etcd {self.location}: key {key}: {exc}") from None

    def list_networks(self) -> list[Network]:
        rows = self._range(self._key("n", ""))
        with self._lock:
            for key, _, rev in rows:
                self._revs[key] = rev
        return sorted((self._decode(k, v) for k, v, _ in rows), key=lambda n: n.id)

    def delete_network(self, network_id: str) -> bool:
        """The network row and its name row (if it still names this network), at once."""
        with self.transaction():
            network = self.get_network(network_id)
            if network is None:
                return False
            name_key = self._key("N", network.name)
            if self._name_owner(name_key) == network_id:
                self._write(name_key, None)
            self._write(self._key("n", network_id), None)
        return True

    def put_object(self, kind: str, key: str, value: bytes) -> None:
        self._write(self._key("o", kind, key), bytes(value))

    def delete_object(self, kind: str, key: str) -> None:
        self._write(self._key("o", kind, key), None)

    def list_objects(self, kind: str) -> dict[str, bytes]:
        prefix = self._key("o", kind, "")
        rows = self._range(prefix)
        with self._lock:
            for key, _, rev in rows:
                self._revs[key] = rev
        return {key[len(prefix):]: value for key, value, _ in rows}

    def object_kinds(self) -> list[str]:
        prefix = self._key("o", "")
        answer = self._post("/kv/range", {"key": _b64(prefix), "range_end": _range_end(prefix),
                                          "keys_only": True})
        kinds = {_unb64(kv["key"]).decode()[len(prefix):].partition("/")[0]
                 for kv in answer.get("kvs", [])}
        return sorted(kinds)

    def drop_all(self) -> None:
        """Delete every key under the prefix (an unfinished copy, a cluster removed)."""
        self._delete_range(self._prefix)

    # -- cluster records (no compare-and-swap: each has one writer at a time) ----------

    def put_record(self, kind: str, name: str, value: bytes) -> None:
        """``<kind>/<name>`` = ``value`` (the node registry, the cluster's sealed secrets)."""
        self._post("/kv/put", {"key": _b64(self._key(kind, name)), "value": _b64(value)})

    def delete_record(self, kind: str, name: str) -> None:
        self._post("/kv/deleterange", {"key": _b64(self._key(kind, name))})

    def records(self, kind: str) -> dict[str, bytes]:
        """Every ``<kind>/<name>`` row, by name."""
        start = self._key(kind, "")
        return {key[len(start):]: value for key, value, _ in self._range(start)}

    # -- leases and watches ------------------------------------------------------------

    def hold(self, name: str, value: str, ttl: int) -> Holding | None:
        """Put ``leases/<name>`` = ``value`` under a new lease of ``ttl`` seconds, only if
        nobody holds it; None when someone does (their value: :meth:`holder`)."""
        if ttl < 1:
            raise InvalidArgument(f"lease ttl must be >= 1 s, got {ttl}")
        grant = self._post("/lease/grant", {"TTL": ttl, "ID": 0})
        lease_id = int(grant["ID"])
        key = self._key("leases", name)
        answer = self._post("/kv/txn", {
            "compare": [{"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": _b64(key), "value": _b64(value),
                                         "lease": str(lease_id)}}]})
        if not answer.get("succeeded", False):
            self._post("/kv/lease/revoke", {"ID": lease_id})
            return None
        return Holding(self, key, lease_id, ttl)

    def holder(self, name: str) -> str | None:
        """The value of whoever holds ``leases/<name>`` now, or None."""
        answer = self._post("/kv/range", {"key": _b64(self._key("leases", name))})
        kvs = answer.get("kvs", [])
        return _unb64(kvs[0].get("value", "")).decode() if kvs else None

    def watch(self, callback: Callable[[str, bool], None]) -> Callable[[], None]:
        """Call ``callback(key, deleted)`` (key without the prefix) for every change under
        the prefix, from a thread of its own; returns a function that stops the watch.

        The stream (etcd's ``/v3/watch`` over the HTTP gateway) is opened again on the next
        member when it breaks (a member killed or cut off; a silent one is given up after
        :data:`WATCH_IDLE_S`), and each (re)opening is told as ``callback(RESYNC, False)``:
        changes made while no stream was open are not replayed, so the caller re-reads.
        """
        import requests

        plen = len(self._prefix)
        stop = threading.Event()
        live: list[Any] = []   # the open stream's socket
        body: dict[str, Any] = {"create_request": {
            "key": _b64(self._prefix), "range_end": _range_end(self._prefix),
            "progress_notify": True}}

        def stream(index: int) -> None:
            session = requests.Session()   # the stream holds its own connection
            session.trust_env = False
            try:
                resp = session.post(self._url(index, "/watch"), json=body, stream=True,
                                    timeout=(self._timeout, WATCH_IDLE_S),
                                    verify=self._session.verify, cert=self._session.cert)
                live[:] = [getattr(getattr(resp.raw, "connection", None), "sock", None)]
                if resp.status_code != 200:
                    return
                for line in resp.iter_lines():
                    if stop.is_set():
                        return
                    if not line.strip():
                        continue
                    result = json.loads(line).get("result", {})
                    if result.get("created"):
                        callback(RESYNC, False)   # open: what happened before, re-read
                    for ev in result.get("events", ()):
                        key = _unb64(ev["kv"]["key"]).decode()
                        callback(key[plen:], ev.get("type") == "DELETE")
            finally:
                session.close()

        def run() -> None:
            index = self._current
            while not stop.is_set():
                with contextlib.suppress(Exception):   # broken, refused, silent: next one
                    stream(index)
                index = (index + 1) % len(self._endpoints)
                stop.wait(WATCH_RETRY_S)

        threading.Thread(target=run, name="etcd-watch", daemon=True).start()

        def stopper() -> None:
            # shut the socket down: its blocked read returns and the stream's thread ends
            # (closing the response here waited on that read's buffer lock, up to
            # WATCH_IDLE_S: a manager's stop or leave took 30 s)
            stop.set()
            for sock in live:
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

        self._watchers.append(stopper)
        return stopper

    def close(self) -> None:
        for stop in self._watchers:
            stop()
        self._watchers.clear()
        self._closed = True
        self._session.close()

    def __enter__(self) -> EtcdStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def retry_on_conflict(fn: Callable[[], T], reload: Callable[[], None], *,
                         attempts: int = 20,
                         on_conflict: Callable[[], None] | None = None) -> T:
    """``fn()``; after a StoreConflict, ``reload()`` (re-read the store) and try again, up to
    ``attempts`` times; the last conflict propagates."""
    for attempt in range(attempts):
        try:
            return fn()
        except StoreConflict:
            if on_conflict is not None:
                on_conflict()
            if attempt == attempts - 1:
                raise
            reload()
    raise AssertionError("unreachable")  # pragma: no cover
