# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Import in C: the batch's terms are settled in Python (kamicore._inventory._open_batch: the
batch record and its wrapped data key), then every code crosses into this module once and the
per-code work - validation, normalisation, the lookup HMAC, the duplicate check, AES-256-GCM
sealing (libcrypto; associated data the code key, a fresh 96-bit nonce per code), the record,
the lookup, availability and not-yet-valid index entries, the counters and the audit block -
runs in C with the GIL released.

The rules are those of _inventory.import_codes (which the interpreted engine keeps running, so
both are held to the reference model): a code already stored, or earlier in the same call, is a
DUPLICATE; a malformed one gets its ImportCodeStatus and is never stored; code ids are handed out
in order to the codes that are stored.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from kamicore._lmdb cimport (
    MDB_APPEND, MDB_MAP_FULL, MDB_NOTFOUND, MDB_dbi, MDB_txn, MDB_val, Database, Transaction,
    mdb_get, mdb_strerror,
)
from kamicore._native cimport (
    DIGEST_BYTES, EVENT_BYTES, HEADER_BYTES, NO_OUTBOX, SHA256_CTX, _add_to_counter,
    _append_audit, _check_code, _fold, _hmac, _hmac_states, _put, _put_big,
)
from kamicore._statuses cimport (
    CODE_STATE_AVAILABLE, IMPORT_CODE_STATUS_DUPLICATE, IMPORT_CODE_STATUS_IMPORTED,
    IMPORT_STATUS_OK,
)

from kamicore import _inventory, _lmdb, limits


cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_CIPHER_CTX:
        pass
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct ENGINE:
        pass
    EVP_CIPHER_CTX* EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX* ctx)
    const EVP_CIPHER* EVP_aes_256_gcm()
    int EVP_EncryptInit_ex(EVP_CIPHER_CTX* ctx, const EVP_CIPHER* cipher, ENGINE* engine,
                           const unsigned char* key, const unsigned char* iv)
    int EVP_EncryptUpdate(EVP_CIPHER_CTX* ctx, unsigned char* out, int* out_length,
                          const unsigned char* data, int length)
    int EVP_EncryptFinal_ex(EVP_CIPHER_CTX* ctx, unsigned char* out, int* out_length)
    int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX* ctx, int kind, int arg, void* ptr)
    enum:
        EVP_CTRL_GCM_GET_TAG


cdef enum:
    NONCE_BYTES = 12
    TAG_BYTES = 16
    KEY_BYTES = 32
    RECORD_VERSION = 1  # _record.RECORD_VERSION
    OP_IMPORT = 1  # the audit log's operation number (_engine.OP_IMPORT)
    CODE_MAX = 255  # past limits.code_bytes_max, asserted at load
    AVAILABLE_KEY_BYTES = 20  # sku u32 BE, valid_until u64 BE, code id u64 BE

cdef size_t _code_bytes_max = limits.code_bytes_max
cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15
assert limits.code_bytes_max <= CODE_MAX
cdef bytes META_CODE_ID_NEXT = _inventory.META_CODE_ID_NEXT


cdef struct Code:
    const uint8_t* raw
    size_t raw_length
    int status
    uint64_t code_id
    uint8_t digest[32]


cdef inline void _available_key(uint8_t* key, uint32_t sku_no, int64_t ms,
                                uint64_t code_id) noexcept nogil:
    _put_big(key, sku_no, 4)
    _put_big(key + 4, <uint64_t>ms, 8)
    _put_big(key + 12, code_id, 8)


cdef int _seal(EVP_CIPHER_CTX* ctx, const uint8_t* nonce, const uint8_t* code_key,
               const uint8_t* plaintext, size_t length, uint8_t* sealed) noexcept nogil:
    """nonce + ciphertext + tag, as keyring.Sealer.seal lays it out; 0 on success."""
    cdef int written = 0, final = 0
    memcpy(sealed, nonce, NONCE_BYTES)
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
            or EVP_EncryptUpdate(ctx, NULL, &written, code_key, 8) != 1
            or EVP_EncryptUpdate(ctx, sealed + NONCE_BYTES, &written, plaintext,
                                 <int>length) != 1
            or EVP_EncryptFinal_ex(ctx, sealed + NONCE_BYTES + written, &final) != 1
            or EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES,
                                   sealed + NONCE_BYTES + length) != 1):
        return -4
    return 0


