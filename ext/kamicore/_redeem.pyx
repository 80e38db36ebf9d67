# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Redemption in C: a batch of (code, request id) crosses into this module once, and every
per-item step - validation, normalisation, the lookup HMAC, the LMDB reads, the ladder, the
writes, the counters and the audit block - runs in C with the GIL released.

The rules are those of the Python operation in _redemption.py (the interpreted engine and the
reference model hold this one to them, answer by answer): a (terminal, request id) pair
remembers its first answer, so a retry gets it again and the same pair with another code is
REQUEST_ID_CONFLICT; items are decided in order, so a later item sees an earlier item's
redemption; a malformed code is never looked up and leaves no record; a terminal's
consecutive misses lock it (_redemption.py has the rules, _misses.pxd the C). The layouts are
_codec.py's (code records, redemption records, counter keys) and _engine.py's (audit blocks).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy

from kamicore._lmdb cimport (
    MDB_MAP_FULL, MDB_NOTFOUND, MDB_dbi, MDB_txn, MDB_val, Database, Transaction, mdb_get,
    mdb_strerror,
)
from kamicore._misses cimport MISSES_MALFORMED, _miss, _read_misses, _write_misses
from kamicore._native cimport (
    DIGEST_BYTES, EVENT_BYTES, HEADER_BYTES, SHA256_CTX, Move, _append_audit, _big_u64,
    _count_moves, _hmac, _hmac_states, _i64, _normalize, _put, _put_big, _same_digest, _tally,
    _u32, _with_terminal,
)
from kamicore._statuses cimport (
    CODE_STATE_FROZEN, CODE_STATE_INVALID, CODE_STATE_REDEEMED, CODE_STATE_SOLD, CODE_STATE_VOID,
    REDEEM_STATUS_ALREADY_REDEEMED, REDEEM_STATUS_EXPIRED, REDEEM_STATUS_FROZEN,
    REDEEM_STATUS_INVALID, REDEEM_STATUS_MALFORMED, REDEEM_STATUS_NOT_FOUND,
    REDEEM_STATUS_NOT_SOLD, REDEEM_STATUS_NOT_YET_VALID, REDEEM_STATUS_REDEEMED,
    REDEEM_STATUS_REQUEST_ID_CONFLICT, REDEEM_STATUS_TERMINAL_LOCKED, REDEEM_STATUS_VOID,
)

from kamicore import _lmdb, limits


cdef size_t _code_bytes_max = limits.code_bytes_max
cdef uint32_t _misses_lock = limits.terminal_misses_lock
cdef int64_t _lock_ms = limits.terminal_lock_seconds * 1000
cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing of code ids
cdef uint64_t FNV_OFFSET = 1469598103934665603  # FNV-1a over request keys
cdef uint64_t FNV_PRIME = 1099511628211
assert limits.code_bytes_max <= NORMALIZED_MAX
assert limits.terminal_bytes_max + 1 + limits.request_id_bytes_max <= REQUEST_KEY_MAX


cdef int _ladder(const uint8_t* record, int64_t now_ms) noexcept nogil:
    cdef int state = record[1]
    if state == CODE_STATE_VOID:
        return REDEEM_STATUS_VOID
    if state == CODE_STATE_INVALID:
        return REDEEM_STATUS_INVALID
    if state == CODE_STATE_FROZEN:  # frozen before its sale (a leak): still never sold
        return REDEEM_STATUS_FROZEN if record[2] == CODE_STATE_SOLD else REDEEM_STATUS_NOT_SOLD
    if state == CODE_STATE_REDEEMED:
        return REDEEM_STATUS_ALREADY_REDEEMED
    if state != CODE_STATE_SOLD:
        return REDEEM_STATUS_NOT_SOLD
    if now_ms < _i64(record + 12):
        return REDEEM_STATUS_NOT_YET_VALID
    if now_ms >= _i64(record + 20):
        return REDEEM_STATUS_EXPIRED
    return REDEEM_STATUS_REDEEMED


