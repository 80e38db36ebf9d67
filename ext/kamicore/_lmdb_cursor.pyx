"""Cursors of the engine's LMDB binding (kamicore._lmdb): positioned reads, iteration, and the
batch get and put the engine's operations use, with py-lmdb's answers (Transaction.cursor).

A cursor is on an item or unpositioned; a move that finds nothing leaves it unpositioned, and
iteration from an unpositioned cursor starts at the first item, as py-lmdb's does. Every call
keeps the GIL: none of them waits for anything but the page cache.
"""

cimport cython
from libc.errno cimport EINVAL
from posix.unistd cimport getpid

from kamicore._lmdb cimport (
    MDB_APPEND, MDB_APPENDDUP, MDB_DUPSORT, MDB_FIRST, MDB_GET_CURRENT, MDB_KEYEXIST, MDB_NEXT,
    MDB_NODUPDATA, MDB_NOOVERWRITE, MDB_NOTFOUND, MDB_SET_KEY, MDB_SET_RANGE, as_val, ended,
    error, mdb_cursor_close, mdb_cursor_get, mdb_cursor_open, mdb_cursor_put, val_bytes,
)


cdef Cursor open_cursor(Transaction txn, Database db):
    """A new cursor over `db` in the live `txn`, on the transaction's list of cursors (which
    closes them before the transaction ends: LMDB frees a write transaction's cursors)."""
    cdef MDB_cursor* handle
    cdef int rc = mdb_cursor_open(txn.txn, db.dbi, &handle)
    if rc:
        raise error("mdb_cursor_open", rc)
    cdef Cursor cursor = Cursor.__new__(Cursor)
    cursor.cursor = handle
    cursor.txn = txn
    cursor.db = db
    cursor.last_mutation = txn.mutations
    cursor.next_open = txn.cursors
    if txn.cursors is not NULL:
        (<Cursor>txn.cursors).previous_open = <void*>cursor
    txn.cursors = <void*>cursor
    return cursor


@cython.no_gc_clear
cdef class Cursor:
    """A position in one database of a transaction (Transaction.cursor)."""

    def __dealloc__(self):
        if self.cursor is not NULL and self.txn.env.pid == getpid():
            self.close_cursor()

    cdef void close_cursor(self):
        if self.cursor is NULL:
            return
        cdef Transaction txn = self.txn
        if self.previous_open is NULL:
            txn.cursors = self.next_open
        else:
            (<Cursor>self.previous_open).next_open = self.next_open
        if self.next_open is not NULL:
            (<Cursor>self.next_open).previous_open = self.previous_open
        self.next_open = self.previous_open = NULL
        mdb_cursor_close(self.cursor)
        self.cursor = NULL
        self.positioned = False

    cdef bint move(self, MDB_cursor_op op) except -1:
        """Apply `op`; a miss leaves the cursor unpositioned (py-lmdb's _cursor_get_c)."""
        cdef int rc = mdb_cursor_get(self.cursor, &self.key, &self.value, op)
        self.positioned = rc == 0
        self.last_mutation = self.txn.mutations
        if rc:
            self.key.mv_size = 0
            self.value.mv_size = 0
            if rc != MDB_NOTFOUND and not (rc == EINVAL and op == MDB_GET_CURRENT):
                raise error("mdb_cursor_get", rc)
        return self.positioned

    cdef int check(self) except -1:
        if self.cursor is NULL:
            raise ended()
        return 0

    cdef object item(self, int part):
        """The current key (part 1), value (2) or (key, value) (0), read again after a write
        of the transaction moved things under the cursor."""
        if self.last_mutation != self.txn.mutations:
            self.move(MDB_GET_CURRENT)
        if part == 1:
            return val_bytes(&self.key)
        if part == 2:
            return val_bytes(&self.value)
        return val_bytes(&self.key), val_bytes(&self.value)

    def first(self):
        """Move to the first item; False when the database is empty."""
        self.check()
        return self.move(MDB_FIRST)

    def set_range(self, key):
        """Move to the first key >= `key` (an empty key: the first); False past the end."""
        self.check()
        held = as_val(key, &self.key)
        return self.move(MDB_SET_RANGE if self.key.mv_size else MDB_FIRST)

    def iternext(self, bint keys=True, bint values=True):
        """Items from the current one onwards (from the first when unpositioned): keys,
        values or (key, value) pairs."""
        self.check()
        if not self.positioned:
            self.move(MDB_FIRST)
        cdef _Iterator iterator = _Iterator.__new__(_Iterator)
        iterator.cursor = self
        iterator.part = 1 if not values else 2 if not keys else 0
        return iterator

    def __iter__(self):
        return self.iternext()

    def getmulti(self, keys, *, bint values=True):
        """[(key, value)] (values False: [key]) of the `keys` that are present, in order."""
        self.check()
        found = []
        for key in keys:
            held = as_val(key, &self.key)
            if self.move(MDB_SET_KEY):
                found.append((held, val_bytes(&self.value)) if values else held)
        return found

    def putmulti(self, items, bint dupdata=True, bint overwrite=True, bint append=False):
        """Store every (key, value) of `items` -> (consumed, added); a pair not written (the
        key exists and not `overwrite`, or `append` got a key that does not sort last) counts
        as consumed only."""
        self.check()
        cdef MDB_val k, v
        cdef unsigned int flags = ((0 if dupdata else MDB_NODUPDATA)
                                   | (0 if overwrite else MDB_NOOVERWRITE))
        if append:
            flags |= MDB_APPENDDUP if self.db.flags & MDB_DUPSORT else MDB_APPEND
        cdef Py_ssize_t consumed = 0, added = 0
        cdef int rc
        for item in items:
            if type(item) is not tuple or len(<tuple>item) != 2:
                raise TypeError("putmulti() elements must be 2-tuples")
            held_key = as_val((<tuple>item)[0], &k)
            held_value = as_val((<tuple>item)[1], &v)
            rc = mdb_cursor_put(self.cursor, &k, &v, flags)
            self.txn.mutations += 1
            if rc == 0:
                added += 1
            elif rc != MDB_KEYEXIST:
                raise error(f"mdb_cursor_put() element #{consumed}", rc)
            consumed += 1
        return consumed, added

    def close(self):
        self.close_cursor()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_cursor()


@cython.final
cdef class _Iterator:
    """Cursor.iternext's iterator (py-lmdb's): yields the current item, then moves on."""
    cdef Cursor cursor
    cdef int part
    cdef bint started

    def __iter__(self):
        return self

    def __next__(self):
        cdef Cursor cursor = self.cursor
        cursor.check()
        if not cursor.positioned:
            raise StopIteration
        if self.started and not cursor.move(MDB_NEXT):
            raise StopIteration
        self.started = True
        return cursor.item(self.part)
