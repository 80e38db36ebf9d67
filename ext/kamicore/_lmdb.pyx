"""The engine's binding of the system LMDB (liblmdb, Debian's liblmdb-dev), over its C API.

The engine owns its process's LMDB environment (LMDB forbids opening the same files twice in
one process) and reaches LMDB through this module, never through py-lmdb: the later compiled
write path works on the MDB_txn* / MDB_dbi declared in _lmdb.pxd without the GIL. From Python
it offers the part of py-lmdb's API kamicore uses, with py-lmdb's answers: bytes in and out,
`get` -> None when absent, `put` / `delete` -> whether they wrote, cursor moves -> whether
the cursor is on an item, `putmulti` -> (consumed, added), nested write transactions,
commit-or-abort context managers, and an Error subclass per MDB error code.

Here: the environment, database handles and transactions; cursors are kamicore._lmdb_cursor.

Per-item calls (get, put, delete, cursor moves) keep the GIL: they never wait for anything
but the page cache, and dropping and re-taking the GIL around each is what made py-lmdb cost
more than LMDB itself. The calls that wait release it: beginning a top-level write
transaction (LMDB's writer lock, held by any process), committing one (fsync), opening and
copying the environment.
"""

import os

cimport cython
from cpython.pythread cimport PyThread_get_thread_ident
from libc.errno cimport EACCES, EAGAIN, EBUSY, EINVAL, ENOSPC
from posix.unistd cimport getpid

from kamicore._lmdb_cursor cimport Cursor, open_cursor


class Error(Exception):
    """An LMDB call failed: the message names the call and gives LMDB's own text."""


class MapFullError(Error):
    """MDB_MAP_FULL: the data file has reached its map size; the transaction must abort."""


# py-lmdb's exception class for each other code it names; any code not here raises Error
_ERROR_NAMES = {
    MDB_KEYEXIST: "KeyExistsError", MDB_NOTFOUND: "NotFoundError",
    MDB_PAGE_NOTFOUND: "PageNotFoundError", MDB_CORRUPTED: "CorruptedError",
    MDB_PANIC: "PanicError", MDB_VERSION_MISMATCH: "VersionMismatchError",
    MDB_INVALID: "InvalidError", MDB_DBS_FULL: "DbsFullError",
    MDB_READERS_FULL: "ReadersFullError", MDB_TLS_FULL: "TlsFullError",
    MDB_TXN_FULL: "TxnFullError", MDB_CURSOR_FULL: "CursorFullError",
    MDB_PAGE_FULL: "PageFullError", MDB_MAP_RESIZED: "MapResizedError",
    MDB_INCOMPATIBLE: "IncompatibleError", MDB_BAD_RSLOT: "BadRslotError",
    MDB_BAD_TXN: "BadTxnError", MDB_BAD_VALSIZE: "BadValsizeError", MDB_BAD_DBI: "BadDbiError",
    EACCES: "ReadonlyError", EINVAL: "InvalidParameterError", EAGAIN: "LockError",
    ENOSPC: "DiskError",
}
_ERRORS = {MDB_MAP_FULL: MapFullError}
for _code, _name in _ERROR_NAMES.items():
    _ERRORS[_code] = globals()[_name] = type(_name, (Error,), {"__module__": __name__})


cdef object error(what, int rc):
    return _ERRORS.get(rc, Error)(f"{what}: {mdb_strerror(rc).decode(errors='replace')}")


cdef object ended():
    return Error("Attempt to operate on closed/deleted/dropped object.")


def version():
    """(major, minor, patch) of the linked liblmdb."""
    cdef int major, minor, patch
    mdb_version(&major, &minor, &patch)
    return major, minor, patch


def open(path, **options):
    """Environment(path, **options), as py-lmdb's lmdb.open."""
    return Environment(path, **options)


_open_files = set()  # (st_dev, st_ino) of every data and lock file open in this process
cdef unsigned long long _environments = 0


def _file_keys(path):
    keys = []
    for name in (b"data.mdb", b"lock.mdb"):
        try:
            status = os.stat(os.path.join(path, name))
        except FileNotFoundError:
            continue
        keys.append((status.st_dev, status.st_ino))
    return tuple(keys)


