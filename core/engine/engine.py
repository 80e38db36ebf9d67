"""The engine: one LMDB data dir, its group-commit writer, and the public API over both.

This is the seam a second storage backend implements (see kamicore.engine.__init__): plans
run by `run`/`run_async` (the engine's own operations from `plan_*`, the domain layers' from
`plan`), reads answered as plain result types, and the integrity check.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from .. import _lmdb, keyring, limits
from ..statuses import ReleaseStatus
from . import validate
from .implementation import load_implementation
from .integrity import Integrity
from .outbox import Outbox
from .keys import KeyService, load_lookup_key
from .plans import Plans
from .reads import Reads
from .results import (
    CodeOpResult, ConfirmResult, ImportResult, MissResult, RedeemResult, ReportInvalidResult,
    ReserveResult, UnlockResult,
)
from .transaction import Tables, Transaction
from .writer import Plan, Writer


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _in_transaction(tx, function: Callable, context: tuple, args: tuple):
    """A domain plan's function, handed the narrow Transaction face instead of the Tx."""
    return function(Transaction(tx, *context), *args)


def _same(raw):
    return raw


class Engine(Plans, Reads, Outbox, Integrity):
    """The code inventory in one LMDB data dir. Every write returns after the commit (fsync)
    that holds it; `AsyncEngine` offers the same calls for asyncio. Open it in the process that
    uses it (after any fork); several processes may open the same dir at once."""

    def __init__(self, path: str | os.PathLike, *,
                 map_size_bytes: int = limits.map_size_bytes_default,
                 clock: Callable[[], int] = wall_clock_ms, master_key_file: str | None = None,
                 implementation: str = "compiled"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        validate.integer(map_size_bytes, "map_size_bytes", limits.map_size_bytes_min,
                         limits.map_size_bytes_max)
        self.impl = load_implementation(implementation)
        self.ops = self.impl.ops  # the compiled (or interpreted) operations
        self.codec = self.impl.codec
        self._clock = clock
        # the engine's own binding of the system LMDB (kamicore._lmdb): the process's one
        # environment of this data dir, every commit fsync'd
        self.env = _lmdb.open(self.path, map_size=map_size_bytes,
                              max_dbs=limits.sub_databases_max, max_readers=limits.readers_max,
                              sync=True, metasync=True, writemap=False, readahead=False,
                              lock=True)
        self.dbs = self.ops.Dbs(self.env)
        self.tables = Tables(self.env)
        ring = keyring.MasterKeyring.load(self.path, master_key_file)
        self.keys = KeyService(ring, load_lookup_key(self.env, self.dbs.meta, ring), self.codec)
        self._domain_context = (self.tables, self.ops, self.codec, self.keys)
        self._writer = Writer(self.env, self._make_tx, clock)

    def _make_tx(self, txn, now_ms: int, actor: bytes):
        return self.ops.Tx(txn, self.dbs, self.keys, now_ms, actor)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the environment."""
        self._writer.close()
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def backup(self, destination: str | os.PathLike) -> None:
        """A consistent, compacted copy of the data file into the empty dir `destination`."""
        self.env.copy(str(destination), compact=True)

    @property
    def on_commit(self):
        """Called with (operations, seconds) after every group commit (metrics)."""
        return self._writer.on_commit

    @on_commit.setter
    def on_commit(self, callback) -> None:
        self._writer.on_commit = callback

    def seal_secret(self, purpose: bytes, plaintext: bytes) -> bytes:
        """A domain layer's secret sealed for its tables: readable after any key rotation,
        by this data file's master key only (kamicore.engine.keys)."""
        return self.keys.seal_secret(purpose, plaintext)

    def open_secret(self, purpose: bytes, sealed: bytes) -> bytes:
        """The plaintext of seal_secret(purpose, ...) (keyring.DecryptionError if tampered)."""
        return self.keys.open_secret(purpose, sealed)

    def now_ms(self) -> int:
        """The engine's clock (what the next commit's plans see as now)."""
        return self._clock()

    @property
    def commits(self) -> int:
        return self._writer.commits

    @property
    def operations_committed(self) -> int:
        return self._writer.operations_committed

    # -- the one commit path -----------------------------------------------------------

    def plan(self, function: Callable, args: tuple, actor: str | bytes, *,
             full: Callable[[], Any], convert: Callable[[Any], Any] = _same) -> Plan:
        """A domain layer's write: `function(transaction, *args)` runs in the writer's
        transaction with a kamicore.engine.Transaction; `full()` is the caller's answer when
        the data file has no room (every write must say what that is)."""
        return Plan(_in_transaction, (function, self._domain_context, args), actor, convert,
                    full)

    def run(self, plan: Plan):
        """Run `plan` in the next group commit; returns after that commit (fsync). A retry of
        committed requests is answered from a snapshot instead (see Plan.replayable)."""
        raw = self._replayed(plan)
        return self._writer.run(plan) if raw is None else plan.convert(raw)

    async def run_async(self, plan: Plan):
        raw = self._replayed(plan)
        return await self._writer.run_async(plan) if raw is None else plan.convert(raw)

    def _replayed(self, plan: Plan):
        """A replayable plan's settled answer, read without the writer; None: it must write."""
        if not plan.replayable:
            return None
        with self.read() as txn:
            return plan.function(self._make_tx(txn, self._clock(), plan.actor), *plan.args,
                                 replay_only=True)

    def submit(self, plan: Plan):
        """Queue `plan` and return a concurrent.futures.Future of its raw answer (tests and
        benchmarks that need the queue itself); `plan.result(raw)` converts it."""
        return self._writer.submit(plan)

    # -- blocking faces of the engine's own operations ----------------------------------

    def import_codes(self, sku, batch, codes: Sequence, **options) -> ImportResult:
        return self.run(self.plan_import_codes(sku, batch, codes, **options))

    def reserve(self, orders, **options) -> list[ReserveResult]:
        return self.run(self.plan_reserve(orders, **options))

    def confirm(self, order_ids, **options) -> list[ConfirmResult]:
        return self.run(self.plan_confirm(order_ids, **options))

    def release(self, order_ids, **options) -> list[ReleaseStatus]:
        return self.run(self.plan_release(order_ids, **options))

    def expire_holds(self, **options) -> list[str]:
        return self.run(self.plan_expire_holds(**options))

    def redeem(self, redemptions, terminal, **options) -> list[RedeemResult]:
        return self.run(self.plan_redeem(redemptions, terminal, **options))

    def count_misses(self, terminal, count=1, **options) -> MissResult | None:
        return self.run(self.plan_count_misses(terminal, count, **options))

    def unlock_terminal(self, terminal, **options) -> UnlockResult:
        return self.run(self.plan_unlock_terminal(terminal, **options))

    def freeze(self, codes, **options) -> list[CodeOpResult]:
        return self.run(self.plan_freeze(codes, **options))

    def unfreeze(self, codes, **options) -> list[CodeOpResult]:
        return self.run(self.plan_unfreeze(codes, **options))

    def void(self, codes, **options) -> list[CodeOpResult]:
        return self.run(self.plan_void(codes, **options))

    def report_invalid(self, reports, **options) -> list[ReportInvalidResult]:
        return self.run(self.plan_report_invalid(reports, **options))

    def rotate_keys(self, new_master_key: bytes | None = None, **options) -> int | None:
        """Re-wrap every data key under a new master key -> how many batches (None: the data
        file is full and nothing changed)."""
        return self.run(self.plan_rotate_keys(new_master_key, **options))


class AsyncEngine:
    """asyncio face of an Engine: the same writer, awaited instead of blocked on."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def import_codes(self, sku, batch, codes, **options) -> ImportResult:
        return await self.engine.run_async(
            self.engine.plan_import_codes(sku, batch, codes, **options))

    async def reserve(self, orders, **options) -> list[ReserveResult]:
        return await self.engine.run_async(self.engine.plan_reserve(orders, **options))

    async def confirm(self, order_ids, **options) -> list[ConfirmResult]:
        return await self.engine.run_async(self.engine.plan_confirm(order_ids, **options))

    async def release(self, order_ids, **options) -> list[ReleaseStatus]:
        return await self.engine.run_async(self.engine.plan_release(order_ids, **options))

    async def expire_holds(self, **options) -> list[str]:
        return await self.engine.run_async(self.engine.plan_expire_holds(**options))

    async def redeem(self, redemptions, terminal, **options) -> list[RedeemResult]:
        return await self.engine.run_async(
            self.engine.plan_redeem(redemptions, terminal, **options))

    async def count_misses(self, terminal, count=1, **options) -> MissResult | None:
        return await self.engine.run_async(
            self.engine.plan_count_misses(terminal, count, **options))

    async def unlock_terminal(self, terminal, **options) -> UnlockResult:
        return await self.engine.run_async(self.engine.plan_unlock_terminal(terminal, **options))

    async def freeze(self, codes, **options) -> list[CodeOpResult]:
        return await self.engine.run_async(self.engine.plan_freeze(codes, **options))

    async def unfreeze(self, codes, **options) -> list[CodeOpResult]:
        return await self.engine.run_async(self.engine.plan_unfreeze(codes, **options))

    async def void(self, codes, **options) -> list[CodeOpResult]:
        return await self.engine.run_async(self.engine.plan_void(codes, **options))

    async def report_invalid(self, reports, **options) -> list[ReportInvalidResult]:
        return await self.engine.run_async(self.engine.plan_report_invalid(reports, **options))

    async def rotate_keys(self, new_master_key: bytes | None = None, **options) -> int | None:
        return await self.engine.run_async(
            self.engine.plan_rotate_keys(new_master_key, **options))
