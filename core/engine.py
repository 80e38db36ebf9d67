"""The engine's Python face: opens the data dir, validates input, runs the group-commit writer.

This is the one seam between Python and the compiled state machine (`kamicore._engine`): every
change goes through `Engine._submit`, which queues an operation for the writer thread. The writer
takes everything queued while the previous commit was in flight, applies it in ONE LMDB write
transaction (each operation in a nested transaction, so an operation that fails - e.g. on a full
map - leaves nothing behind and does not disturb the others), commits with fsync, and only then
completes every caller. Reads use their own read transactions and never wait for the writer.

Two APIs share one writer: the blocking methods here (CLI, tests, benchmarks) and `AsyncEngine`
(the gRPC server).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
import types
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import lmdb

from . import keyring
from ._codec import has_control_character as _has_control_character
from .statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportStatus, ImportCodeStatus, OrderState,
    RedeemStatus, ReleaseStatus, ReportInvalidStatus, ReserveStatus, VerifyStatus,
)

log = logging.getLogger("kamicore.engine")

# -- limits -------------------------------------------------------------------------------
map_size_bytes_default = 64 * 2**30  # address space reserved; the file grows as it fills
map_size_bytes_min = 2**20
sub_databases_max = 32
readers_max = 1024
operations_per_commit_max = 4096  # one commit never holds more queued operations than this
codes_per_import_max = 100_000  # per import call; a client stream sends several calls
codes_per_batch_max = 1_000  # redeem, verify, freeze, unfreeze, void per call
orders_per_call_max = 1_000
lines_per_order_max = 100
codes_per_line_max = 1_000
codes_per_order_max = 10_000
hold_seconds_max = 24 * 3600
holds_per_sweep_max = 1_000
unit_cost_micros_max = 10**15
actor_bytes_max = 64


class InvalidArgument(ValueError):
    """Bad input from a caller; `field` names what was wrong. Nothing was changed."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class EngineClosed(RuntimeError):
    """The engine was closed; nothing more is accepted."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# -- result types --------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportResult:
    status: ImportStatus
    imported: int
    duplicates: int
    rejected: list[tuple[int, ImportCodeStatus]]  # (row index, status) of every rejected code
    statuses: list[ImportCodeStatus]  # one per code, in order
    code_ids: list[int]  # 0 where not imported


@dataclass(frozen=True)
class ReserveResult:
    status: ReserveStatus
    code_ids: list[int]
    hold_until_ms: int


@dataclass(frozen=True)
class ConfirmResult:
    status: ConfirmStatus
    code_ids: list[int]
    late: bool  # the hold had lapsed; the order was filled again from stock


class RedeemResult(tuple):
    """(status, code_id, redeemed_at_ms, redeemed_by): a tuple, for the hot path."""

    __slots__ = ()
    status = property(lambda self: self[0])
    code_id = property(lambda self: self[1])
    redeemed_at_ms = property(lambda self: self[2])
    redeemed_by = property(lambda self: self[3].decode())


@dataclass(frozen=True)
class CodeOpResult:
    status: CodeOpStatus
    code_id: int
    state: CodeState | None  # the code's state after the call (when found)


@dataclass(frozen=True)
class ReportInvalidResult:
    status: ReportInvalidStatus
    replacement_code_id: int


@dataclass(frozen=True)
class CodeView:
    """A code as anyone but its buyer may see it: no plaintext."""

    code_id: int
    state: CodeState
    sku: str
    batch: str
    valid_from_ms: int
    valid_until_ms: int
    order_id: str
    hold_until_ms: int
    sold_at_ms: int
    redeemed_at_ms: int
    redeemed_by: str
    replaced_by: int
    masked: str


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    code: CodeView | None


@dataclass(frozen=True)
class Stock:
    sku: str
    counts: dict[CodeState, int]  # every state, zeros included
    sellable: int  # AVAILABLE and inside the validity window now
    expired_available: int  # AVAILABLE but past valid_until: never sold
    soonest_valid_until_ms: int  # of the sellable codes; 0 when none


@dataclass(frozen=True)
class BatchStock:
    batch: str
    supplier: str
    valid_until_ms: int
    counts: dict[CodeState, int]  # states with codes only


@dataclass(frozen=True)
class OrderView:
    order_id: str
    state: str  # an OrderState name: RESERVED, PAID, CANCELLED or EXPIRED
    hold_until_ms: int
    created_ms: int
    lines: list[tuple[str, int]]
    codes: list[CodeView]
    plaintexts: list[str] | None  # only when revealed to the buyer


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    blocks: int
    events: int
    head: bytes
    problem: str  # empty when ok


def _status_table(enum_type) -> list:
    """enum members indexed by value: a list lookup instead of an enum call per item."""
    table = [None] * (max(enum_type) + 1)
    for member in enum_type:
        table[member] = member
    return table


_REDEEM_STATUSES = _status_table(RedeemStatus)
_IMPORT_STATUSES = _status_table(ImportCodeStatus)
_CODE_STATES = _status_table(CodeState)


# -- input validation ----------------------------------------------------------------------

def _text(value, field: str, bytes_max: int, required: bool = True) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise InvalidArgument(field, "must be text")
    if required and not value:
        raise InvalidArgument(field, "is required")
    if len(value) > bytes_max:
        raise InvalidArgument(field, f"is longer than {bytes_max} bytes")
    if _has_control_character(value):
        raise InvalidArgument(field, "contains a control character")
    return value


def _within(field: str, index: int, check, *args):
    """Run `check`; on InvalidArgument name the item: `field[index].<what it named>`."""
    try:
        return check(*args)
    except InvalidArgument as error:
        raise InvalidArgument(f"{field}[{index}].{error.field}", error.message) from None


def _redeem_item(code, request_id, request_max: int) -> tuple[bytes, bytes]:
    request_id = _text(request_id, "request_id", request_max)
    return _code(code, "code"), request_id


def _code(value, field: str) -> bytes:
    # per-code problems (empty, too long, control characters) are per-item statuses
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise InvalidArgument(field, "must be text")


def _integer(value, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}")
    return value


def _count(items, field: str, items_max: int) -> list:
    items = list(items)
    if not items:
        raise InvalidArgument(field, "must not be empty")
    if len(items) > items_max:
        raise InvalidArgument(field, f"has more than {items_max} items")
    return items


def _count_range(txn, db, prefix: bytes, start: bytes, end: bytes | None) -> int:
    """Keys in [start, end) that begin with `prefix` (end None: to the prefix's end)."""
    count = 0
    with txn.cursor(db=db) as cursor:
        if cursor.set_range(start):
            for key in cursor.iternext(keys=True, values=False):
                if key[:len(prefix)] != prefix or (end is not None and key >= end):
                    break
                count += 1
    return count


def load_implementation(name: str = "compiled") -> types.SimpleNamespace:
    """The per-item engine: `compiled` (kamicore._engine) or `interpreted` (the same source
    under ext/, run by CPython; needs a source checkout)."""
    if name == "compiled":
        from . import _codec, _engine
        return types.SimpleNamespace(engine=_engine, codec=_codec, name=name)
    if name == "interpreted":
        from . import interpreted
        return interpreted.load()
    raise ValueError(f"implementation: unknown {name!r}")


# -- keys as the state machine sees them -----------------------------------------------------

LOOKUP_KEY_META = b"lookup_key"  # master key id (8) + wrapped lookup key


class KeyService:
    """What the compiled operations call for secrets: lookup hashes, sealers, data keys."""

    def __init__(self, ring: keyring.MasterKeyring, lookup_key: bytes, codec):
        self.ring = ring
        self.lookup_hash = keyring.LookupHasher(lookup_key)
        self.equal = keyring.constant_time_equal
        self.new_nonces = keyring.new_nonces
        self._codec = codec
        self._sealers: dict[int, keyring.Sealer] = {}

    def new_wrapped_data_key(self, batch_key: bytes) -> tuple[bytes, bytes]:
        self.ring.refresh()  # another process may have rotated the master key
        return self.ring.wrap(keyring.new_data_key(), b"batch" + batch_key)

    def sealer(self, txn, dbs, batch_no: int) -> keyring.Sealer:
        """The sealer of a batch as `txn` stores it. Cached by the wrapped key itself, never by
        batch number: a batch number can be handed out again after its transaction rolled back
        (with another data key), and a rotation re-wraps keys under another master key."""
        batch_key = self._codec.u32_key(batch_no)
        value = txn.get(batch_key, db=dbs.batches)
        info = self._codec.unpack_batch(value)
        cache_key = info["master_key_id"] + info["wrapped_key"]
        sealer = self._sealers.get(cache_key)
        if sealer is None:
            data_key = self.ring.unwrap(info["master_key_id"], info["wrapped_key"],
                                        b"batch" + batch_key)
            sealer = self._sealers[cache_key] = keyring.Sealer(data_key)
        return sealer


class _Operation:
    __slots__ = ("function", "args", "actor", "future", "result")

    def __init__(self, function, args, actor: bytes):
        self.function = function
        self.args = args
        self.actor = actor
        self.future: Future = Future()


class _Writer:
    """Opens the data dir and runs the group-commit writer thread."""

    def __init__(self, path: str | os.PathLike, *, map_size_bytes: int = map_size_bytes_default,
                 clock: Callable[[], int] = wall_clock_ms, master_key_file: str | None = None,
                 implementation: str = "compiled"):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        _integer(map_size_bytes, "map_size_bytes", map_size_bytes_min, 2**48)
        self.impl = load_implementation(implementation)
        self._ops = self.impl.engine
        self._clock = clock
        self._pid = os.getpid()
        self.env = lmdb.open(str(self.path), map_size=map_size_bytes, max_dbs=sub_databases_max,
                             max_readers=readers_max, sync=True, metasync=True, writemap=False,
                             readahead=False, lock=True)
        self.dbs = self._ops.Dbs(self.env)
        ring = keyring.MasterKeyring.load(self.path, master_key_file)
        self.keys = KeyService(ring, self._load_lookup_key(ring), self.impl.codec)
        self._queue: collections.deque[_Operation] = collections.deque()
        self._wakeup = threading.Condition(threading.Lock())
        self._closed = False
        self.on_commit = None  # called with (operations, seconds) after every group commit
        self.commits = 0  # commits done by this process's writer
        self.operations_committed = 0
        self._writer = threading.Thread(target=self._write_loop, name="kamicore-writer",
                                        daemon=True)
        self._writer.start()

    # -- lifecycle ---------------------------------------------------------------------

    def _load_lookup_key(self, ring: keyring.MasterKeyring) -> bytes:
        """The lookup (HMAC) key, created wrapped by the master key in a new data dir."""
        id_bytes = keyring.master_key_id_bytes
        with self.env.begin(write=True) as txn:
            stored = txn.get(LOOKUP_KEY_META, db=self.dbs.meta)
            if stored is None:
                lookup_key = keyring.new_data_key()
                key_id, wrapped = ring.wrap(lookup_key, LOOKUP_KEY_META)
                txn.put(LOOKUP_KEY_META, key_id + wrapped, db=self.dbs.meta)
                return lookup_key
        return ring.unwrap(stored[:id_bytes], stored[id_bytes:], LOOKUP_KEY_META)

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the environment."""
        with self._wakeup:
            if self._closed:
                return
            self._closed = True
            self._wakeup.notify()
        self._writer.join()
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the writer ----------------------------------------------------------------------

    def _submit(self, function, args: tuple, actor: str | bytes) -> Future:
        if os.getpid() != self._pid:
            raise RuntimeError("this Engine was opened before a fork; open it in the child")
        operation = _Operation(function, args, _text(actor, "actor", actor_bytes_max))
        with self._wakeup:
            if self._closed:
                raise EngineClosed("the engine is closed")
            self._queue.append(operation)
            self._wakeup.notify()
        return operation.future

    def _run(self, function, args: tuple, actor: str | bytes):
        return self._submit(function, args, actor).result()

    async def submit_async(self, function, args: tuple, actor: str | bytes):
        """Run `function(tx, *args)` in the writer's next commit; for layers that keep their
        own records in the same transactions (catalog, orders, keys)."""
        return await asyncio.wrap_future(self._submit(function, args, actor))

    def _write_loop(self) -> None:
        queue = self._queue
        while True:
            with self._wakeup:
                while not queue and not self._closed:
                    self._wakeup.wait()
                if not queue and self._closed:
                    return
                group = [queue.popleft()
                         for _ in range(min(len(queue), operations_per_commit_max))]
            # a caller that gave up (deadline, disconnect) before its operation started gets
            # nothing applied; from here on the others can no longer be cancelled
            group = [operation for operation in group
                     if operation.future.set_running_or_notify_cancel()]
            if not group:
                continue
            try:
                self._commit_group(group)
            except BaseException as error:  # the writer must outlive any failure
                log.exception("a group commit failed")
                for operation in group:
                    if not operation.future.done():
                        operation.future.set_exception(error)

    def _commit_group(self, group: list[_Operation]) -> None:
        ops = self._ops
        started = time.perf_counter()
        now_ms = self._clock()
        try:
            txn = self.env.begin(write=True)
        except Exception as error:  # the environment itself failed
            for operation in group:
                operation.future.set_exception(error)
            return
        done = []
        for operation in group:
            child = self.env.begin(write=True, parent=txn)
            try:
                operation.result = operation.function(
                    ops.Tx(child, self.dbs, self.keys, now_ms, operation.actor), *operation.args)
                child.commit()
                done.append(operation)
            except lmdb.MapFullError:
                child.abort()
                operation.future.set_result(_STORAGE_FULL)
            except BaseException as error:  # a bug: this operation only, nothing written
                child.abort()
                operation.future.set_exception(error)
        try:
            txn.commit()
        except Exception as error:
            for operation in done:
                operation.future.set_exception(error)
            return
        self.commits += 1
        self.operations_committed += len(done)
        for operation in done:
            operation.future.set_result(operation.result)
        if self.on_commit is not None:
            try:
                self.on_commit(len(done), time.perf_counter() - started)
            except Exception:  # metrics must never stop the writer
                log.exception("on_commit failed")


_STORAGE_FULL = object()  # an operation's answer when its writes did not fit in the map


def _storage_full(count: int, value) -> list:
    return [value] * count


class _Api:
    """Plans of every write: (compiled function, args, actor, convert). Engine runs a plan and
    blocks; AsyncEngine awaits it. Validation happens here, in the caller, before queueing."""

    def check_import_terms(self, sku, batch, supplier="", unit_cost_micros=0, valid_from_ms=0,
                           valid_until_ms=None) -> tuple:
        """The terms of an import batch, checked -> (sku, batch, supplier, unit cost,
        valid_from_ms, valid_until_ms) with None as "never expires"."""
        sku = _text(sku, "sku", self.impl.codec.name_bytes_max)
        batch = _text(batch, "batch", self.impl.codec.name_bytes_max)
        supplier = _text(supplier, "supplier", self.impl.codec.name_bytes_max, required=False)
        _integer(unit_cost_micros, "unit_cost_micros", 0, unit_cost_micros_max)
        time_max = self.impl.codec.time_ms_max
        valid_until_ms = time_max if valid_until_ms is None else valid_until_ms
        _integer(valid_from_ms, "valid_from_ms", 0, time_max)
        _integer(valid_until_ms, "valid_until_ms", 1, time_max)
        if valid_until_ms <= valid_from_ms:
            raise InvalidArgument("valid_until_ms", "must be after valid_from_ms")
        return sku, batch, supplier, unit_cost_micros, valid_from_ms, valid_until_ms

    def _plan_import_codes(self, sku, batch, codes, *, supplier="", unit_cost_micros=0,
                           valid_from_ms=0, valid_until_ms=None, actor="system"):
        sku, batch, supplier, unit_cost_micros, valid_from_ms, valid_until_ms = (
            self.check_import_terms(sku, batch, supplier, unit_cost_micros, valid_from_ms,
                                    valid_until_ms))
        codes = _count(codes, "codes", codes_per_import_max)
        codes = [_code(code, f"codes[{row}]") for row, code in enumerate(codes)]
        count = len(codes)

        def convert(raw) -> ImportResult:
            if raw is _STORAGE_FULL:
                return ImportResult(ImportStatus.STORAGE_FULL, 0, 0, [], [], [])
            status, statuses, code_ids = raw
            if status != ImportStatus.OK:
                return ImportResult(ImportStatus(status), 0, 0, [], [], [0] * count)
            statuses = [_IMPORT_STATUSES[value] for value in statuses]
            rejected = [(row, value) for row, value in enumerate(statuses)
                        if value not in (ImportCodeStatus.IMPORTED, ImportCodeStatus.DUPLICATE)]
            return ImportResult(ImportStatus.OK, statuses.count(ImportCodeStatus.IMPORTED),
                                statuses.count(ImportCodeStatus.DUPLICATE), rejected, statuses,
                                code_ids)

        return (self._ops.import_codes,
                (sku, batch, supplier, unit_cost_micros, valid_from_ms, valid_until_ms, codes),
                actor, convert)

    def _plan_reserve(self, orders, *, actor="system"):
        """orders: [(order_id, [(sku, quantity)], hold_seconds)]"""
        orders = _count(orders, "orders", orders_per_call_max)
        planned = []
        for index, (order_id, lines, hold_seconds) in enumerate(orders):
            field = f"orders[{index}]"
            order_id = _text(order_id, f"{field}.order_id", self.impl.codec.order_id_bytes_max)
            lines = _count(lines, f"{field}.lines", lines_per_order_max)
            checked = []
            for number, (sku, quantity) in enumerate(lines):
                checked.append((
                    _text(sku, f"{field}.lines[{number}].sku", self.impl.codec.name_bytes_max),
                    _integer(quantity, f"{field}.lines[{number}].quantity", 1,
                             codes_per_line_max)))
            if sum(quantity for _, quantity in checked) > codes_per_order_max:
                raise InvalidArgument(f"{field}.lines", f"more than {codes_per_order_max} codes")
            _integer(hold_seconds, f"{field}.hold_seconds", 1, hold_seconds_max)
            planned.append((order_id, checked, hold_seconds * 1000))

        def convert(raw) -> list[ReserveResult]:
            if raw is _STORAGE_FULL:
                return _storage_full(len(planned),
                                     ReserveResult(ReserveStatus.STORAGE_FULL, [], 0))
            return [ReserveResult(ReserveStatus(status), code_ids, hold_until_ms)
                    for status, code_ids, hold_until_ms in raw]

        return self._ops.reserve, (planned,), actor, convert

    def _order_ids(self, order_ids, field="order_ids") -> list[bytes]:
        order_ids = _count(order_ids, field, orders_per_call_max)
        return [_text(order_id, f"{field}[{index}]", self.impl.codec.order_id_bytes_max)
                for index, order_id in enumerate(order_ids)]

    def _plan_confirm(self, order_ids, *, actor="system"):
        order_ids = self._order_ids(order_ids)

        def convert(raw) -> list[ConfirmResult]:
            if raw is _STORAGE_FULL:
                return _storage_full(len(order_ids),
                                     ConfirmResult(ConfirmStatus.STORAGE_FULL, [], False))
            return [ConfirmResult(ConfirmStatus(status), code_ids, late)
                    for status, code_ids, late in raw]

        return self._ops.confirm, (order_ids,), actor, convert

    def _plan_release(self, order_ids, *, actor="system"):
        order_ids = self._order_ids(order_ids)

        def convert(raw) -> list[ReleaseStatus]:
            if raw is _STORAGE_FULL:
                return _storage_full(len(order_ids), ReleaseStatus.STORAGE_FULL)
            return [ReleaseStatus(status) for status in raw]

        return self._ops.release, (order_ids,), actor, convert

    def _plan_expire_holds(self, *, limit=holds_per_sweep_max, actor="sweeper"):
        _integer(limit, "limit", 1, holds_per_sweep_max)

        def convert(raw) -> list[str]:
            return [] if raw is _STORAGE_FULL else [order_id.decode() for order_id in raw]

        return self._ops.expire_holds, (limit,), actor, convert

    def _plan_redeem(self, items, terminal, *, actor=None):
        """items: [(code, request_id)]; the terminal is recorded on every redemption."""
        terminal = _text(terminal, "terminal", self.impl.codec.terminal_bytes_max)
        items = _count(items, "items", codes_per_batch_max)
        request_max = self.impl.codec.request_id_bytes_max
        checked = []
        for index, (code, request_id) in enumerate(items):
            if isinstance(code, str) and isinstance(request_id, str) and (
                    0 < len(request_id) <= request_max and request_id.isascii()
                    and request_id.isprintable()):
                checked.append((code.encode(), request_id.encode()))  # the common case
            else:
                checked.append(_within("items", index, _redeem_item, code, request_id,
                                       request_max))
        table = _REDEEM_STATUSES

        def convert(raw) -> list[RedeemResult]:
            if raw is _STORAGE_FULL:
                return _storage_full(len(checked), RedeemResult(
                    (RedeemStatus.STORAGE_FULL, 0, 0, b"")))
            return [RedeemResult((table[item[0]], item[1], item[2], item[3])) for item in raw]

        return self._ops.redeem, (checked, terminal), actor or b"pos:" + terminal, convert

    def _plan_code_op(self, function, refs, actor):
        refs = _count(refs, "codes", codes_per_batch_max)
        checked = []
        for index, ref in enumerate(refs):
            if isinstance(ref, int) and not isinstance(ref, bool):
                checked.append(_integer(ref, f"codes[{index}]", 1, 2**63))
            else:
                checked.append(_code(ref, f"codes[{index}]"))

        def convert(raw) -> list[CodeOpResult]:
            if raw is _STORAGE_FULL:
                return _storage_full(len(checked),
                                     CodeOpResult(CodeOpStatus.STORAGE_FULL, 0, None))
            return [CodeOpResult(CodeOpStatus(status), code_id, _CODE_STATES[state])
                    for status, code_id, state in raw]

        return function, (checked,), actor, convert

    def _plan_freeze(self, codes, *, actor="admin"):
        """codes: code ids or plaintexts (a leaked list can be frozen as it is)."""
        return self._plan_code_op(self._ops.freeze, codes, actor)

    def _plan_unfreeze(self, codes, *, actor="admin"):
        return self._plan_code_op(self._ops.unfreeze, codes, actor)

    def _plan_void(self, codes, *, actor="admin"):
        return self._plan_code_op(self._ops.void, codes, actor)

    def _plan_report_invalid(self, items, *, actor="system"):
        """items: [(order_id, code_id)]"""
        items = _count(items, "items", codes_per_batch_max)
        checked = [(_text(order_id, f"items[{index}].order_id",
                          self.impl.codec.order_id_bytes_max),
                    _integer(code_id, f"items[{index}].code_id", 1, 2**63))
                   for index, (order_id, code_id) in enumerate(items)]

        def convert(raw) -> list[ReportInvalidResult]:
            if raw is _STORAGE_FULL:
                return _storage_full(len(checked), ReportInvalidResult(
                    ReportInvalidStatus.STORAGE_FULL, 0))
            return [ReportInvalidResult(ReportInvalidStatus(status), replacement)
                    for status, replacement in raw]

        return self._ops.report_invalid, (checked,), actor, convert

    def _plan_rotate_keys(self, new_master_key=None, *, actor="admin"):
        """Without a new key one is generated and saved in the key file; with the master key
        from KAMICORE_MASTER_KEY the new key must be given (and the variable set to it)."""
        if new_master_key is not None and (not isinstance(new_master_key, bytes)
                                           or len(new_master_key) != keyring.key_bytes):
            raise InvalidArgument("new_master_key", f"must be {keyring.key_bytes} bytes")
        if new_master_key is None and self.keys.ring.path is None:
            raise InvalidArgument("new_master_key", f"is required when the master key comes "
                                  f"from {keyring.MASTER_KEY_ENV}: nowhere to save a new one")
        return _rotate_keys, (self, new_master_key), actor, lambda raw: raw


def _rotate_keys(tx, engine: "Engine", new_master_key: bytes | None) -> int:
    """Re-wrap every batch data key and the lookup key under a new master key, in one
    transaction. The new key is saved before anything is wrapped with it."""
    codec = engine.impl.codec
    ring = engine.keys.ring
    unwrapped = []
    with tx.txn.cursor(db=engine.dbs.batches) as cursor:
        for key, value in cursor:
            info = codec.unpack_batch(value)
            unwrapped.append((key, value, info, ring.unwrap(
                info["master_key_id"], info["wrapped_key"], b"batch" + key)))
    stored = tx.txn.get(LOOKUP_KEY_META, db=engine.dbs.meta)
    id_bytes = keyring.master_key_id_bytes
    lookup_key = ring.unwrap(stored[:id_bytes], stored[id_bytes:], LOOKUP_KEY_META)
    ring.begin_rotation(new_master_key)
    for key, value, info, data_key in unwrapped:
        key_id, wrapped = ring.wrap(data_key, b"batch" + key)
        tx.txn.put(key, codec.pack_batch(info["sku_no"], info["valid_from_ms"],
                                         info["valid_until_ms"], info["unit_cost_micros"],
                                         key_id, info["name"], info["supplier"], wrapped),
                   db=engine.dbs.batches)
    key_id, wrapped = ring.wrap(lookup_key, LOOKUP_KEY_META)
    tx.txn.put(LOOKUP_KEY_META, key_id + wrapped, db=engine.dbs.meta)
    return len(unwrapped)


class Engine(_Writer, _Api):
    """The code inventory in one LMDB data dir, with a blocking API: every write returns after
    the commit that holds it (see AsyncEngine for asyncio). Open it in the process that uses it
    (after any fork); several processes may open the same dir at once."""

    def _call(self, plan):
        function, args, actor, convert = plan
        return convert(self._run(function, args, actor))

    def import_codes(self, sku, batch, codes: Sequence, **options) -> ImportResult:
        return self._call(self._plan_import_codes(sku, batch, codes, **options))

    def reserve(self, orders, **options) -> list[ReserveResult]:
        return self._call(self._plan_reserve(orders, **options))

    def confirm(self, order_ids, **options) -> list[ConfirmResult]:
        return self._call(self._plan_confirm(order_ids, **options))

    def release(self, order_ids, **options) -> list[ReleaseStatus]:
        return self._call(self._plan_release(order_ids, **options))

    def expire_holds(self, **options) -> list[str]:
        return self._call(self._plan_expire_holds(**options))

    def redeem(self, items, terminal, **options) -> list[RedeemResult]:
        return self._call(self._plan_redeem(items, terminal, **options))

    def freeze(self, codes, **options) -> list[CodeOpResult]:
        return self._call(self._plan_freeze(codes, **options))

    def unfreeze(self, codes, **options) -> list[CodeOpResult]:
        return self._call(self._plan_unfreeze(codes, **options))

    def void(self, codes, **options) -> list[CodeOpResult]:
        return self._call(self._plan_void(codes, **options))

    def report_invalid(self, items, **options) -> list[ReportInvalidResult]:
        return self._call(self._plan_report_invalid(items, **options))

    def rotate_keys(self, new_master_key: bytes | None = None, **options) -> int:
        """Re-wrap every data key under a new master key; returns how many batches."""
        return self._call(self._plan_rotate_keys(new_master_key, **options))

    # -- reads -------------------------------------------------------------------------

    def read(self):
        """A read transaction (a snapshot); never waits for the writer."""
        return self.env.begin(buffers=False)

    def _sku_name(self, txn, sku_no: int) -> str:
        name = txn.get(self._ops.SKU_NUMBER_PREFIX + self.impl.codec.u32_key(sku_no),
                       db=self.dbs.skus)
        return name.decode() if name is not None else ""

    def _sku_no(self, txn, sku: bytes) -> int:
        value = txn.get(self._ops.SKU_NAME_PREFIX + sku, db=self.dbs.skus)
        return int.from_bytes(value, "little") if value is not None else 0

    def _batch_name(self, txn, batch_no: int) -> str:
        value = txn.get(self.impl.codec.u32_key(batch_no), db=self.dbs.batches)
        return self.impl.codec.unpack_batch(value)["name"].decode() if value else ""

    def _plaintext(self, txn, code_id: int, record) -> bytes:
        code_key = self.impl.codec.code_key(code_id)
        return self.keys.sealer(txn, self.dbs, record.batch_no).open(record.sealed, code_key)

    def _view(self, txn, code_id: int, record) -> CodeView:
        return CodeView(
            code_id=code_id, state=CodeState(record.state),
            sku=self._sku_name(txn, record.sku_no), batch=self._batch_name(txn, record.batch_no),
            valid_from_ms=record.valid_from_ms, valid_until_ms=record.valid_until_ms,
            order_id=record.order_id.decode(), hold_until_ms=record.hold_until_ms,
            sold_at_ms=record.sold_at_ms, redeemed_at_ms=record.redeemed_at_ms,
            redeemed_by=record.terminal.decode(), replaced_by=record.link_code_id,
            masked=self.impl.codec.mask_code(self._plaintext(txn, code_id, record)))

    def verify(self, codes: Iterable) -> list[VerifyResult]:
        """A code's state without changing it (the POS 'check' button)."""
        codes = _count(codes, "codes", codes_per_batch_max)
        codes = [_code(code, f"codes[{index}]") for index, code in enumerate(codes)]
        with self.read() as txn:
            return [VerifyResult(VerifyStatus(status),
                                 self._view(txn, code_id, record) if record else None)
                    for status, code_id, record in self._ops.verify(
                        txn, self.dbs, self.keys.lookup_hash, codes)]

    def code(self, code_id: int) -> CodeView | None:
        with self.read() as txn:
            value = txn.get(self.impl.codec.code_key(code_id), db=self.dbs.codes)
            if value is None:
                return None
            return self._view(txn, code_id, self.impl.codec.unpack_record(value))

    def stock(self, sku) -> Stock | None:
        """Counts by state (O(1) counters) and what is sellable right now."""
        sku = _text(sku, "sku", self.impl.codec.name_bytes_max)
        codec = self.impl.codec
        now_ms = self._clock()
        with self.read() as txn:
            sku_no = self._sku_no(txn, sku)
            if not sku_no:
                return None
            counts = {}
            for state in CodeState:
                value = txn.get(codec.counter_key(sku_no, state), db=self.dbs.counters)
                counts[state] = codec.unpack_u64(value) if value is not None else 0
            prefix = codec.sku_prefix(sku_no)
            now_key = codec.available_key(sku_no, now_ms, 2**64 - 1)  # past every code at now
            expired = _count_range(txn, self.dbs.available, prefix, prefix, now_key)
            # a code with a start still ahead cannot have expired (valid_until > valid_from)
            not_yet_valid = _count_range(txn, self.dbs.pending, prefix, now_key, None)
            soonest = 0
            with txn.cursor(db=self.dbs.available) as cursor:
                if cursor.set_range(now_key):
                    for key in cursor.iternext(keys=True, values=False):
                        if key[:4] != prefix:
                            break
                        record = codec.unpack_record(txn.get(key[12:], db=self.dbs.codes))
                        if record.valid_from_ms <= now_ms:
                            soonest = codec.unpack_available_key(key)[1]
                            break
            sellable = counts[CodeState.AVAILABLE] - expired - not_yet_valid
            return Stock(sku.decode(), counts, sellable, expired, soonest)

    def order(self, order_id, *, reveal: bool = False) -> OrderView | None:
        """An order with its codes masked, or in plaintext when `reveal` (its buyer only; the
        server audits every reveal)."""
        order_id = _text(order_id, "order_id", self.impl.codec.order_id_bytes_max)
        codec = self.impl.codec
        with self.read() as txn:
            value = txn.get(order_id, db=self.dbs.orders)
            if value is None:
                return None
            state, hold_until_ms, created_ms, _, lines, code_ids = codec.unpack_order(value)
            views, plaintexts = [], []
            for code_id in code_ids:
                record = codec.unpack_record(txn.get(codec.code_key(code_id), db=self.dbs.codes))
                views.append(self._view(txn, code_id, record))
                if reveal:
                    plaintexts.append(self._plaintext(txn, code_id, record).decode())
            return OrderView(order_id.decode(), OrderState(state).name, hold_until_ms,
                             created_ms, [(self._sku_name(txn, sku_no), quantity)
                                          for sku_no, quantity in lines],
                             views, plaintexts if reveal else None)

    def batch_stock(self, sku) -> list[BatchStock]:
        """Per-batch counts of a sku (O(batches), from counters kept with every transition)."""
        sku = _text(sku, "sku", self.impl.codec.name_bytes_max)
        codec = self.impl.codec
        with self.read() as txn:
            sku_no = self._sku_no(txn, sku)
            result = []
            with txn.cursor(db=self.dbs.batches) as cursor:
                for key, value in cursor:
                    info = codec.unpack_batch(value)
                    if info["sku_no"] != sku_no:
                        continue
                    counts = {}
                    for state in CodeState:
                        count = txn.get(codec.counter_key(int.from_bytes(key, "big"), state),
                                        db=self.dbs.batch_counters)
                        if count is not None and codec.unpack_u64(count):
                            counts[state] = codec.unpack_u64(count)
                    result.append(BatchStock(info["name"].decode(), info["supplier"].decode(),
                                             info["valid_until_ms"], counts))
            return result

    def skus(self) -> list[str]:
        prefix = self._ops.SKU_NAME_PREFIX
        with self.read() as txn, txn.cursor(db=self.dbs.skus) as cursor:
            cursor.set_range(prefix)
            return [key[1:].decode() for key in cursor.iternext(values=False)
                    if key[:1] == prefix]

    # -- integrity ---------------------------------------------------------------------

    def counters(self) -> dict[tuple[str, CodeState], int]:
        """The stored per-(sku, state) counters, zeros left out."""
        codec = self.impl.codec
        with self.read() as txn, txn.cursor(db=self.dbs.counters) as cursor:
            result = {}
            for key, value in cursor:
                sku_no, state = codec.unpack_counter_key(key)
                if codec.unpack_u64(value):
                    result[(self._sku_name(txn, sku_no), CodeState(state))] = codec.unpack_u64(
                        value)
            return result

    def scan_counts(self) -> dict[tuple[str, CodeState], int]:
        """The same counts, from a full scan of the code records."""
        codec = self.impl.codec
        counts: dict = {}
        with self.read() as txn, txn.cursor(db=self.dbs.codes) as cursor:
            names = {}
            for _, value in cursor:
                record = codec.unpack_record(value)
                if record.sku_no not in names:
                    names[record.sku_no] = self._sku_name(txn, record.sku_no)
                key = (names[record.sku_no], CodeState(record.state))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _batch_counters(self) -> dict[tuple[int, int], int]:
        codec = self.impl.codec
        with self.read() as txn, txn.cursor(db=self.dbs.batch_counters) as cursor:
            return {codec.unpack_counter_key(key): codec.unpack_u64(value)
                    for key, value in cursor if codec.unpack_u64(value)}

    def _scan_batch_counts(self) -> dict[tuple[int, int], int]:
        codec = self.impl.codec
        counts: dict = {}
        with self.read() as txn, txn.cursor(db=self.dbs.codes) as cursor:
            for _, value in cursor:
                record = codec.unpack_record(value)
                key = (record.batch_no, record.state)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def audit_events(self):
        """Every audit event in order: (seq, at_ms, op, actor, code_id, from, to, sku_no)."""
        unpack = self._ops.unpack_audit_block
        with self.read() as txn, txn.cursor(db=self.dbs.audit) as cursor:
            for _, value in cursor:
                _, first_seq, at_ms, op, actor, events = unpack(value)
                for offset, (code_id, from_state, to_state, sku_no) in enumerate(events):
                    yield (first_seq + offset, at_ms, op, actor.decode(), code_id, from_state,
                           to_state, sku_no)

    def verify_audit(self) -> AuditReport:
        """Recompute the hash chain of the audit log from its first block to the stored head."""
        ops, codec = self._ops, self.impl.codec
        expected_prev = ops.AUDIT_GENESIS
        expected_seq = 1
        blocks = events = 0
        with self.read() as txn:
            head = txn.get(ops.META_AUDIT_HEAD, db=self.dbs.meta)
            with txn.cursor(db=self.dbs.audit) as cursor:
                for key, value in cursor:
                    prev_hash, first_seq, _, _, _, block_events = ops.unpack_audit_block(value)
                    if not keyring.constant_time_equal(prev_hash, expected_prev):
                        return AuditReport(False, blocks, events, b"",
                                           f"block {first_seq}: previous hash does not match")
                    if first_seq != expected_seq or codec.u64_of(key) != first_seq:
                        return AuditReport(False, blocks, events, b"",
                                           f"block {first_seq}: expected sequence {expected_seq}")
                    expected_prev = ops.audit_block_hash(value)
                    expected_seq += len(block_events)
                    blocks += 1
                    events += len(block_events)
        if head is None:
            ok = blocks == 0
            return AuditReport(ok, 0, 0, b"", "" if ok else "audit blocks without a head")
        if codec.unpack_u64(head[:8]) != expected_seq or head[8:] != expected_prev:
            return AuditReport(False, blocks, events, b"", "the head does not match the log")
        return AuditReport(True, blocks, events, expected_prev, "")

    def check(self) -> list[str]:
        """Every invariant a reopened data dir must hold; returns the problems (none: [])."""
        problems = []
        if self.counters() != self.scan_counts():
            problems.append("per-(sku, state) counters differ from a scan of the codes")
        if self._batch_counters() != self._scan_batch_counts():
            problems.append("per-(batch, state) counters differ from a scan of the codes")
        audit = self.verify_audit()
        if not audit.ok:
            problems.append(f"audit chain: {audit.problem}")
        codec, ops = self.impl.codec, self._ops
        with self.read() as txn:
            owners: dict[int, bytes] = {}
            with txn.cursor(db=self.dbs.codes) as cursor:
                for key, value in cursor:
                    code_id = codec.code_id_of(key)
                    record = codec.unpack_record(value)
                    try:
                        self._plaintext(txn, code_id, record)
                    except keyring.DecryptionError:
                        problems.append(f"code {code_id} does not decrypt")
                    in_index = txn.get(codec.available_key(
                        record.sku_no, record.valid_until_ms, code_id),
                        db=self.dbs.available) is not None
                    if in_index != (record.state == CodeState.AVAILABLE):
                        problems.append(f"code {code_id}: availability index disagrees")
                    pending = txn.get(codec.available_key(
                        record.sku_no, record.valid_from_ms, code_id),
                        db=self.dbs.pending) is not None
                    if pending != (record.state == CodeState.AVAILABLE
                                   and record.valid_from_ms > 0):
                        problems.append(f"code {code_id}: not-yet-valid index disagrees")
            with txn.cursor(db=self.dbs.orders) as cursor:
                for order_id, value in cursor:
                    state, _, _, _, _, code_ids = codec.unpack_order(value)
                    for code_id in code_ids:
                        if code_id in owners:
                            problems.append(f"code {code_id} is in two orders")
                        owners[code_id] = order_id
                        record = codec.unpack_record(
                            txn.get(codec.code_key(code_id), db=self.dbs.codes))
                        if record.order_id != order_id:
                            problems.append(f"code {code_id} does not point at its order")
        return problems


class AsyncEngine:
    """asyncio face of an Engine: the same writer, awaited instead of blocked on."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def _call(self, plan):
        function, args, actor, convert = plan
        return convert(await asyncio.wrap_future(self.engine._submit(function, args, actor)))

    async def import_codes(self, sku, batch, codes, **options) -> ImportResult:
        return await self._call(self.engine._plan_import_codes(sku, batch, codes, **options))

    async def reserve(self, orders, **options) -> list[ReserveResult]:
        return await self._call(self.engine._plan_reserve(orders, **options))

    async def confirm(self, order_ids, **options) -> list[ConfirmResult]:
        return await self._call(self.engine._plan_confirm(order_ids, **options))

    async def release(self, order_ids, **options) -> list[ReleaseStatus]:
        return await self._call(self.engine._plan_release(order_ids, **options))

    async def expire_holds(self, **options) -> list[str]:
        return await self._call(self.engine._plan_expire_holds(**options))

    async def redeem(self, items, terminal, **options) -> list[RedeemResult]:
        return await self._call(self.engine._plan_redeem(items, terminal, **options))

    async def freeze(self, codes, **options) -> list[CodeOpResult]:
        return await self._call(self.engine._plan_freeze(codes, **options))

    async def unfreeze(self, codes, **options) -> list[CodeOpResult]:
        return await self._call(self.engine._plan_unfreeze(codes, **options))

    async def void(self, codes, **options) -> list[CodeOpResult]:
        return await self._call(self.engine._plan_void(codes, **options))

    async def report_invalid(self, items, **options) -> list[ReportInvalidResult]:
        return await self._call(self.engine._plan_report_invalid(items, **options))

    async def rotate_keys(self, new_master_key: bytes | None = None, **options) -> int:
        return await self._call(self.engine._plan_rotate_keys(new_master_key, **options))
