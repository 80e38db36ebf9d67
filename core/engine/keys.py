"""Secrets as the engine sees them: the lookup key, per-batch sealers, and key rotation."""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import keyring

LOOKUP_KEY_META = b"lookup_key"  # meta db: master key id (8) + wrapped lookup key
# The domain layers' secrets (a supplier's signing secret, ...) are sealed under a key derived
# from the lookup key, itself wrapped by the master key: a rotation re-wraps the lookup key, so
# they stay readable, and a copy of the data file without the master key opens none of them.
SECRETS_KEY_PURPOSE = b"kamicore domain secrets v1"
SECRET_VERSION = b"\x01"  # first byte of a sealed domain secret


class KeyService:
    """What the compiled operations call for secrets: lookup hashes, sealers, data keys."""

    def __init__(self, ring: keyring.MasterKeyring, lookup_key: bytes, codec):
        self.ring = ring
        self.lookup_key = lookup_key  # the compiled redeem computes the lookup HMAC in C
        self.lookup_hash = keyring.LookupHasher(lookup_key)
        self.equal = keyring.constant_time_equal
        self.new_nonces = keyring.new_nonces
        self._codec = codec
        self._data_keys: dict[bytes, bytes] = {}  # wrapped data key -> the key
        self._sealers: dict[bytes, keyring.Sealer] = {}  # data key -> its sealer
        self._secrets = AESGCM(hmac.digest(lookup_key, SECRETS_KEY_PURPOSE, "sha256"))

    def seal_secret(self, purpose: bytes, plaintext: bytes) -> bytes:
        """A domain secret sealed (AES-256-GCM, a fresh nonce) for storage; `purpose` (e.g.
        b"supplier:<id>") is its associated data, so a sealed secret copied to another record
        fails to open."""
        nonce = keyring.new_nonces(1)
        return SECRET_VERSION + nonce + self._secrets.encrypt(nonce, plaintext, purpose)

    def open_secret(self, purpose: bytes, sealed: bytes) -> bytes:
        """The plaintext of seal_secret(purpose, ...); DecryptionError when tampered with."""
        if sealed[:1] != SECRET_VERSION:
            raise keyring.DecryptionError("not a sealed secret")
        nonce = sealed[1:1 + keyring.nonce_bytes]
        try:
            return self._secrets.decrypt(nonce, sealed[1 + keyring.nonce_bytes:], purpose)
        except InvalidTag:
            raise keyring.DecryptionError("a sealed secret failed authentication") from None

    def new_wrapped_data_key(self, batch_key: bytes) -> tuple[bytes, bytes]:
        self.ring.refresh()  # another process may have rotated the master key
        return self.ring.wrap(keyring.new_data_key(), b"batch" + batch_key)

    def data_key(self, txn, dbs, batch_no: int) -> bytes:
        """The data key of a batch as `txn` stores it (the compiled import seals in C with it).
        Cached by the wrapped key itself, never by batch number: a batch number can be handed
        out again after its transaction rolled back (with another data key), and a rotation
        re-wraps keys under another master key."""
        batch_key = self._codec.u32_key(batch_no)
        info = self._codec.unpack_batch(txn.get(batch_key, db=dbs.batches))
        cache_key = info["master_key_id"] + info["wrapped_key"]
        data_key = self._data_keys.get(cache_key)
        if data_key is None:
            data_key = self._data_keys[cache_key] = self.ring.unwrap(
                info["master_key_id"], info["wrapped_key"], b"batch" + batch_key)
        return data_key

    def sealer(self, txn, dbs, batch_no: int) -> keyring.Sealer:
        """The sealer of a batch as `txn` stores it (see data_key)."""
        data_key = self.data_key(txn, dbs, batch_no)
        sealer = self._sealers.get(data_key)
        if sealer is None:
            sealer = self._sealers[data_key] = keyring.Sealer(data_key)
        return sealer


def load_lookup_key(env, meta_db, ring: keyring.MasterKeyring) -> bytes:
    """The lookup (HMAC) key, created wrapped by the master key in a new data dir. Runs once
    at open, before the writer starts."""
    id_bytes = keyring.master_key_id_bytes
    with env.begin(write=True) as txn:
        stored = txn.get(LOOKUP_KEY_META, db=meta_db)
        if stored is None:
            lookup_key = keyring.new_data_key()
            key_id, wrapped = ring.wrap(lookup_key, LOOKUP_KEY_META)
            txn.put(LOOKUP_KEY_META, key_id + wrapped, db=meta_db)
            return lookup_key
    return ring.unwrap(stored[:id_bytes], stored[id_bytes:], LOOKUP_KEY_META)


def rotate_keys(tx, keys: KeyService, codec, new_master_key: bytes | None) -> int:
    """Re-wrap every batch data key and the lookup key under a new master key, in one
    transaction (a plan function). The new key is saved before anything is wrapped with it,
    and the old ones are kept for unwrapping, so a rollback leaves every key openable."""
    ring = keys.ring
    dbs = tx.dbs
    unwrapped = []
    with tx.txn.cursor(db=dbs.batches) as cursor:
        for key, value in cursor:
            info = codec.unpack_batch(value)
            unwrapped.append((key, info, ring.unwrap(
                info["master_key_id"], info["wrapped_key"], b"batch" + key)))
    stored = tx.txn.get(LOOKUP_KEY_META, db=dbs.meta)
    id_bytes = keyring.master_key_id_bytes
    lookup_key = ring.unwrap(stored[:id_bytes], stored[id_bytes:], LOOKUP_KEY_META)
    ring.begin_rotation(new_master_key)
    for key, info, data_key in unwrapped:
        key_id, wrapped = ring.wrap(data_key, b"batch" + key)
        tx.txn.put(key, codec.pack_batch(info["sku_no"], info["valid_from_ms"],
                                         info["valid_until_ms"], info["unit_cost_micros"],
                                         key_id, info["name"], info["supplier"], wrapped),
                   db=dbs.batches)
    key_id, wrapped = ring.wrap(lookup_key, LOOKUP_KEY_META)
    tx.txn.put(LOOKUP_KEY_META, key_id + wrapped, db=dbs.meta)
    return len(unwrapped)
