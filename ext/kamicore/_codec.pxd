# The C face of kamicore._codec, shared with the other compiled modules (they cimport it): the
# codec functions called per item, so that compiled callers reach them without Python attribute
# lookups or calls. Cython reads it when it compiles _codec.py, whose annotations must match
# these signatures; interpreted runs ignore it.


cpdef int check_code(bytes raw)
cpdef bytes normalize_code(bytes raw)
cpdef bytes code_key(unsigned long long code_id)
cpdef unsigned long long code_id_of(bytes key)
cpdef bytes available_key(unsigned int sku_no, long long valid_until_ms,
                          unsigned long long code_id)
cpdef bytes sku_prefix(unsigned int sku_no)
cpdef bytes hold_key(long long hold_until_ms, bytes order_id)
cpdef tuple unpack_hold_key(bytes key)
cpdef bytes counter_key(unsigned int sku_no, int state)
cpdef bytes u32_key(unsigned int number)
cpdef bytes u64_key(unsigned long long number)
cpdef unsigned long long u64_of(bytes key)
cpdef bytes pack_u32(unsigned int number)
cpdef unsigned int unpack_u32(bytes value)
cpdef bytes pack_u64(unsigned long long number)
cpdef unsigned long long unpack_u64(bytes value)
cpdef bytes request_key(bytes terminal, bytes request_id)
cpdef bytes pack_redemption(int status, unsigned long long code_id, long long at_ms,
                            bytes lookup_hash)
cpdef tuple unpack_redemption(bytes value)
cpdef bytes pack_order(int state, long long hold_until_ms, long long created_ms,
                       unsigned long long order_no, list lines, list code_ids)
cpdef tuple unpack_order(bytes value)
cpdef bytes pack_batch(unsigned int sku_no, long long valid_from_ms, long long valid_until_ms,
                       long long unit_cost_micros, bytes master_key_id, bytes name,
                       bytes supplier, bytes wrapped_key)
cpdef dict unpack_batch(bytes value)
