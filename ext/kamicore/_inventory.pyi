"""Typed face of the compiled kamicore._inventory (source: ext/kamicore/_inventory.py).
tests/test_stubs.py holds its names to the compiled module's."""

from ._engine import Tx

META_CODE_ID_NEXT: bytes
META_BATCH_NO_NEXT: bytes

def import_codes(tx: Tx, sku: bytes, batch: bytes, supplier: bytes, unit_cost_micros: int,
                 valid_from_ms: int, valid_until_ms: int,
                 codes: list[bytes]) -> tuple[int, list[int], list[int]]: ...
def freeze(tx: Tx, refs: list) -> list[tuple[int, int, int]]: ...
def unfreeze(tx: Tx, refs: list) -> list[tuple[int, int, int]]: ...
def void(tx: Tx, refs: list) -> list[tuple[int, int, int]]: ...
