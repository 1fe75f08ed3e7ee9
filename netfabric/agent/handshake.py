"""The join handshake: a token proves itself without crossing the wire. Pure functions.

The joining node sends the token's cluster digest, a fresh nonce and an HMAC of its request
keyed by the token's secret. The manager finds which role secret produced the HMAC (or
refuses: wrong cluster, forged, rotated out), then seals the cluster secret with AES-GCM
under a key derived from that role secret and the nonce. The node opens it and checks that
the secret hashes to the token's digest. So an eavesdropper on the underlay learns neither
the token nor the cluster secret, and a node never joins an impostor "manager".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from netfabric.agent.tokens import cluster_digest, parse_token
from netfabric.errors import InvalidArgument, InvalidToken

__all__ = [
    "JoinOffer",
    "accept_offer",
    "make_offer",
    "open_sealed",
    "open_secret",
    "seal",
    "seal_secret",
]


class JoinOffer(msgspec.Struct, frozen=True, kw_only=True):
    """What a joining node sends: its identity, the token's digest, a nonce and a proof."""

    node_id: str
    hostname: str
    address: str
    gossip_port: int
    digest: str
    nonce: str
    proof: str

    def to_wire(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)

    @classmethod
    def from_wire(cls, raw: Any) -> JoinOffer:
        """The offer in a join request; anything malformed is :class:`InvalidArgument`."""
        try:
            return msgspec.convert(raw, cls)
        except msgspec.ValidationError as exc:
            raise InvalidArgument(f"malformed join request: {exc}") from None


def _proof(role_secret: str, offer: JoinOffer) -> str:
    msg = json.dumps([offer.node_id, offer.hostname, offer.address, offer.gossip_port,
                      offer.digest, offer.nonce]).encode()
    return hmac.new(role_secret.encode(), msg, hashlib.sha256).hexdigest()


def _key(role_secret: str, nonce: str) -> bytes:
    return hashlib.sha256(b"netfabric-join:" + role_secret.encode() + nonce.encode()).digest()


def make_offer(token: str, *, node_id: str, hostname: str, address: str,
               gossip_port: int) -> JoinOffer:
    parsed = parse_token(token)
    offer = JoinOffer(node_id=node_id, hostname=hostname, address=address,
                      gossip_port=gossip_port, digest=parsed.digest,
                      nonce=secrets.token_hex(16), proof="")
    return msgspec.structs.replace(offer, proof=_proof(parsed.secret, offer))


def accept_offer(offer: JoinOffer, *, cluster_secret: str,
                 role_secrets: dict[str, str]) -> tuple[str, str]:
    """``(role, role_secret)`` the offer proves, else :class:`InvalidToken`."""
    if not hmac.compare_digest(offer.digest, cluster_digest(cluster_secret)):
        raise InvalidToken("invalid join token: it was not issued by this cluster")
    for role, secret in sorted(role_secrets.items()):
        if hmac.compare_digest(offer.proof, _proof(secret, offer)):
            return role, secret
    raise InvalidToken("invalid join token: it is forged or was rotated out; ask a manager "
                       "for a current one with `netfabric join-token worker`")


def seal_secret(cluster_secret: str, *, role_secret: str, nonce: str) -> str:
    iv = secrets.token_bytes(12)
    return (iv + AESGCM(_key(role_secret, nonce)).encrypt(iv, cluster_secret.encode(),
                                                          None)).hex()


def open_secret(sealed: str, *, token: str, nonce: str) -> str:
    """The cluster secret, checked against the token's digest; else :class:`InvalidToken`."""
    parsed = parse_token(token)
    try:
        raw = bytes.fromhex(sealed)
        secret = AESGCM(_key(parsed.secret, nonce)).decrypt(raw[:12], raw[12:], None).decode()
    except (ValueError, InvalidTag, UnicodeDecodeError) as exc:
        raise InvalidToken("the manager could not prove it knows this token: "
                           "refusing to join") from exc
    if not hmac.compare_digest(cluster_digest(secret), parsed.digest):
        raise InvalidToken("the manager's cluster does not match the token: refusing to join")
    return secret


def _cluster_key(cluster_secret: str) -> bytes:
    return hashlib.sha256(b"netfabric-sealed:" + cluster_secret.encode()).digest()


def seal(cluster_secret: str, text: str) -> str:
    """``text`` sealed (AES-GCM) under a key derived from the cluster secret: what the
    managers keep in a shared store (the role secrets), readable only by cluster members."""
    iv = secrets.token_bytes(12)
    return (iv + AESGCM(_cluster_key(cluster_secret)).encrypt(iv, text.encode(), None)).hex()


def open_sealed(cluster_secret: str, sealed: str) -> str:
    """The text :func:`seal` sealed; :class:`InvalidToken` when it is not this cluster's."""
    try:
        raw = bytes.fromhex(sealed)
        return AESGCM(_cluster_key(cluster_secret)).decrypt(raw[:12], raw[12:], None).decode()
    except (ValueError, InvalidTag, UnicodeDecodeError) as exc:
        raise InvalidToken("a sealed cluster record does not open with this cluster's "
                           "secret") from exc
