"""Order operations: reserve codes for an order, confirm (sell) or release them, expire unpaid
holds, and report a sold code invalid (with a replacement, stock allowing). Cython pure-Python
mode, like _engine.py (see there).
"""

import cython

# Tx, Dbs, the audit operation numbers, CodeRecord's fields and the codec functions are C-level
# when compiled (declared in _engine.pxd, _record.pxd and _codec.pxd), so per-item code reaches
# them without Python attribute lookups; status numbers are the generated _statuses' constants.
if cython.compiled:
    from cython.cimports.kamicore._codec import hold_key, pack_order, unpack_hold_key, unpack_order
    from cython.cimports.kamicore._engine import (
        OP_CONFIRM, OP_EXPIRE, OP_RELEASE, OP_REPORT_INVALID, OP_RESERVE, Dbs, Tx,
    )
    from cython.cimports.kamicore._record import CodeRecord
    from cython.cimports.kamicore._statuses import (
        CODE_STATE_AVAILABLE, CODE_STATE_INVALID, CODE_STATE_RESERVED, CODE_STATE_SOLD,
        CONFIRM_STATUS_ORDER_NOT_FOUND, CONFIRM_STATUS_ORDER_RELEASED_NO_STOCK, CONFIRM_STATUS_SOLD,
        ORDER_STATE_CANCELLED, ORDER_STATE_EXPIRED, ORDER_STATE_PAID, ORDER_STATE_RESERVED,
        RELEASE_STATUS_ORDER_NOT_FOUND, RELEASE_STATUS_ORDER_SOLD, RELEASE_STATUS_RELEASED,
        REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER, REPORT_INVALID_STATUS_NO_REPLACEMENT,
        REPORT_INVALID_STATUS_NOT_SOLD, REPORT_INVALID_STATUS_ORDER_NOT_FOUND,
        REPORT_INVALID_STATUS_REISSUED, RESERVE_STATUS_INSUFFICIENT_STOCK,
        RESERVE_STATUS_ORDER_ID_CONFLICT, RESERVE_STATUS_RESERVED, RESERVE_STATUS_SKU_NOT_FOUND,
    )
else:
    from ._codec import hold_key, pack_order, unpack_hold_key, unpack_order
    from ._engine import OP_CONFIRM, OP_EXPIRE, OP_RELEASE, OP_REPORT_INVALID, OP_RESERVE, Dbs, Tx
    from ._record import CodeRecord
    from ._statuses import (
        CODE_STATE_AVAILABLE, CODE_STATE_INVALID, CODE_STATE_RESERVED, CODE_STATE_SOLD,
        CONFIRM_STATUS_ORDER_NOT_FOUND, CONFIRM_STATUS_ORDER_RELEASED_NO_STOCK, CONFIRM_STATUS_SOLD,
        ORDER_STATE_CANCELLED, ORDER_STATE_EXPIRED, ORDER_STATE_PAID, ORDER_STATE_RESERVED,
        RELEASE_STATUS_ORDER_NOT_FOUND, RELEASE_STATUS_ORDER_SOLD, RELEASE_STATUS_RELEASED,
        REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER, REPORT_INVALID_STATUS_NO_REPLACEMENT,
        REPORT_INVALID_STATUS_NOT_SOLD, REPORT_INVALID_STATUS_ORDER_NOT_FOUND,
        REPORT_INVALID_STATUS_REISSUED, RESERVE_STATUS_INSUFFICIENT_STOCK,
        RESERVE_STATUS_ORDER_ID_CONFLICT, RESERVE_STATUS_RESERVED, RESERVE_STATUS_SKU_NOT_FOUND,
    )

META_ORDER_NO_NEXT = b"order_no_next"  # meta db: the next order number (u64 LE)


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
