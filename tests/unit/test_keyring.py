from __future__ import annotations

import os

import pytest

from herald.keyring import KeyRing, Unwrappable

OLD, NEW = os.urandom(32), os.urandom(32)


def test_a_wrapped_secret_opens_only_for_its_own_context() -> None:
    ring = KeyRing([NEW])
    wrapped = ring.wrap(b"EAAG-token", "whatsapp:tenant-a:access_token")
    assert b"EAAG-token" not in wrapped
    assert ring.unwrap(wrapped, "whatsapp:tenant-a:access_token") == b"EAAG-token"
    with pytest.raises(Unwrappable, match="authenticate"):
        ring.unwrap(wrapped, "whatsapp:tenant-b:access_token")  # copied into another tenant's row


def test_a_rotation_opens_old_values_under_the_previous_kek_and_wraps_new_ones_under_the_current() -> None:
    before = KeyRing([OLD]).wrap(b"k", "content_key:1")
    during = KeyRing([NEW, OLD])
    assert during.unwrap(before, "content_key:1") == b"k"
    assert not during.is_current(before)
    rewrapped = during.wrap(during.unwrap(before, "content_key:1"), "content_key:1")
    assert during.is_current(rewrapped)
    after = KeyRing([NEW])
    assert after.unwrap(rewrapped, "content_key:1") == b"k"
    with pytest.raises(Unwrappable, match="not given"):
        after.unwrap(before, "content_key:1")  # the old KEK is gone: what was not rewrapped is lost


def test_tampering_and_garbage_are_refused() -> None:
    ring = KeyRing([NEW])
    wrapped = bytearray(ring.wrap(b"secret", "c"))
    wrapped[-1] ^= 1
    with pytest.raises(Unwrappable):
        ring.unwrap(bytes(wrapped), "c")
    with pytest.raises(Unwrappable, match="not a wrapped value"):
        ring.unwrap(b"secret in clear", "c")


def test_the_wrapping_key_is_not_the_kek() -> None:
    """A value wrapped with the KEK itself (or with the recipient-hash key) does not open: the
    wrapping key is derived under its own label."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from herald.keyring import kek_id

    nonce = os.urandom(12)
    naive = b"\x01" + kek_id(NEW) + nonce + AESGCM(NEW).encrypt(nonce, b"s", b"c")
    with pytest.raises(Unwrappable):
        KeyRing([NEW]).unwrap(naive, "c")


def test_rewrapped_is_none_for_a_value_already_under_the_current_kek() -> None:
    ring = KeyRing([NEW, OLD])
    current, old = ring.wrap(b"s", "c"), KeyRing([OLD]).wrap(b"s", "c")
    assert ring.rewrapped(current, "c") is None
    moved = ring.rewrapped(old, "c")
    assert moved is not None
    assert ring.is_current(moved)
    assert KeyRing([NEW]).unwrap(moved, "c") == b"s"
