"""Reads: snapshots that never wait for the writer, answered as plain result types."""

from __future__ import annotations

from collections.abc import Iterable

from .. import limits
from ..statuses import CodeState, OrderState, VerifyStatus
from . import validate
from .results import BatchStock, CodeView, OrderView, Stock, TerminalState, VerifyResult
from .transaction import TABLES


def _count_range(txn, db, prefix: bytes, start: bytes, end: bytes | None,
                 most: int | None = None) -> int | None:
    """Keys in [start, end) that begin with `prefix` (end None: to the prefix's end); None
    when there are more than `most`."""
    count = 0
    with txn.cursor(db=db) as cursor:
        if cursor.set_range(start):
            for key in cursor.iternext(keys=True, values=False):
                if key[:len(prefix)] != prefix or (end is not None and key >= end):
                    break
                count += 1
                if most is not None and count > most:
                    return None
    return count


def unsellable(txn, dbs, codec, sku_no: int, now_ms: int,
               most: int | None = None) -> tuple[int, int, int] | None:
    """-> (expired, not yet valid, soonest valid_until of a sellable code or 0) of a SKU's
    AVAILABLE codes; sellable = the AVAILABLE counter - expired - not yet valid. With `most`:
    None when counting would pass that many index entries, and soonest is not looked for."""
    prefix = codec.sku_prefix(sku_no)
    now_key = codec.available_key(sku_no, now_ms, 2**64 - 1)  # past every code at now
    expired = _count_range(txn, dbs.available, prefix, prefix, now_key, most)
    if expired is None:
        return None
    # a code with a start still ahead cannot have expired (valid_until > valid_from)
    not_yet_valid = _count_range(txn, dbs.pending, prefix, now_key, None,
                                 None if most is None else most - expired)
    if not_yet_valid is None:
        return None
    soonest = 0
    if most is not None:
        return expired, not_yet_valid, soonest
    with txn.cursor(db=dbs.available) as cursor:
        if cursor.set_range(now_key):
            for key in cursor.iternext(keys=True, values=False):
                if key[:4] != prefix:
                    break
                record = codec.unpack_record(txn.get(key[12:], db=dbs.codes))
                if record.valid_from_ms <= now_ms:
                    soonest = codec.unpack_available_key(key)[1]
                    break
    return expired, not_yet_valid, soonest


