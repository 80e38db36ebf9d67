# The C face of kamicore._engine, shared with the operation modules (_inventory, _orders and
# _redemption cimport it): Dbs's handles, Tx's fields and methods and the audit operation
# numbers, so that their per-item code reaches them in C, without Python attribute lookups or
# calls. Cython reads it when it compiles _engine.py, whose annotations must match these
# signatures; interpreted runs ignore it.

from kamicore._record cimport CodeRecord

# audit operation numbers (stored in audit blocks; OP_NAMES in _engine.py names them)
cdef int OP_IMPORT, OP_RESERVE, OP_CONFIRM, OP_RELEASE, OP_EXPIRE, OP_REDEEM, OP_FREEZE
cdef int OP_UNFREEZE, OP_VOID, OP_REPORT_INVALID, OP_REVEAL, OP_LEAK


cdef class Dbs:
    # the engine's own sub-databases (the domain layers' are kamicore.engine.transaction's)
    cdef public object codes, available, lookup, holds, counters, skus, batches, batch_names
    cdef public object orders, redemptions, audit, meta, batch_counters, outbox
    # (sku, valid_from, code id) of AVAILABLE codes with a start: not-yet-valid stock is
    # counted from here without reading records
    cdef public object pending


cdef class Tx:
    cdef public object txn
    cdef public Dbs dbs
    cdef public object keys  # kamicore.engine.KeyService
    cdef public long long now_ms
    cdef public bytes actor
    # what the operation changed so far, written by finish()
    cdef dict transitions
    cdef list events

    cpdef move(self, unsigned long long code_id, CodeRecord record, int to_state)
    cpdef unsigned long long next_number(self, bytes name, unsigned long long first=*)
    cpdef unsigned int sku_no(self, bytes sku, bint create)
    cpdef CodeRecord record(self, unsigned long long code_id)
    cpdef put_record(self, unsigned long long code_id, CodeRecord record)
    cpdef tuple resolve(self, ref)
    cpdef list pick(self, unsigned int sku_no, Py_ssize_t quantity)
    cpdef take_available(self, unsigned long long code_id, CodeRecord record)
    cpdef return_available(self, unsigned long long code_id, CodeRecord record)
