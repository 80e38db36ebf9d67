"""Typed face of the compiled kamicore._record (source: ext/kamicore/_record.py; C face:
_record.pxd). tests/test_stubs.py holds its names to the compiled module's."""

RECORD_HEADER_BYTES: int

class CodeRecord:
    state: int
    prior_state: int
    sku_no: int
    batch_no: int
    valid_from_ms: int
    valid_until_ms: int
    hold_until_ms: int
    sold_at_ms: int
    redeemed_at_ms: int
    link_code_id: int
    order_id: bytes
    terminal: bytes
    sealed: bytes
    def pack(self) -> bytes: ...

def new_record(state: int, sku_no: int, batch_no: int, valid_from_ms: int, valid_until_ms: int,
               sealed: bytes) -> CodeRecord: ...
def unpack_record(value: bytes) -> CodeRecord: ...