@cython.no_gc_clear
cdef class Environment:
    """An LMDB environment in the directory `path` (created if missing), opened with
    MDB_NOTLS like py-lmdb's, so a read transaction is not tied to a thread."""

    def __cinit__(self, path, *, size_t map_size=10485760, unsigned int max_dbs=0,
                  unsigned int max_readers=126, bint sync=True, bint metasync=True,
                  bint writemap=False, bint readahead=True, bint lock=True, int mode=0o755):
        global _environments
        _environments += 1
        self.serial = _environments
        self.pid = getpid()
        self.file_keys = ()
        path = os.fsencode(path)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        if any(key in _open_files for key in _file_keys(path)):
            raise Error(f"{os.fsdecode(path)}: already open in this process (LMDB allows one "
                        "open per process: pass the engine's environment instead)")
        cdef unsigned int flags = MDB_NOTLS
        flags |= (0 if sync else MDB_NOSYNC) | (0 if metasync else MDB_NOMETASYNC)
        flags |= (MDB_WRITEMAP if writemap else 0) | (0 if readahead else MDB_NORDAHEAD)
        flags |= 0 if lock else MDB_NOLOCK
        cdef const char* c_path = path
        cdef int rc = mdb_env_create(&self.env)
        if rc == 0:
            rc = mdb_env_set_mapsize(self.env, map_size)
        if rc == 0:
            rc = mdb_env_set_maxreaders(self.env, max_readers)
        if rc == 0:
            rc = mdb_env_set_maxdbs(self.env, max_dbs)
        if rc == 0:
            with nogil:  # it may wait for another process's lock on the files
                rc = mdb_env_open(self.env, c_path, flags, mode & ~0o111)
        if rc:
            if self.env is not NULL:
                mdb_env_close(self.env)
                self.env = NULL
            raise error(os.fsdecode(path), rc)
        self.file_keys = _file_keys(path)
        _open_files.update(self.file_keys)
        self.main_db = self.database(None, False)

    def __dealloc__(self):
        if self.env is not NULL:
            self.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef int check_open(self) except -1:
        if self.env is NULL:
            raise ended()
        return 0

    cdef void shutdown(self):
        """Abort every open transaction, then close (this process's handles only after a
        fork: the parent's environment is not the child's to close)."""
        cdef MDB_env* env = self.env
        cdef bint owner = self.pid == getpid()
        while owner and self.live is not NULL:
            (<Transaction>self.live).end(False)  # an abort: it cannot fail
        self.env = NULL
        self.live = NULL
        _open_files.difference_update(self.file_keys)
        if owner:
            with nogil:
                mdb_env_close(env)

    def close(self):
        """Abort the open transactions and close the environment (a no-op once closed)."""
        if self.env is NULL:
            return
        if self.calls_without_gil:
            raise Error("close: another thread is inside an LMDB call of this environment")
        if self.write_thread and self.write_thread != <long>PyThread_get_thread_ident():
            raise Error("close: another thread holds a write transaction of this environment")
        self.shutdown()

    def open_db(self, key=None, *, bint create=True):
        """The handle of the named database `key` (None: the main database), created unless
        `create` is False, in a transaction of its own."""
        if key is not None and (not isinstance(key, bytes) or b"\0" in key):
            raise TypeError("open_db: the name must be bytes without NUL")
        self.check_open()
        return self.database(key, create)

    cdef Database database(self, bytes name, bint create):
        cdef Transaction txn = self.begin_txn(name is not None, None)
        cdef MDB_dbi dbi
        cdef unsigned int flags
        cdef int rc = mdb_dbi_open(txn.txn, NULL if name is None else <const char*>name,
                                   MDB_CREATE if create and name is not None else 0, &dbi)
        if rc == 0:
            rc = mdb_dbi_flags(txn.txn, dbi, &flags)
        if rc:
            txn.end(False)
            raise error("mdb_dbi_open", rc)
        txn.end(True)
        cdef Database db = Database.__new__(Database)
        db.dbi = dbi
        db.flags = flags
        db.env_serial = self.serial
        return db

    def begin(self, *, bint write=False, Transaction parent=None, bint buffers=False):
        """A transaction: read-only (a snapshot) by default; `write` takes LMDB's writer lock
        (waiting without the GIL); `parent` nests a write transaction in another."""
        if buffers:
            raise ValueError("begin: buffers=True is not offered (values are always copied)")
        return self.begin_txn(write, parent)

    cdef Transaction begin_txn(self, bint write, Transaction parent):
        self.check_open()
        cdef MDB_txn* txn = NULL
        cdef MDB_txn* parent_txn = NULL
        cdef int rc
        cdef long thread
        if parent is not None:
            if not parent.write:
                raise error("Read-only transactions cannot be nested.", EINVAL)
            if not write:
                raise error("Read-only child transactions are not offered.", EINVAL)
            if parent.txn is NULL:
                raise ended()
            if parent.env is not self:
                raise Error("begin: the parent belongs to another environment")
            parent_txn = parent.txn
        if not write or parent is not None:
            rc = mdb_txn_begin(self.env, parent_txn, 0 if write else MDB_RDONLY, &txn)
        else:
            thread = <long>PyThread_get_thread_ident()
            if self.write_thread == thread:
                raise error("Attempt to start a write transaction while another write "
                             "transaction is active on the same thread. This would deadlock.",
                             EBUSY)
            self.calls_without_gil += 1
            with nogil:  # LMDB's writer lock: another process may hold it through its fsync
                rc = mdb_txn_begin(self.env, NULL, 0, &txn)
            self.calls_without_gil -= 1
            if rc == 0:
                self.write_thread = thread
        if rc:
            raise error("mdb_txn_begin", rc)
        cdef Transaction created = Transaction.__new__(Transaction)
        created.txn = txn
        created.env = self
        created.write = write
        if parent is not None:
            created.parent = parent
            parent.child = <void*>created
        else:
            created.next_live = self.live
            if self.live is not NULL:
                (<Transaction>self.live).previous_live = <void*>created
            self.live = <void*>created
        return created

    def copy(self, path, bint compact=False):
        """A consistent copy of the data file into the existing empty directory `path`;
        `compact` leaves out free pages."""
        self.check_open()
        path = os.fsencode(path)
        cdef const char* c_path = path
        cdef unsigned int flags = MDB_CP_COMPACT if compact else 0
        cdef int rc
        self.calls_without_gil += 1
        with nogil:
            rc = mdb_env_copy2(self.env, c_path, flags)
        self.calls_without_gil -= 1
        if rc:
            raise error("mdb_env_copy2", rc)


