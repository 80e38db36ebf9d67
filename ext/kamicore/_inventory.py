"""Inventory operations: import codes into a batch, and the operator's transitions of single
codes (freeze, unfreeze, void). Cython pure-Python mode, like _engine.py (see there).
"""

import cython

from kamicore import limits

# Tx, Dbs, the audit operation numbers, CodeRecord's fields and the codec functions are C-level
# when compiled (declared in _engine.pxd, _record.pxd and _codec.pxd), so per-item code reaches
# them without Python attribute lookups; status numbers are the generated _statuses' constants.
if cython.compiled:
    from cython.cimports.kamicore._codec import (
        available_key, check_code, code_key, normalize_code, pack_batch, pack_u32, pack_u64,
        u32_key, unpack_batch, unpack_u32, unpack_u64,
    )
    from cython.cimports.kamicore._engine import OP_FREEZE, OP_IMPORT, OP_UNFREEZE, OP_VOID, Dbs, Tx
    from cython.cimports.kamicore._record import CodeRecord, new_record
    from cython.cimports.kamicore._statuses import (
        CODE_OP_STATUS_DONE, CODE_OP_STATUS_WRONG_STATE, CODE_STATE_AVAILABLE, CODE_STATE_FROZEN,
        CODE_STATE_SOLD, CODE_STATE_VOID, IMPORT_CODE_STATUS_DUPLICATE, IMPORT_CODE_STATUS_IMPORTED,
        IMPORT_STATUS_BATCH_MISMATCH, IMPORT_STATUS_OK,
    )
else:
    from ._codec import (
        available_key, check_code, code_key, normalize_code, pack_batch, pack_u32, pack_u64,
        u32_key, unpack_batch, unpack_u32, unpack_u64,
    )
    from ._engine import OP_FREEZE, OP_IMPORT, OP_UNFREEZE, OP_VOID, Dbs, Tx
    from ._record import CodeRecord, new_record
    from ._statuses import (
        CODE_OP_STATUS_DONE, CODE_OP_STATUS_WRONG_STATE, CODE_STATE_AVAILABLE, CODE_STATE_FROZEN,
        CODE_STATE_SOLD, CODE_STATE_VOID, IMPORT_CODE_STATUS_DUPLICATE, IMPORT_CODE_STATUS_IMPORTED,
        IMPORT_STATUS_BATCH_MISMATCH, IMPORT_STATUS_OK,
    )

META_CODE_ID_NEXT = b"code_id_next"  # meta db: the next code id (u64 LE)
META_BATCH_NO_NEXT = b"batch_no_next"  # meta db: the next batch number (u64 LE)


# -- import -------------------------------------------------------------------------------

def _open_batch(tx: Tx, sku: bytes, batch: bytes, supplier: bytes,
                unit_cost_micros: cython.longlong, valid_from_ms: cython.longlong,
                valid_until_ms: cython.longlong) -> tuple:
    """The batch an import adds to, created on first use -> (status, sku number, batch number);
    BATCH_MISMATCH when the batch exists with other terms. Shared with kamicore._import."""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    sku_no: cython.uint
    batch_no: cython.uint
    existing = txn.get(batch, db=dbs.batch_names)
    if existing is not None:
        sku_no = tx.sku_no(sku, False)
        batch_no = unpack_u32(existing)
        info = unpack_batch(txn.get(u32_key(batch_no), db=dbs.batches))
        if (info["sku_no"] != sku_no or info["supplier"] != supplier
                or info["unit_cost_micros"] != unit_cost_micros
                or info["valid_from_ms"] != valid_from_ms
                or info["valid_until_ms"] != valid_until_ms):
            return IMPORT_STATUS_BATCH_MISMATCH, 0, 0
    else:
        sku_no = tx.sku_no(sku, True)
        batch_no = tx.next_number(META_BATCH_NO_NEXT)
        if batch_no >= limits.batches_max:
            raise OverflowError(f"more than {limits.batches_max} batches")
        key_id, wrapped = tx.keys.new_wrapped_data_key(u32_key(batch_no))
        txn.put(u32_key(batch_no),
                pack_batch(sku_no, valid_from_ms, valid_until_ms, unit_cost_micros,
                                  key_id, batch, supplier, wrapped), db=dbs.batches)
        txn.put(batch, pack_u32(batch_no), db=dbs.batch_names)
    return IMPORT_STATUS_OK, sku_no, batch_no


def import_codes(tx: Tx, sku: bytes, batch: bytes, supplier: bytes,
                 unit_cost_micros: cython.longlong, valid_from_ms: cython.longlong,
                 valid_until_ms: cython.longlong, codes: list) -> tuple:
    """-> (batch status, [per-code status], [code id or 0])"""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    status, sku_no, batch_no = _open_batch(tx, sku, batch, supplier, unit_cost_micros,
                                           valid_from_ms, valid_until_ms)
    if status != IMPORT_STATUS_OK:
        return status, [], []
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
