# The C face of kamicore._lmdb, the engine's binding of the system LMDB (liblmdb, Debian's
# liblmdb-dev): the parts of lmdb.h kamicore uses, and the fields of the binding's objects, so
# that compiled modules cimport them and reach MDB_txn* / MDB_dbi without a Python call.
# _lmdb.pyx implements the classes (and _lmdb_cursor.pyx the cursor); setup.py links both
# modules with -llmdb.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.bytes cimport PyBytes_GET_SIZE

cdef extern from "lmdb.h" nogil:
    ctypedef struct MDB_env:
        pass
    ctypedef struct MDB_txn:
        pass
    ctypedef struct MDB_cursor:
        pass
    ctypedef unsigned int MDB_dbi
    ctypedef struct MDB_val:
        size_t mv_size
        void* mv_data

    ctypedef enum MDB_cursor_op:
        MDB_FIRST
        MDB_GET_CURRENT
        MDB_NEXT
        MDB_SET_KEY
        MDB_SET_RANGE

    # environment flags (mdb_env_open)
    enum:
        MDB_NOSYNC
        MDB_NOMETASYNC
        MDB_WRITEMAP
        MDB_NOTLS
        MDB_NOLOCK
        MDB_NORDAHEAD
    # transaction, database and write flags
    enum:
        MDB_RDONLY
        MDB_CREATE
        MDB_DUPSORT
        MDB_NOOVERWRITE
        MDB_NODUPDATA
        MDB_APPEND
        MDB_APPENDDUP
        MDB_CP_COMPACT
    # return codes (the positive ones are errno values)
    enum:
        MDB_SUCCESS
        MDB_KEYEXIST
        MDB_NOTFOUND
        MDB_PAGE_NOTFOUND
        MDB_CORRUPTED
        MDB_PANIC
        MDB_VERSION_MISMATCH
        MDB_INVALID
        MDB_MAP_FULL
        MDB_DBS_FULL
        MDB_READERS_FULL
        MDB_TLS_FULL
        MDB_TXN_FULL
        MDB_CURSOR_FULL
        MDB_PAGE_FULL
        MDB_MAP_RESIZED
        MDB_INCOMPATIBLE
        MDB_BAD_RSLOT
        MDB_BAD_TXN
        MDB_BAD_VALSIZE
        MDB_BAD_DBI

    char* mdb_version(int* major, int* minor, int* patch)
    char* mdb_strerror(int err)

    int mdb_env_create(MDB_env** env)
    int mdb_env_set_mapsize(MDB_env* env, size_t size)
    int mdb_env_set_maxreaders(MDB_env* env, unsigned int readers)
    int mdb_env_set_maxdbs(MDB_env* env, MDB_dbi dbs)
    int mdb_env_open(MDB_env* env, const char* path, unsigned int flags, unsigned int mode)
    int mdb_env_copy2(MDB_env* env, const char* path, unsigned int flags)
    void mdb_env_close(MDB_env* env)

    int mdb_txn_begin(MDB_env* env, MDB_txn* parent, unsigned int flags, MDB_txn** txn)
    int mdb_txn_commit(MDB_txn* txn)
    void mdb_txn_abort(MDB_txn* txn)

    int mdb_dbi_open(MDB_txn* txn, const char* name, unsigned int flags, MDB_dbi* dbi)
    int mdb_dbi_flags(MDB_txn* txn, MDB_dbi dbi, unsigned int* flags)

    int mdb_get(MDB_txn* txn, MDB_dbi dbi, MDB_val* key, MDB_val* data)
    int mdb_put(MDB_txn* txn, MDB_dbi dbi, MDB_val* key, MDB_val* data, unsigned int flags)
    int mdb_del(MDB_txn* txn, MDB_dbi dbi, MDB_val* key, MDB_val* data)

    int mdb_cursor_open(MDB_txn* txn, MDB_dbi dbi, MDB_cursor** cursor)
    void mdb_cursor_close(MDB_cursor* cursor)
    int mdb_cursor_get(MDB_cursor* cursor, MDB_val* key, MDB_val* data, MDB_cursor_op op)
    int mdb_cursor_put(MDB_cursor* cursor, MDB_val* key, MDB_val* data, unsigned int flags)


cdef class Environment:
    cdef MDB_env* env  # NULL once closed
    cdef unsigned long long serial  # tells this environment's Database handles from others'
    cdef Database main_db
    cdef object file_keys  # (st_dev, st_ino) of data.mdb and lock.mdb: open once per process
    cdef long pid  # the process that opened it (a forked child must not touch LMDB)
    cdef void* live  # the first open top-level Transaction (borrowed; they unlink themselves)
    cdef long write_thread  # thread holding this environment's top-level write txn, or 0
    cdef int calls_without_gil  # LMDB calls running with the GIL released; close waits for none
    cdef int check_open(self) except -1
    cdef void shutdown(self)
    cdef Database database(self, bytes name, bint create)
    cdef Transaction begin_txn(self, bint write, Transaction parent)


cdef class Database:
    cdef readonly MDB_dbi dbi
    cdef unsigned int flags  # mdb_dbi_flags: MDB_DUPSORT decides MDB_APPEND or MDB_APPENDDUP
    cdef unsigned long long env_serial


cdef class Transaction:
    cdef MDB_txn* txn  # NULL once committed or aborted
    cdef readonly Environment env
    cdef Transaction parent
    cdef void* child  # the live nested Transaction (borrowed), or NULL
    cdef void* next_live  # the environment's list of open top-level transactions
    cdef void* previous_live
    cdef void* cursors  # the first live _lmdb_cursor.Cursor (borrowed; closed before the end)
    cdef readonly bint write
    cdef unsigned long long mutations  # puts and deletes: a cursor re-reads its item after one
    cdef MDB_dbi dbi_of(self, Database db) except 0
    cdef int end(self, bint commit) except -1


cdef object error(what, int rc)  # the Error subclass py-lmdb raises for rc, with LMDB's text
cdef object ended()  # the Error for a call on a closed environment, transaction or cursor


cdef inline object as_val(object data, MDB_val* val):
    """Point `val` at the bytes of `data` (bytes, or any buffer but str); returns the object that
    must stay alive while LMDB reads them."""
    if not PyBytes_CheckExact(data):
        if isinstance(data, str):
            raise TypeError("Won't implicitly convert Unicode to bytes; use .encode()")
        data = bytes(memoryview(data))
    val.mv_data = PyBytes_AS_STRING(data)
    val.mv_size = <size_t>PyBytes_GET_SIZE(data)
    return data


cdef inline bytes val_bytes(MDB_val* val):
    """A copy of what `val` points at (in the map: valid only until the transaction ends)."""
    return PyBytes_FromStringAndSize(<char*>val.mv_data, <Py_ssize_t>val.mv_size)
