"""Keyring: AES-GCM seal/open, HKDF derivation, install/use/remove rotation."""

from __future__ import annotations

import pytest

from netfabric.errors import AuthError, InvalidArgument
from netfabric.gossip.keyring import SEAL_OVERHEAD, Keyring, derive_key, key_id


def test_derivation_is_deterministic_and_secret_specific() -> None:
    assert derive_key("s1") == derive_key(b"s1")
    assert derive_key("s1") != derive_key("s2")
    assert len(derive_key("s1")) == 32
    with pytest.raises(InvalidArgument):
        derive_key("")


def test_seal_open_round_trip_and_overhead() -> None:
    ring = Keyring.from_secret("secret")
    sealed = ring.seal(b"hello")
    assert len(sealed) == len(b"hello") + SEAL_OVERHEAD
    assert ring.open(sealed) == b"hello"
    assert ring.seal(b"hello") != sealed  # fresh nonce each time


def test_wrong_key_tampering_and_garbage_are_auth_errors() -> None:
    a, b = Keyring.from_secret("a"), Keyring.from_secret("b")
    sealed = a.seal(b"payload")
    with pytest.raises(AuthError):
        b.open(sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(AuthError):
        a.open(bytes(tampered))
    forged_header = bytearray(sealed)
    forged_header[0] = 9
    with pytest.raises(AuthError):
        a.open(bytes(forged_header))
    for junk in (b"", b"\x01", b"\x01" + b"\x00" * 40):
        with pytest.raises(AuthError):
            a.open(junk)


def test_rotation_install_use_remove() -> None:
    old, new = derive_key("old"), derive_key("new")
    a, b = Keyring(old), Keyring(old)
    a.install(new)
    b.install(new)
    a.use(new)  # a seals with new, b still with old: both open both
    assert b.open(a.seal(b"x")) == b"x"
    assert a.open(b.seal(b"y")) == b"y"
    b.use(new)
    a.remove(old)
    b.remove(old)
    assert a.key_ids() == [key_id(new)]
    assert b.open(a.seal(b"z")) == b"z"
    with pytest.raises(AuthError):
        a.open(Keyring(old).seal(b"stale"))


def test_bad_rotation_steps_are_refused() -> None:
    ring = Keyring(derive_key("k"))
    with pytest.raises(InvalidArgument):
        ring.remove(derive_key("k"))  # the primary
    with pytest.raises(InvalidArgument):
        ring.use(derive_key("never installed"))
    with pytest.raises(InvalidArgument):
        ring.install(b"short")
