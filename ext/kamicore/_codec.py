"""Record layouts and key encodings of the code store, format version 1.

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
        IMPORT_CODE_STATUS_CONTROL_CHARACTER,
        IMPORT_CODE_STATUS_EMPTY,
        IMPORT_CODE_STATUS_IMPORTED,
        IMPORT_CODE_STATUS_NOT_UTF8,
        IMPORT_CODE_STATUS_TOO_LONG,
    )
    from cython.cimports.libc.string import memcpy
else:
    from ._statuses import (
        IMPORT_CODE_STATUS_CONTROL_CHARACTER,
        IMPORT_CODE_STATUS_EMPTY,
        IMPORT_CODE_STATUS_IMPORTED,
        IMPORT_CODE_STATUS_NOT_UTF8,
        IMPORT_CODE_STATUS_TOO_LONG,
    )

# Compiled code reads and writes record fields in place where the host's byte order is the
# layout's (little-endian); elsewhere, and when interpreted, it goes through struct.
_in_place = cython.declare(cython.bint, sys.byteorder == "little")

RECORD_VERSION = cython.declare(cython.int, 1)
ORDER_RECORD_VERSION = cython.declare(cython.int, 1)
BATCH_RECORD_VERSION = cython.declare(cython.int, 1)

# checked per code, so a C copy of kamicore.limits' value, read when the module loads
_code_bytes_max = cython.declare(cython.Py_ssize_t, limits.code_bytes_max)

# version, state, prior_state, spare, sku_no, batch_no, valid_from_ms, valid_until_ms,
# hold_until_ms, sold_at_ms, redeemed_at_ms, link_code_id, order_len, terminal_len, secret_len;
# then order id, terminal and sealed code (nonce + ciphertext + tag) bytes.
_RECORD = struct.Struct("<BBBBIIqqqqqQBBH")
RECORD_HEADER_BYTES = _RECORD.size  # 64
_U64_KEY = struct.Struct(">Q")
_AVAILABLE_KEY = struct.Struct(">IQQ")
_COUNTER_KEY = struct.Struct(">IB")
_U32_KEY = struct.Struct(">I")
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


@cython.cclass
class CodeRecord:
    """One code's stored state. Mutable: an operation edits fields and packs it back.

    The variable-length tail (order id, terminal, sealed code) stays in the stored value until
    a field is read or replaced: most transitions never touch it, and pack copies it straight
    across."""

    # The fields (C attributes, some public) are declared in _codec.pxd, which other compiled
    # modules cimport; when interpreted they are plain instance attributes. Compiled callers
    # read and replace the order id and terminal with the get_/set_ methods (C calls); the
    # properties are for Python and cost an attribute lookup and a copy.

    @cython.cfunc
    def get_order_id(self) -> bytes:
        if self._order_id is None:
            self._order_id = self._value[self._order_start:self._terminal_start]
        return self._order_id

    @cython.cfunc
    def set_order_id(self, value: bytes) -> cython.void:
        self._order_id = value

    @cython.cfunc
    def get_terminal(self) -> bytes:
        if self._terminal is None:
            self._terminal = self._value[self._terminal_start:self._sealed_start]
        return self._terminal

    @cython.cfunc
    def set_terminal(self, value: bytes) -> cython.void:
        self._terminal = value

    @property
    def order_id(self) -> bytes:
        return self.get_order_id()

    @order_id.setter
    def order_id(self, value: bytes):
        self.set_order_id(bytes(value))

    @property
    def terminal(self) -> bytes:
        return self.get_terminal()

    @terminal.setter
    def terminal(self, value: bytes):
        self.set_terminal(bytes(value))

    @property
    def sealed(self) -> bytes:
        if self._sealed is None:
            self._sealed = self._value[self._sealed_start:self._sealed_end]
        return self._sealed

    @sealed.setter
    def sealed(self, value: bytes):
        self._sealed = bytes(value)

    def pack(self) -> bytes:
        if cython.compiled and _in_place:
            return self._pack_in_place()
        return _RECORD.pack(
            RECORD_VERSION, self.state, self.prior_state, 0, self.sku_no, self.batch_no,
            self.valid_from_ms, self.valid_until_ms, self.hold_until_ms, self.sold_at_ms,
            self.redeemed_at_ms, self.link_code_id, len(self.order_id), len(self.terminal),
            len(self.sealed),
        ) + self.order_id + self.terminal + self.sealed

    @cython.cfunc
    def _tail(self, field: object, start: cython.Py_ssize_t, end: cython.Py_ssize_t,
              length: cython.p_Py_ssize_t) -> cython.p_char:
        """Where a tail field's bytes are (its replacement, or the stored value) and how long."""
        if field is not None:
            length[0] = len(field)
            return cython.cast(cython.p_char, cython.cast(bytes, field))
        length[0] = end - start
        return cython.cast(cython.p_char, self._value) + start

    @cython.cfunc
    def _pack_in_place(self) -> bytes:
        # lengths _tail fills in (initialised so that the names also exist for Python linters)
        order_len: cython.Py_ssize_t = 0
        terminal_len: cython.Py_ssize_t = 0
        sealed_len: cython.Py_ssize_t = 0
        order: cython.p_char = self._tail(self._order_id, self._order_start,
                                          self._terminal_start, cython.address(order_len))
        terminal: cython.p_char = self._tail(self._terminal, self._terminal_start,
                                             self._sealed_start, cython.address(terminal_len))
        sealed: cython.p_char = self._tail(self._sealed, self._sealed_start, self._sealed_end,
                                           cython.address(sealed_len))
        if order_len > 255 or terminal_len > 255 or sealed_len > 65535:
            raise ValueError("a code record field is longer than its length byte allows")
        out = PyBytes_FromStringAndSize(cython.NULL, 64 + order_len + terminal_len + sealed_len)
        p: cython.p_char = PyBytes_AS_STRING(out)
        p[0] = RECORD_VERSION
        p[1] = self.state
        p[2] = self.prior_state
        p[3] = 0
        memcpy(p + 4, cython.address(self.sku_no), 4)
        memcpy(p + 8, cython.address(self.batch_no), 4)
        memcpy(p + 12, cython.address(self.valid_from_ms), 8)
        memcpy(p + 20, cython.address(self.valid_until_ms), 8)
        memcpy(p + 28, cython.address(self.hold_until_ms), 8)
        memcpy(p + 36, cython.address(self.sold_at_ms), 8)
        memcpy(p + 44, cython.address(self.redeemed_at_ms), 8)
        memcpy(p + 52, cython.address(self.link_code_id), 8)
        p[60] = order_len
        p[61] = terminal_len
        length16: cython.ushort = sealed_len
        memcpy(p + 62, cython.address(length16), 2)
        memcpy(p + 64, order, order_len)
        memcpy(p + 64 + order_len, terminal, terminal_len)
        memcpy(p + 64 + order_len + terminal_len, sealed, sealed_len)
        return out