cdef class _Batch:
    """The C state of one redeem call (declared in _redeem.pxd); freed when the call ends."""

    def __cinit__(self, size_t count):
        self.count = count
        self.table_size = 16
        while self.table_size < 2 * count + 1:
            self.table_size *= 2
        self.items = <Item*>calloc(count or 1, sizeof(Item))
        # an item reads at most two codes: its own, and the one its first answer names
        self.slots = <Slot*>calloc(2 * count or 1, sizeof(Slot))
        self.moves = <Move*>calloc(count or 1, sizeof(Move))
        self.slot_index = <int*>malloc(self.table_size * sizeof(int))
        self.key_index = <int*>malloc(self.table_size * sizeof(int))
        if not (self.items and self.slots and self.moves and self.slot_index and self.key_index):
            raise MemoryError()
        cdef size_t i
        for i in range(self.table_size):
            self.slot_index[i] = -1
            self.key_index[i] = -1

    def __dealloc__(self):
        cdef size_t i
        if self.slots is not NULL:
            for i in range(self.slot_count):
                free(self.slots[i].record)
        free(self.items)
        free(self.slots)
        free(self.moves)
        free(self.slot_index)
        free(self.key_index)
        free(self.events)

    cdef int slot_of(self, MDB_txn* txn, MDB_dbi codes, uint64_t code_id,
                     const uint8_t* code_key) noexcept nogil:
        """The batch's slot of a code, read from the store on first sight; -1 if absent."""
        cdef size_t at = (code_id * GOLDEN) & (self.table_size - 1)
        cdef MDB_val key, value
        cdef Slot* slot
        while self.slot_index[at] >= 0:
            if self.slots[self.slot_index[at]].code_id == code_id:
                return self.slot_index[at]
            at = (at + 1) & (self.table_size - 1)
        key.mv_size, key.mv_data = 8, <void*>code_key
        if mdb_get(txn, codes, &key, &value) != 0 or value.mv_size < HEADER_BYTES:
            return -1
        slot = &self.slots[self.slot_count]
        slot.record = <uint8_t*>malloc(value.mv_size)
        if slot.record is NULL:
            return -2
        memcpy(slot.record, value.mv_data, value.mv_size)
        slot.length = value.mv_size
        slot.code_id = code_id
        self.slot_index[at] = <int>self.slot_count
        self.slot_count += 1
        return self.slot_index[at]

    cdef int earlier_first(self, size_t i) noexcept nogil:
        """The first item before `i` with i's request key (-1: none; then i is registered as
        that key's first). Items are decided in order, so it has its first answer by now."""
        cdef Item* item = &self.items[i]
        cdef uint64_t hash = FNV_OFFSET
        cdef size_t k, at
        cdef Item* other
        for k in range(item.request_key_length):
            hash = (hash ^ item.request_key[k]) * FNV_PRIME
        at = hash & (self.table_size - 1)
        while self.key_index[at] >= 0:
            other = &self.items[self.key_index[at]]
            if (other.request_key_length == item.request_key_length
                    and memcmp(other.request_key, item.request_key,
                               item.request_key_length) == 0):
                return self.key_index[at]
            at = (at + 1) & (self.table_size - 1)
        self.key_index[at] = <int>i
        return -1

    cdef void answer_from_record(self, Item* item, Slot* slot) noexcept nogil:
        """ALREADY_REDEEMED: when and by which terminal, as the record says now."""
        cdef const uint8_t* record = slot.record
        item.at_ms = _i64(record + 44)
        if slot.changed:
            item.by = 1  # redeemed earlier in this batch, by this caller's terminal
            return
        cdef size_t order_length = record[60]
        item.by_length = record[61]
        memcpy(item.by_copy, record + HEADER_BYTES + order_length, item.by_length)
        item.by = 2


