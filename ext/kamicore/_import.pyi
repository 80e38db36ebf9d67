"""Typed face of the compiled kamicore._import (source: ext/kamicore/_import.pyx): a whole
import call's codes decided, sealed and written in C without the GIL."""

from typing import Any

def import_codes(tx: Any, sku: bytes, batch: bytes, supplier: bytes, unit_cost_micros: int,
                 valid_from_ms: int, valid_until_ms: int,
                 codes: list[bytes]) -> tuple[int, list[int], list[int]]: ...
