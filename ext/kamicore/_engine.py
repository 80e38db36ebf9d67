"""The code state machine's shared core: the sub-database handles (Dbs), one operation's view of
the group's write transaction (Tx) and the hash-chained audit log. The operations that change
codes are beside it, one module per service of the API: _inventory.py (import, freeze, unfreeze,
void), _orders.py (reserve, confirm, release, expire holds, report invalid) and _redemption.py
(redeem, verify). All run inside one LMDB write transaction handed over by the group-commit
writer (kamicore.engine).

Cython pure-Python mode (see _codec.py). Each operation is a straight ladder of checks in the
precedence order kamicore.ladders declares for its status enum (the wire numbers are
append-only and say nothing about order); an item that fails a check has written nothing, so
one bad item never disturbs the others. Per-(sku, state) counter changes and audit
events are collected while items are applied and written once per operation (`Tx.finish`).
"""

import hashlib
import struct

import cython

from kamicore import limits

# CodeRecord's fields and the codec functions are C-level when compiled (declared in
# _record.pxd and _codec.pxd), so per-item code reads and writes records without Python
# attribute lookups. Status numbers come from the proto enums (proto/generate.py writes
# _statuses.pxd and _statuses.py): C constants when compiled, Python ints when interpreted.
if cython.compiled:
    from cython.cimports.kamicore._codec import (
        available_key, check_code, code_id_of, code_key, counter_key, normalize_code, pack_u32,
        pack_u64, sku_prefix, u32_key, u64_key, u64_of, unpack_u32, unpack_u64,
    )
    from cython.cimports.kamicore._record import CodeRecord, unpack_record
    from cython.cimports.kamicore._statuses import (
        CODE_OP_STATUS_DONE, CODE_OP_STATUS_MALFORMED, CODE_OP_STATUS_NOT_FOUND,
        IMPORT_CODE_STATUS_IMPORTED,
    )
else:
    from ._codec import (
        available_key, check_code, code_id_of, code_key, counter_key, normalize_code, pack_u32,
        pack_u64, sku_prefix, u32_key, u64_key, u64_of, unpack_u32, unpack_u64,
    )
    from ._record import CodeRecord, unpack_record
    from ._statuses import (
        CODE_OP_STATUS_DONE, CODE_OP_STATUS_MALFORMED, CODE_OP_STATUS_NOT_FOUND,
        IMPORT_CODE_STATUS_IMPORTED,
    )

# Audit operation numbers, stored in audit blocks and named by OP_NAMES; C variables that the
# operation modules cimport (declared in _engine.pxd).
OP_IMPORT = cython.declare(cython.int, 1)
OP_RESERVE = cython.declare(cython.int, 2)
OP_CONFIRM = cython.declare(cython.int, 3)
OP_RELEASE = cython.declare(cython.int, 4)
OP_EXPIRE = cython.declare(cython.int, 5)
OP_REDEEM = cython.declare(cython.int, 6)
OP_FREEZE = cython.declare(cython.int, 7)
OP_UNFREEZE = cython.declare(cython.int, 8)
OP_VOID = cython.declare(cython.int, 9)
OP_REPORT_INVALID = cython.declare(cython.int, 10)
OP_REVEAL = cython.declare(cython.int, 11)  # a buyer was shown codes again (no transition)
OP_LEAK = cython.declare(cython.int, 12)  # a terminal presented codes never sold: frozen
OP_NAMES = {OP_IMPORT: "import", OP_RESERVE: "reserve", OP_CONFIRM: "confirm",
            OP_RELEASE: "release", OP_EXPIRE: "expire", OP_REDEEM: "redeem",
            OP_FREEZE: "freeze", OP_UNFREEZE: "unfreeze", OP_VOID: "void",
            OP_REPORT_INVALID: "report_invalid", OP_REVEAL: "reveal", OP_LEAK: "leak"}

# meta db keys (the operation modules keep the counters they alone allocate)
META_SKU_NO_NEXT = b"sku_no_next"
META_AUDIT_HEAD = b"audit_head"  # next sequence (u64 LE) + hash of the newest block
META_OUTBOX_HEAD = b"outbox_head"  # the outbox's next event id (u64 LE)
SKU_NAME_PREFIX = b"n"  # skus db: b"n" + name -> sku_no (u32 LE)
SKU_NUMBER_PREFIX = b"#"  # skus db: b"#" + sku_no (u32 BE) -> name

