# C helpers shared by the compiled operations that run without the GIL (kamicore._redeem):
# the byte layouts of _codec.py read and written in C, a code's lookup form, HMAC-SHA256 and
# SHA-256 through libcrypto, LMDB puts, counters and the hash-chained audit log. Inline
# functions in a .pxd, so each module that cimports them compiles them in.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from kamicore._lmdb cimport (
    MDB_APPEND, MDB_NOTFOUND, MDB_dbi, MDB_txn, MDB_val, mdb_get, mdb_put,
)
from kamicore._statuses cimport (
    IMPORT_CODE_STATUS_CONTROL_CHARACTER, IMPORT_CODE_STATUS_EMPTY, IMPORT_CODE_STATUS_IMPORTED,
    IMPORT_CODE_STATUS_NOT_UTF8, IMPORT_CODE_STATUS_TOO_LONG,
)

cdef extern from "openssl/sha.h" nogil:
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX* ctx)
    int SHA256_Update(SHA256_CTX* ctx, const void* data, size_t length)
    int SHA256_Final(unsigned char* digest, SHA256_CTX* ctx)



cdef extern from *:
    """
    static const char kamicore_audit_head_key[] = "audit_head";
    static const char kamicore_outbox_head_key[] = "outbox_head";
    """
    const char* AUDIT_HEAD_KEY "kamicore_audit_head_key"  # meta db: the audit log's head
    const char* OUTBOX_HEAD_KEY "kamicore_outbox_head_key"  # meta db: the outbox's next id

cdef enum:
    HEADER_BYTES = 64  # a code record's fixed header (then order id, terminal, sealed code)
    DIGEST_BYTES = 32
    HMAC_BLOCK_BYTES = 64
    EVENT_BYTES = 14  # an audit event: code id u64, from u8, to u8, sku u32
    AUDIT_HEADER_BYTES = 22  # first seq u64, at_ms i64, op u8, actor length u8, count u32
    AUDIT_HEAD_KEY_BYTES = 10
    AUDIT_HEAD_BYTES = 40  # meta db "audit_head": next sequence u64 + newest block hash
    OUTBOX_HEAD_KEY_BYTES = 11
    OUTBOX_AUDIT = 1  # an outbox record pointing at an audit block (_engine.OUTBOX_AUDIT)
    NO_OUTBOX = 0  # for _append_audit: the block is no business event (LMDB's dbi 0 is its
                   # free-page table, never a named database)


cdef inline uint64_t _big_u64(const uint8_t* p) noexcept nogil:
    cdef uint64_t number = 0
    cdef int i
    for i in range(8):
        number = (number << 8) | p[i]
    return number


cdef inline void _put_big(uint8_t* p, uint64_t number, int width) noexcept nogil:
    cdef int i
    for i in range(width - 1, -1, -1):
        p[i] = number & 0xFF
        number >>= 8


cdef inline int64_t _i64(const uint8_t* p) noexcept nogil:
    cdef int64_t number
    memcpy(&number, p, 8)  # little-endian hosts only, as _codec.py's in-place layout
    return number


cdef inline uint32_t _u32(const uint8_t* p) noexcept nogil:
    cdef uint32_t number
    memcpy(&number, p, 4)
    return number