class Reads:
    """Mixed into Engine: `env`, `dbs`, `tables`, `ops`, `codec`, `keys` and `_clock` are its."""

    def read(self):
        """A read transaction (a snapshot); never waits for the writer."""
        return self.env.begin(buffers=False)

    def _sku_name(self, txn, sku_no: int) -> str:
        name = txn.get(self.ops.SKU_NUMBER_PREFIX + self.codec.u32_key(sku_no),
                       db=self.dbs.skus)
        return name.decode() if name is not None else ""

    def _sku_no(self, txn, sku: bytes) -> int:
        value = txn.get(self.ops.SKU_NAME_PREFIX + sku, db=self.dbs.skus)
        return int.from_bytes(value, "little") if value is not None else 0

    def _batch_name(self, txn, batch_no: int) -> str:
        value = txn.get(self.codec.u32_key(batch_no), db=self.dbs.batches)
        return self.codec.unpack_batch(value)["name"].decode() if value else ""

    def _plaintext(self, txn, code_id: int, record) -> bytes:
        code_key = self.codec.code_key(code_id)
        return self.keys.sealer(txn, self.dbs, record.batch_no).open(record.sealed, code_key)

    def _view(self, txn, code_id: int, record) -> CodeView:
        return CodeView(
            code_id=code_id, state=CodeState(record.state),
            sku=self._sku_name(txn, record.sku_no), batch=self._batch_name(txn, record.batch_no),
            valid_from_ms=record.valid_from_ms, valid_until_ms=record.valid_until_ms,
            order_id=record.order_id.decode(), hold_until_ms=record.hold_until_ms,
            sold_at_ms=record.sold_at_ms, redeemed_at_ms=record.redeemed_at_ms,
            redeemed_by=record.terminal.decode(), replaced_by=record.link_code_id,
            masked=self.codec.mask_code(self._plaintext(txn, code_id, record)))

    def verify(self, codes: Iterable) -> list[VerifyResult]:
        """A code's state without changing it (the POS 'check' button)."""
        codes = validate.items(codes, "codes", limits.codes_per_batch_max)
        codes = [validate.code(code, f"codes[{index}]") for index, code in enumerate(codes)]
        with self.read() as txn:
            return [VerifyResult(VerifyStatus(status),
                                 self._view(txn, code_id, record) if record else None)
                    for status, code_id, record in self.ops.verify(
                        txn, self.dbs, self.keys.lookup_hash, codes)]

    def terminal_state(self, terminal) -> TerminalState:
        """A terminal's consecutive misses and lock, as of now (a snapshot)."""
        terminal = validate.text(terminal, "terminal", limits.terminal_bytes_max)
        with self.read() as txn:
            return TerminalState(*self.ops.terminal_state(txn, self.dbs, terminal,
                                                          self._clock()))

    def code(self, code_id: int) -> CodeView | None:
        with self.read() as txn:
            value = txn.get(self.codec.code_key(code_id), db=self.dbs.codes)
            if value is None:
                return None
            return self._view(txn, code_id, self.codec.unpack_record(value))

    def stock(self, sku) -> Stock | None:
        """Counts by state (O(1) counters) and what is sellable right now."""
        sku = validate.text(sku, "sku", limits.name_bytes_max)
        codec = self.codec
        now_ms = self._clock()
        with self.read() as txn:
            sku_no = self._sku_no(txn, sku)
            if not sku_no:
                return None
            counts = {}
            for state in CodeState:
                value = txn.get(codec.counter_key(sku_no, state), db=self.dbs.counters)
                counts[state] = codec.unpack_u64(value) if value is not None else 0
            expired, not_yet_valid, soonest = unsellable(txn, self.dbs, codec, sku_no, now_ms)
            sellable = counts[CodeState.AVAILABLE] - expired - not_yet_valid
            return Stock(sku.decode(), counts, sellable, expired, soonest)

    def order(self, order_id, *, reveal: bool = False, codes_offset: int = 0,
              codes_max: int | None = None) -> OrderView | None:
        """An order with its codes masked, or in plaintext when `reveal` (its buyer only; the
        server audits every reveal): the codes from position `codes_offset` on, at most
        `codes_max` of them (None: all); `code_ids` names every code of the order."""
        order_id = validate.text(order_id, "order_id", limits.order_id_bytes_max)
        validate.integer(codes_offset, "codes_offset", 0, 2**63 - 1)
        if codes_max is not None:
            validate.integer(codes_max, "codes_max", 0, 2**63 - 1)
        codec = self.codec
        with self.read() as txn:
            value = txn.get(order_id, db=self.dbs.orders)
            if value is None:
                return None
            state, hold_until_ms, created_ms, _, lines, code_ids = codec.unpack_order(value)
            end = len(code_ids) if codes_max is None else codes_offset + codes_max
            views, plaintexts = [], []
            for code_id in code_ids[codes_offset:end]:
                record = codec.unpack_record(txn.get(codec.code_key(code_id), db=self.dbs.codes))
                views.append(self._view(txn, code_id, record))
                if reveal:
                    plaintexts.append(self._plaintext(txn, code_id, record).decode())
            return OrderView(order_id.decode(), OrderState(state), hold_until_ms,
                             created_ms, [(self._sku_name(txn, sku_no), quantity)
                                          for sku_no, quantity in lines],
                             views, plaintexts if reveal else None, list(code_ids))

    def batch_stock(self, sku) -> list[BatchStock]:
        """Per-batch counts of a sku (O(batches), from counters kept with every transition).
        Every code of a batch has the batch's validity window, so a batch's AVAILABLE codes
        are all sellable, all expired or all not yet valid."""
        sku = validate.text(sku, "sku", limits.name_bytes_max)
        codec = self.codec
        now_ms = self._clock()
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
                    available = counts.get(CodeState.AVAILABLE, 0)
                    valid_from_ms, valid_until_ms = info["valid_from_ms"], info["valid_until_ms"]
                    expired = valid_until_ms <= now_ms  # as Reads.stock counts them
                    started = valid_from_ms <= now_ms
                    result.append(BatchStock(
                        info["name"].decode(), info["supplier"].decode(), valid_until_ms,
                        counts, valid_from_ms, available if started and not expired else 0,
                        available if expired else 0, info["unit_cost_micros"]))
            return result

    def skus(self) -> list[str]:
        prefix = self.ops.SKU_NAME_PREFIX
        with self.read() as txn, txn.cursor(db=self.dbs.skus) as cursor:
            cursor.set_range(prefix)
            return [key[1:].decode() for key in cursor.iternext(values=False)
                    if key[:1] == prefix]

    # -- the domain layers' tables ---------------------------------------------------------

    def get(self, table: str, key: bytes) -> bytes | None:
        """One record of a domain table (kamicore.engine.transaction.TABLES)."""
        with self.read() as txn:
            return txn.get(key, db=self.tables[table])

    def scan(self, table: str, start: bytes = b"", limit: int | None = None
             ) -> list[tuple[bytes, bytes]]:
        """Records of a domain table in key order, from the first key at or after `start`."""
        assert table in TABLES
        found = []
        with self.read() as txn, txn.cursor(db=self.tables[table]) as cursor:
            if not (cursor.set_range(start) if start else cursor.first()):
                return found
            for key, value in cursor:
                if limit is not None and len(found) >= limit:
                    break
                found.append((key, value))
        return found
