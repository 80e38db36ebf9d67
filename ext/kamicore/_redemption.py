"""Redemption: a point of sale redeems sold codes, at most once each and idempotently per
(terminal, request id); and verify, the read-only look at codes. Cython pure-Python mode, like
_engine.py (see there).

Guessing: each terminal's consecutive misses (a new answer NOT_FOUND or NOT_SOLD) are kept in
the redemptions db under the key terminal + NUL (a request key with an empty request id, which
no request has), as misses u32 LE + locked_until_ms i64 LE, and change in the commit of the
redemption that misses. The miss numbered limits.terminal_misses_lock locks the terminal until
limits.terminal_lock_seconds have passed (then it starts afresh) or it is unlocked: while it is
locked every item answers TERMINAL_LOCKED and nothing is looked up or remembered. A REDEEMED
answer starts the count afresh; a malformed code, a request id conflict and a retry neither
count nor reset. _redeem.pyx keeps the same rules in C.
"""

import struct

import cython

from kamicore import limits

# Tx, Dbs, the audit operation numbers, CodeRecord's fields and the codec functions are C-level
# when compiled (declared in _engine.pxd, _record.pxd and _codec.pxd), so per-item code reaches
# them without Python attribute lookups; status numbers are the generated _statuses' constants.
if cython.compiled:
    from cython.cimports.kamicore._codec import (
        check_code, code_id_of, code_key, normalize_code, pack_order, pack_redemption,
        request_key, unpack_order, unpack_redemption,
    )
    from cython.cimports.kamicore._engine import OP_LEAK, OP_REDEEM, Dbs, Tx
    from cython.cimports.kamicore._record import CodeRecord, unpack_record
    from cython.cimports.kamicore._statuses import (
        CODE_STATE_AVAILABLE, CODE_STATE_FROZEN, CODE_STATE_INVALID, CODE_STATE_REDEEMED,
        CODE_STATE_RESERVED, CODE_STATE_SOLD, CODE_STATE_VOID, IMPORT_CODE_STATUS_IMPORTED,
        ORDER_STATE_CANCELLED, REDEEM_STATUS_ALREADY_REDEEMED,
        REDEEM_STATUS_EXPIRED, REDEEM_STATUS_FROZEN, REDEEM_STATUS_INVALID, REDEEM_STATUS_MALFORMED,
        REDEEM_STATUS_NOT_FOUND, REDEEM_STATUS_NOT_SOLD, REDEEM_STATUS_NOT_YET_VALID,
        REDEEM_STATUS_REDEEMED, REDEEM_STATUS_REQUEST_ID_CONFLICT, REDEEM_STATUS_TERMINAL_LOCKED,
        REDEEM_STATUS_VOID,
        VERIFY_STATUS_FOUND, VERIFY_STATUS_MALFORMED, VERIFY_STATUS_NOT_FOUND,
    )
else:
    from ._codec import (
        check_code, code_id_of, code_key, normalize_code, pack_order, pack_redemption,
        request_key, unpack_order, unpack_redemption,
    )
    from ._engine import OP_LEAK, OP_REDEEM, Dbs, Tx
    from ._record import CodeRecord, unpack_record
    from ._statuses import (
        CODE_STATE_AVAILABLE, CODE_STATE_FROZEN, CODE_STATE_INVALID, CODE_STATE_REDEEMED,
        CODE_STATE_RESERVED, CODE_STATE_SOLD, CODE_STATE_VOID, IMPORT_CODE_STATUS_IMPORTED,
        ORDER_STATE_CANCELLED, REDEEM_STATUS_ALREADY_REDEEMED,
        REDEEM_STATUS_EXPIRED, REDEEM_STATUS_FROZEN, REDEEM_STATUS_INVALID, REDEEM_STATUS_MALFORMED,
        REDEEM_STATUS_NOT_FOUND, REDEEM_STATUS_NOT_SOLD, REDEEM_STATUS_NOT_YET_VALID,
        REDEEM_STATUS_REDEEMED, REDEEM_STATUS_REQUEST_ID_CONFLICT, REDEEM_STATUS_TERMINAL_LOCKED,
        REDEEM_STATUS_VOID,
        VERIFY_STATUS_FOUND, VERIFY_STATUS_MALFORMED, VERIFY_STATUS_NOT_FOUND,
    )


from ._orders import _release_order  # noqa: E402 - after the C-level names above

