"""The code state machine: every operation that changes codes, run inside one LMDB write
transaction handed over by the group-commit writer (kamicore.engine).

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
# attribute lookups.
if cython.compiled:
    from cython.cimports.kamicore._codec import (
        available_key, check_code, code_id_of, code_key, counter_key, hold_key, normalize_code,
        pack_batch, pack_order, pack_redemption, pack_u64, request_key, sku_prefix, u32_key,
        u64_key, u64_of, unpack_batch, unpack_hold_key, unpack_order, unpack_redemption,
        unpack_u64,
    )
    from cython.cimports.kamicore._record import CodeRecord, new_record, unpack_record
else:
    from ._codec import (
        available_key, check_code, code_id_of, code_key, counter_key, hold_key, normalize_code,
        pack_batch, pack_order, pack_redemption, pack_u64, request_key, sku_prefix, u32_key,
        u64_key, u64_of, unpack_batch, unpack_hold_key, unpack_order, unpack_redemption,
        unpack_u64,
    )
    from ._record import CodeRecord, new_record, unpack_record

# Status and state numbers come from the proto enums (proto/generate.py writes _statuses.pxd and
# _statuses.py): C constants when compiled, Python ints when interpreted. Order records store
# OrderState numbers.
if cython.compiled:
    from cython.cimports.kamicore._statuses import (
        CODE_OP_STATUS_DONE,
        CODE_OP_STATUS_MALFORMED,
        CODE_OP_STATUS_NOT_FOUND,
        CODE_OP_STATUS_WRONG_STATE,
        CODE_STATE_AVAILABLE,
        CODE_STATE_FROZEN,
        CODE_STATE_INVALID,
        CODE_STATE_REDEEMED,
        CODE_STATE_RESERVED,
        CODE_STATE_SOLD,
        CODE_STATE_VOID,
        CONFIRM_STATUS_ORDER_NOT_FOUND,
        CONFIRM_STATUS_ORDER_RELEASED_NO_STOCK,
        CONFIRM_STATUS_SOLD,
        IMPORT_CODE_STATUS_DUPLICATE,
        IMPORT_CODE_STATUS_IMPORTED,
        IMPORT_STATUS_BATCH_MISMATCH,
        IMPORT_STATUS_OK,
        ORDER_STATE_CANCELLED,
        ORDER_STATE_EXPIRED,
        ORDER_STATE_PAID,
        ORDER_STATE_RESERVED,
        REDEEM_STATUS_ALREADY_REDEEMED,
        REDEEM_STATUS_EXPIRED,
        REDEEM_STATUS_FROZEN,
        REDEEM_STATUS_INVALID,
        REDEEM_STATUS_MALFORMED,
        REDEEM_STATUS_NOT_FOUND,
        REDEEM_STATUS_NOT_SOLD,
        REDEEM_STATUS_NOT_YET_VALID,
        REDEEM_STATUS_REDEEMED,
        REDEEM_STATUS_REQUEST_ID_CONFLICT,
        REDEEM_STATUS_VOID,
        RELEASE_STATUS_ORDER_NOT_FOUND,
        RELEASE_STATUS_ORDER_SOLD,
        RELEASE_STATUS_RELEASED,
        REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER,
        REPORT_INVALID_STATUS_NO_REPLACEMENT,
        REPORT_INVALID_STATUS_NOT_SOLD,
        REPORT_INVALID_STATUS_ORDER_NOT_FOUND,
        REPORT_INVALID_STATUS_REISSUED,
        RESERVE_STATUS_INSUFFICIENT_STOCK,
        RESERVE_STATUS_ORDER_ID_CONFLICT,
        RESERVE_STATUS_RESERVED,
        RESERVE_STATUS_SKU_NOT_FOUND,
        VERIFY_STATUS_FOUND,
        VERIFY_STATUS_MALFORMED,
        VERIFY_STATUS_NOT_FOUND,
    )
else:
    from ._statuses import (
        CODE_OP_STATUS_DONE,
        CODE_OP_STATUS_MALFORMED,
        CODE_OP_STATUS_NOT_FOUND,
        CODE_OP_STATUS_WRONG_STATE,
        CODE_STATE_AVAILABLE,
        CODE_STATE_FROZEN,
        CODE_STATE_INVALID,
        CODE_STATE_REDEEMED,
        CODE_STATE_RESERVED,
        CODE_STATE_SOLD,
        CODE_STATE_VOID,
        CONFIRM_STATUS_ORDER_NOT_FOUND,
        CONFIRM_STATUS_ORDER_RELEASED_NO_STOCK,
        CONFIRM_STATUS_SOLD,
        IMPORT_CODE_STATUS_DUPLICATE,
        IMPORT_CODE_STATUS_IMPORTED,
        IMPORT_STATUS_BATCH_MISMATCH,
        IMPORT_STATUS_OK,
        ORDER_STATE_CANCELLED,
        ORDER_STATE_EXPIRED,
        ORDER_STATE_PAID,
        ORDER_STATE_RESERVED,
        REDEEM_STATUS_ALREADY_REDEEMED,
        REDEEM_STATUS_EXPIRED,
        REDEEM_STATUS_FROZEN,
        REDEEM_STATUS_INVALID,
        REDEEM_STATUS_MALFORMED,
        REDEEM_STATUS_NOT_FOUND,
        REDEEM_STATUS_NOT_SOLD,
        REDEEM_STATUS_NOT_YET_VALID,
        REDEEM_STATUS_REDEEMED,
        REDEEM_STATUS_REQUEST_ID_CONFLICT,
        REDEEM_STATUS_VOID,
        RELEASE_STATUS_ORDER_NOT_FOUND,
        RELEASE_STATUS_ORDER_SOLD,
        RELEASE_STATUS_RELEASED,
        REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER,
        REPORT_INVALID_STATUS_NO_REPLACEMENT,
        REPORT_INVALID_STATUS_NOT_SOLD,
        REPORT_INVALID_STATUS_ORDER_NOT_FOUND,
        REPORT_INVALID_STATUS_REISSUED,
        RESERVE_STATUS_INSUFFICIENT_STOCK,
        RESERVE_STATUS_ORDER_ID_CONFLICT,
        RESERVE_STATUS_RESERVED,
        RESERVE_STATUS_SKU_NOT_FOUND,
        VERIFY_STATUS_FOUND,
        VERIFY_STATUS_MALFORMED,
        VERIFY_STATUS_NOT_FOUND,
    )

# Audit operation numbers (stored in audit blocks; kamicore.audit names them).
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
OP_NAMES = {OP_IMPORT: "import", OP_RESERVE: "reserve", OP_CONFIRM: "confirm",
            OP_RELEASE: "release", OP_EXPIRE: "expire", OP_REDEEM: "redeem",
            OP_FREEZE: "freeze", OP_UNFREEZE: "unfreeze", OP_VOID: "void",
            OP_REPORT_INVALID: "report_invalid", OP_REVEAL: "reveal"}

META_CODE_ID_NEXT = b"code_id_next"
META_SKU_NO_NEXT = b"sku_no_next"
META_BATCH_NO_NEXT = b"batch_no_next"
META_ORDER_NO_NEXT = b"order_no_next"
META_AUDIT_HEAD = b"audit_head"  # next sequence (u64 LE) + hash of the newest block
SKU_NAME_PREFIX = b"n"  # skus db: b"n" + name -> sku_no (u32 LE)
SKU_NUMBER_PREFIX = b"#"  # skus db: b"#" + sku_no (u32 BE) -> name

# Audit block: prev_hash (32) | first_seq u64, at_ms i64, op u8, actor_len u8, count u32 |
# actor | count x (code_id u64, from_state u8, to_state u8, sku_no u32)
_AUDIT_HEADER = struct.Struct("<QqBBI")
_AUDIT_EVENT = struct.Struct("<QBBI")
_U32_VALUE = struct.Struct("<I")
# batch numbers fit 24 bits of a transition key (see Tx.move); a C copy of kamicore.limits'
_batches_max = cython.declare(cython.uint, limits.batches_max)
AUDIT_GENESIS = b"\0" * 32


@cython.cclass
class Dbs:
    """Handles of the engine's own sub-databases of one environment (the domain layers' tables
    are kamicore.engine.transaction.Tables', opened beside these)."""

    codes = cython.declare(object, visibility="public")
    available = cython.declare(object, visibility="public")
    lookup = cython.declare(object, visibility="public")
    holds = cython.declare(object, visibility="public")
    counters = cython.declare(object, visibility="public")
    skus = cython.declare(object, visibility="public")
    batches = cython.declare(object, visibility="public")
    batch_names = cython.declare(object, visibility="public")
    orders = cython.declare(object, visibility="public")
    redemptions = cython.declare(object, visibility="public")
    audit = cython.declare(object, visibility="public")
    meta = cython.declare(object, visibility="public")
    batch_counters = cython.declare(object, visibility="public")
    # (sku, valid_from, code id) of AVAILABLE codes with a start: not-yet-valid stock is
    # counted from here without reading records
    pending = cython.declare(object, visibility="public")

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
        self.meta = env.open_db(b"meta")
        self.batch_counters = env.open_db(b"batch_counters")
        self.pending = env.open_db(b"pending")


