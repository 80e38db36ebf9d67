"""What the engine promises about secrets (shared/DESIGN.md, "Secrets"), checked from outside:
a code's plaintext never reaches the data file, an error or a status.

A code is sealed with AES-256-GCM under a per-batch data key (the code id as associated data)
and found for redemption only through a keyed hash of its normalised form. These tests read the
data dir's raw bytes and tamper with LMDB records directly, and check that every failure is loud
(DecryptionError, a check() problem) and never a wrong or leaked plaintext. Master keys and their
rotation: tests/test_secrets_keys.py.
"""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import lmdb
import pytest
from kamicore.engine import Engine, InvalidArgument
from kamicore.keyring import DecryptionError
from kamicore.statuses import (
    CodeOpStatus,
    CodeState,
    ImportCodeStatus,
    ImportStatus,
    RedeemStatus,
    VerifyStatus,
)

from .secrets_support import (
    KEY_FILE,
    MASTER_KEY_ENV,
    SKU,
    file_mode,
    normalised,
    random_codes,
    reopen,
    sell,
)

# The code record layout of ext/kamicore/_record.py, format version 1: a 64-byte header whose
# last three fields are the lengths of the order id, terminal and sealed code that follow it.
# The sealed code is nonce (12) + ciphertext + GCM tag (16).
RECORD_HEADER = struct.Struct("<BBBBIIqqqqqQBBH")
NONCE_BYTES = 12
TAG_BYTES = 16


# -- reading and editing stored code records -------------------------------------------------

def raw_codes_db(path: Path, write: bool = False):
    env = lmdb.open(str(path), max_dbs=16, readonly=not write, lock=True)
    return env, env.open_db(b"codes", create=False)


def split_record(value: bytes) -> tuple[int, int]:
    """(start, length) of the sealed code inside a stored code record."""
    fields = RECORD_HEADER.unpack_from(value)
    order_len, terminal_len, sealed_len = fields[-3:]
    assert fields[0] == 1, "code record format version"
    assert RECORD_HEADER.size + order_len + terminal_len + sealed_len == len(value)
    return len(value) - sealed_len, sealed_len


def tamper_code(path: Path, code_id: int, edit) -> None:
    """Rewrite one code record in its own LMDB write transaction: edit(bytearray, start, length)
    changes the sealed part in place."""
    env, codes = raw_codes_db(path, write=True)
    try:
        with env.begin(write=True) as txn:
            key = struct.pack(">Q", code_id)
            value = bytearray(txn.get(key, db=codes))
            start, length = split_record(bytes(value))
            edit(value, start, length)
            txn.put(key, bytes(value), db=codes)
    finally:
        env.close()


# -- plaintext never reaches the disk ---------------------------------------------------------

def test_no_plaintext_in_any_file_of_the_data_dir(engine, clock, tmp_path):
    data_dir = tmp_path / "data"
    rng = random.Random(20240601)
    codes = random_codes(500, rng)
    for start in range(0, 500, 100):
        result = engine.import_codes(SKU, f"batch-{start // 100}", codes[start:start + 100])
        assert result.status == ImportStatus.OK and result.imported == 100
    sold_ids = []
    revealed = []
    for number in range(20):
        order_id = f"order-secret-scan-{number}"
        sold_ids += sell(engine, order_id, 5)
        revealed += engine.order(order_id, reveal=True).plaintexts
    # the buyer gets exactly what the supplier imported: the codes are really stored
    assert set(revealed) <= set(codes) and len(set(revealed)) == 100 == len(set(sold_ids))
    redeemed = engine.redeem([(code.lower(), f"rq-{index}")
                              for index, code in enumerate(revealed[:40])], "T-scan")
    assert [r.status for r in redeemed] == [RedeemStatus.REDEEMED] * 40
    assert engine.verify(codes[:50])[0].status == VerifyStatus.FOUND
    engine.reserve([("order-held", [(SKU, 7)], 600)])
    engine.freeze([codes[-1]])
    assert engine.check() == []
    engine.close()

    files = sorted(p for p in data_dir.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"data.mdb", "lock.mdb"} <= names
    contents = {p.name: p.read_bytes() for p in files}
    # a positive control: the scan does see what the engine stores in the clear
    assert b"order-secret-scan-7" in contents["data.mdb"]
    assert SKU.encode() in contents["data.mdb"]

    leaks = []
    for code in codes:
        forms = {code, normalised(code), code.upper(), code.lower(), normalised(code).lower()}
        needles = set()
        for form in forms:
            needles.add(form.encode())
            needles.add(form.encode().hex().encode())
            needles.add(form.encode().hex().upper().encode())
        for name, content in contents.items():
            leaks += [(name, code, needle) for needle in needles if needle in content]
    assert leaks == []

    key_file = data_dir / KEY_FILE
    assert key_file.exists()
    assert file_mode(key_file) == 0o600


# -- tampering is loud --------------------------------------------------------------------

