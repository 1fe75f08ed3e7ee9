"""Join tokens, as Docker's ``SWMTKN-1-<digest>-<secret>``. Pure functions, no I/O.

The digest names the cluster: it is a hash of the cluster secret (the CA role), so a joining
node can check that the manager it reached is the cluster the token was issued for. The
secret part is random per role (worker, manager) and is replaced on rotation, so an old token
stops working at once. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from netfabric.errors import InvalidToken

__all__ = [
    "TOKEN_PREFIX",
    "ParsedToken",
    "cluster_digest",
    "make_token",
    "new_cluster_secret",
    "new_role_secret",
    "parse_token",
    "request_mac",
]

TOKEN_PREFIX = "SWMTKN-1"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_DIGEST_LEN = 50
_SECRET_LEN = 25


def _base36(data: bytes, length: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_cluster_secret() -> str:
    """32 random bytes, hex: the root of trust of one cluster (never printed)."""
    return secrets.token_hex(32)


def new_role_secret() -> str:
    """The random half of a join token for one role."""
    return _base36(secrets.token_bytes(20), _SECRET_LEN)


def cluster_digest(cluster_secret: str) -> str:
    """What a token carries to name its cluster: base36 of SHA-256 of the secret."""
    return _base36(hashlib.sha256(b"netfabric-ca:" + cluster_secret.encode()).digest(),
                   _DIGEST_LEN)


def make_token(cluster_secret: str, role_secret: str) -> str:
    return f"{TOKEN_PREFIX}-{cluster_digest(cluster_secret)}-{role_secret}"


@dataclass(frozen=True, slots=True)
class ParsedToken:
    digest: str
    secret: str


def parse_token(token: str) -> ParsedToken:
    """Split a token; a malformed one raises :class:`InvalidToken` naming what is wrong."""
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX + "-"):
        raise InvalidToken(f"invalid join token: it must start with {TOKEN_PREFIX}-")
    rest = token[len(TOKEN_PREFIX) + 1:].split("-")
    if len(rest) != 2 or len(rest[0]) != _DIGEST_LEN or len(rest[1]) != _SECRET_LEN or not all(
            c in _ALPHABET for c in rest[0] + rest[1]):
        raise InvalidToken("invalid join token: malformed (copy it whole from "
                           "`netfabric join-token worker` on a manager)")
    return ParsedToken(digest=rest[0], secret=rest[1])


def request_mac(cluster_secret: str, verb: str, body: bytes) -> str:
    """HMAC that authenticates a node-to-manager request under the cluster secret."""
    key = hashlib.sha256(b"netfabric-rpc:" + cluster_secret.encode()).digest()
    return hmac.new(key, verb.encode() + b"\0" + body, hashlib.sha256).hexdigest()