@cython.cclass
class Tx:
    """One operation's view of the write transaction, and what it changed so far."""

    txn = cython.declare(object, visibility="public")
    dbs = cython.declare(Dbs, visibility="public")
    keys = cython.declare(object, visibility="public")  # kamicore.engine.KeyService
    now_ms = cython.declare(cython.longlong, visibility="public")
    actor = cython.declare(bytes, visibility="public")
    transitions = cython.declare(dict)
    events = cython.declare(list)

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
            return _U32_VALUE.unpack(value)[0]
        if not create:
            return 0
        number: cython.uint = self.next_number(META_SKU_NO_NEXT)
        self.txn.put(SKU_NAME_PREFIX + sku, _U32_VALUE.pack(number), db=self.dbs.skus)
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


# -- import -------------------------------------------------------------------------------

def import_codes(tx: Tx, sku: bytes, batch: bytes, supplier: bytes,
                 unit_cost_micros: cython.longlong, valid_from_ms: cython.longlong,
                 valid_until_ms: cython.longlong, codes: list) -> tuple:
    """-> (batch status, [per-code status], [code id or 0])"""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    sku_no: cython.uint
    batch_no: cython.uint
    existing = txn.get(batch, db=dbs.batch_names)
    if existing is not None:
        sku_no = tx.sku_no(sku, False)
        batch_no = _U32_VALUE.unpack(existing)[0]
        info = unpack_batch(txn.get(u32_key(batch_no), db=dbs.batches))
        if (info["sku_no"] != sku_no or info["supplier"] != supplier
                or info["unit_cost_micros"] != unit_cost_micros
                or info["valid_from_ms"] != valid_from_ms
                or info["valid_until_ms"] != valid_until_ms):
            return IMPORT_STATUS_BATCH_MISMATCH, [], []
    else:
        sku_no = tx.sku_no(sku, True)
        batch_no = tx.next_number(META_BATCH_NO_NEXT)
        if batch_no >= _batches_max:
            raise OverflowError(f"more than {limits.batches_max} batches")
        key_id, wrapped = tx.keys.new_wrapped_data_key(u32_key(batch_no))
        txn.put(u32_key(batch_no),
                pack_batch(sku_no, valid_from_ms, valid_until_ms, unit_cost_micros,
                                  key_id, batch, supplier, wrapped), db=dbs.batches)
        txn.put(batch, _U32_VALUE.pack(batch_no), db=dbs.batch_names)
    sealer = tx.keys.sealer(txn, dbs, batch_no)
    lookup_hash = tx.keys.lookup_hash
    count: cython.Py_ssize_t = len(codes)
    statuses = [0] * count
    digests = [None] * count
    i: cython.Py_ssize_t
    for i in range(count):
        statuses[i] = check_code(codes[i])
        if statuses[i] == IMPORT_CODE_STATUS_IMPORTED:
            digests[i] = lookup_hash(normalize_code(codes[i]))
    # one multi-get finds the codes already stored; a set catches repeats within the call
    seen = {key for key, _ in txn.cursor(db=dbs.lookup).getmulti(
        [digest for digest in digests if digest is not None], values=True)}
    nonces = tx.keys.new_nonces(count)
    id_value = txn.get(META_CODE_ID_NEXT, db=dbs.meta)
    next_id: cython.ulonglong = unpack_u64(id_value) if id_value is not None else 1
    code_ids = [0] * count
    new_lookups = []
    new_records = []
    new_available = []
    new_pending = []
    for i in range(count):
        digest = digests[i]
        if digest is None:
            continue
        if digest in seen:
            statuses[i] = IMPORT_CODE_STATUS_DUPLICATE
            continue
        seen.add(digest)
        key = code_key(next_id)
        record: CodeRecord = new_record(0, sku_no, batch_no, valid_from_ms, valid_until_ms,
                                        sealer.seal(nonces[i * 12:i * 12 + 12], codes[i], key))
        tx.move(next_id, record, CODE_STATE_AVAILABLE)
        new_lookups.append((digest, key))
        new_records.append((key, record.pack()))
        new_available.append((available_key(sku_no, valid_until_ms, next_id), b""))
        if valid_from_ms > 0:
            new_pending.append((available_key(sku_no, valid_from_ms, next_id), b""))
        statuses[i] = IMPORT_CODE_STATUS_IMPORTED
        code_ids[i] = next_id
        next_id += 1
    if new_records:
        new_lookups.sort()
        txn.cursor(db=dbs.lookup).putmulti(new_lookups)
        # code ids only grow (allocated under the write lock), so records append at the end
        txn.cursor(db=dbs.codes).putmulti(new_records, True, True, True)
        txn.cursor(db=dbs.available).putmulti(new_available)
        if new_pending:
            txn.cursor(db=dbs.pending).putmulti(new_pending)
        txn.put(META_CODE_ID_NEXT, pack_u64(next_id), db=dbs.meta)
    tx.finish(OP_IMPORT)
    return IMPORT_STATUS_OK, statuses, code_ids


