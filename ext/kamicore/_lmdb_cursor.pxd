# The C face of kamicore._lmdb_cursor: a cursor of the engine's LMDB binding (kamicore._lmdb),
# its position and the C calls that move it, for compiled modules that scan or batch.

from kamicore._lmdb cimport MDB_cursor, MDB_cursor_op, MDB_val, Database, Transaction


cdef class Cursor:
    cdef MDB_cursor* cursor  # NULL once closed (by itself or by its transaction's end)
    cdef Transaction txn
    cdef Database db
    cdef void* next_open  # the transaction's list of live cursors
    cdef void* previous_open
    cdef MDB_val key  # the item the cursor is on (points into the map while positioned)
    cdef MDB_val value
    cdef bint positioned
    cdef unsigned long long last_mutation  # txn.mutations when key and value were read
    cdef bint move(self, MDB_cursor_op op) except -1
    cdef int check(self) except -1
    cdef object item(self, int part)
    cdef void close_cursor(self)


cdef Cursor open_cursor(Transaction txn, Database db)  # db: not None