cdef inline bint _utf8(const uint8_t* p, size_t n) noexcept nogil:
    """Strict UTF-8, as Python decodes it: no overlong forms, surrogates or points past
    U+10FFFF."""
    cdef size_t i = 0
    cdef uint8_t c
    cdef int more, k
    cdef uint32_t point, low
    while i < n:
        c = p[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            more, point, low = 1, c & 0x1F, 0x80
        elif 0xE0 <= c <= 0xEF:
            more, point, low = 2, c & 0x0F, 0x800
        elif 0xF0 <= c <= 0xF4:
            more, point, low = 3, c & 0x07, 0x10000
        else:
            return False
        if i + more >= n:
            return False
        for k in range(more):
            i += 1
            if (p[i] & 0xC0) != 0x80:
                return False
            point = (point << 6) | (p[i] & 0x3F)
        if point < low or point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            return False
        i += 1
    return True


cdef inline int _check_code(const uint8_t* raw, size_t n, size_t n_max) noexcept nogil:
    """_codec.check_code in C: an ImportCodeStatus number, IMPORTED when well formed."""
    cdef size_t i
    cdef uint8_t byte
    cdef bint ascii_only = True, only_separators = True
    if n == 0:
        return IMPORT_CODE_STATUS_EMPTY
    if n > n_max:
        return IMPORT_CODE_STATUS_TOO_LONG
    for i in range(n):
        byte = raw[i]
        if byte < 0x20 or byte == 0x7F:
            return IMPORT_CODE_STATUS_CONTROL_CHARACTER
        if byte >= 0x80:
            ascii_only = False
        if byte != 0x20 and byte != 0x2D:
            only_separators = False
    if not ascii_only and not _utf8(raw, n):
        return IMPORT_CODE_STATUS_NOT_UTF8
    if only_separators:
        return IMPORT_CODE_STATUS_EMPTY
    return IMPORT_CODE_STATUS_IMPORTED


cdef inline size_t _fold(const uint8_t* raw, size_t n, uint8_t* out) noexcept nogil:
    """The lookup form of a well-formed code: ASCII case, spaces and dashes ignored."""
    cdef size_t i, kept = 0
    cdef uint8_t byte
    for i in range(n):
        byte = raw[i]
        if byte == 0x20 or byte == 0x2D:
            continue
        out[kept] = byte - 32 if 0x61 <= byte <= 0x7A else byte
        kept += 1
    return kept


cdef inline size_t _normalize(const uint8_t* raw, size_t n, size_t n_max,
                              uint8_t* out) noexcept nogil:
    """The code's lookup form, or 0 when it is malformed (_check_code's refusals)."""
    if _check_code(raw, n, n_max) != IMPORT_CODE_STATUS_IMPORTED:
        return 0
    return _fold(raw, n, out)


cdef inline void _hmac(const SHA256_CTX* inner, const SHA256_CTX* outer,
                       const uint8_t* data, size_t n, uint8_t* digest) noexcept nogil:
    cdef SHA256_CTX ctx
    cdef uint8_t inner_digest[32]
    memcpy(&ctx, inner, sizeof(SHA256_CTX))
    SHA256_Update(&ctx, data, n)
    SHA256_Final(inner_digest, &ctx)
    memcpy(&ctx, outer, sizeof(SHA256_CTX))
    SHA256_Update(&ctx, inner_digest, DIGEST_BYTES)
    SHA256_Final(digest, &ctx)


cdef inline bint _same_digest(const uint8_t* a, const uint8_t* b) noexcept nogil:
    """Constant-time comparison of two digests."""
    cdef uint8_t difference = 0
    cdef int i
    for i in range(DIGEST_BYTES):
        difference |= a[i] ^ b[i]
    return difference == 0


cdef inline int _put(MDB_txn* txn, MDB_dbi dbi, const void* key, size_t key_length,
                     const void* data, size_t data_length, unsigned int flags) noexcept nogil:
    cdef MDB_val k, v
    k.mv_size, k.mv_data = key_length, <void*>key
    v.mv_size, v.mv_data = data_length, <void*>data
    return mdb_put(txn, dbi, &k, &v, flags)


cdef inline int _add_to_counter(MDB_txn* txn, MDB_dbi dbi, uint32_t number, int state,
                                int64_t delta) noexcept nogil:
    """counter (number BE u32, state u8) += delta; -1 if it would go below zero."""
    cdef uint8_t key[5]
    cdef MDB_val k, v
    cdef int64_t value = 0
    cdef int rc
    _put_big(key, number, 4)
    key[4] = state
    k.mv_size, k.mv_data = 5, key
    rc = mdb_get(txn, dbi, &k, &v)
    if rc == 0:
        memcpy(&value, v.mv_data, 8)
    elif rc != MDB_NOTFOUND:
        return rc
    value += delta
    if value < 0:
        return -1
    return _put(txn, dbi, key, 5, &value, 8, 0)


cdef inline void _sha256(const uint8_t* data, size_t length, uint8_t* digest) noexcept nogil:
    cdef SHA256_CTX ctx
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, data, length)
    SHA256_Final(digest, &ctx)


