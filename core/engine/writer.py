"""The one commit path: plans, queued and applied by the group-commit writer.

Every change, from any layer (code transitions, catalog, orders, API keys, key rotation), is a
`Plan`: a function run inside the writer's transaction, the actor the audit log names, and how
its raw answer becomes the caller's result — including the caller's own status when the data
file is full. The writer takes everything queued while the previous commit was in flight,
applies it in ONE LMDB write transaction (each plan in a nested transaction, so a plan that
fails - e.g. on a full map - leaves nothing behind and does not disturb the others), commits
with fsync, and only then completes every caller. Reads never wait for it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Any
from collections.abc import Callable

from .. import _lmdb, limits
from .errors import EngineClosed
from .validate import text

log = logging.getLogger("kamicore.engine")

STORAGE_FULL = object()  # a plan's raw answer when its writes did not fit in the data file


class Plan:
    """One write: `function(tx, *args)` in the writer's transaction, then `convert(raw)` in the
    caller; `full()` is the caller's answer when the data file had no room for it.

    replayable: `function(tx, *args, replay_only=True)` answers on a read snapshot when the
    plan only retries requests already committed (their answers are settled and nothing would
    be written), else returns None; the engine then answers without the writer."""

    __slots__ = ("function", "args", "actor", "convert", "full", "replayable")

    def __init__(self, function: Callable, args: tuple, actor: str | bytes,
                 convert: Callable[[Any], Any], full: Callable[[], Any],
                 replayable: bool = False):
        self.function = function
        self.args = args
        self.actor = text(actor, "actor", limits.actor_bytes_max)
        self.convert = convert
        self.full = full
        self.replayable = replayable

    def result(self, raw):
        return self.full() if raw is STORAGE_FULL else self.convert(raw)


class _Queued:
    """A plan waiting for the writer, and whom to tell: a concurrent Future (blocking callers),
    or an asyncio future with its loop (every asyncio caller of one commit is completed by ONE
    wake-up of its loop)."""

    __slots__ = ("plan", "future", "loop")

    def __init__(self, plan: Plan, future, loop: asyncio.AbstractEventLoop | None):
        self.plan = plan
        self.future = future
        self.loop = loop

    def start(self) -> bool:
        """False when the caller gave up (deadline, disconnect) before its plan started: it is
        not applied. From here on it can no longer be cancelled."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()  # read from this thread: a racy but safe peek


def _settle(outcomes: list) -> None:
    """In the caller's event loop: hand every caller of one commit its answer."""
    for future, raw, error in outcomes:
        if future.done():  # cancelled while its plan ran; the change stands
            continue
        if error is None:
            future.set_result(raw)
        else:
            future.set_exception(error)


class Writer:
    """The group-commit writer thread of one environment."""

    def __init__(self, env: _lmdb.Environment, make_tx: Callable, clock: Callable[[], int]):
        self._env = env
        self._make_tx = make_tx  # (txn, now_ms, actor) -> what plan functions receive
        self._clock = clock
        self._pid = os.getpid()
        self._queue: collections.deque[_Queued] = collections.deque()
        self._wakeup = threading.Condition(threading.Lock())
        self._closed = False
        self.on_commit = None  # called with (operations, seconds) after every group commit
        self.commits = 0  # commits done by this writer
        self.operations_committed = 0
        self._thread = threading.Thread(target=self._write_loop, name="kamicore-writer",
                                        daemon=True)
        self._thread.start()

    def _enqueue(self, queued: _Queued) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError("this Engine was opened before a fork; open it in the child")
        with self._wakeup:
            if self._closed:
                raise EngineClosed("the engine is closed")
            self._queue.append(queued)
            self._wakeup.notify()

    def submit(self, plan: Plan) -> Future:
        """Queue `plan` for the next group commit; the future gets its raw answer."""
        future: Future = Future()
        self._enqueue(_Queued(plan, future, None))
        return future

    def run(self, plan: Plan):
        """Run `plan` in the next group commit and block until that commit returned."""
        return plan.result(self.submit(plan).result())

    async def run_async(self, plan: Plan):
        """The same, awaited."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._enqueue(_Queued(plan, future, loop))
        return plan.result(await future)

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._wakeup:
            if self._closed:
                return
            self._closed = True
            self._wakeup.notify()
        self._thread.join()

    def _write_loop(self) -> None:
        queue = self._queue
        while True:
            with self._wakeup:
                while not queue and not self._closed:
                    self._wakeup.wait()
                if not queue and self._closed:
                    return
                group = [queue.popleft()
                         for _ in range(min(len(queue), limits.operations_per_commit_max))]
            group = [queued for queued in group if queued.start()]
            if not group:
                continue
            try:
                outcomes = self._commit_group(group)
            except BaseException as error:  # the writer must outlive any failure
                log.exception("a group commit failed")
                outcomes = [(queued, None, error) for queued in group]
            self._complete(outcomes)

    def _complete(self, outcomes: list) -> None:
        by_loop: dict = {}
        for queued, raw, error in outcomes:
            if queued.loop is None:
                if error is None:
                    queued.future.set_result(raw)
                else:
                    queued.future.set_exception(error)
            else:
                by_loop.setdefault(queued.loop, []).append((queued.future, raw, error))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting
                pass

    def _commit_group(self, group: list[_Queued]) -> list:
        """Apply and commit `group` -> [(queued, raw answer, error or None)]."""
        started = time.perf_counter()
        now_ms = self._clock()
        try:
            txn = self._env.begin(write=True)
        except Exception as error:  # the environment itself failed
            return [(queued, None, error) for queued in group]
        outcomes, done = [], []
        for queued in group:
            plan = queued.plan
            child = self._env.begin(write=True, parent=txn)
            try:
                raw = plan.function(self._make_tx(child, now_ms, plan.actor), *plan.args)
                child.commit()
                done.append((queued, raw))
            except _lmdb.MapFullError:
                child.abort()
                outcomes.append((queued, STORAGE_FULL, None))
            except BaseException as error:  # a bug: this plan only, nothing written
                child.abort()
                outcomes.append((queued, None, error))
        try:
            txn.commit()
        except _lmdb.MapFullError:  # the commit itself needed pages the file does not have
            return outcomes + [(queued, STORAGE_FULL, None) for queued, _ in done]
        except Exception as error:
            return outcomes + [(queued, None, error) for queued, _ in done]
        self.commits += 1
        self.operations_committed += len(done)
        if self.on_commit is not None:
            try:
                self.on_commit(len(done), time.perf_counter() - started)
            except Exception:  # metrics must never stop the writer
                log.exception("on_commit failed")
        return outcomes + [(queued, raw, None) for queued, raw in done]