# -- orders -------------------------------------------------------------------------------

def _pick_lines(tx: Tx, lines: list):
    """Sellable codes for every (sku_no, quantity) line, in line order; None if any is short.
    Lines of the same sku share one FEFO pick."""
    wanted = {}
    for sku_no, quantity in lines:
        wanted[sku_no] = wanted.get(sku_no, 0) + quantity
    picks = {}
    for sku_no, quantity in wanted.items():
        picked = tx.pick(sku_no, quantity)
        if len(picked) < quantity:
            return None
        picks[sku_no] = picked
    ordered = []
    used = {}
    for sku_no, quantity in lines:
        start = used.get(sku_no, 0)
        ordered.extend(picks[sku_no][start:start + quantity])
        used[sku_no] = start + quantity
    return ordered


def reserve(tx: Tx, orders: list) -> list:
    """orders: [(order_id, [(sku, quantity)], hold_ms)]
    -> [(status, [code_id], hold_until_ms)], each order all-or-nothing. A retry of an order id
    with the same lines gets RESERVED again, with the codes the order holds now (none once it
    was released or expired)."""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    results = []
    hold_until_ms: cython.longlong
    record: CodeRecord
    for order_id, sku_lines, hold_ms in orders:
        hold_until_ms = tx.now_ms + hold_ms
        lines = []
        unknown_sku = False
        for sku, quantity in sku_lines:
            sku_no = tx.sku_no(sku, False)
            unknown_sku = unknown_sku or sku_no == 0
            lines.append((sku_no, quantity))
        existing = txn.get(order_id, db=dbs.orders)
        if existing is not None:
            order = unpack_order(existing)
            if [tuple(line) for line in order[4]] != lines or unknown_sku:
                results.append((RESERVE_STATUS_ORDER_ID_CONFLICT, [], 0))
            else:
                results.append((RESERVE_STATUS_RESERVED, order[5], order[1]))
            continue
        if unknown_sku:
            results.append((RESERVE_STATUS_SKU_NOT_FOUND, [], 0))
            continue
        picked = _pick_lines(tx, lines)
        if picked is None:
            results.append((RESERVE_STATUS_INSUFFICIENT_STOCK, [], 0))
            continue
        code_ids = []
        for code_id, record in picked:
            tx.take_available(code_id, record)
            tx.move(code_id, record, CODE_STATE_RESERVED)
            record.set_order_id(order_id)
            record.hold_until_ms = hold_until_ms
            tx.put_record(code_id, record)
            code_ids.append(code_id)
        order_no = tx.next_number(META_ORDER_NO_NEXT)
        txn.put(order_id, pack_order(ORDER_STATE_RESERVED, hold_until_ms, tx.now_ms, order_no,
                                     lines, code_ids), db=dbs.orders)
        txn.put(hold_key(hold_until_ms, order_id), b"", db=dbs.holds)
        results.append((RESERVE_STATUS_RESERVED, code_ids, hold_until_ms))
    tx.finish(OP_RESERVE)
    return results