# Audit block: prev_hash (32) | first_seq u64, at_ms i64, op u8, actor_len u8, count u32 |
# actor | count x (code_id u64, from_state u8, to_state u8, sku_no u32)
_AUDIT_HEADER = struct.Struct("<QqBBI")
_AUDIT_EVENT = struct.Struct("<QBBI")
# The outbox (kamicore.domain.events reads it): the business events of each commit, written in
# that commit. Key: the record's LAST event id (u64 BE), so that a seek to an id finds the record
# holding it; ids start at 1, only increase and are never reused.
# Value: a kind byte, then
#   OUTBOX_AUDIT: the first sequence (u64 LE) of an audit block of this commit whose operation
#                 is one of _OUTBOX_OPS - one event id per event of that block (the reader tells
#                 which transitions are business events: a redemption, a leak's freeze, ...);
#   OUTBOX_DOMAIN: at_ms (i64 LE), then one event the domain layer wrote (kamicore.domain.events).
OUTBOX_AUDIT = 1
OUTBOX_DOMAIN = 2
_OUTBOX_OPS = frozenset((OP_REDEEM, OP_LEAK, OP_REPORT_INVALID))
_OUTBOX_AT = struct.Struct("<Bq")

# kamicore.limits.batches_max as a C number for Tx.move's per-item check (batch numbers fit 24
# bits of a transition key)
_batches_max = cython.declare(cython.uint, limits.batches_max)
AUDIT_GENESIS = b"\0" * 32


@cython.cclass
class Dbs:
    """Handles of the engine's own sub-databases of one environment (the domain layers' tables
    are kamicore.engine.transaction.Tables', opened beside these)."""

    # the handles are C attributes, declared in _engine.pxd (the operation modules cimport it)

    def __init__(self, env):
        self.codes = env.open_db(b"codes")
        self.available = env.open_db(b"available")
        self.lookup = env.open_db(b"lookup")
        self.holds = env.open_db(b"holds")
        self.counters = env.open_db(b"counters")
        self.skus = env.open_db(b"skus")
        self.batches = env.open_db(b"batches")
        self.batch_names = env.open_db(b"batch_names")
        self.orders = env.open_db(b"orders")
        self.redemptions = env.open_db(b"redemptions")
        self.audit = env.open_db(b"audit")
        self.outbox = env.open_db(b"outbox")
        self.meta = env.open_db(b"meta")
        self.batch_counters = env.open_db(b"batch_counters")
        self.pending = env.open_db(b"pending")


