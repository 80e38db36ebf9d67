"""Helpers of the secrets tests (tests/test_secrets_at_rest.py, tests/test_secrets_keys.py):
codes in the shapes suppliers send, selling through the engine, and reopening a data dir."""

from __future__ import annotations

import os
import random
import stat
import string
from pathlib import Path

from kamicore.engine import Engine
from kamicore.statuses import ConfirmStatus, ReserveStatus

SKU = "gift-50"
MASTER_KEY_ENV = "KAMICORE_MASTER_KEY"
KEY_FILE = "master.key"


def random_codes(count: int, rng: random.Random) -> list[str]:
    """Distinct gift-card-like codes in the shapes suppliers send: grouped with dashes or
    spaces, upper or lower case, or one run of characters."""
    alphabet = string.ascii_uppercase + string.digits
    codes, seen = [], set()
    while len(codes) < count:
        raw = "".join(rng.choice(alphabet) for _ in range(16))
        if raw in seen:
            continue
        seen.add(raw)
        groups = [raw[i:i + 4] for i in range(0, 16, 4)]
        shape = len(codes) % 4
        if shape == 0:
            codes.append("-".join(groups))
        elif shape == 1:
            codes.append(" ".join(groups).lower())
        elif shape == 2:
            codes.append(raw)
        else:
            codes.append("-".join(groups).lower())
    return codes


def normalised(code: str) -> str:
    return code.upper().replace(" ", "").replace("-", "")


def reopen(path: Path, clock, implementation: str, **options) -> Engine:
    return Engine(path, clock=clock, implementation=implementation, **options)


def sell(engine: Engine, order_id: str, quantity: int, sku: str = SKU) -> list[int]:
    reserved = engine.reserve([(order_id, [(sku, quantity)], 600)])[0]
    assert reserved.status == ReserveStatus.RESERVED
    confirmed = engine.confirm([order_id])[0]
    assert confirmed.status == ConfirmStatus.SOLD
    return confirmed.code_ids


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)
