"""Every storage backend the backend-neutral tests run against (tests/test_model.py).

Each entry opens a fresh, empty store in a directory with the given clock and returns an
object with kamicore.engine.api.Backend's methods. A second backend (PostgreSQL) adds an entry
here, and the model-based test body runs against it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from kamicore.engine import Engine
from kamicore.engine.api import Backend


def _lmdb(implementation: str) -> Callable[[str, Callable[[], int]], Backend]:
    def open_backend(directory: str, clock: Callable[[], int]) -> Backend:
        return Engine(directory, clock=clock, implementation=implementation)
    return open_backend


BACKENDS: dict[str, Callable[[str, Callable[[], int]], Backend]] = {
    "lmdb-compiled": _lmdb("compiled"),  # the engine as it ships
    "lmdb-interpreted": _lmdb("interpreted"),  # the same sources run by CPython
}