def _sell(tx: Tx, order_id: bytes, code_id: cython.ulonglong, record: CodeRecord):
    tx.move(code_id, record, CODE_STATE_SOLD)
    record.set_order_id(order_id)
    record.hold_until_ms = 0
    record.sold_at_ms = tx.now_ms
    tx.put_record(code_id, record)


def confirm(tx: Tx, order_ids: list) -> list:
    """-> [(status, [code_id], late)]; late when the hold had been released and the order was
    filled again from stock."""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    results = []
    record: CodeRecord
    for order_id in order_ids:
        existing = txn.get(order_id, db=dbs.orders)
        if existing is None:
            results.append((CONFIRM_STATUS_ORDER_NOT_FOUND, [], False))
            continue
        state, hold_until_ms, created_ms, order_no, lines, code_ids = unpack_order(existing)
        if state == ORDER_STATE_PAID:
            results.append((CONFIRM_STATUS_SOLD, code_ids, False))
            continue
        if state == ORDER_STATE_RESERVED:
            for code_id in code_ids:
                record = tx.record(code_id)
                assert record.state == CODE_STATE_RESERVED and record.get_order_id() == order_id
                _sell(tx, order_id, code_id, record)
            txn.delete(hold_key(hold_until_ms, order_id), db=dbs.holds)
            late = False
        else:  # released or expired before payment: fill it again if stock allows
            picked = _pick_lines(tx, [tuple(line) for line in lines])
            if picked is None:
                results.append((CONFIRM_STATUS_ORDER_RELEASED_NO_STOCK, [], False))
                continue
            code_ids = []
            for code_id, record in picked:
                tx.take_available(code_id, record)
                _sell(tx, order_id, code_id, record)
                code_ids.append(code_id)
            late = True
        txn.put(order_id, pack_order(ORDER_STATE_PAID, 0, created_ms, order_no, lines, code_ids),
                db=dbs.orders)
        results.append((CONFIRM_STATUS_SOLD, code_ids, late))
    tx.finish(OP_CONFIRM)
    return results


