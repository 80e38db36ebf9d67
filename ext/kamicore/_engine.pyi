"""Typed face of the compiled kamicore._engine (source: ext/kamicore/_engine.py; C face:
_engine.pxd). tests/test_stubs.py holds its names to the compiled module's.

Every write operation (in _inventory, _orders and _redemption) takes a Tx, one operation's view
of the group's write transaction, and returns plain tuples; kamicore.engine turns them into
result types."""

from typing import Any

from ._record import CodeRecord

META_SKU_NO_NEXT: bytes
META_AUDIT_HEAD: bytes
META_OUTBOX_HEAD: bytes
OUTBOX_AUDIT: int
OUTBOX_DOMAIN: int
SKU_NAME_PREFIX: bytes
SKU_NUMBER_PREFIX: bytes
AUDIT_GENESIS: bytes
OP_NAMES: dict[int, str]

class Dbs:
    codes: Any
    available: Any
    lookup: Any
    holds: Any
    counters: Any
    skus: Any
    batches: Any
    batch_names: Any
    orders: Any
    redemptions: Any
    audit: Any
    outbox: Any
    meta: Any
    batch_counters: Any
    pending: Any
    def __init__(self, env: Any) -> None: ...

class Tx:
    txn: Any
    dbs: Dbs
    keys: Any
    now_ms: int
    actor: bytes
    def __init__(self, txn: Any, dbs: Dbs, keys: Any, now_ms: int, actor: bytes) -> None: ...
    def move(self, code_id: int, record: CodeRecord, to_state: int) -> None: ...
    def finish(self, op: int) -> None: ...
    def next_number(self, name: bytes, first: int = 1) -> int: ...
    def sku_no(self, sku: bytes, create: bool) -> int: ...
    def record(self, code_id: int) -> CodeRecord: ...
    def put_record(self, code_id: int, record: CodeRecord) -> None: ...
    def resolve(self, ref: int | bytes) -> tuple[int, int, CodeRecord | None]: ...
    def pick(self, sku_no: int, quantity: int) -> list[tuple[int, CodeRecord]]: ...
    def take_available(self, code_id: int, record: CodeRecord) -> None: ...
    def return_available(self, code_id: int, record: CodeRecord) -> None: ...

def append_audit(txn: Any, dbs: Dbs, now_ms: int, op: int, actor: bytes, events: list) -> None: ...
def append_domain_event(txn: Any, dbs: Dbs, now_ms: int, event: bytes) -> int: ...
def unpack_outbox(value: bytes) -> tuple: ...
def unpack_audit_block(value: bytes) -> tuple[bytes, int, int, int, bytes, list]: ...
def audit_block_hash(value: bytes) -> bytes: ...
