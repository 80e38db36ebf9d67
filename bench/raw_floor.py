"""The engine benchmark's floor: a redeem in plain Python over py-lmdb, nothing but the reads and
writes a redeem cannot avoid, over a store laid out like the engine's."""

from __future__ import annotations

from pathlib import Path

import lmdb
from kamicore import CodeState
from kamicore_access import (
    CODES_DB,
    LMDB_OPEN_OPTIONS,
    LOOKUP_DB,
    RECORD_STATE_AT,
    REDEMPTIONS_DB,
    code_key,
)

codes_per_commit_setup = 10_000
REDEEMED = bytes([CodeState.REDEEMED])


class RawStore:
    """py-lmdb opened as the engine opens it, with the sub-databases a redeem touches."""

    def __init__(self, path: Path, hasher):
        self.env = lmdb.open(str(path), **LMDB_OPEN_OPTIONS, sync=True, metasync=True,
                             writemap=False, readahead=False, lock=True)
        self.codes = self.env.open_db(CODES_DB)
        self.lookup = self.env.open_db(LOOKUP_DB)
        self.redemptions = self.env.open_db(REDEMPTIONS_DB)
        self.hasher = hasher

    def populate(self, codes: list[bytes], record: bytes) -> None:
        """code i -> lookup HMAC -> record key of id i + 1 -> `record` (a real SOLD record copied
        from the engine's store, so values have the engine's size)."""
        for start in range(0, len(codes), codes_per_commit_setup):
            with self.env.begin(write=True) as txn:
                lookups = []
                with txn.cursor(db=self.codes) as cursor:
                    for number in range(start, min(len(codes), start + codes_per_commit_setup)):
                        key = code_key(number + 1)
                        cursor.put(key, record, append=True)
                        lookups.append((self.hasher(codes[number]), key))
                lookups.sort()
                with txn.cursor(db=self.lookup) as cursor:
                    cursor.putmulti(lookups)

    def redeem(self, items: list) -> int:
        """items: [(code, request key)]; one durable transaction. The floor: nothing but the
        reads and writes a redeem cannot avoid (no checks, counters, audit or replies)."""
        lookup_hash = self.hasher
        lookup_db, codes_db, redemptions_db = self.lookup, self.codes, self.redemptions
        state_at, after_state, redeemed = RECORD_STATE_AT, RECORD_STATE_AT + 1, REDEEMED
        with self.env.begin(write=True) as txn:
            get, put = txn.get, txn.put
            for code, request_key in items:
                digest = lookup_hash(code)
                key = get(digest, db=lookup_db)
                record = get(key, db=codes_db)
                put(key, record[:state_at] + redeemed + record[after_state:], db=codes_db)
                put(request_key, key + digest, db=redemptions_db)
        return len(items)

    def close(self) -> None:
        self.env.close()