def _release_order(tx: Tx, order_id: bytes, order: tuple, final_state: cython.int):
    _, hold_until_ms, created_ms, order_no, lines, code_ids = order
    for code_id in code_ids:
        record = tx.record(code_id)
        assert record.state == CODE_STATE_RESERVED and record.get_order_id() == order_id
        tx.move(code_id, record, CODE_STATE_AVAILABLE)
        record.set_order_id(b"")
        record.hold_until_ms = 0
        tx.put_record(code_id, record)
        tx.return_available(code_id, record)
    tx.txn.delete(hold_key(hold_until_ms, order_id), db=tx.dbs.holds)
    # a released order holds no codes: they may be sold to someone else from now on
    tx.txn.put(order_id, pack_order(final_state, 0, created_ms, order_no, lines, []),
               db=tx.dbs.orders)


def release(tx: Tx, order_ids: list) -> list:
    """-> [status]"""
    txn = tx.txn
    results = []
    for order_id in order_ids:
        existing = txn.get(order_id, db=tx.dbs.orders)
        if existing is None:
            results.append(RELEASE_STATUS_ORDER_NOT_FOUND)
            continue
        order = unpack_order(existing)
        if order[0] == ORDER_STATE_PAID:
            results.append(RELEASE_STATUS_ORDER_SOLD)
        elif order[0] == ORDER_STATE_RESERVED:
            _release_order(tx, order_id, order, ORDER_STATE_CANCELLED)
            results.append(RELEASE_STATUS_RELEASED)
        else:
            results.append(RELEASE_STATUS_RELEASED)
    tx.finish(OP_RELEASE)
    return results


