"""Envelope encryption and lookup hashing of codes.

- A master key (32 bytes) lives in a key file created with mode 0600 on first use, or comes
  from the KAMICORE_MASTER_KEY environment variable (hex). It never touches the data file.
- Each batch has its own random data key, stored only wrapped (AES-256-GCM) by the master key.
  Rotation re-wraps data keys under a new master key; the codes themselves are not re-encrypted.
- A code is sealed with AES-256-GCM under its batch's data key, with a fresh random 96-bit nonce
  and the code id as associated data, so a sealed code moved to another record fails to open.
- Redemption finds a code by HMAC-SHA256 of its normalised form under a lookup key, itself stored
  wrapped by the master key. Plaintext is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEY_ENV = "KAMICORE_MASTER_KEY"
MASTER_KEY_FILE_NAME = "master.key"
key_bytes = 32
nonce_bytes = 12
tag_bytes = 16
master_key_id_bytes = 8


class DecryptionError(Exception):
    """A sealed code or wrapped key failed authentication: tampered, or the wrong key."""


def master_key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"kamicore master key id\0" + key).digest()[:master_key_id_bytes]


def _parse_keys(text: str, source: str) -> list[bytes]:
    keys = []
    for line in text.split():
        try:
            key = bytes.fromhex(line.strip())
        except ValueError:
            raise ValueError(f"{source}: a master key must be {key_bytes} bytes in hex") from None
        if len(key) != key_bytes:
            raise ValueError(f"{source}: a master key must be {key_bytes} bytes in hex")
        keys.append(key)
    if not keys:
        raise ValueError(f"{source}: no master key")
    return keys


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file holding `text`."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class MasterKeyring:
    """The master keys this process can unwrap with; the first one wraps new keys."""

    def __init__(self, keys: list[bytes], path: Path | None):
        self._keys = {master_key_id(key): key for key in keys}
        self.current_id = master_key_id(keys[0])
        self.path = path
        self._stamp = self._file_stamp()

    def _file_stamp(self):
        if self.path is None:
            return None
        status = os.stat(self.path)
        return status.st_mtime_ns, status.st_size, status.st_ino

    def refresh(self) -> None:
        """Pick up a rotation done by another process sharing the key file."""
        if self.path is None or self._file_stamp() == self._stamp:
            return
        keys = _parse_keys(self.path.read_text(), str(self.path))
        self._keys.update({master_key_id(key): key for key in keys})
        self.current_id = master_key_id(keys[0])
        self._stamp = self._file_stamp()

    @classmethod
    def load(cls, data_dir: Path, key_file: Path | None = None) -> MasterKeyring:
        """From KAMICORE_MASTER_KEY, else the key file (created with a new key if missing)."""
        from_env = os.environ.get(MASTER_KEY_ENV)
        if from_env:
            return cls(_parse_keys(from_env, MASTER_KEY_ENV), None)
        path = Path(key_file) if key_file else Path(data_dir) / MASTER_KEY_FILE_NAME
        if not path.exists():
            _write_private(path, secrets.token_bytes(key_bytes).hex() + "\n")
        return cls(_parse_keys(path.read_text(), str(path)), path)

    def wrap(self, key: bytes, associated: bytes) -> tuple[bytes, bytes]:
        nonce = os.urandom(nonce_bytes)
        sealed = AESGCM(self._keys[self.current_id]).encrypt(nonce, key, associated)
        return self.current_id, nonce + sealed

    def unwrap(self, key_id: bytes, wrapped: bytes, associated: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:  # another process sharing the key file may have rotated
            self.refresh()
            master = self._keys.get(key_id)
        if master is None:
            raise DecryptionError(f"no master key with id {key_id.hex()} is loaded")
        try:
            return AESGCM(master).decrypt(wrapped[:nonce_bytes], wrapped[nonce_bytes:],
                                          associated)
        except InvalidTag:
            raise DecryptionError("a wrapped key failed authentication") from None

    def begin_rotation(self, new_key: bytes | None) -> bytes:
        """Make a new master key current while keeping the old ones for unwrapping.

        With a key file the new key is written first (old keys kept after it), so a crash
        during rotation leaves every wrapped key openable."""
        new_key = new_key or secrets.token_bytes(key_bytes)
        if len(new_key) != key_bytes:
            raise ValueError(f"new_master_key: must be {key_bytes} bytes")
        new_id = master_key_id(new_key)
        self._keys[new_id] = new_key
        self.current_id = new_id
        if self.path is not None:
            # old keys stay after the new one, for unwrapping only: other processes sharing
            # this file may still wrap with one until they see the change (refresh)
            others = [key.hex() for key_id, key in self._keys.items() if key_id != new_id]
            _write_private(self.path, "\n".join([new_key.hex(), *others]) + "\n")
            self._stamp = self._file_stamp()
        return new_id


class Sealer:
    """AES-256-GCM under one batch's data key; the code id is the associated data."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes):
        self._aead = AESGCM(data_key)

    def seal(self, nonce: bytes, plaintext: bytes, code_key: bytes) -> bytes:
        return nonce + self._aead.encrypt(nonce, plaintext, code_key)

    def open(self, sealed: bytes, code_key: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:nonce_bytes], sealed[nonce_bytes:], code_key)
        except InvalidTag:
            raise DecryptionError("a sealed code failed authentication") from None


class LookupHasher:
    """HMAC-SHA256 of a normalised code: the only form in which codes are indexed.

    Computed from the key's precomputed inner and outer SHA-256 states (RFC 2104 with a
    32-byte key), which costs a third of a one-shot HMAC call that looks the digest up by name
    each time; tests/test_keyring.py holds it equal to hmac.digest."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        assert len(key) <= hashlib.sha256().block_size
        padded = key.ljust(hashlib.sha256().block_size, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))

    def __call__(self, normalized: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(normalized)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def new_data_key() -> bytes:
    return secrets.token_bytes(key_bytes)


def new_nonces(count: int) -> bytes:
    """`count` random 96-bit nonces in one system call (sliced by the caller)."""
    return os.urandom(nonce_bytes * count)


def constant_time_equal(left: bytes, right: bytes) -> bool:
    return hmac.compare_digest(left, right)
