"""A write transaction that waits never holds the GIL.

Beginning a top-level write transaction waits for LMDB's writer lock, which another process
may hold for as long as its transaction and fsync take. kamicore._lmdb waits without the GIL,
so the process's other threads keep running: in a server, the event loop keeps answering
reads while the writer thread waits.

Each test starts a second process that takes the write lock of the same data dir and keeps it
until this process asks for it back (on its stdin) or, failing that, until a timeout. A GIL
held through the wait would stop the thread that asks, so the lock would come back by timeout:
the tests check who released it, not how fast anything was.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from kamicore import _lmdb, limits
from kamicore.statuses import CodeState, ImportStatus, VerifyStatus

hold_seconds_max = 20  # the holder gives the lock back by itself after this

HOLDER = r"""
import select, sys, time
from kamicore import _lmdb, limits
env = _lmdb.open(sys.argv[1], map_size=limits.map_size_bytes_default,
                 max_dbs=limits.sub_databases_max)
txn = env.begin(write=True)
if sys.argv[3] == "mark":
    txn.put(b"held", b"1")
print("holding", flush=True)
asked = bool(select.select([sys.stdin], [], [], float(sys.argv[2]))[0])
txn.commit()
print("released", "request" if asked else "timeout", time.monotonic(), flush=True)
"""


class Holder:
    """Another process holding the write lock of the data dir `path`."""

    def __init__(self, path, mark: bool = False):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), str(hold_seconds_max),
             "mark" if mark else "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "holding"

    def release(self) -> None:
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def released(self) -> tuple[str, float]:
        """(who released the lock: "request" or "timeout", when on the monotonic clock)"""
        _, how, at = self.process.stdout.readline().split()
        assert self.process.wait(timeout=30) == 0
        return how, float(at)


def test_a_writer_waiting_for_another_process_lets_other_threads_run(tmp_path):
    env = _lmdb.open(tmp_path, map_size=limits.map_size_bytes_default,
                     max_dbs=limits.sub_databases_max)
    holder = Holder(tmp_path, mark=True)

    def release_soon():
        time.sleep(0.3)  # the main thread is waiting in begin(write=True) by now
        holder.release()

    threading.Thread(target=release_soon, daemon=True).start()
    waiting_since = time.monotonic()
    with env.begin(write=True) as txn:
        assert txn.get(b"held") == b"1"  # it began after the other process committed
    how, released_at = holder.released()
    assert how == "request", "the thread that asks for the lock never ran while we waited"
    assert waiting_since < released_at
    env.close()


def test_engine_reads_answer_while_its_writer_waits_for_another_process(engine, tmp_path):
    codes = [f"W-{number:06d}" for number in range(20)]
    assert engine.import_codes("sku-w", "batch-1", codes[:10]).imported == 10
    holder = Holder(tmp_path / "data")
    plan = engine.plan_import_codes("sku-w", "batch-2", codes[10:])
    pending = engine.submit(plan)
    time.sleep(0.2)  # the writer thread is waiting for the other process's lock by now
    verified = engine.verify(codes)
    stock = engine.stock("sku-w")
    assert not pending.done(), "the write did not wait: nothing was tested"
    holder.release()
    how, _ = holder.released()
    assert how == "request", "reads were stopped while the writer waited"
    assert [result.status for result in verified] == ([VerifyStatus.FOUND] * 10
                                                      + [VerifyStatus.NOT_FOUND] * 10)
    assert stock.counts[CodeState.AVAILABLE] == 10
    result = plan.result(pending.result(timeout=30))
    assert result.status == ImportStatus.OK and result.imported == 10
    assert engine.stock("sku-w").counts[CodeState.AVAILABLE] == 20
