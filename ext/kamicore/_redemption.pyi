"""Typed face of the compiled kamicore._redemption (source: ext/kamicore/_redemption.py).
tests/test_stubs.py holds its names to the compiled module's."""

from collections.abc import Callable
from typing import Any

from ._engine import Dbs, Tx
from ._record import CodeRecord

def redeem(tx: Tx, items: list[tuple[bytes, bytes]], terminal: bytes,
           replay_only: bool = False) -> list[tuple[int, int, int, bytes]] | None: ...
def verify(txn: Any, dbs: Dbs, lookup_hash: Callable[[bytes], bytes],
           codes: list[bytes]) -> list[tuple[int, int, CodeRecord | None]]: ...