cdef int _decide(_Batch batch, MDB_txn* txn, MDB_dbi lookup, MDB_dbi codes,
                 MDB_dbi redemptions, const SHA256_CTX* inner, const SHA256_CTX* outer,
                 int64_t now_ms, bint replay_only) noexcept nogil:
    """Read what the batch needs and decide every item, in order; 0 or an LMDB error.
    replay_only: NOT_A_REPLAY as soon as an item is not the retry of a committed request."""
    cdef size_t i, length
    cdef uint8_t normalized[255]
    cdef MDB_val key, value
    cdef Item* item
    cdef Slot* slot
    cdef int rc, earlier, first_status
    cdef uint64_t first_code_id
    for i in range(batch.count):
        item = &batch.items[i]
        item.slot = -1
        if batch.misses.locked_until_ms:  # locked before the call, or by an earlier item's miss
            item.status = REDEEM_STATUS_TERMINAL_LOCKED
            continue
        length = _normalize(item.raw, item.raw_length, _code_bytes_max, normalized)
        if length == 0:
            if replay_only:
                return NOT_A_REPLAY
            item.malformed = True
            item.status = REDEEM_STATUS_MALFORMED
            continue
        _hmac(inner, outer, normalized, length, item.digest)
        key.mv_size, key.mv_data = DIGEST_BYTES, item.digest
        rc = mdb_get(txn, lookup, &key, &value)
        if rc == 0 and value.mv_size == 8:
            item.slot = batch.slot_of(txn, codes, _big_u64(<uint8_t*>value.mv_data),
                                      <uint8_t*>value.mv_data)
            if item.slot == -2:
                return -2
        elif rc != 0 and rc != MDB_NOTFOUND:
            return rc
        earlier = batch.earlier_first(i)
        if earlier >= 0:
            # an earlier item of this batch with the same request key replayed or made its
            # first answer: that is this one's first answer too
            memcpy(item.first, batch.items[earlier].first, FIRST_BYTES)
            item.has_first = True
            item.stored_first = batch.items[earlier].stored_first
        else:
            key.mv_size, key.mv_data = item.request_key_length, item.request_key
            rc = mdb_get(txn, redemptions, &key, &value)
            if rc == 0 and value.mv_size == FIRST_BYTES:
                memcpy(item.first, value.mv_data, FIRST_BYTES)
                item.has_first = item.stored_first = True
            elif rc != 0 and rc != MDB_NOTFOUND:
                return rc
        if replay_only and not item.stored_first:
            return NOT_A_REPLAY
        if item.has_first:  # a retry of a request id: the first answer again
            first_status = item.first[0]
            memcpy(&first_code_id, item.first + 1, 8)
            if not _same_digest(item.first + 17, item.digest):
                item.status = REDEEM_STATUS_REQUEST_ID_CONFLICT
                continue
            item.status, item.code_id = first_status, first_code_id
            if first_status == REDEEM_STATUS_REDEEMED:
                item.at_ms = _i64(item.first + 9)
                item.by = 1
            elif first_status == REDEEM_STATUS_ALREADY_REDEEMED:
                rc = _slot_by_id(batch, txn, codes, first_code_id)
                if rc < 0:
                    return -3
                batch.answer_from_record(item, &batch.slots[rc])
            continue
        if item.slot < 0:
            item.status = REDEEM_STATUS_NOT_FOUND
        else:
            slot = &batch.slots[item.slot]
            item.code_id = slot.code_id
            item.status = _ladder(slot.record, now_ms)
            if item.status == REDEEM_STATUS_REDEEMED:
                _tally(batch.moves, &batch.move_count, _u32(slot.record + 4),
                       _u32(slot.record + 8))
                slot.record[1] = CODE_STATE_REDEEMED
                memcpy(slot.record + 44, &now_ms, 8)
                slot.changed = True
                item.at_ms = now_ms
                item.by = 1
            elif item.status == REDEEM_STATUS_ALREADY_REDEEMED:
                batch.answer_from_record(item, slot)
        item.first[0] = item.status
        memcpy(item.first + 1, &item.code_id, 8)
        memcpy(item.first + 9, &now_ms, 8)
        memcpy(item.first + 17, item.digest, DIGEST_BYTES)
        item.new_first = True
        if item.status == REDEEM_STATUS_NOT_FOUND or item.status == REDEEM_STATUS_NOT_SOLD:
            _miss(&batch.misses, now_ms, _misses_lock, _lock_ms)
        elif item.status == REDEEM_STATUS_REDEEMED:
            batch.misses.misses = 0
        if item.status != REDEEM_STATUS_ALREADY_REDEEMED and item.status != REDEEM_STATUS_REDEEMED:
            item.at_ms = 0
    return 0


