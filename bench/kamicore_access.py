"""The only place bench/ reaches past kamicore's public API.

kamicore's public API, which the rest of bench/ keeps to: the `kamicore` package's exports
(Engine, AsyncEngine, InvalidArgument, the status enums) with the Engine's public methods, the
gRPC API (kamicore.v1) and what the server exposes (its /metrics, the admin key file it writes),
and the `kamicore` command line. Everything in this file goes past that: modules, constants,
attributes and the store layout that are kamicore's own business. The engine's Python layout
is being reorganised in parallel; this file is what gets adapted afterwards, and nothing else in
bench/ may import kamicore's inner modules or touch an Engine's private attributes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import kamicore
from kamicore import Engine, auth, limits
from kamicore.cli.catalog import make_sku
from kamicore.domain.catalog import Catalog
from kamicore.engine import interpreted

# the interpreted engine runs the sources under ext/ (kamicore.interpreted finds them here)
os.environ.setdefault("KAMICORE_EXT_DIR", str(Path(__file__).resolve().parent.parent / "ext"))

# the command line, run by module path with this interpreter (the `kamicore` script's module)
CLI = (sys.executable, "-m", "kamicore.cli")

# the engine's limits
codes_per_line_max = limits.codes_per_line_max
codes_per_order_max = limits.codes_per_order_max
# a worker's calls in flight by default (the bench lets one key use all of them)
in_flight_rpcs_default = limits.in_flight_rpcs_default


def open_engine(path: Path, implementation: str = "compiled") -> Engine:
    """`compiled` (kamicore._engine) or `interpreted` (the same per-item code run by CPython)."""
    return Engine(path, implementation=implementation)


def engine_build_warning() -> str:
    """The compiled package is what `make install` built; the interpreted engine runs the
    sources at KAMICORE_EXT_DIR, which may have moved on since. '' if they agree."""
    compiled = list(Path(kamicore.__file__).parent.glob("_engine*.so"))
    if not compiled:
        return "kamicore._engine is not a compiled extension"
    ext_dir = interpreted.ext_dir()
    newest_source = max(path.stat().st_mtime for path in (ext_dir / "kamicore").glob("*.p*"))
    if newest_source > compiled[0].stat().st_mtime:
        return (f"{ext_dir} is newer than the installed kamicore._engine: compiled and "
                "interpreted figures may be of different code (run make install)")
    return ""


# -- the store as the engine lays it out (bench/c_floor.c builds its own alike) ----------------

map_size_bytes = limits.map_size_bytes_default  # the LMDB map the engine opens


def code_key(code_id: int) -> bytes:
    """A code record's key: its id, 8 bytes big-endian."""
    return code_id.to_bytes(8, "big")


def stored_code_record(engine: Engine, code_id: int) -> bytes:
    """A code's record as stored (sealed code, state, order, ...)."""
    with engine.read() as txn:
        return txn.get(code_key(code_id), db=engine.dbs.codes)


# -- catalog and keys straight into a data dir (the server is not running) -------------------------

def create_sku(engine: Engine, sku_id: str, currency: str, face_value: str,
               prices: dict[str, int]) -> None:
    """A SKU with a price per channel (micros), as `kamicore sku create` makes it."""
    Catalog(engine).create(make_sku(
        sku_id, f"Bench {sku_id}", currency, face_value,
        [f"{channel}={micros / 1e6:.2f}" for channel, micros in prices.items()],
        0, 0, [], "code"), actor="bench")


def create_key(engine: Engine, role: str, binding: str, name: str) -> str:
    """A new API key's plaintext."""
    return auth.create_key(engine, role, binding=binding, name=name)[0]


def lmdb_version() -> str:
    """The system LMDB the engine is linked against (its binding, kamicore._lmdb)."""
    from kamicore import _lmdb
    return ".".join(map(str, _lmdb.version()))
