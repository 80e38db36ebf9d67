"""Typed face of the compiled kamicore._redeem (source: ext/kamicore/_redeem.pyx): a whole
redeem batch decided and written in C without the GIL."""

from typing import Any

def redeem(tx: Any, items: list[tuple[bytes, bytes]], terminal: bytes,
           replay_only: bool = False) -> list[tuple[int, int, int, bytes]] | None: ...