cdef class Database:
    """The handle of one named database of an Environment (Environment.open_db)."""


@cython.no_gc_clear
cdef class Transaction:
    """A transaction of an Environment (Environment.begin). As a context manager it commits
    when the block ends normally and aborts when it raises."""

    def __dealloc__(self):
        if self.txn is not NULL and self.env.pid == getpid():
            try:
                self.end(False)
            except Exception:
                pass

    cdef MDB_dbi dbi_of(self, Database db) except 0:
        if self.txn is NULL:
            raise ended()
        if db is None:
            return self.env.main_db.dbi
        if db.env_serial != self.env.serial:
            raise Error("Database handle belongs to another environment.")
        return db.dbi

    cdef int end(self, bint commit) except -1:
        """Commit or abort: first the live nested transaction (aborted) and the cursors."""
        cdef MDB_txn* txn = self.txn
        cdef Environment env = self.env
        cdef int rc = 0
        if txn is NULL:
            return 0
        if self.child is not NULL:
            (<Transaction>self.child).end(False)
        while self.cursors is not NULL:
            (<Cursor>self.cursors).close_cursor()
        self.txn = NULL
        if self.parent is not None:
            self.parent.child = NULL
        else:
            if self.previous_live is NULL:
                env.live = self.next_live
            else:
                (<Transaction>self.previous_live).next_live = self.next_live
            if self.next_live is not NULL:
                (<Transaction>self.next_live).previous_live = self.previous_live
            self.next_live = self.previous_live = NULL
        if not commit or not self.write:  # a read transaction has nothing to commit
            mdb_txn_abort(txn)
        elif self.parent is not None:
            rc = mdb_txn_commit(txn)  # into the parent: no I/O
        else:
            env.calls_without_gil += 1
            with nogil:  # writes the pages and fsyncs
                rc = mdb_txn_commit(txn)
            env.calls_without_gil -= 1
        if self.write and self.parent is None:
            env.write_thread = 0
        if rc:
            raise error("mdb_txn_commit", rc)
        return 0

    def commit(self):
        if self.txn is NULL:
            raise ended()
        self.end(True)

    def abort(self):
        """Discard the transaction's changes (a no-op once it ended)."""
        self.end(False)

    def __enter__(self):
        if self.txn is NULL:
            raise ended()
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.end(exc_type is None)  # a no-op when the block already ended it

    def get(self, key, default=None, Database db=None):
        """The value of `key` in `db` (default: the main database), or `default`."""
        cdef MDB_val k, v
        cdef MDB_dbi dbi = self.dbi_of(db)
        held = as_val(key, &k)
        cdef int rc = mdb_get(self.txn, dbi, &k, &v)
        if rc == 0:
            return val_bytes(&v)
        if rc == MDB_NOTFOUND:
            return default
        raise error("mdb_get", rc)

    def put(self, key, value, bint dupdata=True, bint overwrite=True, bint append=False,
            Database db=None):
        """Store `key` -> `value`; False when it was not written (the key exists and not
        `overwrite`, or `append` was given a key that does not sort last)."""
        cdef MDB_val k, v
        cdef MDB_dbi dbi = self.dbi_of(db)
        held_key = as_val(key, &k)
        held_value = as_val(value, &v)
        cdef unsigned int flags = ((0 if dupdata else MDB_NODUPDATA)
                                   | (0 if overwrite else MDB_NOOVERWRITE)
                                   | (MDB_APPEND if append else 0))
        self.mutations += 1
        cdef int rc = mdb_put(self.txn, dbi, &k, &v, flags)
        if rc == 0:
            return True
        if rc == MDB_KEYEXIST:
            return False
        raise error("mdb_put", rc)

    def delete(self, key, value=b"", Database db=None):
        """Remove `key`; False when it was not there."""
        cdef MDB_val k, v
        cdef MDB_dbi dbi = self.dbi_of(db)
        held_key = as_val(key, &k)
        held_value = as_val(value, &v)
        self.mutations += 1
        cdef int rc = mdb_del(self.txn, dbi, &k, &v if v.mv_size else NULL)
        if rc == 0:
            return True
        if rc == MDB_NOTFOUND:
            return False
        raise error("mdb_del", rc)

    def cursor(self, Database db=None):
        """A cursor over `db`, unpositioned; closed at the latest when the transaction ends."""
        self.dbi_of(db)
        return open_cursor(self, db if db is not None else self.env.main_db)