@cython.cclass
class Tx:
    """One operation's view of the write transaction, and what it changed so far."""

    # the fields (C attributes, some public) are declared in _engine.pxd, which the operation
    # modules cimport so that they call these methods in C

    def __init__(self, txn, dbs: Dbs, keys, now_ms: cython.longlong, actor: bytes):
        self.txn = txn
        self.dbs = dbs
        self.keys = keys
        self.now_ms = now_ms
        self.actor = actor
        self.transitions = {}
        self.events = []

    @cython.ccall
    def move(self, code_id: cython.ulonglong, record: CodeRecord, to_state: cython.int):
        """Record a transition of `record` (whose state is still the old one) and apply it."""
        from_state: cython.int = record.state
        sku_no: cython.uint = record.sku_no
        self.events.append((code_id, from_state, to_state, sku_no))
        # one count per (sku, batch, from, to); finish() turns them into counter changes
        assert record.batch_no < _batches_max
        key: cython.ulonglong = ((cython.cast(cython.ulonglong, sku_no) << 40)
                                 | (cython.cast(cython.ulonglong, record.batch_no) << 16)
                                 | (from_state << 8) | to_state)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        record.state = to_state

    def finish(self, op: cython.int):
        """Write this operation's counter changes and its audit block."""
        txn = self.txn
        sku_deltas = {}
        batch_deltas = {}
        for key, count in self.transitions.items():
            sku_no = key >> 40
            batch_no = (key >> 16) & 0xFFFFFF
            from_state = (key >> 8) & 0xFF
            to_state = key & 0xFF
            if from_state:
                sku_deltas[(sku_no, from_state)] = sku_deltas.get((sku_no, from_state), 0) - count
                batch_deltas[(batch_no, from_state)] = batch_deltas.get(
                    (batch_no, from_state), 0) - count
            sku_deltas[(sku_no, to_state)] = sku_deltas.get((sku_no, to_state), 0) + count
            batch_deltas[(batch_no, to_state)] = batch_deltas.get((batch_no, to_state), 0) + count
        for deltas, db in ((sku_deltas, self.dbs.counters),
                           (batch_deltas, self.dbs.batch_counters)):
            for (number, state), delta in deltas.items():
                if delta:
                    key = counter_key(number, state)
                    current = txn.get(key, db=db)
                    value = (unpack_u64(current) if current is not None else 0) + delta
                    assert value >= 0, "a counter went below zero"
                    txn.put(key, pack_u64(value), db=db)
        if self.events:
            append_audit(txn, self.dbs, self.now_ms, op, self.actor, self.events)
        self.transitions = {}
        self.events = []

    # -- small shared steps -------------------------------------------------------------

    @cython.ccall
    def next_number(self, name: bytes, first: cython.ulonglong = 1) -> cython.ulonglong:
        value = self.txn.get(name, db=self.dbs.meta)
        number: cython.ulonglong = unpack_u64(value) if value is not None else first
        self.txn.put(name, pack_u64(number + 1), db=self.dbs.meta)
        return number

    @cython.ccall
    def sku_no(self, sku: bytes, create: cython.bint) -> cython.uint:
        """The number of a sku id, 0 when unknown (and not created)."""
        value = self.txn.get(SKU_NAME_PREFIX + sku, db=self.dbs.skus)
        if value is not None:
            return unpack_u32(value)
        if not create:
            return 0
        number: cython.uint = self.next_number(META_SKU_NO_NEXT)
        self.txn.put(SKU_NAME_PREFIX + sku, pack_u32(number), db=self.dbs.skus)
        self.txn.put(SKU_NUMBER_PREFIX + u32_key(number), sku, db=self.dbs.skus)
        return number

    @cython.ccall
    def record(self, code_id: cython.ulonglong) -> CodeRecord:
        return unpack_record(self.txn.get(code_key(code_id), db=self.dbs.codes))

    @cython.ccall
    def put_record(self, code_id: cython.ulonglong, record: CodeRecord):
        self.txn.put(code_key(code_id), record.pack(), db=self.dbs.codes)

    @cython.ccall
    def resolve(self, ref) -> tuple:
        """A code reference (code id or plaintext) -> (status, code_id, record)."""
        code_id: cython.ulonglong
        if isinstance(ref, int):
            code_id = ref
            value = self.txn.get(code_key(code_id), db=self.dbs.codes) if ref > 0 else None
        else:
            if check_code(ref) != IMPORT_CODE_STATUS_IMPORTED:
                return CODE_OP_STATUS_MALFORMED, 0, None
            key = self.txn.get(self.keys.lookup_hash(normalize_code(ref)), db=self.dbs.lookup)
            if key is None:
                return CODE_OP_STATUS_NOT_FOUND, 0, None
            code_id = code_id_of(key)
            value = self.txn.get(key, db=self.dbs.codes)
        if value is None:
            return CODE_OP_STATUS_NOT_FOUND, 0, None
        return CODE_OP_STATUS_DONE, code_id, unpack_record(value)

    @cython.ccall
    def pick(self, sku_no: cython.uint, quantity: cython.Py_ssize_t) -> list:
        """The `quantity` sellable codes of a sku that expire soonest, as (code_id, record);
        fewer when stock is short. Reads only."""
        picked = []
        if quantity <= 0:
            return picked
        now_ms: cython.longlong = self.now_ms
        prefix = sku_prefix(sku_no)
        cursor = self.txn.cursor(db=self.dbs.available)
        # keys are (sku, valid_until, code id): start past every code already expired
        if not cursor.set_range(available_key(sku_no, now_ms + 1, 0)):
            return picked
        codes_db = self.dbs.codes
        txn = self.txn
        for key in cursor.iternext(keys=True, values=False):
            if key[:4] != prefix:
                break
            code_id: cython.ulonglong = u64_of(key[12:])
            record: CodeRecord = unpack_record(txn.get(key[12:], db=codes_db))
            if record.valid_from_ms > now_ms:
                continue  # not yet valid; a later one may be
            picked.append((code_id, record))
            if len(picked) == quantity:
                break
        return picked

    @cython.ccall
    def take_available(self, code_id: cython.ulonglong, record: CodeRecord):
        self.txn.delete(available_key(record.sku_no, record.valid_until_ms, code_id),
                        db=self.dbs.available)
        if record.valid_from_ms > 0:
            self.txn.delete(available_key(record.sku_no, record.valid_from_ms, code_id),
                            db=self.dbs.pending)

    @cython.ccall
    def return_available(self, code_id: cython.ulonglong, record: CodeRecord):
        self.txn.put(available_key(record.sku_no, record.valid_until_ms, code_id), b"",
                     db=self.dbs.available)
        if record.valid_from_ms > 0:
            self.txn.put(available_key(record.sku_no, record.valid_from_ms, code_id), b"",
                         db=self.dbs.pending)