_MISSES = struct.Struct("<Iq")  # misses, locked_until_ms
_misses_lock = cython.declare(cython.uint, limits.terminal_misses_lock)
_lock_ms = cython.declare(cython.longlong, limits.terminal_lock_seconds * 1000)


def _miss_key(terminal: bytes) -> bytes:
    """A terminal's miss record in the redemptions db."""
    return terminal + b"\0"


def _stored_misses(txn, dbs: Dbs, terminal: bytes, now_ms: cython.longlong) -> tuple:
    """-> (misses, locked_until_ms) as they stand at now_ms (a cool-down that passed has
    cleared both), and whether the stored record says otherwise (it is then rewritten)."""
    value = txn.get(_miss_key(terminal), db=dbs.redemptions)
    if value is None:
        return 0, 0, False
    misses, locked_until_ms = _MISSES.unpack(value)
    if locked_until_ms and locked_until_ms <= now_ms:
        return 0, 0, True
    return misses, locked_until_ms, False


def _store_misses(txn, dbs: Dbs, terminal: bytes, misses, locked_until_ms) -> None:
    if misses or locked_until_ms:
        txn.put(_miss_key(terminal), _MISSES.pack(misses, locked_until_ms), db=dbs.redemptions)
    else:
        txn.delete(_miss_key(terminal), db=dbs.redemptions)


def terminal_state(txn, dbs: Dbs, terminal: bytes, now_ms: cython.longlong) -> tuple:
    """-> (misses, locked_until_ms) of a terminal at now_ms; any transaction will do."""
    misses, locked_until_ms, _ = _stored_misses(txn, dbs, terminal, now_ms)
    return misses, locked_until_ms


def count_misses(tx: Tx, terminal: bytes, count: cython.uint) -> tuple:
    """Misses found outside redeem (a terminal's VerifyCode) -> (was_locked, misses,
    locked_until_ms); a locked terminal's misses are not counted (it was answered LOCKED)."""
    misses, locked_until_ms, stale = _stored_misses(tx.txn, tx.dbs, terminal, tx.now_ms)
    if locked_until_ms:
        return True, misses, locked_until_ms
    misses += count
    if misses >= _misses_lock:
        locked_until_ms = tx.now_ms + _lock_ms
    _store_misses(tx.txn, tx.dbs, terminal, misses, locked_until_ms)
    return False, misses, locked_until_ms


def unlock_terminal(tx: Tx, terminal: bytes) -> tuple:
    """Clear a terminal's misses and lock -> (misses, locked_until_ms) it had."""
    misses, locked_until_ms, stale = _stored_misses(tx.txn, tx.dbs, terminal, tx.now_ms)
    if misses or locked_until_ms or stale:
        _store_misses(tx.txn, tx.dbs, terminal, 0, 0)
    return misses, locked_until_ms


@cython.cfunc
def _redeem_ladder(record: CodeRecord, now_ms: cython.longlong) -> cython.int:
    state: cython.int = record.state
    if state == CODE_STATE_VOID:
        return REDEEM_STATUS_VOID
    if state == CODE_STATE_INVALID:
        return REDEEM_STATUS_INVALID
    if state == CODE_STATE_FROZEN:  # frozen before its sale (a leak): still never sold
        return REDEEM_STATUS_FROZEN if record.prior_state == CODE_STATE_SOLD else (
            REDEEM_STATUS_NOT_SOLD)
    if state == CODE_STATE_REDEEMED:
        return REDEEM_STATUS_ALREADY_REDEEMED
    if state != CODE_STATE_SOLD:
        return REDEEM_STATUS_NOT_SOLD
    if now_ms < record.valid_from_ms:
        return REDEEM_STATUS_NOT_YET_VALID
    if now_ms >= record.valid_until_ms:
        return REDEEM_STATUS_EXPIRED
    return REDEEM_STATUS_REDEEMED


