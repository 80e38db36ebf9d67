"""Which per-item engine runs: the compiled modules, or the same sources interpreted.

The rest of kamicore.engine sees two namespaces, whichever runs: `ops` (the operations and what
they share: Dbs, Tx, the audit log and the store's constants) and `codec` (record layouts and
key encodings). Each is assembled from the names listed here, module by module, so moving a name
between the compiled modules changes these tables and nothing else; tests/test_stubs.py holds
the tables to the modules' stubs, and a name listed here that a module lacks fails at load.
"""

from __future__ import annotations

import importlib
import types

OPS = {
    "_engine": (
        "Dbs", "Tx", "append_audit", "unpack_audit_block", "audit_block_hash", "AUDIT_GENESIS",
        "OP_NAMES", "META_AUDIT_HEAD", "META_SKU_NO_NEXT", "SKU_NAME_PREFIX", "SKU_NUMBER_PREFIX",
        "append_domain_event", "unpack_outbox", "META_OUTBOX_HEAD", "OUTBOX_AUDIT",
        "OUTBOX_DOMAIN",
    ),
    "_inventory": ("import_codes", "freeze", "unfreeze", "void", "META_BATCH_NO_NEXT",
                   "META_CODE_ID_NEXT"),
    "_orders": ("reserve", "confirm", "release", "expire_holds", "report_invalid",
                "META_ORDER_NO_NEXT"),
    "_redemption": ("redeem", "verify", "terminal_state", "count_misses", "unlock_terminal",
                    "freeze_leaked"),
}
CODEC = {
    "_record": ("CodeRecord", "new_record", "unpack_record", "RECORD_HEADER_BYTES"),
    "_codec": (
        "check_code", "has_control_character", "normalize_code", "mask_code", "code_key",
        "code_id_of", "available_key", "unpack_available_key", "sku_prefix", "hold_key",
        "unpack_hold_key", "counter_key", "unpack_counter_key", "u32_key", "u64_key", "u64_of",
        "pack_u32", "unpack_u32", "pack_u64", "unpack_u64", "request_key", "pack_redemption",
        "unpack_redemption", "pack_order", "unpack_order", "pack_batch", "unpack_batch",
    ),
}
MODULES = (*OPS, *CODEC)  # the engine's modules written in pure-Python mode
# Modules written for the compiler only (.pyx, C over LMDB's C API and libcrypto): the engine's
# LMDB binding, and operations whose whole batch runs without the GIL. When compiled, these
# operations replace the pure-Python mode ones of the same name (which the interpreted engine
# keeps running, so both are held to the reference model).
NATIVE_OPS = {"_redeem": ("redeem",), "_import": ("import_codes",)}
NATIVE = ("_lmdb", "_lmdb_cursor", *NATIVE_OPS)
COMPILED = (*MODULES, *NATIVE)  # every compiled module (setup.py's EXTENSIONS)


def _namespace(modules: dict[str, types.ModuleType],
               names: dict[str, tuple[str, ...]]) -> types.SimpleNamespace:
    found = {}
    for module, listed in names.items():
        for name in listed:
            assert name not in found, f"{name} is listed twice"
            found[name] = getattr(modules[module], name)
    return types.SimpleNamespace(**found)


def load_implementation(name: str = "compiled") -> types.SimpleNamespace:
    """The per-item engine: `compiled` (kamicore._engine and its sibling modules) or
    `interpreted` (the same sources under ext/kamicore/, run by CPython; needs a source
    checkout) -> .ops, .codec, .modules (name -> module) and .name."""
    if name == "compiled":
        modules = {module: importlib.import_module(f"kamicore.{module}") for module in COMPILED}
        ops = _namespace(modules, OPS)
        for module, listed in NATIVE_OPS.items():
            for operation in listed:
                setattr(ops, operation, getattr(modules[module], operation))
    elif name == "interpreted":
        from . import interpreted
        modules = interpreted.load(MODULES)
        ops = _namespace(modules, OPS)
    else:
        raise ValueError(f"implementation: unknown {name!r}")
    return types.SimpleNamespace(ops=ops, codec=_namespace(modules, CODEC), modules=modules,
                                 name=name)
