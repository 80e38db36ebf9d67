"""kamicore._lmdb, the engine's binding of the system LMDB, gives py-lmdb's answers.

Each row of SCENARIOS runs the same operations against py-lmdb and against the binding, each
on its own data dir filled alike, and both must observe the same: values, booleans, counts,
iteration order and the class of every exception. The rows cover every call core/engine and
ext/ make. The binding's own promises (one open per process, ending what is left open) follow.
"""

from __future__ import annotations

import subprocess
import sys

import lmdb
import pytest

from kamicore import _lmdb

LIBRARIES = {"py-lmdb": lmdb, "kamicore._lmdb": _lmdb}
SEED = [(b"a", b"1"), (b"b", b"22"), (b"d", b"4444"), (b"f", b"")]
map_size_small_bytes = 2**20  # room for about a thousand 1 kB values


class Store:
    """One library's environment: `items` holds SEED, `empty` nothing."""

    def __init__(self, library, path, map_size: int = 2**24):
        self.library = library
        self.env = library.open(str(path), map_size=map_size, max_dbs=4)
        self.db = self.env.open_db(b"items")
        self.empty = self.env.open_db(b"empty")
        with self.env.begin(write=True) as txn:
            for key, value in SEED:
                txn.put(key, value, db=self.db)

    def contents(self) -> list:
        with self.env.begin() as txn:
            return [list(txn.cursor(db=self.db)), txn.get(b"m")]


def outcome(function, *args, **kwargs):
    """What a call answered, or the name of the exception class it raised."""
    try:
        return function(*args, **kwargs)
    except Exception as error:
        return ("raises", type(error).__name__)


def get_calls(s: Store) -> list:
    with s.env.begin() as txn:
        found = [outcome(txn.get, key, db=s.db) for key in (b"a", b"f", b"c", b"zz", b"a" * 9)]
        return found + [
            outcome(txn.get, b"c", b"default", db=s.db), outcome(txn.get, b"c", default=7, db=s.db),
            outcome(txn.get, bytearray(b"b"), db=s.db), outcome(txn.get, memoryview(b"d"), db=s.db),
            outcome(txn.get, b"", db=s.db), outcome(txn.get, "a", db=s.db),
            outcome(txn.get, b"k" * 600, db=s.db), outcome(txn.get, b"a"),
            outcome(txn.get, b"a", db=s.empty)]


def put_calls(s: Store) -> list:
    with s.env.begin(write=True) as txn:
        answers = [
            outcome(txn.put, b"c", b"3", db=s.db), outcome(txn.put, b"c", b"33", db=s.db),
            outcome(txn.put, b"c", b"x", overwrite=False, db=s.db),
            outcome(txn.put, b"z", b"26", append=True, db=s.db),
            outcome(txn.put, b"e", b"5", append=True, db=s.db),  # does not sort last
            outcome(txn.put, b"", b"v", db=s.db), outcome(txn.put, b"k" * 600, b"v", db=s.db),
            outcome(txn.put, "s", b"v", db=s.db), outcome(txn.put, b"s", 5, db=s.db),
            outcome(txn.put, bytearray(b"g"), memoryview(b"7"), db=s.db),
            outcome(txn.put, b"m", b"main"), outcome(txn.put, b"big", b"v" * 9000, db=s.db)]
    return answers + s.contents()


def delete_calls(s: Store) -> list:
    with s.env.begin(write=True) as txn:
        answers = [outcome(txn.delete, b"a", db=s.db), outcome(txn.delete, b"a", db=s.db),
                   outcome(txn.delete, b"c", db=s.db), outcome(txn.delete, b"", db=s.db),
                   outcome(txn.delete, b"f", db=s.db), outcome(txn.delete, b"b", db=s.empty)]
    return answers + s.contents()


