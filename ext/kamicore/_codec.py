"""Key encodings and value layouts of the code store, format version 1, and the checks and
normal form of a code's text. The code record itself is _record.py's.

Cython pure-Python mode: compiled into ``kamicore._codec`` by setup.py, and importable as plain
Python from this folder (tests and bench/ run the engine both ways to hold them equal and to
measure what compiling buys).

Every layout here is fixed. Integers in keys are big-endian so that LMDB's byte order is their
numeric order; integers in values are little-endian. A layout change bumps the version byte that
leads every record and is refused by an older reader.
"""

import struct
import sys

import cython

from kamicore import limits

# Status and state numbers come from the proto enums (proto/generate.py writes _statuses.pxd and
# _statuses.py): C constants when compiled, Python ints when interpreted.
if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.kamicore._statuses import (
        IMPORT_CODE_STATUS_CONTROL_CHARACTER, IMPORT_CODE_STATUS_EMPTY,
        IMPORT_CODE_STATUS_IMPORTED, IMPORT_CODE_STATUS_NOT_UTF8, IMPORT_CODE_STATUS_TOO_LONG,
    )
    from cython.cimports.libc.string import memcpy
else:
    from ._statuses import (
        IMPORT_CODE_STATUS_CONTROL_CHARACTER, IMPORT_CODE_STATUS_EMPTY,
        IMPORT_CODE_STATUS_IMPORTED, IMPORT_CODE_STATUS_NOT_UTF8, IMPORT_CODE_STATUS_TOO_LONG,
    )

# Compiled code writes a value's fields in place where the host's byte order is the layout's
# (little-endian); elsewhere, and when interpreted, it goes through struct.
_in_place = cython.declare(cython.bint, sys.byteorder == "little")

ORDER_RECORD_VERSION = cython.declare(cython.int, 1)
BATCH_RECORD_VERSION = cython.declare(cython.int, 1)

# kamicore.limits.code_bytes_max as a C number, read when the module loads: checked per code
_code_bytes_max = cython.declare(cython.Py_ssize_t, limits.code_bytes_max)

_U64_KEY = struct.Struct(">Q")
_AVAILABLE_KEY = struct.Struct(">IQQ")
_COUNTER_KEY = struct.Struct(">IB")
_U32_KEY = struct.Struct(">I")
_U32_VALUE = struct.Struct("<I")
_U64_VALUE = struct.Struct("<Q")
# status, code_id, at_ms, then the 32-byte lookup hash of the code asked for
_REDEMPTION = struct.Struct("<BQq")
# version, state, hold_until_ms, created_ms, line_count, code_count, order_no; then lines
# (sku_no u32, quantity u32) and code ids (u64)
_ORDER = struct.Struct("<BBqqHIQ")
_ORDER_LINE = struct.Struct("<II")
# version, sku_no, valid_from_ms, valid_until_ms, unit_cost_micros, master_key_id (8 bytes),
# name_len, supplier_len, wrapped_len; then name, supplier, wrapped data key
_BATCH = struct.Struct("<BIqqq8sBBH")


def check_code(raw: bytes) -> cython.int:
    """Per-code validation of an imported or presented code, before any lookup: an
    ImportCodeStatus number (IMPORTED when the code is well formed)."""
    length: cython.Py_ssize_t = len(raw)
    if length == 0:
        return IMPORT_CODE_STATUS_EMPTY
    if length > _code_bytes_max:
        return IMPORT_CODE_STATUS_TOO_LONG
    data: cython.p_uchar = raw
    byte: cython.uchar
    only_separators: cython.bint = True
    ascii_only: cython.bint = True
    i: cython.Py_ssize_t
    for i in range(length):
        byte = data[i]
        if byte < 0x20 or byte == 0x7F:
            return IMPORT_CODE_STATUS_CONTROL_CHARACTER
        if byte >= 0x80:
            ascii_only = False
        if byte != 0x20 and byte != 0x2D:
            only_separators = False
    if not ascii_only:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return IMPORT_CODE_STATUS_NOT_UTF8
    if only_separators:
        return IMPORT_CODE_STATUS_EMPTY
    return IMPORT_CODE_STATUS_IMPORTED