cdef int _slot_by_id(_Batch batch, MDB_txn* txn, MDB_dbi codes,
                     uint64_t code_id) noexcept nogil:
    cdef uint8_t key[8]
    _put_big(key, code_id, 8)
    return batch.slot_of(txn, codes, code_id, key)


cdef int _write(_Batch batch, MDB_txn* txn, MDB_dbi codes, MDB_dbi redemptions,
                MDB_dbi counters, MDB_dbi batch_counters, const uint8_t* terminal,
                size_t terminal_length) noexcept nogil:
    """Every new first answer, every redeemed record, and the counters; 0 or an error."""
    cdef size_t i, length
    cdef Item* item
    cdef Slot* slot
    cdef uint8_t key[8]
    cdef uint8_t* record
    cdef int rc
    for i in range(batch.count):
        item = &batch.items[i]
        if item.new_first:
            rc = _put(txn, redemptions, item.request_key, item.request_key_length, item.first,
                      FIRST_BYTES, 0)
            if rc:
                return rc
    for i in range(batch.slot_count):
        slot = &batch.slots[i]
        if not slot.changed:
            continue
        record = _with_terminal(slot.record, slot.length, terminal, terminal_length, &length)
        if record is NULL:
            return -2
        _put_big(key, slot.code_id, 8)
        rc = _put(txn, codes, key, 8, record, length, 0)
        free(record)
        if rc:
            return rc
    return _count_moves(txn, counters, batch_counters, batch.moves, batch.move_count,
                        CODE_STATE_SOLD, CODE_STATE_REDEEMED)


cdef int _audit(_Batch batch, MDB_txn* txn, MDB_dbi meta, MDB_dbi audit, MDB_dbi outbox,
                int64_t now_ms, const uint8_t* actor, size_t actor_length) noexcept nogil:
    """One audit block with an event per redemption made now, in item order, and its outbox
    record (each redemption is a business event: kamicore.domain.events)."""
    cdef size_t i
    cdef uint32_t count = 0
    cdef Item* item
    for i in range(batch.count):
        count += batch.items[i].new_first and batch.items[i].status == REDEEM_STATUS_REDEEMED
    if count == 0:
        return 0
    cdef uint8_t* event = <uint8_t*>malloc(count * EVENT_BYTES)
    if event is NULL:
        return -2
    batch.events = event
    for i in range(batch.count):
        item = &batch.items[i]
        if item.new_first and item.status == REDEEM_STATUS_REDEEMED:
            memcpy(event, &item.code_id, 8)
            event[8], event[9] = CODE_STATE_SOLD, CODE_STATE_REDEEMED
            memcpy(event + 10, batch.slots[item.slot].record + 4, 4)  # the sku number
            event += EVENT_BYTES
    return _append_audit(txn, meta, audit, outbox, now_ms, OP_REDEEM, actor, actor_length,
                         batch.events, count)