def new_record(state: cython.int, sku_no: cython.uint, batch_no: cython.uint,
               valid_from_ms: cython.longlong, valid_until_ms: cython.longlong,
               sealed: bytes) -> CodeRecord:
    record: CodeRecord = CodeRecord()
    record.state = state
    record.prior_state = 0
    record.sku_no = sku_no
    record.batch_no = batch_no
    record.valid_from_ms = valid_from_ms
    record.valid_until_ms = valid_until_ms
    record.hold_until_ms = 0
    record.sold_at_ms = 0
    record.redeemed_at_ms = 0
    record.link_code_id = 0
    record._order_id = b""
    record._terminal = b""
    record._sealed = sealed
    return record


def unpack_record(value: bytes) -> CodeRecord:
    if cython.compiled and _in_place:
        return _unpack_in_place(value)
    fields = _RECORD.unpack_from(value)
    if fields[0] != RECORD_VERSION:
        raise ValueError(f"code record version {fields[0]} is not {RECORD_VERSION}")
    record: CodeRecord = CodeRecord()
    record.state = fields[1]
    record.prior_state = fields[2]
    record.sku_no = fields[4]
    record.batch_no = fields[5]
    record.valid_from_ms = fields[6]
    record.valid_until_ms = fields[7]
    record.hold_until_ms = fields[8]
    record.sold_at_ms = fields[9]
    record.redeemed_at_ms = fields[10]
    record.link_code_id = fields[11]
    start: cython.Py_ssize_t = RECORD_HEADER_BYTES
    order_end: cython.Py_ssize_t = start + fields[12]
    terminal_end: cython.Py_ssize_t = order_end + fields[13]
    record._order_id = value[start:order_end]
    record._terminal = value[order_end:terminal_end]
    record._sealed = value[terminal_end:terminal_end + fields[14]]
    return record


@cython.cfunc
def _unpack_in_place(value: bytes) -> CodeRecord:
    length: cython.Py_ssize_t = len(value)
    p: cython.p_uchar = value
    if length < 64 or p[0] != RECORD_VERSION:
        raise ValueError("not a code record of version 1")
    record: CodeRecord = CodeRecord.__new__(CodeRecord)
    record.state = p[1]
    record.prior_state = p[2]
    memcpy(cython.address(record.sku_no), p + 4, 4)
    memcpy(cython.address(record.batch_no), p + 8, 4)
    memcpy(cython.address(record.valid_from_ms), p + 12, 8)
    memcpy(cython.address(record.valid_until_ms), p + 20, 8)
    memcpy(cython.address(record.hold_until_ms), p + 28, 8)
    memcpy(cython.address(record.sold_at_ms), p + 36, 8)
    memcpy(cython.address(record.redeemed_at_ms), p + 44, 8)
    memcpy(cython.address(record.link_code_id), p + 52, 8)
    sealed_len: cython.ushort = 0
    memcpy(cython.address(sealed_len), p + 62, 2)
    order_end: cython.Py_ssize_t = 64 + p[60]
    terminal_end: cython.Py_ssize_t = order_end + p[61]
    if terminal_end + sealed_len > length:
        raise ValueError("a code record is shorter than its lengths say")
    record._value = value
    record._order_start = 64
    record._terminal_start = order_end
    record._sealed_start = terminal_end
    record._sealed_end = terminal_end + sealed_len
    return record


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