cdef inline void _hmac_states(bytes key, SHA256_CTX* inner, SHA256_CTX* outer):
    """RFC 2104's padded key states, computed once per call (a 32-byte key: one block)."""
    cdef uint8_t inner_pad[64]
    cdef uint8_t outer_pad[64]
    cdef const uint8_t* k = <const uint8_t*>PyBytes_AS_STRING(key)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(key)
    assert n <= HMAC_BLOCK_BYTES
    for i in range(HMAC_BLOCK_BYTES):
        inner_pad[i] = (k[i] if i < n else 0) ^ 0x36
        outer_pad[i] = (k[i] if i < n else 0) ^ 0x5C
    SHA256_Init(inner)
    SHA256_Update(inner, inner_pad, HMAC_BLOCK_BYTES)
    SHA256_Init(outer)
    SHA256_Update(outer, outer_pad, HMAC_BLOCK_BYTES)


cdef inline int _append_outbox_audit(MDB_txn* txn, MDB_dbi meta, MDB_dbi outbox,
                                     uint64_t first_seq, uint32_t count) noexcept nogil:
    """Point the outbox at the audit block `first_seq` of `count` events (_engine._append_outbox's
    layout): one event id per audit event; 0 or an LMDB error."""
    cdef uint64_t first_id = 1, next_id
    cdef uint8_t key[8]
    cdef uint8_t record[9]
    cdef MDB_val k, v
    cdef int rc
    k.mv_size, k.mv_data = OUTBOX_HEAD_KEY_BYTES, <void*>OUTBOX_HEAD_KEY
    rc = mdb_get(txn, meta, &k, &v)
    if rc == 0 and v.mv_size == 8:
        memcpy(&first_id, v.mv_data, 8)
    elif rc != 0 and rc != MDB_NOTFOUND:
        return rc
    record[0] = OUTBOX_AUDIT
    memcpy(record + 1, &first_seq, 8)
    _put_big(key, first_id + count - 1, 8)  # keyed by its last id
    rc = _put(txn, outbox, key, 8, record, 9, MDB_APPEND)
    if rc == 0:
        next_id = first_id + count
        rc = _put(txn, meta, OUTBOX_HEAD_KEY, OUTBOX_HEAD_KEY_BYTES, &next_id, 8, 0)
    return rc


cdef inline int _append_audit(MDB_txn* txn, MDB_dbi meta, MDB_dbi audit, MDB_dbi outbox,
                              int64_t now_ms, uint8_t op, const uint8_t* actor,
                              size_t actor_length, const uint8_t* events,
                              uint32_t count) noexcept nogil:
    """Append one hash-chained audit block (_engine.append_audit's layout) holding `count`
    events of EVENT_BYTES each, and (outbox not NO_OUTBOX) its outbox record; 0, -2 (no
    memory) or an LMDB error."""
    cdef uint64_t first_seq = 1, next_seq
    cdef uint8_t head[40]
    cdef uint8_t key[8]
    cdef MDB_val k, v
    cdef size_t length = DIGEST_BYTES + AUDIT_HEADER_BYTES + actor_length + count * EVENT_BYTES
    cdef uint8_t* block
    cdef int rc
    memset(head, 0, AUDIT_HEAD_BYTES)
    k.mv_size, k.mv_data = AUDIT_HEAD_KEY_BYTES, <void*>AUDIT_HEAD_KEY
    rc = mdb_get(txn, meta, &k, &v)
    if rc == 0 and v.mv_size == AUDIT_HEAD_BYTES:
        memcpy(&first_seq, v.mv_data, 8)
        memcpy(head + 8, <uint8_t*>v.mv_data + 8, DIGEST_BYTES)
    elif rc != 0 and rc != MDB_NOTFOUND:
        return rc
    block = <uint8_t*>malloc(length)
    if block is NULL:
        return -2
    memcpy(block, head + 8, DIGEST_BYTES)  # the previous block's hash
    memcpy(block + 32, &first_seq, 8)
    memcpy(block + 40, &now_ms, 8)
    block[48] = op
    block[49] = <uint8_t>actor_length
    memcpy(block + 50, &count, 4)
    memcpy(block + 54, actor, actor_length)
    memcpy(block + 54 + actor_length, events, count * EVENT_BYTES)
    _put_big(key, first_seq, 8)
    rc = _put(txn, audit, key, 8, block, length, MDB_APPEND)
    if rc == 0:
        next_seq = first_seq + count
        memcpy(head, &next_seq, 8)
        _sha256(block, length, head + 8)
        rc = _put(txn, meta, AUDIT_HEAD_KEY, AUDIT_HEAD_KEY_BYTES, head, AUDIT_HEAD_BYTES, 0)
    free(block)
    if rc == 0 and outbox != NO_OUTBOX:
        rc = _append_outbox_audit(txn, meta, outbox, first_seq, count)
    return rc