def empty_database(s: Store) -> list:
    with s.env.begin() as txn:
        cursor = txn.cursor(db=s.empty)
        return [outcome(cursor.first), outcome(lambda: list(cursor)),
                outcome(cursor.set_range, b"a"),
                outcome(lambda: list(cursor.iternext(keys=True, values=False))),
                outcome(cursor.getmulti, [b"a"]), outcome(cursor.set_range, b"")]


def cursor_moves(s: Store) -> list:
    with s.env.begin() as txn:
        cursor = txn.cursor(db=s.db)
        keys = lambda: list(cursor.iternext(keys=True, values=False))  # noqa: E731
        answers = [outcome(cursor.set_range, b"b"), keys(),  # from the key itself
                   outcome(cursor.set_range, b"c"), list(cursor.iternext()),  # between two
                   outcome(cursor.set_range, b"g"), keys(),  # past the end: from the first
                   outcome(cursor.set_range, b""), keys(),  # an empty key: the first
                   outcome(cursor.first), list(cursor.iternext(keys=False)),
                   list(cursor), list(cursor.iternext(values=False))]
        iterator = cursor.iternext(values=False)
        answers += [next(iterator), next(iterator), keys()]  # on from the current item
        cursor.set_range(b"d")
        answers += [list(zip(range(1), cursor.iternext(), strict=False)), keys()]
        answers += [outcome(cursor.set_range, "b"), outcome(cursor.set_range, b"k" * 600)]
        return answers


def cursor_after_writes(s: Store) -> list:
    """A write of the same transaction moves things under a positioned cursor."""
    with s.env.begin(write=True) as txn:
        cursor = txn.cursor(db=s.db)
        keys = lambda: list(cursor.iternext(keys=True, values=False))  # noqa: E731
        cursor.set_range(b"b")
        txn.put(b"c", b"3", db=s.db)
        answers = [keys()]
        cursor.set_range(b"b")
        txn.put(b"b", b"changed", db=s.db)
        answers.append(list(cursor.iternext()))
        cursor.putmulti([(b"e", b"5")])
        answers.append(list(cursor.iternext()))
        txn.abort()
    return answers


def getmulti_calls(s: Store) -> list:
    with s.env.begin() as txn:
        cursor = txn.cursor(db=s.db)
        wanted = [b"d", b"a", b"c", b"a", b"zz", bytearray(b"f")]
        return [outcome(cursor.getmulti, wanted), outcome(cursor.getmulti, wanted, values=True),
                outcome(cursor.getmulti, wanted, values=False), outcome(cursor.getmulti, []),
                outcome(cursor.getmulti, iter([b"b"])), outcome(cursor.getmulti, [b""]),
                outcome(cursor.getmulti, ["a"])]


def putmulti_calls(s: Store) -> list:
    with s.env.begin(write=True) as txn:
        cursor = txn.cursor(db=s.db)
        answers = [
            outcome(cursor.putmulti, [(b"c", b"3"), (b"a", b"11")]),
            outcome(cursor.putmulti, [(b"c", b"x"), (b"e", b"5")], overwrite=False),
            outcome(cursor.putmulti, [(b"x", b"1"), (b"y", b"2")], True, True, True),
            outcome(cursor.putmulti, [(b"w", b"1"), (b"z", b"2")], append=True),  # w: not last
            outcome(cursor.putmulti, []), outcome(cursor.putmulti, iter([(b"g", b"7")])),
            outcome(cursor.putmulti, [[b"q", b"1"]]), outcome(cursor.putmulti, [(b"q",)]),
            outcome(cursor.putmulti, [(b"", b"1")]), outcome(cursor.putmulti, [(b"r", "1")])]
    return answers + s.contents()


