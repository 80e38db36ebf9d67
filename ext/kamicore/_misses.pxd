# cython: language_level=3
"""A terminal's consecutive misses in C, for _redeem.pyx: the record that _redemption.py
describes (key terminal + NUL in the redemptions db; misses u32 LE, locked_until_ms i64 LE),
read at the start of a batch and written back in its commit when the batch changed it."""

from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport memcpy

from kamicore._lmdb cimport MDB_NOTFOUND, MDB_dbi, MDB_txn, MDB_val, mdb_del, mdb_get, mdb_put


cdef enum:
    MISS_BYTES = 12
    MISSES_MALFORMED = -5  # a stored miss record of another size


cdef struct Misses:
    uint32_t stored_misses, misses  # as stored, and as the batch leaves them
    int64_t stored_locked_until_ms, locked_until_ms
    bint stored
    uint8_t key[256]  # the terminal, then NUL: the request key of an empty request id
    size_t key_length


cdef inline int _read_misses(Misses* m, MDB_txn* txn, MDB_dbi redemptions,
                             const uint8_t* terminal, size_t terminal_length,
                             int64_t now_ms) noexcept nogil:
    """The record as it stands at now_ms (a cool-down that passed has cleared it); 0 or an
    error. terminal_length is at most 255."""
    cdef MDB_val k, value
    memcpy(m.key, terminal, terminal_length)
    m.key[terminal_length] = 0
    m.key_length = terminal_length + 1
    k.mv_size, k.mv_data = m.key_length, m.key
    cdef int rc = mdb_get(txn, redemptions, &k, &value)
    if rc == MDB_NOTFOUND:
        return 0
    if rc != 0:
        return rc
    if value.mv_size != MISS_BYTES:
        return MISSES_MALFORMED
    m.stored = True
    memcpy(&m.stored_misses, value.mv_data, 4)
    memcpy(&m.stored_locked_until_ms, <uint8_t*>value.mv_data + 4, 8)
    if m.stored_locked_until_ms and m.stored_locked_until_ms <= now_ms:
        m.misses, m.locked_until_ms = 0, 0
    else:
        m.misses, m.locked_until_ms = m.stored_misses, m.stored_locked_until_ms
    return 0


cdef inline void _miss(Misses* m, int64_t now_ms, uint32_t lock_misses,
                       int64_t lock_ms) noexcept nogil:
    """One more miss; the one numbered lock_misses locks the terminal for lock_ms."""
    m.misses += 1
    if m.misses >= lock_misses:
        m.locked_until_ms = now_ms + lock_ms


cdef inline int _write_misses(Misses* m, MDB_txn* txn, MDB_dbi redemptions) noexcept nogil:
    """The record as the batch leaves it, when that differs from the stored one."""
    cdef MDB_val k, v
    cdef uint8_t value[MISS_BYTES]
    if m.misses == m.stored_misses and m.locked_until_ms == m.stored_locked_until_ms:
        return 0
    k.mv_size, k.mv_data = m.key_length, m.key
    if m.misses == 0 and m.locked_until_ms == 0:
        return mdb_del(txn, redemptions, &k, NULL) if m.stored else 0
    memcpy(value, &m.misses, 4)
    memcpy(value + 4, &m.locked_until_ms, 8)
    v.mv_size, v.mv_data = MISS_BYTES, value
    return mdb_put(txn, redemptions, &k, &v, 0)