cdef struct Move:  # how many codes of one (sku, batch) moved from one state to another
    uint32_t sku_no
    uint32_t batch_no
    uint64_t count


cdef inline void _tally(Move* moves, size_t* count, uint32_t sku_no,
                        uint32_t batch_no) noexcept nogil:
    """One more code of (sku, batch) moved; `moves` has room for every code of the call."""
    cdef size_t i
    for i in range(count[0]):
        if moves[i].sku_no == sku_no and moves[i].batch_no == batch_no:
            moves[i].count += 1
            return
    moves[count[0]].sku_no, moves[count[0]].batch_no, moves[count[0]].count = sku_no, batch_no, 1
    count[0] += 1


cdef inline int _count_moves(MDB_txn* txn, MDB_dbi counters, MDB_dbi batch_counters,
                             const Move* moves, size_t count, int from_state,
                             int to_state) noexcept nogil:
    """The per-(sku, state) and per-(batch, state) counters: from -n, to +n (one update per
    sku, summed over its batches); 0 or an error."""
    cdef size_t i, j
    cdef uint64_t sku_total
    cdef int rc
    cdef bint counted
    for i in range(count):
        rc = _add_to_counter(txn, batch_counters, moves[i].batch_no, from_state,
                             -<int64_t>moves[i].count)
        rc = rc or _add_to_counter(txn, batch_counters, moves[i].batch_no, to_state,
                                   <int64_t>moves[i].count)
        if rc:
            return rc
        counted = False
        for j in range(i):
            counted = counted or moves[j].sku_no == moves[i].sku_no
        if counted:
            continue
        sku_total = 0
        for j in range(i, count):
            if moves[j].sku_no == moves[i].sku_no:
                sku_total += moves[j].count
        rc = _add_to_counter(txn, counters, moves[i].sku_no, from_state, -<int64_t>sku_total)
        rc = rc or _add_to_counter(txn, counters, moves[i].sku_no, to_state,
                                   <int64_t>sku_total)
        if rc:
            return rc
    return 0


cdef inline uint8_t* _with_terminal(const uint8_t* record, size_t length,
                                    const uint8_t* terminal, size_t terminal_length,
                                    size_t* new_length) noexcept nogil:
    """A new copy of a code record (malloc'd; NULL without memory) whose terminal, a tail
    field, is `terminal`: the tail after it moves to make room."""
    cdef size_t order_length = record[60], old_terminal = record[61]
    cdef size_t sealed_length = length - HEADER_BYTES - order_length - old_terminal
    cdef size_t start = HEADER_BYTES + order_length
    new_length[0] = start + terminal_length + sealed_length
    cdef uint8_t* out = <uint8_t*>malloc(new_length[0])
    if out is NULL:
        return NULL
    memcpy(out, record, start)
    out[61] = <uint8_t>terminal_length
    memcpy(out + start, terminal, terminal_length)
    memcpy(out + start + terminal_length, record + start + old_terminal, sealed_length)
    return out
