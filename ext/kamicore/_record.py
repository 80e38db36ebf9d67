"""The code record: one code's stored state, layout format version 1 (see the store's other
layouts in _codec.py).

Cython pure-Python mode, like _codec.py: compiled into ``kamicore._record`` by setup.py and
importable as plain Python from this folder. Other compiled modules reach CodeRecord's fields
and these functions in C through _record.pxd.

The layout is fixed: a 64-byte header of little-endian integers, then the variable-length tail.
A layout change bumps the version byte that leads every record and is refused by an older
reader.
"""

import struct
import sys

import cython

if cython.compiled:
    from cython.cimports.cpython.bytes import PyBytes_AS_STRING, PyBytes_FromStringAndSize
    from cython.cimports.libc.string import memcpy

# Compiled code reads and writes record fields in place where the host's byte order is the
# layout's (little-endian); elsewhere, and when interpreted, it goes through struct.
_in_place = cython.declare(cython.bint, sys.byteorder == "little")

RECORD_VERSION = cython.declare(cython.int, 1)

# version, state, prior_state, spare, sku_no, batch_no, valid_from_ms, valid_until_ms,
# hold_until_ms, sold_at_ms, redeemed_at_ms, link_code_id, order_len, terminal_len, secret_len;
# then order id, terminal and sealed code (nonce + ciphertext + tag) bytes.
_RECORD = struct.Struct("<BBBBIIqqqqqQBBH")
RECORD_HEADER_BYTES = _RECORD.size  # 64


@cython.cclass
class CodeRecord:
    """One code's stored state. Mutable: an operation edits fields and packs it back.

    The variable-length tail (order id, terminal, sealed code) stays in the stored value until
    a field is read or replaced: most transitions never touch it, and pack copies it straight
    across."""

    # The fields (C attributes, some public) are declared in _record.pxd, which other compiled
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
