"""What a domain layer's plan function works with inside the writer's transaction.

The domain layers (catalog, orders, API keys, and later risk, ledger, events) keep their own
records in named tables and move codes through the engine's transitions — all in the same
transaction, so they commit together or not at all. They see this narrow face, never LMDB:
a second storage backend implements the same methods.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import limits
from ..statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportCodeStatus, ImportStatus, OrderState,
    ReleaseStatus, ReportInvalidStatus, ReserveStatus,
)

# The domain layers' tables: name -> what it holds. Each is a sub-database of the data file,
# opened by the engine package; a new layer adds its tables here.
TABLES = {
    "catalog": "sku id -> the SKU's definition (kamicore.domain.catalog)",
    "order_meta": "order id -> the order's bookkeeping (kamicore.domain.orders)",
    "purchases": "owner, account, sku -> units held in open or paid orders",
    "api_keys": "key id -> role, binding and the secret's hash (kamicore.auth)",
    "risk_rules": "the risk rule set in force and its version (kamicore.domain.risk)",
    "risk_history": "risk rule set version -> that set, who set it and when",
    "risk_counters": "keyed hashes of accounts, IPs, devices -> velocity, units, first seen",
    "risk_reviews": "order id -> its risk review (kamicore.domain.risk_reviews)",
    "risk_review_queue": "created ms + order id of each pending review, oldest first",
    "suppliers": "supplier id -> its definition, signing secret sealed (kamicore.domain.suppliers)",
    "supplier_routes": "sku id + supplier id -> the route: product, cost, priority, enabled",
    "topup_attempts": "request id -> a direct top-up attempt: order, supplier, state, answer "
                      "(kamicore.domain.topups)",
    "topup_unsettled": "due ms + request id of each attempt whose outcome is not known",
    "topup_holds": "hold end ms + order id of each unpaid top-up order (the hold sweeper's)",
    "supplier_stats": "per supplier: circuit breaker; per supplier and sku: outcomes, latency "
                      "buckets, recent window; per batch: codes reported invalid",
    "replenishments": "sku id -> its latest purchase request (kamicore.domain.replenishment)",
    "stock_alerts": "sku id -> b'' while its stock is below its threshold and alerted "
                    "(kamicore.domain.stock_alerts)",
    "webhooks": "webhook id -> its endpoint, signing secret sealed (kamicore.domain.webhooks)",
    "webhook_deliveries": "webhook id -> its delivery cursor, last success, run of failures",
    "ledger": "entry id (u64 big-endian) -> a balanced ledger entry (kamicore.domain.ledger)",
    "ledger_meta": "the next ledger entry id; balances per currency and account; entries "
                   "per payment reference",
    "reconciliations": "run id -> a settlement reconciliation run; file sha256 -> its run "
                       "(kamicore.domain.reconciliation)",
    "reconciliation_lines": "run id + line number -> one line of a reconciliation run",
}


_CODE_STATES = {state.value: state for state in CodeState}  # faster than CodeState(value)


class OrderCode(NamedTuple):
    """One code of an order as the ledger prices it: its state, where it came from and what
    it cost (its batch's unit cost, in the SKU's currency)."""

    code_id: int
    state: CodeState
    sku: str
    batch: str
    supplier: str  # "" when its batch was imported without one
    unit_cost_micros: int
    replaced_by: int  # the code sold in its place after it was reported invalid, or 0


class Tables:
    """The handles of TABLES in one environment."""

    def __init__(self, env):
        self.handles = {name: env.open_db(name.encode()) for name in TABLES}
        # a batch record as stored -> its (name, supplier, unit cost): by content, so a record
        # of an aborted commit, or re-wrapped by a key rotation, is never mistaken for another
        self.batch_terms: dict[bytes, tuple[str, str, int]] = {}

    def __getitem__(self, name: str):
        return self.handles[name]


class Transaction:
    """One plan's view of the group's write transaction (see the module docstring)."""

    __slots__ = ("_tx", "_txn", "_tables", "_ops", "_codec", "_keys")

    def __init__(self, tx, tables: Tables, ops, codec, keys):
        self._tx = tx  # the compiled engine's Tx
        self._txn = tx.txn
        self._tables = tables
        self._ops = ops
        self._codec = codec
        self._keys = keys  # kamicore.engine.keys.KeyService

    @property
    def now_ms(self) -> int:
        """The commit's clock: every plan in one group commit sees the same time."""
        return self._tx.now_ms

    @property
    def actor(self) -> bytes:
        return self._tx.actor

    # -- the domain layers' own records --------------------------------------------------

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._tables[table])

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._tables[table])

    def delete(self, table: str, key: bytes) -> None:
        self._txn.delete(key, db=self._tables[table])

    def scan(self, table: str, start: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to `limit` records of a table in key order, from the first key at or after
        `start`."""
        found = []
        with self._txn.cursor(db=self._tables[table]) as cursor:
            if not (cursor.set_range(start) if start else cursor.first()):
                return found
            for key, value in cursor:
                if len(found) >= limit:
                    break
                found.append((bytes(key), bytes(value)))
        return found

    def seal_secret(self, purpose: bytes, plaintext: bytes) -> bytes:
        """A domain secret sealed for one of these tables (see KeyService.seal_secret)."""
        return self._keys.seal_secret(purpose, plaintext)

    def open_secret(self, purpose: bytes, sealed: bytes) -> bytes:
        return self._keys.open_secret(purpose, sealed)

    # -- the outbox (kamicore.domain.events) ----------------------------------------------

    def append_event(self, event: bytes) -> int:
        """One business event in this commit's outbox -> its id."""
        return self._ops.append_domain_event(self._txn, self._tx.dbs, self._tx.now_ms, event)

    def prune_outbox(self, before_ms: int, up_to_id: int, limit: int) -> int:
        """Delete up to `limit` of the oldest outbox records whose events all have ids up to
        `up_to_id` and were committed before `before_ms` -> how many records."""
        ops, codec, dbs = self._ops, self._codec, self._tx.dbs
        due = []
        with self._txn.cursor(db=dbs.outbox) as cursor:
            for key, value in cursor:
                if len(due) >= limit or codec.u64_of(key) > up_to_id:
                    break
                record = ops.unpack_outbox(value)
                at_ms = (record[1] if record[0] == ops.OUTBOX_DOMAIN else ops.unpack_audit_block(
                    self._txn.get(codec.u64_key(record[1]), db=dbs.audit))[2])
                if at_ms >= before_ms:
                    break
                due.append(bytes(key))
        for key in due:
            self._txn.delete(key, db=dbs.outbox)
        return len(due)

    # -- the engine's transitions, in the same transaction --------------------------------

    def ensure_sku(self, sku_id: bytes) -> None:
        """Give a SKU its engine number now, so orders and imports can name it at once."""
        self._tx.sku_no(sku_id, True)

    def import_codes(self, sku: bytes, batch: bytes, supplier: bytes, unit_cost_micros: int,
                     valid_from_ms: int, valid_until_ms: int, codes: list[bytes]) -> tuple:
        """Import codes in this transaction, on terms the caller checked
        (Engine.check_import_terms) -> (ImportStatus, [ImportCodeStatus per code], [code id or
        0]); as idempotent per code as the engine's own import."""
        status, statuses, code_ids = self._ops.import_codes(
            self._tx, sku, batch, supplier, unit_cost_micros, valid_from_ms, valid_until_ms,
            codes)
        return (ImportStatus(status), [ImportCodeStatus(value) for value in statuses],
                list(code_ids))

    def reserve(self, order_id: bytes, lines: list[tuple[bytes, int]],
                hold_ms: int) -> ReserveStatus:
        """Hold codes for every line of one order, or for none."""
        [(status, _, _)] = self._ops.reserve(self._tx, [(order_id, lines, hold_ms)])
        return ReserveStatus(status)

    def confirm(self, order_id: bytes) -> tuple[ConfirmStatus, bool]:
        """Sell an order's codes -> (status, late: its hold had lapsed and it was refilled)."""
        [(status, _, late)] = self._ops.confirm(self._tx, [order_id])
        return ConfirmStatus(status), late

    def release(self, order_id: bytes) -> ReleaseStatus:
        [status] = self._ops.release(self._tx, [order_id])
        return ReleaseStatus(status)

    def expire_holds(self, limit: int) -> list[bytes]:
        """Release up to `limit` orders whose hold is past -> their ids."""
        return self._ops.expire_holds(self._tx, limit)

    def sellable(self, sku_id: bytes, most_keys: int | None = limits.sellable_keys_counted_max
                 ) -> int | None:
        """Codes of a SKU that could be sold at this commit's time, as this transaction sees
        them (after the plan's own transitions); 0 for a SKU without codes. O(1) unless codes
        are expired or not yet valid: None when more than `most_keys` of those would have to
        be counted (most_keys None: no bound)."""
        from .reads import unsellable  # reads imports TABLES from here
        sku_no = self._tx.sku_no(sku_id, False)
        if not sku_no:
            return 0
        codec = self._codec
        value = self._txn.get(codec.counter_key(sku_no, CodeState.AVAILABLE),
                              db=self._tx.dbs.counters)
        available = codec.unpack_u64(value) if value is not None else 0
        if not available:
            return 0
        counted = unsellable(self._txn, self._tx.dbs, codec, sku_no, self.now_ms, most_keys)
        if counted is None:
            return None
        expired, not_yet_valid, _ = counted
        return available - expired - not_yet_valid

    def order_state(self, order_id: bytes) -> OrderState | None:
        value = self._txn.get(order_id, db=self._tx.dbs.orders)
        return OrderState(self._codec.unpack_order(value)[0]) if value is not None else None

    def audit_reveal(self, order_id: bytes) -> int:
        """One audit event per code of the order shown again to its buyer; how many."""
        value = self._txn.get(order_id, db=self._tx.dbs.orders)
        if value is None:
            return 0
        events = []
        for code_id in self._codec.unpack_order(value)[5]:
            record = self._tx.record(code_id)
            events.append((code_id, record.state, record.state, record.sku_no))
        if events:
            reveal = next(op for op, name in self._ops.OP_NAMES.items() if name == "reveal")
            self._ops.append_audit(self._txn, self._tx.dbs, self._tx.now_ms, reveal,
                                   self._tx.actor, events)
        return len(events)

    def void(self, code_ids: list[int]) -> list[CodeOpStatus]:
        """SOLD -> VOID for each code (the sale reversed); WRONG_STATE leaves a code as it is."""
        return [CodeOpStatus(status) for status, _, _ in self._ops.void(self._tx, code_ids)]

    def report_invalid(self, order_id: bytes, code_id: int) -> tuple[ReportInvalidStatus, int]:
        """The engine's ReportInvalidCode in this transaction -> (status, replacement id or 0)."""
        [(status, replacement)] = self._ops.report_invalid(self._tx, [(order_id, code_id)])
        return ReportInvalidStatus(status), replacement

    def order_codes(self, order_id: bytes, code_ids: list[int] | None = None
                    ) -> list[OrderCode]:
        """The codes of an order (or those of `code_ids`) as this transaction sees them."""
        if code_ids is None:
            value = self._txn.get(order_id, db=self._tx.dbs.orders)
            if value is None:
                return []
            code_ids = self._codec.unpack_order(value)[5]
        dbs, codec, txn = self._tx.dbs, self._codec, self._txn
        cached = self._tables.batch_terms
        found = []
        for code_id in code_ids:
            record = self._tx.record(code_id)
            batch = txn.get(codec.u32_key(record.batch_no), db=dbs.batches)
            terms = cached.get(batch)
            if terms is None:
                if len(cached) >= limits.batch_terms_cached_max:
                    cached.clear()
                unpacked = codec.unpack_batch(batch)
                terms = cached[batch] = (unpacked["name"].decode(),
                                         unpacked["supplier"].decode(),
                                         unpacked["unit_cost_micros"])
            sku = txn.get(self._ops.SKU_NUMBER_PREFIX + codec.u32_key(record.sku_no),
                          db=dbs.skus).decode()
            found.append(OrderCode(code_id, _CODE_STATES[record.state], sku, *terms,
                                   record.link_code_id))
        return found
