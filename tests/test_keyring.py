"""The lookup hash is exactly HMAC-SHA256 (computed from precomputed SHA-256 states)."""

from __future__ import annotations

import hmac
import os

from hypothesis import given, strategies as st

from kamicore.keyring import LookupHasher


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=300))
def test_lookup_hash_is_hmac_sha256(key, message):
    assert LookupHasher(key)(message) == hmac.digest(key, message, "sha256")


def test_lookup_hasher_is_reusable():
    key = os.urandom(32)
    hasher = LookupHasher(key)
    assert [hasher(b"A"), hasher(b"B"), hasher(b"A")] == [
        hmac.digest(key, message, "sha256") for message in (b"A", b"B", b"A")]
