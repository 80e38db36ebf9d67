"""Integrity: every invariant a reopened data dir must hold, for operators and tests."""

from __future__ import annotations

from .. import keyring
from ..statuses import CodeState
from .results import AuditReport


class Integrity:
    """Mixed into Engine (see Reads for what it provides)."""

    def counters(self) -> dict[tuple[str, CodeState], int]:
        """The stored per-(sku, state) counters, zeros left out."""
        codec = self.codec
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
        codec = self.codec
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
        codec = self.codec
        with self.read() as txn, txn.cursor(db=self.dbs.batch_counters) as cursor:
            return {codec.unpack_counter_key(key): codec.unpack_u64(value)
                    for key, value in cursor if codec.unpack_u64(value)}

    def _scan_batch_counts(self) -> dict[tuple[int, int], int]:
        codec = self.codec
        counts: dict = {}
        with self.read() as txn, txn.cursor(db=self.dbs.codes) as cursor:
            for _, value in cursor:
                record = codec.unpack_record(value)
                key = (record.batch_no, record.state)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def audit_events(self):
        """Every audit event in order: (seq, at_ms, op, actor, code_id, from, to, sku_no)."""
        unpack = self.ops.unpack_audit_block
        with self.read() as txn, txn.cursor(db=self.dbs.audit) as cursor:
            for _, value in cursor:
                _, first_seq, at_ms, op, actor, events = unpack(value)
                for offset, (code_id, from_state, to_state, sku_no) in enumerate(events):
                    yield (first_seq + offset, at_ms, op, actor.decode(), code_id, from_state,
                           to_state, sku_no)

    def verify_audit(self) -> AuditReport:
        """Recompute the hash chain of the audit log from its first block to the stored head."""
        ops, codec = self.ops, self.codec
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
        codec = self.codec
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