def expire_holds(tx: Tx, limit: cython.Py_ssize_t) -> list:
    """Release up to `limit` orders whose hold deadline is at or before now -> [order_id]."""
    txn = tx.txn
    due = []
    cursor = txn.cursor(db=tx.dbs.holds)
    if cursor.first():
        for key in cursor.iternext(keys=True, values=False):
            hold_until_ms, order_id = unpack_hold_key(key)
            if hold_until_ms > tx.now_ms or len(due) >= limit:
                break
            due.append(order_id)
    for order_id in due:
        order = unpack_order(txn.get(order_id, db=tx.dbs.orders))
        assert order[0] == ORDER_STATE_RESERVED
        _release_order(tx, order_id, order, ORDER_STATE_EXPIRED)
    tx.finish(OP_EXPIRE)
    return due


# -- redemption ---------------------------------------------------------------------------

@cython.cfunc
def _redeem_ladder(record: CodeRecord, now_ms: cython.longlong) -> cython.int:
    state: cython.int = record.state
    if state == CODE_STATE_VOID:
        return REDEEM_STATUS_VOID
    if state == CODE_STATE_INVALID:
        return REDEEM_STATUS_INVALID
    if state == CODE_STATE_FROZEN:
        return REDEEM_STATUS_FROZEN
    if state == CODE_STATE_REDEEMED:
        return REDEEM_STATUS_ALREADY_REDEEMED
    if state != CODE_STATE_SOLD:
        return REDEEM_STATUS_NOT_SOLD
    if now_ms < record.valid_from_ms:
        return REDEEM_STATUS_NOT_YET_VALID
    if now_ms >= record.valid_until_ms:
        return REDEEM_STATUS_EXPIRED
    return REDEEM_STATUS_REDEEMED