def redeem(tx: Tx, items: list, terminal: bytes, replay_only: cython.bint = False):
    """items: [(code, request_id)] -> [(status, code_id, redeemed_at_ms, redeemed_by)]

    A (terminal, request id) pair remembers its first answer: a retry gets it again, and the
    same pair with another code is REQUEST_ID_CONFLICT. replay_only: answer only when every
    item retries a committed request (nothing would be written), else None; any transaction
    will do, a read snapshot too.

    The batch is read with one multi-get per sub-database, decided item by item in memory (in
    order, so a later item sees an earlier item's redemption), and written with one multi-put
    per sub-database."""
    txn = tx.txn
    dbs: Dbs = tx.dbs
    lookup_hash = tx.keys.lookup_hash
    now_ms: cython.longlong = tx.now_ms
    count: cython.Py_ssize_t = len(items)
    misses: cython.uint
    locked_until_ms: cython.longlong
    misses, locked_until_ms, stale = _stored_misses(txn, dbs, terminal, now_ms)
    if replay_only and locked_until_ms:
        return None  # the writer answers a locked terminal, retries too
    if locked_until_ms:  # nothing to look up: every item is refused
        return [(REDEEM_STATUS_TERMINAL_LOCKED, 0, 0, b"")] * count
    misses_before: cython.uint = misses
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
    if replay_only and (None in request_keys or len(firsts) < len(set(request_keys))):
        return None
    records = {}  # code key -> CodeRecord, unpacked once per batch
    new_firsts = []
    changed = {}
    results = []
    status: cython.int
    code_id: cython.ulonglong
    record: CodeRecord
    for i in range(count):
        if locked_until_ms:  # an earlier item of this batch was the miss that locked it
            results.append((REDEEM_STATUS_TERMINAL_LOCKED, 0, 0, b""))
            continue
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
        if status == REDEEM_STATUS_NOT_FOUND or status == REDEEM_STATUS_NOT_SOLD:
            misses += 1
            if misses >= _misses_lock:
                locked_until_ms = now_ms + _lock_ms
        elif status == REDEEM_STATUS_REDEEMED:
            misses = 0
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
    if replay_only:
        return results
    if misses != misses_before or locked_until_ms or stale:
        _store_misses(txn, dbs, terminal, misses, locked_until_ms)
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


# -- leaks -------------------------------------------------------------------------------

def freeze_leaked(tx: Tx, code_ids: list) -> int:
    """Codes a terminal presented before their sale (redeem answered NOT_SOLD) -> FROZEN, in
    the redemption's commit: a code circulating before its sale has leaked and must never
    reach a buyer. An AVAILABLE code leaves the stock; a RESERVED one leaves its order, which
    gets another sellable code of the SKU in its place (FEFO), or, when there is none, is
    released (CANCELLED, its other codes back in stock): ConfirmPayment then fills it again
    from stock or answers ORDER_RELEASED_NO_STOCK, never with the leaked code. Frozen codes
    keep AVAILABLE as the state to unfreeze to. One audit block (leak) names the terminal
    (the actor). Codes no longer AVAILABLE or RESERVED are left as they are. -> how many."""
    frozen: cython.int = 0
    record: CodeRecord
    for code_id in code_ids:
        record = tx.record(code_id)
        state: cython.int = record.state
        if state != CODE_STATE_AVAILABLE and state != CODE_STATE_RESERVED:
            continue
        order_id = record.get_order_id()
        if state == CODE_STATE_AVAILABLE:
            tx.take_available(code_id, record)
        record.set_order_id(b"")
        record.hold_until_ms = 0
        record.prior_state = CODE_STATE_AVAILABLE
        tx.move(code_id, record, CODE_STATE_FROZEN)
        tx.put_record(code_id, record)
        if state == CODE_STATE_RESERVED:
            _swap_out(tx, order_id, code_id, record.sku_no)
        frozen += 1
    tx.finish(OP_LEAK)
    return frozen


def _swap_out(tx: Tx, order_id: bytes, code_id: cython.ulonglong, sku_no: cython.uint):
    """Take a leaked code out of its unpaid order: another in its place, or release it."""
    dbs: Dbs = tx.dbs
    state, hold_until_ms, created_ms, order_no, lines, code_ids = unpack_order(
        tx.txn.get(order_id, db=dbs.orders))
    picked = tx.pick(sku_no, 1)
    if not picked:
        remaining = [other for other in code_ids if other != code_id]
        _release_order(tx, order_id, (state, hold_until_ms, created_ms, order_no, lines,
                                      remaining), ORDER_STATE_CANCELLED)
        return
    replacement: cython.ulonglong
    record: CodeRecord
    replacement, record = picked[0]
    tx.take_available(replacement, record)
    tx.move(replacement, record, CODE_STATE_RESERVED)
    record.set_order_id(order_id)
    record.hold_until_ms = hold_until_ms
    tx.put_record(replacement, record)
    code_ids = [replacement if other == code_id else other for other in code_ids]
    tx.txn.put(order_id, pack_order(state, hold_until_ms, created_ms, order_no, lines,
                                    code_ids), db=dbs.orders)


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
