"""Which per-item engine runs: the compiled modules, or the same sources interpreted."""

from __future__ import annotations

import types


def load_implementation(name: str = "compiled") -> types.SimpleNamespace:
    """The per-item engine: `compiled` (kamicore._engine) or `interpreted` (the same source
    under ext/kamicore/, run by CPython; needs a source checkout)."""
    if name == "compiled":
        from .. import _codec, _engine
        return types.SimpleNamespace(engine=_engine, codec=_codec, name=name)
    if name == "interpreted":
        from . import interpreted
        return interpreted.load()
    raise ValueError(f"implementation: unknown {name!r}")