def _flip_ciphertext(value: bytearray, start: int, length: int) -> None:
    value[start + NONCE_BYTES + (length - NONCE_BYTES - TAG_BYTES) // 2] ^= 0x01


def _flip_tag(value: bytearray, start: int, length: int) -> None:
    value[start + length - 1] ^= 0x80


def _flip_nonce(value: bytearray, start: int, length: int) -> None:
    value[start] ^= 0x10


@pytest.mark.parametrize("edit", [_flip_ciphertext, _flip_tag, _flip_nonce],
                         ids=["ciphertext", "tag", "nonce"])
def test_a_flipped_byte_of_a_sealed_code_fails_loudly(engine, clock, implementation, tmp_path,
                                                     edit):
    data_dir = tmp_path / "data"
    codes = random_codes(6, random.Random(7))
    engine.import_codes(SKU, "batch-1", codes)
    victim_order = sell(engine, "order-victim", 3)
    other_order = sell(engine, "order-other", 2)
    plaintexts = engine.order("order-victim", reveal=True).plaintexts
    victim = victim_order[1]
    engine.close()

    tamper_code(data_dir, victim, edit)

    with reopen(data_dir, clock, implementation) as reopened:
        with pytest.raises(DecryptionError):
            reopened.order("order-victim", reveal=True)
        with pytest.raises(DecryptionError):
            reopened.code(victim)
        with pytest.raises(DecryptionError):
            reopened.verify([plaintexts[1]])
        problems = reopened.check()
        assert len(problems) == 1 and str(victim) in problems[0]
        assert "decrypt" in problems[0]
        # the rest of the store is untouched and still reads
        assert reopened.code(victim_order[0]).state == CodeState.SOLD
        assert len(reopened.order("order-other", reveal=True).plaintexts) == len(other_order)


def test_a_sealed_code_moved_to_another_record_does_not_open(engine, clock, implementation,
                                                             tmp_path):
    """The code id is the associated data: copying code A's sealed bytes over code B's must
    not make B read as A's plaintext."""
    data_dir = tmp_path / "data"
    codes = random_codes(2, random.Random(11))
    ids = engine.import_codes(SKU, "batch-1", codes).code_ids
    engine.close()

    env, codes_db = raw_codes_db(data_dir, write=True)
    try:
        with env.begin(write=True) as txn:
            first = txn.get(struct.pack(">Q", ids[0]), db=codes_db)
            second = txn.get(struct.pack(">Q", ids[1]), db=codes_db)
            first_start, _ = split_record(first)
            second_start, _ = split_record(second)
            txn.put(struct.pack(">Q", ids[1]), second[:second_start] + first[first_start:],
                    db=codes_db)
    finally:
        env.close()

    with reopen(data_dir, clock, implementation) as reopened:
        with pytest.raises(DecryptionError):
            reopened.code(ids[1])
        assert reopened.code(ids[0]).masked.endswith(normalised(codes[0])[-4:])
        problems = reopened.check()
        assert len(problems) == 1 and str(ids[1]) in problems[0]


# -- lookup by keyed hash --------------------------------------------------------------------

def test_lookup_ignores_case_spaces_and_dashes_but_not_characters(engine):
    ids = engine.import_codes(SKU, "batch-1", ["ABCD EFGH", "WXYZ-1234-5678"]).code_ids
    variants = ["abcd-efgh", "ABCDEFGH", "abcdefgh", " a-b c-d  e f-g h ", "AbCd--EfGh"]
    found = engine.verify(variants)
    assert [r.status for r in found] == [VerifyStatus.FOUND] * len(variants)
    assert {r.code.code_id for r in found} == {ids[0]}
    near_misses = ["ABCD EFGI", "BBCD EFGH", "ABCD EFG", "ABCD EFGHH", "ABCD_EFGH", "ABCD.EFGH"]
    missed = engine.verify(near_misses)
    assert [r.status for r in missed] == [VerifyStatus.NOT_FOUND] * len(near_misses)
    assert all(r.code is None for r in missed)

    # redemption looks codes up the same way
    sell(engine, "order-1", 2)
    assert engine.redeem([("wxyz 1234 5678", "rq-1")], "T-1")[0].status == RedeemStatus.REDEEMED
    assert engine.redeem([("WXYZ-1234-5679", "rq-2")], "T-1")[0].status == RedeemStatus.NOT_FOUND
    assert engine.verify(["WXYZ12345678"])[0].code.state == CodeState.REDEEMED
    # so do operator transitions on a leaked list
    assert engine.freeze(["abcd-efgh"])[0].status == CodeOpStatus.DONE
    assert engine.code(ids[0]).state == CodeState.FROZEN


def test_the_lookup_index_holds_keyed_hashes_only(tmp_path, clock, implementation, monkeypatch):
    """The index must not be a plain hash either (anyone could hash a guessed code), and two
    data dirs must not share a lookup key."""
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    codes = random_codes(50, random.Random(3))
    stored_keys = []
    for name in ("first", "second"):
        with Engine(tmp_path / name, clock=clock, implementation=implementation) as opened:
            assert opened.import_codes(SKU, "batch-1", codes).imported == 50
        env = lmdb.open(str(tmp_path / name), max_dbs=16, readonly=True)
        try:
            lookup = env.open_db(b"lookup", create=False)
            with env.begin() as txn:
                stored_keys.append({key for key, _ in txn.cursor(db=lookup)})
        finally:
            env.close()
    first, second = stored_keys
    assert len(first) == len(second) == 50
    assert all(len(key) == 32 for key in first | second)
    plain = set()
    for code in codes:
        for form in (code, normalised(code)):
            plain.add(hashlib.sha256(form.encode()).digest())
            plain.add(form.encode().ljust(32, b"\0")[:32])
    assert not first & plain
    assert not first & second


# -- no plaintext in errors or statuses -------------------------------------------------------

def test_no_plaintext_in_errors_or_statuses(engine):
    engine.import_codes(SKU, "batch-1", ["KNOWN-CODE-AAAA-1111", "KNOWN-CODE-BBBB-2222"])
    sell(engine, "order-1", 1)
    malformed = [
        "SECRET\x00CODE-7391-QWER",
        "SECRET-CODE-\x7f-8841-ZXCV",
        "LEAKY-" + "Q7W8E9R0" * 16,  # longer than 128 bytes
        "SECRET\nCODE-5512-ASDF",
    ]
    not_found = ["NOTSTORED-4821-XYZW-9876", "kx7p-3m9q-vv2l-88ab"]
    secrets_seen = malformed + not_found

    def assert_clean(text: str) -> None:
        for code in secrets_seen:
            for form in {code, normalised(code), code.lower()}:
                assert form not in text
            for part in code.replace("\x00", "-").replace("\x7f", "-").replace("\n", "-") \
                    .split("-"):
                if len(part) >= 6:
                    assert part not in text, (part, text)

    verified = engine.verify(malformed + not_found)
    assert [r.status for r in verified] == (
        [VerifyStatus.MALFORMED] * len(malformed) + [VerifyStatus.NOT_FOUND] * len(not_found))
    assert_clean(repr(verified))
    redeemed = engine.redeem([(code, f"rq-{i}") for i, code in enumerate(secrets_seen)], "T-1")
    assert [r.status for r in redeemed] == (
        [RedeemStatus.MALFORMED] * len(malformed) + [RedeemStatus.NOT_FOUND] * len(not_found))
    assert_clean(repr(redeemed))
    assert_clean(repr([tuple(r) for r in redeemed]))
    for operation in (engine.freeze, engine.unfreeze, engine.void):
        results = operation(secrets_seen)
        assert [r.status for r in results] == (
            [CodeOpStatus.MALFORMED] * len(malformed) + [CodeOpStatus.NOT_FOUND] * len(not_found))
        assert_clean(repr(results))
    imported = engine.import_codes(SKU, "batch-2", malformed)
    assert imported.imported == 0
    assert {status for _, status in imported.rejected} == {
        ImportCodeStatus.CONTROL_CHARACTER, ImportCodeStatus.TOO_LONG}
    assert_clean(repr(imported))

    # whole-request errors name the field, never the value (a code pasted into the wrong field)
    calls = [
        lambda: engine.redeem([("KNOWN-CODE-AAAA-1111", malformed[0])], "T-1"),
        lambda: engine.redeem([(not_found[0], "rq")], malformed[1]),
        lambda: engine.redeem([("KNOWN-CODE-AAAA-1111", malformed[2])], "T-1"),
        lambda: engine.order(malformed[0]),
        lambda: engine.order(malformed[3], reveal=True),
        lambda: engine.reserve([(malformed[3], [(SKU, 1)], 60)]),
        lambda: engine.confirm([malformed[1]]),
        lambda: engine.stock(malformed[0]),
        lambda: engine.import_codes(malformed[3], "batch-3", ["OK-CODE-1"]),
        lambda: engine.verify([12345, not_found[0]]),
        lambda: engine.freeze([None, not_found[1]]),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as raised:
            call()
        assert raised.value.field
        assert_clean(str(raised.value))
        assert_clean(repr(raised.value))
        assert_clean(raised.value.message)

    # a found code is shown masked to its last 4 characters, never whole
    found = engine.verify(["known-code-aaaa-1111"])[0]
    assert found.status == VerifyStatus.FOUND
    assert found.code.masked.endswith("1111")
    for form in ("KNOWN-CODE-AAAA-1111", "KNOWNCODEAAAA1111", "AAAA-1111", "AAAA1111"):
        assert form not in repr(found)


def test_a_code_import_accepts_can_be_revealed_without_leaking(engine):
    secret = b"\xff\xfeSECRETCODE-9271-PLMK"
    imported = engine.import_codes(SKU, "batch-1", [secret])
    if imported.statuses[0] != ImportCodeStatus.IMPORTED:
        return  # refusing such a code at import is a fine answer
    sell(engine, "order-1", 1)
    try:
        view = engine.order("order-1", reveal=True)
    except Exception as error:  # whatever is raised must not carry the code
        assert b"SECRETCODE-9271" not in repr(error).encode()
        assert b"SECRETCODE-9271" not in str(error).encode()
        raise
    assert view.plaintexts and "SECRETCODE-9271-PLMK" in view.plaintexts[0]