def append_audit(txn, dbs: Dbs, now_ms: cython.longlong, op: cython.int, actor: bytes,
                 events: list):
    """Append one hash-chained audit block holding `events` (one per transition)."""
    head = txn.get(META_AUDIT_HEAD, db=dbs.meta)
    first_seq: cython.ulonglong = 1
    prev_hash = AUDIT_GENESIS
    if head is not None:
        first_seq = unpack_u64(head[:8])
        prev_hash = head[8:]
    parts = [_AUDIT_HEADER.pack(first_seq, now_ms, op, len(actor), len(events)), actor]
    pack_event = _AUDIT_EVENT.pack
    for event in events:
        parts.append(pack_event(*event))
    body = b"".join(parts)
    block_hash = hashlib.sha256(prev_hash + body).digest()
    txn.put(u64_key(first_seq), prev_hash + body, db=dbs.audit, append=True)
    txn.put(META_AUDIT_HEAD, pack_u64(first_seq + len(events)) + block_hash, db=dbs.meta)
    if op in _OUTBOX_OPS:
        _append_outbox(txn, dbs, bytes((OUTBOX_AUDIT,)) + pack_u64(first_seq), len(events))


def _append_outbox(txn, dbs: Dbs, record: bytes, count: cython.ulonglong) -> cython.ulonglong:
    """Append one outbox record (see OUTBOX_AUDIT) holding `count` (> 0) event ids -> the
    first."""
    head = txn.get(META_OUTBOX_HEAD, db=dbs.meta)
    first_id: cython.ulonglong = unpack_u64(head) if head is not None else 1
    txn.put(u64_key(first_id + count - 1), record, db=dbs.outbox, append=True)
    txn.put(META_OUTBOX_HEAD, pack_u64(first_id + count), db=dbs.meta)
    return first_id


def append_domain_event(txn, dbs: Dbs, now_ms: cython.longlong, event: bytes) -> int:
    """One event of a domain layer in the outbox -> its id."""
    return _append_outbox(txn, dbs, _OUTBOX_AT.pack(OUTBOX_DOMAIN, now_ms) + event, 1)


def unpack_outbox(value: bytes) -> tuple:
    """An outbox record -> (OUTBOX_AUDIT, audit block first seq) or (OUTBOX_DOMAIN, at_ms,
    event bytes)."""
    if value[0] == OUTBOX_AUDIT:
        return OUTBOX_AUDIT, unpack_u64(value[1:9])
    kind, at_ms = _OUTBOX_AT.unpack_from(value)
    return kind, at_ms, value[_OUTBOX_AT.size:]


def unpack_audit_block(value: bytes) -> tuple:
    """(prev_hash, first_seq, at_ms, op, actor, [(code_id, from, to, sku_no)])"""
    prev_hash = value[:32]
    first_seq, at_ms, op, actor_len, count = _AUDIT_HEADER.unpack_from(value, 32)
    offset = 32 + _AUDIT_HEADER.size
    actor = value[offset:offset + actor_len]
    offset += actor_len
    events = [_AUDIT_EVENT.unpack_from(value, offset + i * _AUDIT_EVENT.size)
              for i in range(count)]
    return prev_hash, first_seq, at_ms, op, actor, events


def audit_block_hash(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()