def redeem(tx, list items, bytes terminal, bint replay_only=False):
    """items: [(code, request_id)] -> [(status, code_id, redeemed_at_ms, redeemed_by)], the
    whole batch decided and written in C without the GIL (see the module docstring).

    replay_only: answer only when every item retries a committed request (its answer is then
    settled, and nothing would be written), else None; any transaction will do, a read
    snapshot too."""
    cdef Transaction transaction = tx.txn
    cdef MDB_txn* txn = transaction.txn
    if txn is NULL:
        raise _lmdb.Error("redeem: the transaction has ended")
    dbs = tx.dbs
    cdef MDB_dbi lookup = (<Database>dbs.lookup).dbi, codes = (<Database>dbs.codes).dbi
    cdef MDB_dbi redemptions = (<Database>dbs.redemptions).dbi
    cdef MDB_dbi counters = (<Database>dbs.counters).dbi, meta = (<Database>dbs.meta).dbi
    cdef MDB_dbi batch_counters = (<Database>dbs.batch_counters).dbi
    cdef MDB_dbi audit = (<Database>dbs.audit).dbi, outbox = (<Database>dbs.outbox).dbi
    cdef int64_t now_ms = tx.now_ms
    cdef bytes actor = tx.actor
    cdef size_t count = len(items), i, request_length
    cdef size_t terminal_length = PyBytes_GET_SIZE(terminal)
    cdef const uint8_t* terminal_bytes = <const uint8_t*>PyBytes_AS_STRING(terminal)
    cdef _Batch batch = _Batch(count)
    cdef SHA256_CTX inner, outer
    cdef Item* item
    cdef int rc = 0
    cdef bytes code, request_id
    cdef const uint8_t* actor_bytes = <const uint8_t*>PyBytes_AS_STRING(actor)
    cdef size_t actor_length = PyBytes_GET_SIZE(actor)
    if terminal_length > TERMINAL_MAX or PyBytes_GET_SIZE(actor) > 255:
        raise ValueError("terminal or actor too long for a record")
    _hmac_states(tx.keys.lookup_key, &inner, &outer)
    for i in range(count):
        code, request_id = items[i]  # `items` keeps them alive while C reads them
        if code is None or request_id is None:
            raise TypeError("a redemption is (code bytes, request id bytes)")
        request_length = PyBytes_GET_SIZE(request_id)
        if terminal_length + 1 + request_length > REQUEST_KEY_MAX:
            raise ValueError("request id too long")
        item = &batch.items[i]
        item.raw, item.raw_length = <const uint8_t*>PyBytes_AS_STRING(code), len(code)
        memcpy(item.request_key, terminal_bytes, terminal_length)
        item.request_key[terminal_length] = 0  # terminals never hold NUL (validated)
        memcpy(item.request_key + terminal_length + 1, PyBytes_AS_STRING(request_id),
               request_length)
        item.request_key_length = terminal_length + 1 + request_length
    with nogil:
        rc = _read_misses(&batch.misses, txn, redemptions, terminal_bytes, terminal_length,
                          now_ms)
        if rc == 0 and replay_only and batch.misses.locked_until_ms:
            rc = NOT_A_REPLAY  # the writer answers a locked terminal, retries too
        if rc == 0 and replay_only:
            rc = _all_stored(batch.items, batch.count, txn, redemptions)
        if rc == 0:
            rc = _decide(batch, txn, lookup, codes, redemptions, &inner, &outer, now_ms,
                         replay_only)
        if rc == 0 and not replay_only:
            rc = _write(batch, txn, codes, redemptions, counters, batch_counters,
                        terminal_bytes, terminal_length)
        if rc == 0 and not replay_only:
            rc = _write_misses(&batch.misses, txn, redemptions)
        if rc == 0 and not replay_only:
            rc = _audit(batch, txn, meta, audit, outbox, now_ms, actor_bytes, actor_length)
    if rc == NOT_A_REPLAY:
        return None
    if not replay_only:
        transaction.mutations += 1  # cursors of this transaction re-read their item
    if rc:
        _raise(rc)
    return [_answer(&batch.items[i], terminal) for i in range(count)]


cdef tuple _answer(Item* item, bytes terminal):
    if item.by == 1:
        by = terminal
    elif item.by == 2:
        by = PyBytes_FromStringAndSize(<char*>item.by_copy, item.by_length)
    else:
        by = b""
    return (item.status, item.code_id, item.at_ms, by)


cdef void _raise(int rc) except *:
    if rc == -1:
        raise AssertionError("a counter went below zero")
    if rc == -2:
        raise MemoryError()
    if rc == -3:
        raise RuntimeError("a remembered redemption names a code that is not stored")
    if rc == MISSES_MALFORMED:
        raise RuntimeError("a terminal's miss record has the wrong size")
    cls = _lmdb.MapFullError if rc == MDB_MAP_FULL else _lmdb.Error
    raise cls(f"redeem: {mdb_strerror(rc).decode(errors='replace')}")