def has_control_character(value: bytes) -> cython.bint:
    """Any byte below 0x20, or 0x7f: never allowed in ids, terminals or names."""
    data: cython.p_uchar = value
    i: cython.Py_ssize_t
    for i in range(len(value)):
        if data[i] < 0x20 or data[i] == 0x7F:
            return True
    return False


def normalize_code(raw: bytes) -> bytes:
    """The form a code is looked up by: ASCII case, spaces and dashes ignored."""
    if not cython.compiled:
        return raw.upper().replace(b" ", b"").replace(b"-", b"")
    length: cython.Py_ssize_t = len(raw)
    source: cython.p_uchar = raw
    out = PyBytes_FromStringAndSize(cython.NULL, length)
    target: cython.p_char = PyBytes_AS_STRING(out)
    kept: cython.Py_ssize_t = 0
    byte: cython.uchar
    i: cython.Py_ssize_t
    for i in range(length):
        byte = source[i]
        if byte == 0x20 or byte == 0x2D:
            continue
        if 0x61 <= byte <= 0x7A:
            byte -= 0x20
        target[kept] = byte
        kept += 1
    return out if kept == length else out[:kept]


def mask_code(plaintext: bytes) -> str:
    """What a code looks like anywhere but its buyer's delivery: its last 4 characters, and
    never more than a quarter of it (a short code shows less, a tiny one nothing)."""
    text = plaintext.decode("utf-8", "replace")
    visible = min(4, len(text) // 4)
    return "*" * max(len(text) - visible, 4) + (text[-visible:] if visible else "")


def code_key(code_id: cython.ulonglong) -> bytes:
    return _U64_KEY.pack(code_id)


def code_id_of(key: bytes) -> cython.ulonglong:
    if not cython.compiled:
        return _U64_KEY.unpack_from(key)[0]
    if len(key) < 8:
        raise ValueError("a code key is 8 bytes")
    data: cython.p_uchar = key
    number: cython.ulonglong = 0
    i: cython.int
    for i in range(8):
        number = (number << 8) | data[i]
    return number


def available_key(sku_no: cython.uint, valid_until_ms: cython.longlong,
                  code_id: cython.ulonglong) -> bytes:
    return _AVAILABLE_KEY.pack(sku_no, valid_until_ms, code_id)


def unpack_available_key(key: bytes) -> tuple:
    return _AVAILABLE_KEY.unpack(key)


def sku_prefix(sku_no: cython.uint) -> bytes:
    return _U32_KEY.pack(sku_no)


def hold_key(hold_until_ms: cython.longlong, order_id: bytes) -> bytes:
    return _U64_KEY.pack(hold_until_ms) + order_id


def unpack_hold_key(key: bytes) -> tuple:
    return _U64_KEY.unpack_from(key)[0], key[8:]


def counter_key(sku_no: cython.uint, state: cython.int) -> bytes:
    return _COUNTER_KEY.pack(sku_no, state)


def unpack_counter_key(key: bytes) -> tuple:
    return _COUNTER_KEY.unpack(key)


def u32_key(number: cython.uint) -> bytes:
    return _U32_KEY.pack(number)


def u64_key(number: cython.ulonglong) -> bytes:
    return _U64_KEY.pack(number)


def u64_of(key: bytes) -> cython.ulonglong:
    return _U64_KEY.unpack_from(key)[0]


def pack_u32(number: cython.uint) -> bytes:
    return _U32_VALUE.pack(number)


def unpack_u32(value: bytes) -> cython.uint:
    return _U32_VALUE.unpack(value)[0]


def pack_u64(number: cython.ulonglong) -> bytes:
    return _U64_VALUE.pack(number)


def unpack_u64(value: bytes) -> cython.ulonglong:
    return _U64_VALUE.unpack(value)[0]


def request_key(terminal: bytes, request_id: bytes) -> bytes:
    # terminals never contain NUL (validated), so the key is unambiguous
    return terminal + b"\0" + request_id


def pack_redemption(status: cython.int, code_id: cython.ulonglong, at_ms: cython.longlong,
                    lookup_hash: bytes) -> bytes:
    if not (cython.compiled and _in_place):
        return _REDEMPTION.pack(status, code_id, at_ms) + lookup_hash
    hash_len: cython.Py_ssize_t = len(lookup_hash)
    out = PyBytes_FromStringAndSize(cython.NULL, 17 + hash_len)
    p: cython.p_char = PyBytes_AS_STRING(out)
    p[0] = status
    memcpy(p + 1, cython.address(code_id), 8)
    memcpy(p + 9, cython.address(at_ms), 8)
    memcpy(p + 17, cython.cast(cython.p_char, lookup_hash), hash_len)
    return out


def unpack_redemption(value: bytes) -> tuple:
    status, code_id, at_ms = _REDEMPTION.unpack_from(value)
    return status, code_id, at_ms, value[_REDEMPTION.size:]


def pack_order(state: cython.int, hold_until_ms: cython.longlong, created_ms: cython.longlong,
               order_no: cython.ulonglong, lines: list, code_ids: list) -> bytes:
    parts = [_ORDER.pack(ORDER_RECORD_VERSION, state, hold_until_ms, created_ms, len(lines),
                         len(code_ids), order_no)]
    for sku_no, quantity in lines:
        parts.append(_ORDER_LINE.pack(sku_no, quantity))
    parts.append(struct.pack(f"<{len(code_ids)}Q", *code_ids))
    return b"".join(parts)


def unpack_order(value: bytes) -> tuple:
    """(state, hold_until_ms, created_ms, order_no, lines, code_ids)"""
    version, state, hold_until_ms, created_ms, line_count, code_count, order_no = (
        _ORDER.unpack_from(value))
    if version != ORDER_RECORD_VERSION:
        raise ValueError(f"order record version {version} is not {ORDER_RECORD_VERSION}")
    offset: cython.Py_ssize_t = _ORDER.size
    lines = []
    for _ in range(line_count):
        lines.append(_ORDER_LINE.unpack_from(value, offset))
        offset += _ORDER_LINE.size
    code_ids = list(struct.unpack_from(f"<{code_count}Q", value, offset))
    return state, hold_until_ms, created_ms, order_no, lines, code_ids


def pack_batch(sku_no: cython.uint, valid_from_ms: cython.longlong,
               valid_until_ms: cython.longlong, unit_cost_micros: cython.longlong,
               master_key_id: bytes, name: bytes, supplier: bytes, wrapped_key: bytes) -> bytes:
    return _BATCH.pack(BATCH_RECORD_VERSION, sku_no, valid_from_ms, valid_until_ms,
                       unit_cost_micros, master_key_id, len(name), len(supplier),
                       len(wrapped_key)) + name + supplier + wrapped_key


def unpack_batch(value: bytes) -> dict:
    (version, sku_no, valid_from_ms, valid_until_ms, unit_cost_micros, master_key_id,
     name_len, supplier_len, wrapped_len) = _BATCH.unpack_from(value)
    if version != BATCH_RECORD_VERSION:
        raise ValueError(f"batch record version {version} is not {BATCH_RECORD_VERSION}")
    offset = _BATCH.size
    name = value[offset:offset + name_len]
    offset += name_len
    supplier = value[offset:offset + supplier_len]
    offset += supplier_len
    return {
        "sku_no": sku_no, "valid_from_ms": valid_from_ms, "valid_until_ms": valid_until_ms,
        "unit_cost_micros": unit_cost_micros, "master_key_id": master_key_id, "name": name,
        "supplier": supplier, "wrapped_key": value[offset:offset + wrapped_len],
    }