def redeem(tx: Tx, items: list, terminal: bytes) -> list:
    """items: [(code, request_id)] -> [(status, code_id, redeemed_at_ms, redeemed_by)]

    A (terminal, request id) pair remembers its first answer: a retry gets it again, and the
    same pair with another code is REQUEST_ID_CONFLICT.

    The batch is read with one multi-get per sub-database, decided item by item in memory (in
    order, so a later item sees an earlier item's redemption), and written with one multi-put
    per sub-database."""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    lookup_hash = tx.keys.lookup_hash
    now_ms: cython.longlong = tx.now_ms
    count: cython.Py_ssize_t = len(items)
    digests = [None] * count
    request_keys = [None] * count
    i: cython.Py_ssize_t
    for i in range(count):
        raw, request_id = items[i]
        if check_code(raw) == IMPORT_CODE_STATUS_IMPORTED:
            digests[i] = lookup_hash(normalize_code(raw))
            request_keys[i] = request_key(terminal, request_id)
    wanted = [digest for digest in digests if digest is not None]
    code_keys = dict(txn.cursor(db=dbs.lookup).getmulti(wanted))
    stored_values = dict(txn.cursor(db=dbs.codes).getmulti(list(code_keys.values())))
    firsts = dict(txn.cursor(db=dbs.redemptions).getmulti(
        [key for key in request_keys if key is not None]))
    records = {}  # code key -> CodeRecord, unpacked once per batch
    new_firsts = []
    changed = {}
    results = []
    status: cython.int
    code_id: cython.ulonglong
    record: CodeRecord
    for i in range(count):
        digest = digests[i]
        if digest is None:
            results.append((REDEEM_STATUS_MALFORMED, 0, 0, b""))
            continue
        key = code_keys.get(digest)
        record = None
        code_id = 0
        if key is not None:
            code_id = code_id_of(key)
            record = records.get(key)
            if record is None:
                record = records[key] = unpack_record(stored_values[key])
        first = firsts.get(request_keys[i])
        if first is not None:
            results.append(_replay_redemption(tx, first, digest, terminal, records))
            continue
        status = _redeem_ladder(record, now_ms) if record is not None else REDEEM_STATUS_NOT_FOUND
        first = pack_redemption(status, code_id, now_ms, digest)
        firsts[request_keys[i]] = first
        new_firsts.append((request_keys[i], first))
        if status == REDEEM_STATUS_REDEEMED:
            tx.move(code_id, record, CODE_STATE_REDEEMED)
            record.redeemed_at_ms = now_ms
            record.set_terminal(terminal)
            changed[key] = record
            results.append((REDEEM_STATUS_REDEEMED, code_id, now_ms, terminal))
        elif status == REDEEM_STATUS_ALREADY_REDEEMED:
            results.append((status, code_id, record.redeemed_at_ms, record.get_terminal()))
        else:
            results.append((status, code_id, 0, b""))
    if new_firsts:
        new_firsts.sort()
        txn.cursor(db=dbs.redemptions).putmulti(new_firsts)
    if changed:
        txn.cursor(db=dbs.codes).putmulti(
            sorted([(key, record.pack()) for key, record in changed.items()]))
    tx.finish(OP_REDEEM)
    return results


def _replay_redemption(tx: Tx, first: bytes, digest: bytes, terminal: bytes,
                       records: dict) -> tuple:
    status, code_id, at_ms, first_digest = unpack_redemption(first)
    if not tx.keys.equal(first_digest, digest):
        return (REDEEM_STATUS_REQUEST_ID_CONFLICT, 0, 0, b"")
    if status == REDEEM_STATUS_REDEEMED:
        return (REDEEM_STATUS_REDEEMED, code_id, at_ms, terminal)
    if status == REDEEM_STATUS_ALREADY_REDEEMED:
        record: CodeRecord = records.get(code_key(code_id)) or tx.record(code_id)
        return (status, code_id, record.redeemed_at_ms, record.get_terminal())
    return (status, code_id, 0, b"")


# -- operator transitions -----------------------------------------------------------------

def _code_op(tx: Tx, refs: list, op: cython.int, transition) -> list:
    """Resolve each code and apply `transition` to it -> [(status, code_id, state after)]."""
    results = []
    record: CodeRecord
    for ref in refs:
        status, code_id, record = tx.resolve(ref)
        if status != CODE_OP_STATUS_DONE:
            results.append((status, 0, 0))
        elif not transition(tx, code_id, record):
            results.append((CODE_OP_STATUS_WRONG_STATE, code_id, record.state))
        else:
            tx.put_record(code_id, record)
            results.append((CODE_OP_STATUS_DONE, code_id, record.state))
    tx.finish(op)
    return results


def _freeze_one(tx: Tx, code_id: cython.ulonglong, record: CodeRecord) -> cython.bint:
    state: cython.int = record.state
    if state != CODE_STATE_AVAILABLE and state != CODE_STATE_SOLD:
        return False
    if state == CODE_STATE_AVAILABLE:
        tx.take_available(code_id, record)
    record.prior_state = state
    tx.move(code_id, record, CODE_STATE_FROZEN)
    return True