def nested_transactions(s: Store) -> list:
    answers = []
    with s.env.begin(write=True) as parent:
        child = s.env.begin(write=True, parent=parent)
        child.put(b"c", b"child", db=s.db)
        answers += [child.get(b"c", db=s.db), outcome(parent.get, b"c", db=s.db)]
        child.abort()
        answers.append(parent.get(b"c", db=s.db))  # the aborted child left nothing
        child = s.env.begin(write=True, parent=parent)
        child.put(b"e", b"5", db=s.db)
        child.delete(b"a", db=s.db)
        grandchild = s.env.begin(write=True, parent=child)
        grandchild.put(b"g", b"7", db=s.db)
        grandchild.commit()
        child.commit()
        answers += [parent.get(b"e", db=s.db), parent.get(b"a", db=s.db),
                    parent.get(b"g", db=s.db), outcome(child.get, b"e", db=s.db)]
        answers.append(outcome(s.env.begin, write=False, parent=parent))
    answers += s.contents()
    reader = s.env.begin()
    answers.append(outcome(s.env.begin, write=True, parent=reader))  # a read txn has no child
    reader.abort()
    parent = s.env.begin(write=True)
    child = s.env.begin(write=True, parent=parent)
    child.put(b"h", b"8", db=s.db)
    child.commit()
    parent.abort()  # the committed child goes with its parent
    return answers + s.contents()


def context_managers(s: Store) -> list:
    with s.env.begin(write=True) as txn:
        txn.put(b"c", b"3", db=s.db)
    try:
        with s.env.begin(write=True) as txn:
            txn.put(b"e", b"5", db=s.db)
            raise KeyError("abort me")
    except KeyError:
        pass
    with s.env.begin(write=True) as txn:
        txn.put(b"g", b"7", db=s.db)
        txn.commit()
    with s.env.begin(write=True) as txn:
        txn.put(b"h", b"8", db=s.db)
        txn.abort()
    ended = s.env.begin()
    cursor = ended.cursor(db=s.db)
    ended.abort()
    answers = [outcome(ended.get, b"a", db=s.db), outcome(ended.commit), outcome(ended.abort),
               outcome(ended.__enter__), outcome(ended.cursor, db=s.db), outcome(cursor.first),
               outcome(lambda: list(cursor))]
    return answers + s.contents()


def snapshots(s: Store) -> list:
    reader = s.env.begin()
    with s.env.begin(write=True) as txn:
        txn.put(b"c", b"3", db=s.db)
    answers = [reader.get(b"c", db=s.db)]  # still the snapshot it began with
    reader.abort()
    with s.env.begin() as txn:
        answers.append(txn.get(b"c", db=s.db))
    return answers


def databases(s: Store) -> list:
    answers = [outcome(s.env.open_db, b"missing", create=False)]
    again, new = s.env.open_db(b"items"), s.env.open_db(b"new")
    with s.env.begin(write=True) as txn:
        answers.append(txn.get(b"b", db=again))
        answers.append(txn.put(b"n", b"1", db=new))
    reopened = s.env.open_db(b"new", create=False)
    with s.env.begin() as txn:
        answers.append(list(txn.cursor(db=reopened)))
    return answers


def same_thread_writer(s: Store) -> list:
    txn = s.env.begin(write=True)
    answers = [outcome(s.env.begin, write=True)]  # LMDB's writer lock is not reentrant
    txn.abort()
    with s.env.begin(write=True) as txn:
        answers.append(txn.put(b"c", b"3", db=s.db))
    return answers


def full_map(s: Store) -> list:
    """A full map fails the put with MapFullError; aborting the nested transaction leaves the
    parent usable, and aborting a full top-level transaction leaves the environment usable."""
    answers = []
    with s.env.begin(write=True) as parent:
        child = s.env.begin(write=True, parent=parent)
        answers.append(outcome(_fill, child, s.db))
        child.abort()
        answers.append(parent.put(b"after-child", b"ok", db=s.db))
    answers.append(s.contents())
    try:
        with s.env.begin(write=True) as txn:
            _fill(txn, s.db)
    except s.library.MapFullError:
        answers.append("MapFullError")
    with s.env.begin(write=True) as txn:
        answers.append(txn.put(b"later", b"ok", db=s.db))
    return answers + s.contents()


