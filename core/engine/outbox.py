"""The outbox's engine face: what each commit wrote to it, read back in event-id order, and its
pruning. The events themselves - their types, fields, who may see them - are
kamicore.domain.events'; this module knows only the records (ext/kamicore/_engine.py's
OUTBOX_AUDIT and OUTBOX_DOMAIN) and the engine's own records they point at.
"""

from __future__ import annotations

import dataclasses

from ..statuses import CodeState


@dataclasses.dataclass(frozen=True)
class Transition:
    """A code transition of an audit block the outbox points at, with what the reader needs to
    name it: the code's order (of its sale or hold) and the terminal that last redeemed it."""

    event_id: int
    at_ms: int
    operation: str  # the audit operation's name (_engine.OP_NAMES): "redeem", "leak", ...
    actor: str
    code_id: int
    from_state: CodeState
    to_state: CodeState
    sku: str
    order_id: str
    terminal: str


@dataclasses.dataclass(frozen=True)
class DomainRecord:
    """An event a domain layer wrote (kamicore.domain.events decodes `event`)."""

    event_id: int
    at_ms: int
    event: bytes


class Outbox:
    """Mixed into Engine (see Reads for what it has)."""

    def outbox_head(self) -> int:
        """The newest event id committed; 0 when none."""
        with self.read() as txn:
            value = txn.get(self.ops.META_OUTBOX_HEAD, db=self.dbs.meta)
            return self.codec.unpack_u64(value) - 1 if value is not None else 0

    def outbox_first(self) -> int:
        """The oldest event id still kept (pruning drops the oldest); 0 when none."""
        with self.read() as txn, txn.cursor(db=self.dbs.outbox) as cursor:
            for key, value in cursor:
                return self._first_id(txn, key, value)
            return 0

    def _first_id(self, txn, key: bytes, value: bytes) -> int:
        """The first event id of an outbox record (keyed by its last)."""
        record = self.ops.unpack_outbox(value)
        if record[0] == self.ops.OUTBOX_DOMAIN:
            return self.codec.u64_of(key)
        block = txn.get(self.codec.u64_key(record[1]), db=self.dbs.audit)
        return self.codec.u64_of(key) - len(self.ops.unpack_audit_block(block)[5]) + 1

    def outbox_read(self, after_id: int, limit: int) -> list:
        """Up to `limit` outbox entries with ids above `after_id`, in id order: Transition for
        each event of an audit block, DomainRecord for each domain event. Ids are never
        reused and only increase; an audit block's transitions that are no business event
        still take their ids (the reader skips them)."""
        found: list = []
        with self.read() as txn, txn.cursor(db=self.dbs.outbox) as cursor:
            if limit <= 0 or not cursor.set_range(self.codec.u64_key(after_id + 1)):
                return found
            for key, value in cursor:  # from the record holding after_id + 1 (or later)
                record = self.ops.unpack_outbox(value)
                if record[0] == self.ops.OUTBOX_DOMAIN:
                    found.append(DomainRecord(self.codec.u64_of(key), record[1],
                                              bytes(record[2])))
                else:
                    self._transitions(txn, self.codec.u64_of(key), record[1], after_id, limit,
                                      found)
                if len(found) >= limit:
                    break
        return found

    def _transitions(self, txn, last_id: int, audit_seq: int, after_id: int, limit: int,
                     found: list) -> None:
        ops, codec = self.ops, self.codec
        _, _, at_ms, op, actor, events = ops.unpack_audit_block(
            txn.get(codec.u64_key(audit_seq), db=self.dbs.audit))
        operation = ops.OP_NAMES[op]
        first_id = last_id - len(events) + 1
        for offset, (code_id, from_state, to_state, sku_no) in enumerate(events):
            if first_id + offset <= after_id:
                continue
            if len(found) >= limit:
                return
            value = txn.get(codec.code_key(code_id), db=self.dbs.codes)
            record = codec.unpack_record(value) if value is not None else None
            found.append(Transition(
                first_id + offset, at_ms, operation, actor.decode(), code_id,
                CodeState(from_state), CodeState(to_state), self._sku_name(txn, sku_no),
                record.order_id.decode() if record is not None else "",
                record.terminal.decode() if record is not None else ""))