def _unfreeze_one(tx: Tx, code_id: cython.ulonglong, record: CodeRecord) -> cython.bint:
    if record.state != CODE_STATE_FROZEN:
        return False
    tx.move(code_id, record, record.prior_state)
    record.prior_state = 0
    if record.state == CODE_STATE_AVAILABLE:
        tx.return_available(code_id, record)
    return True


def _void_one(tx: Tx, code_id: cython.ulonglong, record: CodeRecord) -> cython.bint:
    if record.state != CODE_STATE_SOLD:
        return False
    tx.move(code_id, record, CODE_STATE_VOID)
    return True


def freeze(tx: Tx, refs: list) -> list:
    """AVAILABLE or SOLD -> FROZEN. -> [(status, code_id, state after)]"""
    return _code_op(tx, refs, OP_FREEZE, _freeze_one)


def unfreeze(tx: Tx, refs: list) -> list:
    """FROZEN -> the state it was frozen from."""
    return _code_op(tx, refs, OP_UNFREEZE, _unfreeze_one)


def void(tx: Tx, refs: list) -> list:
    """SOLD -> VOID (the sale is reversed)."""
    return _code_op(tx, refs, OP_VOID, _void_one)


def report_invalid(tx: Tx, items: list) -> list:
    """items: [(order_id, code_id)] -> [(status, replacement code id or 0)]

    The reported code becomes INVALID and, stock allowing, the soonest-expiring sellable code
    of the same sku is sold to the same order in the same transaction."""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    results = []
    for order_id, code_id in items:
        existing = txn.get(order_id, db=dbs.orders)
        if existing is None:
            results.append((REPORT_INVALID_STATUS_ORDER_NOT_FOUND, 0))
            continue
        state, hold_until_ms, created_ms, order_no, lines, code_ids = unpack_order(existing)
        if state != ORDER_STATE_PAID or code_id not in code_ids:
            results.append((REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER, 0))
            continue
        record = tx.record(code_id)
        if record.state == CODE_STATE_INVALID:  # a retry: the first answer again
            results.append((REPORT_INVALID_STATUS_REISSUED if record.link_code_id
                            else REPORT_INVALID_STATUS_NO_REPLACEMENT, record.link_code_id))
            continue
        if record.state != CODE_STATE_SOLD:
            results.append((REPORT_INVALID_STATUS_NOT_SOLD, 0))
            continue
        picked = tx.pick(record.sku_no, 1)
        tx.move(code_id, record, CODE_STATE_INVALID)
        if picked:
            replacement_id, replacement = picked[0]
            tx.take_available(replacement_id, replacement)
            _sell(tx, order_id, replacement_id, replacement)
            record.link_code_id = replacement_id
            code_ids.append(replacement_id)
            txn.put(order_id, pack_order(state, hold_until_ms, created_ms, order_no, lines,
                                         code_ids), db=dbs.orders)
        tx.put_record(code_id, record)
        results.append((REPORT_INVALID_STATUS_REISSUED if picked
                        else REPORT_INVALID_STATUS_NO_REPLACEMENT, record.link_code_id))
    tx.finish(OP_REPORT_INVALID)
    return results


# -- reads (any transaction, never the writer's) -------------------------------------------

def verify(txn, dbs: Dbs, lookup_hash, codes: list) -> list:
    """-> [(status, code_id, CodeRecord or None)]"""
    results = []
    for raw in codes:
        if check_code(raw) != IMPORT_CODE_STATUS_IMPORTED:
            results.append((VERIFY_STATUS_MALFORMED, 0, None))
            continue
        key = txn.get(lookup_hash(normalize_code(raw)), db=dbs.lookup)
        if key is None:
            results.append((VERIFY_STATUS_NOT_FOUND, 0, None))
            continue
        results.append((VERIFY_STATUS_FOUND, code_id_of(key),
                        unpack_record(txn.get(key, db=dbs.codes))))
    return results