cdef int _store(Code* codes, size_t count, MDB_txn* txn, MDB_dbi* dbi,
                EVP_CIPHER_CTX* ctx, const uint8_t* nonces, uint32_t sku_no, uint32_t batch_no,
                int64_t valid_from_ms, int64_t valid_until_ms, uint64_t* next_id,
                uint32_t* imported) noexcept nogil:
    """Decide and write every code; 0 or an error. dbi: lookup, codes, available, pending."""
    cdef size_t i, j, table_size = 16, at
    cdef int rc = 0
    cdef Code* code
    cdef MDB_val key, value
    cdef uint8_t code_key[8]
    cdef uint8_t index_key[AVAILABLE_KEY_BYTES]
    cdef uint8_t record[HEADER_BYTES + NONCE_BYTES + CODE_MAX + TAG_BYTES]
    cdef uint16_t sealed_length
    cdef int* seen
    while table_size < 2 * count + 1:
        table_size *= 2
    seen = <int*>malloc(table_size * sizeof(int))
    if seen is NULL:
        return -2
    for i in range(table_size):
        seen[i] = -1
    memset(record, 0, HEADER_BYTES)
    record[0], record[1] = RECORD_VERSION, CODE_STATE_AVAILABLE
    memcpy(record + 4, &sku_no, 4)
    memcpy(record + 8, &batch_no, 4)
    memcpy(record + 12, &valid_from_ms, 8)
    memcpy(record + 20, &valid_until_ms, 8)
    for i in range(count):
        code = &codes[i]
        if code.status != IMPORT_CODE_STATUS_IMPORTED:
            continue
        # a repeat within the call: the first one is imported, later ones are duplicates
        at = ((<uint64_t*>code.digest)[0] * GOLDEN) & (table_size - 1)
        while seen[at] >= 0 and memcmp(codes[seen[at]].digest, code.digest, DIGEST_BYTES) != 0:
            at = (at + 1) & (table_size - 1)
        if seen[at] >= 0:
            code.status = IMPORT_CODE_STATUS_DUPLICATE
            continue
        seen[at] = <int>i
        key.mv_size, key.mv_data = DIGEST_BYTES, code.digest
        rc = mdb_get(txn, dbi[0], &key, &value)
        if rc == 0:
            code.status = IMPORT_CODE_STATUS_DUPLICATE
            continue
        if rc != MDB_NOTFOUND:
            break
        code.code_id = next_id[0]
        next_id[0] += 1
        _put_big(code_key, code.code_id, 8)
        sealed_length = <uint16_t>(NONCE_BYTES + code.raw_length + TAG_BYTES)
        memcpy(record + 62, &sealed_length, 2)
        rc = _seal(ctx, nonces + i * NONCE_BYTES, code_key, code.raw, code.raw_length,
                   record + HEADER_BYTES)
        rc = rc or _put(txn, dbi[1], code_key, 8, record, HEADER_BYTES + sealed_length,
                        MDB_APPEND)
        rc = rc or _put(txn, dbi[0], code.digest, DIGEST_BYTES, code_key, 8, 0)
        _available_key(index_key, sku_no, valid_until_ms, code.code_id)
        rc = rc or _put(txn, dbi[2], index_key, AVAILABLE_KEY_BYTES, NULL, 0, 0)
        if valid_from_ms > 0 and rc == 0:
            _available_key(index_key, sku_no, valid_from_ms, code.code_id)
            rc = _put(txn, dbi[3], index_key, AVAILABLE_KEY_BYTES, NULL, 0, 0)
        if rc:
            break
        imported[0] += 1
    else:
        rc = 0
    free(seen)
    return rc


