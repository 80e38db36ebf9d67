# The C face of kamicore._record, shared with the other compiled modules (they cimport it):
# CodeRecord's fields and the functions that make one, so that compiled callers reach them
# without Python attribute lookups or calls. Cython reads it when it compiles _record.py, whose
# annotations must match these signatures; interpreted runs ignore it.


cdef class CodeRecord:
    # fixed fields: the 64-byte header of a code record (layout in _record.py)
    cdef public int state
    cdef public int prior_state
    cdef public unsigned int sku_no
    cdef public unsigned int batch_no
    cdef public long long valid_from_ms
    cdef public long long valid_until_ms
    cdef public long long hold_until_ms
    cdef public long long sold_at_ms
    cdef public long long redeemed_at_ms
    cdef public unsigned long long link_code_id
    # where the variable-length tail (order id, terminal, sealed code) is in the stored value,
    # or its replacement once read or set (see CodeRecord in _record.py)
    cdef bytes _value
    cdef Py_ssize_t _order_start
    cdef Py_ssize_t _terminal_start
    cdef Py_ssize_t _sealed_start
    cdef Py_ssize_t _sealed_end
    cdef object _order_id  # bytes once read or replaced, else None
    cdef object _terminal
    cdef object _sealed

    # C-level access to the tail for compiled callers; Python uses the properties
    cdef bytes get_order_id(self)
    cdef void set_order_id(self, bytes value)
    cdef bytes get_terminal(self)
    cdef void set_terminal(self, bytes value)
    cpdef bytes pack(self)
    cdef char* _tail(self, object field, Py_ssize_t start, Py_ssize_t end, Py_ssize_t* length)
    cdef bytes _pack_in_place(self)


cpdef CodeRecord new_record(int state, unsigned int sku_no, unsigned int batch_no,
                            long long valid_from_ms, long long valid_until_ms, bytes sealed)
cpdef CodeRecord unpack_record(bytes value)
