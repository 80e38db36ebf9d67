# cython: language_level=3
"""Declarations of kamicore._redeem (ext/kamicore/_redeem.pyx): the C state of one redeem batch.
Cython reads this file with the .pyx of the same name."""

from libc.stdint cimport int64_t, uint8_t, uint64_t

from kamicore._lmdb cimport MDB_NOTFOUND, MDB_dbi, MDB_txn, MDB_val, mdb_get
from kamicore._misses cimport Misses
from kamicore._native cimport Move


cdef enum:
    FIRST_BYTES = 49  # a redemption record: status u8, code id u64, at_ms i64, digest
    OP_REDEEM = 6  # the audit log's operation number (_engine.OP_REDEEM)
    NORMALIZED_MAX = 255  # past limits.code_bytes_max, asserted at load
    TERMINAL_MAX = 255  # a code record keeps the terminal's length in a byte
    REQUEST_KEY_MAX = 511
    NOT_A_REPLAY = -4  # replay_only: an item is not the retry of a committed request


cdef struct Slot:  # one distinct code of the batch, as the batch has left it so far
    uint64_t code_id
    uint8_t* record  # a private copy of the stored record, edited in place
    size_t length
    bint changed  # redeemed in this batch: written back with the new terminal


cdef struct Item:
    const uint8_t* raw  # the code as presented (owned by the caller's bytes)
    size_t raw_length
    int status
    uint64_t code_id
    int64_t at_ms
    int by  # the answer's terminal: 0 none, 1 the caller's, 2 by_copy
    uint8_t by_copy[255]
    size_t by_length
    bint malformed
    uint8_t digest[32]
    int slot  # index into the slots, -1 when the code is not found
    uint8_t request_key[511]
    size_t request_key_length
    uint8_t first[49]  # the request key's first answer, stored or made by this batch
    bint has_first
    bint stored_first  # has_first, and that first answer is already committed
    bint new_first


cdef class _Batch:
    cdef Item* items
    cdef Slot* slots
    cdef int* slot_index  # open addressing over code ids -> slot, -1 empty
    cdef int* key_index  # open addressing over request keys -> the item holding its first
    cdef Move* moves
    cdef size_t count, slot_count, table_size, move_count
    cdef uint8_t* events  # the audit events of this batch's redemptions
    cdef Misses misses  # the terminal's consecutive misses and lock

    cdef int slot_of(self, MDB_txn* txn, MDB_dbi codes, uint64_t code_id,
                     const uint8_t* code_key) noexcept nogil
    cdef int earlier_first(self, size_t i) noexcept nogil
    cdef void answer_from_record(self, Item* item, Slot* slot) noexcept nogil


cdef inline int _all_stored(Item* items, size_t count, MDB_txn* txn,
                            MDB_dbi redemptions) noexcept nogil:
    """0 when every item's request key has a committed first answer, else NOT_A_REPLAY (at
    the first that has none: a new batch costs one lookup) or an LMDB error."""
    cdef size_t i
    cdef MDB_val key, value
    cdef int rc
    for i in range(count):
        key.mv_size = items[i].request_key_length
        key.mv_data = items[i].request_key
        rc = mdb_get(txn, redemptions, &key, &value)
        if rc == MDB_NOTFOUND:
            return NOT_A_REPLAY
        if rc != 0:
            return rc
    return 0