def import_codes(tx, bytes sku, bytes batch, bytes supplier, int64_t unit_cost_micros,
                 int64_t valid_from_ms, int64_t valid_until_ms, list codes):
    """-> (batch status, [per-code status], [code id or 0]), the codes decided, sealed and
    written in C without the GIL (see the module docstring)."""
    status, sku_no, batch_no = _inventory._open_batch(
        tx, sku, batch, supplier, unit_cost_micros, valid_from_ms, valid_until_ms)
    if status != IMPORT_STATUS_OK:
        return status, [], []
    cdef Transaction transaction = tx.txn
    cdef MDB_txn* txn = transaction.txn
    dbs = tx.dbs
    cdef MDB_dbi dbi[4]
    dbi[0], dbi[1] = (<Database>dbs.lookup).dbi, (<Database>dbs.codes).dbi
    dbi[2], dbi[3] = (<Database>dbs.available).dbi, (<Database>dbs.pending).dbi
    cdef MDB_dbi meta = (<Database>dbs.meta).dbi, audit = (<Database>dbs.audit).dbi
    cdef MDB_dbi counters = (<Database>dbs.counters).dbi
    cdef MDB_dbi batch_counters = (<Database>dbs.batch_counters).dbi
    cdef bytes data_key = tx.keys.data_key(transaction, dbs, batch_no)
    cdef bytes nonces = tx.keys.new_nonces(len(codes))
    cdef bytes actor = tx.actor
    cdef const uint8_t* actor_bytes = <const uint8_t*>PyBytes_AS_STRING(actor)
    cdef size_t actor_length = PyBytes_GET_SIZE(actor), count = len(codes), i
    cdef int64_t now_ms = tx.now_ms
    cdef uint32_t sku_number = sku_no, batch_number = batch_no, imported = 0
    cdef uint64_t next_id = 1, first_id
    cdef SHA256_CTX inner, outer
    cdef uint8_t normalized[CODE_MAX]
    cdef size_t length
    cdef int rc = 0
    cdef MDB_val key, value
    cdef bytes raw
    cdef const uint8_t* nonce_bytes = <const uint8_t*>PyBytes_AS_STRING(nonces)
    cdef const char* next_key = PyBytes_AS_STRING(META_CODE_ID_NEXT)
    cdef size_t next_key_length = len(META_CODE_ID_NEXT)
    assert len(data_key) == KEY_BYTES
    _hmac_states(tx.keys.lookup_key, &inner, &outer)
    key.mv_size, key.mv_data = next_key_length, <void*>next_key
    rc = mdb_get(txn, meta, &key, &value)
    if rc == 0:
        memcpy(&next_id, value.mv_data, 8)
    elif rc != MDB_NOTFOUND:
        _raise(rc)
    first_id = next_id
    cdef Code* work = <Code*>calloc(count or 1, sizeof(Code))
    cdef uint8_t* events = NULL
    cdef EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new()
    try:
        if work is NULL or ctx is NULL:
            raise MemoryError()
        if EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL,
                              <const uint8_t*>PyBytes_AS_STRING(data_key), NULL) != 1:
            raise RuntimeError("AES-256-GCM is not available from libcrypto")
        for i in range(count):
            raw = codes[i]
            work[i].raw, work[i].raw_length = <const uint8_t*>PyBytes_AS_STRING(raw), len(raw)
        with nogil:
            for i in range(count):
                work[i].status = _check_code(work[i].raw, work[i].raw_length, _code_bytes_max)
                if work[i].status == IMPORT_CODE_STATUS_IMPORTED:
                    length = _fold(work[i].raw, work[i].raw_length, normalized)
                    _hmac(&inner, &outer, normalized, length, work[i].digest)
            rc = _store(work, count, txn, dbi, ctx, nonce_bytes, sku_number, batch_number,
                        valid_from_ms, valid_until_ms, &next_id, &imported)
            if rc == 0 and imported:
                rc = _put(txn, meta, next_key, next_key_length, &next_id, 8, 0)
                rc = rc or _add_to_counter(txn, counters, sku_number, CODE_STATE_AVAILABLE,
                                           imported)
                rc = rc or _add_to_counter(txn, batch_counters, batch_number,
                                           CODE_STATE_AVAILABLE, imported)
                if rc == 0:
                    events = <uint8_t*>malloc(imported * EVENT_BYTES)
                    rc = -2 if events is NULL else _audit(work, count, events, sku_number)
                if rc == 0:
                    rc = _append_audit(txn, meta, audit, NO_OUTBOX, now_ms, OP_IMPORT,
                                       actor_bytes, actor_length, events, imported)
        transaction.mutations += 1
        if rc:
            _raise(rc)
        return (IMPORT_STATUS_OK, [work[i].status for i in range(count)],
                [work[i].code_id for i in range(count)])
    finally:
        free(work)
        free(events)
        EVP_CIPHER_CTX_free(ctx)


cdef int _audit(Code* work, size_t count, uint8_t* event, uint32_t sku_no) noexcept nogil:
    """One event per imported code, in row order: (code id, none -> AVAILABLE, sku)."""
    cdef size_t i
    for i in range(count):
        if work[i].status == IMPORT_CODE_STATUS_IMPORTED and work[i].code_id:
            memcpy(event, &work[i].code_id, 8)
            event[8], event[9] = 0, CODE_STATE_AVAILABLE
            memcpy(event + 10, &sku_no, 4)
            event += EVENT_BYTES
    return 0


cdef void _raise(int rc) except *:
    if rc == -1:
        raise AssertionError("a counter went below zero")
    if rc == -2:
        raise MemoryError()
    if rc == -4:
        raise RuntimeError("AES-256-GCM sealing failed")
    cls = _lmdb.MapFullError if rc == MDB_MAP_FULL else _lmdb.Error
    raise cls(f"import: {mdb_strerror(rc).decode(errors='replace')}")