def _fill(txn, db) -> None:
    for number in range(10_000):
        txn.put(number.to_bytes(4, "big"), b"x" * 1000, db=db)


SCENARIOS = {
    "get": (get_calls, None), "put": (put_calls, None), "delete": (delete_calls, None),
    "empty database": (empty_database, None), "cursor moves": (cursor_moves, None),
    "cursor after writes": (cursor_after_writes, None), "getmulti": (getmulti_calls, None),
    "putmulti": (putmulti_calls, None), "nested transactions": (nested_transactions, None),
    "context managers": (context_managers, None), "snapshots": (snapshots, None),
    "databases": (databases, None), "same-thread writer": (same_thread_writer, None),
    "full map": (full_map, map_size_small_bytes),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_binding_answers_as_py_lmdb_does(name, tmp_path):
    scenario, map_size = SCENARIOS[name]
    observed = {}
    for label, library in LIBRARIES.items():
        store = Store(library, tmp_path / label, **({"map_size": map_size} if map_size else {}))
        try:
            observed[label] = scenario(store)
        finally:
            store.env.close()
    assert observed["kamicore._lmdb"] == observed["py-lmdb"]


def test_the_full_map_row_really_fills_the_map(tmp_path):
    store = Store(_lmdb, tmp_path, map_size=map_size_small_bytes)
    assert full_map(store)[0] == ("raises", "MapFullError")
    store.env.close()


# -- the binding's own promises ------------------------------------------------------------------

def test_the_package_runs_without_py_lmdb(tmp_path):
    """Serving, the CLI and the engine at work never load py-lmdb (a second copy of LMDB)."""
    script = ("import sys; import kamicore.cli, kamicore.grpc.services;"
              " import kamicore.runtime.supervisor; from kamicore.engine import Engine;"
              f" engine = Engine({str(tmp_path)!r}); engine.import_codes('s', 'b', ['C-000001']);"
              " engine.close(); print(sorted(name for name in sys.modules"
              " if name.split('.')[0] == 'lmdb'))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_a_data_dir_opens_once_per_process(tmp_path):
    env = _lmdb.open(tmp_path, max_dbs=2)
    with pytest.raises(_lmdb.Error, match="already open in this process"):
        _lmdb.open(tmp_path, max_dbs=2)
    env.close()
    _lmdb.open(tmp_path, max_dbs=2).close()  # closed: it may open again


def test_closing_the_environment_ends_what_is_left_open(tmp_path):
    store = Store(_lmdb, tmp_path)
    reader = store.env.begin()
    cursor = reader.cursor(db=store.db)
    assert cursor.first()
    writer = store.env.begin(write=True)
    child = store.env.begin(write=True, parent=writer)
    child.put(b"lost", b"1", db=store.db)
    store.env.close()
    for call in (lambda: reader.get(b"a", db=store.db), cursor.first, lambda: list(cursor),
                 lambda: child.get(b"a", db=store.db), writer.commit, store.env.begin):
        with pytest.raises(_lmdb.Error):
            call()
    reopened = Store(_lmdb, tmp_path)
    assert reopened.contents() == [SEED, None]  # the open writer was aborted
    reopened.env.close()


def test_a_handle_of_another_environment_is_refused(tmp_path):
    first, second = Store(_lmdb, tmp_path / "first"), Store(_lmdb, tmp_path / "second")
    with second.env.begin() as txn, pytest.raises(_lmdb.Error, match="another environment"):
        txn.get(b"a", db=first.db)
    first.env.close()
    second.env.close()


def test_a_compact_copy_holds_the_same_records(tmp_path):
    store = Store(_lmdb, tmp_path / "source")
    (tmp_path / "copy").mkdir()
    store.env.copy(tmp_path / "copy", compact=True)
    store.env.close()
    copied = _lmdb.open(tmp_path / "copy", max_dbs=4)
    items = copied.open_db(b"items", create=False)
    with copied.begin() as txn:
        assert list(txn.cursor(db=items)) == SEED
    copied.close()
