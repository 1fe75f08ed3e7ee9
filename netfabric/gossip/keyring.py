"""Keyring: AES-GCM keys derived from cluster secrets, with rotation.

Every datagram and stream frame is sealed as::

    version(1) | key id(4) | nonce(12) | ciphertext | tag(16)

The key id (first 4 bytes of SHA-256 of the key) picks the key directly, so opening costs
one AES-GCM operation whatever the ring holds. Rotation without downtime is the memberlist
recipe: ``install`` the new key everywhere (all keys open), ``use`` it everywhere (new
seals use it), then ``remove`` the old one.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from netfabric.errors import AuthError, InvalidArgument

__all__ = ["SEAL_OVERHEAD", "SEAL_VERSION", "Keyring", "derive_key", "key_id"]

SEAL_VERSION = 1
"""First byte of every sealed packet."""

_HEADER = 1 + 4 + 12
SEAL_OVERHEAD = _HEADER + 16
"""Bytes a seal adds to a plaintext."""

_SALT = b"netfabric-gossip-v1"


def derive_key(secret: bytes | str) -> bytes:
    """The 256-bit gossip key of a cluster secret (HKDF-SHA256)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    if not raw:
        raise InvalidArgument("the cluster secret must not be empty")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT,
                info=b"gossip aes-gcm key").derive(raw)


def key_id(key: bytes) -> bytes:
    """Four bytes that name a key on the wire (not secret: a hash prefix)."""
    return hashlib.sha256(key).digest()[:4]


class Keyring:
    """The keys a node opens with, and the primary one it seals with."""

    __slots__ = ("_keys", "_primary")

    def __init__(self, primary: bytes) -> None:
        self._keys: dict[bytes, AESGCM] = {}
        self._primary = b""
        self.install(primary)
        self.use(primary)

    @classmethod
    def from_secret(cls, secret: bytes | str) -> Keyring:
        return cls(derive_key(secret))

    def install(self, key: bytes) -> None:
        """Accept packets sealed under ``key`` (idempotent)."""
        if len(key) not in (16, 24, 32):
            raise InvalidArgument("a gossip key is 16, 24 or 32 bytes")
        self._keys.setdefault(key_id(key), AESGCM(key))

    def use(self, key: bytes) -> None:
        """Seal new packets under ``key``, which must be installed."""
        kid = key_id(key)
        if kid not in self._keys:
            raise InvalidArgument("install a key before using it")
        self._primary = kid

    def remove(self, key: bytes) -> None:
        """Stop accepting ``key``; the primary key cannot be removed."""
        kid = key_id(key)
        if kid == self._primary:
            raise InvalidArgument("cannot remove the primary key; use another first")
        self._keys.pop(kid, None)

    def key_ids(self) -> list[bytes]:
        """Installed key ids, the primary first."""
        return [self._primary, *(k for k in self._keys if k != self._primary)]

    def seal(self, plaintext: bytes) -> bytes:
        header = bytes((SEAL_VERSION,)) + self._primary + os.urandom(12)
        return header + self._keys[self._primary].encrypt(header[5:], plaintext, header[:5])

    def open(self, packet: bytes) -> bytes:
        """The plaintext, or :class:`AuthError` for anything not sealed by our keys."""
        if len(packet) < SEAL_OVERHEAD or packet[0] != SEAL_VERSION:
            raise AuthError("not a sealed gossip packet")
        aead = self._keys.get(bytes(packet[1:5]))
        if aead is None:
            raise AuthError("sealed under an unknown key")
        try:
            return aead.decrypt(bytes(packet[5:_HEADER]), bytes(packet[_HEADER:]),
                                bytes(packet[:5]))
        except InvalidTag as exc:
            raise AuthError("authentication failed") from exc
