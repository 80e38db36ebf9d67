"""Plans of the engine's own operations: input checked in the caller, before anything is
queued; the compiled function to run in the writer's transaction; and how its raw answer
(plain tuples) becomes the caller's result, including the operation's STORAGE_FULL status."""

from __future__ import annotations

from .. import keyring, limits
from ..statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportCodeStatus, ImportStatus, RedeemStatus,
    ReleaseStatus, ReportInvalidStatus, ReserveStatus, UnlockTerminalStatus,
)
from . import keys as keys_module
from .errors import InvalidArgument
from .results import (
    CodeOpResult, ConfirmResult, ImportResult, MissResult, RedeemResult, ReportInvalidResult,
    ReserveResult, TerminalState, UnlockResult,
)
from .validate import code, integer, items, text, within
from .writer import Plan


def _status_table(enum_type) -> list:
    """enum members indexed by value: a list lookup instead of an enum call per item."""
    table = [None] * (max(enum_type) + 1)
    for member in enum_type:
        table[member] = member
    return table


_REDEEM_STATUSES = _status_table(RedeemStatus)
_IMPORT_CODE_STATUSES = _status_table(ImportCodeStatus)
_CODE_STATES = _status_table(CodeState)
_ACCEPTED = (ImportCodeStatus.IMPORTED, ImportCodeStatus.DUPLICATE)


def _redeem_item(code_value, request_id) -> tuple[bytes, bytes]:
    request_id = text(request_id, "request_id", limits.request_id_bytes_max)
    return code(code_value, "code"), request_id


def _encoded(values: list, field: str) -> list[bytes]:
    """Codes as bytes (what is wrong with their content is the engine's per-code status); the
    field is named only for the first that is not text, so a big import formats nothing."""
    encoded = [value.encode() if type(value) is str else value for value in values]
    if not all(type(value) is bytes for value in encoded):
        for row, value in enumerate(values):
            code(value, f"{field}[{row}]")
    return encoded


def _each(count: int, value) -> list:
    return [value] * count


_NOT_SOLD = int(RedeemStatus.NOT_SOLD)


def _redeem_freezing_leaks(ops):
    """The redeem operation, then (in the same transaction) the freeze of every code it found
    never sold: a terminal presented it before its sale, so it has leaked (_redemption.py's
    freeze_leaked). A retry is such a presentation too: it goes to the writer, and finds the
    code frozen already unless an operator unfroze it since."""
    redeem, freeze_leaked = ops.redeem, ops.freeze_leaked

    def run(tx, checked, terminal, replay_only=False):
        raw = redeem(tx, checked, terminal, replay_only)
        if raw is not None:
            leaked = [item[1] for item in raw if item[0] == _NOT_SOLD]
            if leaked:
                if replay_only:  # a retry freezes too (an operator may have unfrozen it since)
                    return None
                freeze_leaked(tx, leaked)
        return raw
    return run


class Plans:
    """Mixed into Engine: `ops` are the compiled operations, `keys` their KeyService."""

    _redeem_operation = None  # redeem + the freeze of leaked codes, made once per engine

    def check_import_terms(self, sku, batch, supplier="", unit_cost_micros=0, valid_from_ms=0,
                           valid_until_ms=None) -> tuple:
        """The terms of an import batch, checked -> (sku, batch, supplier, unit cost,
        valid_from_ms, valid_until_ms) with None as "never expires"."""
        sku = text(sku, "sku", limits.name_bytes_max)
        batch = text(batch, "batch", limits.name_bytes_max)
        supplier = text(supplier, "supplier", limits.name_bytes_max, required=False)
        integer(unit_cost_micros, "unit_cost_micros", 0, limits.unit_cost_micros_max)
        valid_until_ms = limits.time_ms_max if valid_until_ms is None else valid_until_ms
        integer(valid_from_ms, "valid_from_ms", 0, limits.time_ms_max)
        integer(valid_until_ms, "valid_until_ms", 1, limits.time_ms_max)
        if valid_until_ms <= valid_from_ms:
            raise InvalidArgument("valid_until_ms", "must be after valid_from_ms")
        return sku, batch, supplier, unit_cost_micros, valid_from_ms, valid_until_ms

    def plan_import_codes(self, sku, batch, codes, *, supplier="", unit_cost_micros=0,
                          valid_from_ms=0, valid_until_ms=None, actor="system") -> Plan:
        terms = self.check_import_terms(sku, batch, supplier, unit_cost_micros, valid_from_ms,
                                        valid_until_ms)
        codes = _encoded(items(codes, "codes", limits.codes_per_import_max), "codes")
        count = len(codes)

        def convert(raw) -> ImportResult:
            status, statuses, code_ids = raw
            if status != ImportStatus.OK:
                return ImportResult(ImportStatus(status), 0, 0, [], [], [0] * count)
            statuses = [_IMPORT_CODE_STATUSES[value] for value in statuses]
            rejected = [(row, value) for row, value in enumerate(statuses)
                        if value not in _ACCEPTED]
            return ImportResult(ImportStatus.OK, statuses.count(ImportCodeStatus.IMPORTED),
                                statuses.count(ImportCodeStatus.DUPLICATE), rejected, statuses,
                                code_ids)

        return Plan(self.ops.import_codes, (*terms, codes), actor, convert,
                    lambda: ImportResult(ImportStatus.STORAGE_FULL, 0, 0, [], [], [0] * count))

    def plan_reserve(self, orders, *, actor="system") -> Plan:
        """orders: [(order_id, [(sku, quantity)], hold_seconds)]"""
        orders = items(orders, "orders", limits.orders_per_call_max)
        planned = []
        for index, (order_id, lines, hold_seconds) in enumerate(orders):
            field = f"orders[{index}]"
            order_id = text(order_id, f"{field}.order_id", limits.order_id_bytes_max)
            lines = items(lines, f"{field}.lines", limits.lines_per_order_max)
            checked = []
            for number, (sku, quantity) in enumerate(lines):
                checked.append((
                    text(sku, f"{field}.lines[{number}].sku", limits.name_bytes_max),
                    integer(quantity, f"{field}.lines[{number}].quantity", 1,
                            limits.codes_per_line_max)))
            if sum(quantity for _, quantity in checked) > limits.codes_per_order_max:
                raise InvalidArgument(f"{field}.lines",
                                      f"more than {limits.codes_per_order_max} codes")
            integer(hold_seconds, f"{field}.hold_seconds", 1, limits.hold_seconds_max)
            planned.append((order_id, checked, hold_seconds * 1000))

        def convert(raw) -> list[ReserveResult]:
            return [ReserveResult(ReserveStatus(status), code_ids, hold_until_ms)
                    for status, code_ids, hold_until_ms in raw]

        return Plan(self.ops.reserve, (planned,), actor, convert, lambda: _each(
            len(planned), ReserveResult(ReserveStatus.STORAGE_FULL, [], 0)))

    def _order_ids(self, order_ids, field="order_ids") -> list[bytes]:
        order_ids = items(order_ids, field, limits.orders_per_call_max)
        return [text(order_id, f"{field}[{index}]", limits.order_id_bytes_max)
                for index, order_id in enumerate(order_ids)]

    def plan_confirm(self, order_ids, *, actor="system") -> Plan:
        order_ids = self._order_ids(order_ids)

        def convert(raw) -> list[ConfirmResult]:
            return [ConfirmResult(ConfirmStatus(status), code_ids, late)
                    for status, code_ids, late in raw]

        return Plan(self.ops.confirm, (order_ids,), actor, convert, lambda: _each(
            len(order_ids), ConfirmResult(ConfirmStatus.STORAGE_FULL, [], False)))

    def plan_release(self, order_ids, *, actor="system") -> Plan:
        order_ids = self._order_ids(order_ids)
        return Plan(self.ops.release, (order_ids,), actor,
                    lambda raw: [ReleaseStatus(status) for status in raw],
                    lambda: _each(len(order_ids), ReleaseStatus.STORAGE_FULL))

    def plan_expire_holds(self, *, limit=limits.holds_per_sweep_max, actor="sweeper") -> Plan:
        """-> the ids of the orders whose hold expired (none when the data file is full)."""
        integer(limit, "limit", 1, limits.holds_per_sweep_max)
        return Plan(self.ops.expire_holds, (limit,), actor,
                    lambda raw: [order_id.decode() for order_id in raw], list)

    def plan_redeem(self, redemptions, terminal, *, actor=None) -> Plan:
        """redemptions: [(code, request_id)]; the terminal is recorded on every redemption."""
        terminal = text(terminal, "terminal", limits.terminal_bytes_max)
        redemptions = items(redemptions, "items", limits.codes_per_batch_max)
        request_max = limits.request_id_bytes_max
        checked = []
        for index, (code_value, request_id) in enumerate(redemptions):
            if isinstance(code_value, str) and isinstance(request_id, str) and (
                    0 < len(request_id) <= request_max and request_id.isascii()
                    and request_id.isprintable()):
                checked.append((code_value.encode(), request_id.encode()))  # the common case
            else:
                checked.append(within("items", index, _redeem_item, code_value, request_id))
        table = _REDEEM_STATUSES

        def convert(raw) -> list[RedeemResult]:
            return [RedeemResult((table[item[0]], item[1], item[2], item[3])) for item in raw]

        if self._redeem_operation is None:
            self._redeem_operation = _redeem_freezing_leaks(self.ops)
        return Plan(self._redeem_operation, (checked, terminal), actor or b"pos:" + terminal,
                    convert,
                    lambda: _each(len(checked), RedeemResult(
                        (RedeemStatus.STORAGE_FULL, 0, 0, b""))), replayable=True)

    def plan_count_misses(self, terminal, count=1, *, actor=None) -> Plan:
        """Misses a terminal made outside redeem (VerifyCode), counted toward its lock ->
        MissResult (None when the data file is full: nothing was counted)."""
        terminal = text(terminal, "terminal", limits.terminal_bytes_max)
        integer(count, "count", 1, limits.codes_per_batch_max)

        def convert(raw) -> MissResult:
            was_locked, misses, locked_until_ms = raw
            return MissResult(was_locked, TerminalState(misses, locked_until_ms))

        return Plan(self.ops.count_misses, (terminal, count), actor or b"pos:" + terminal,
                    convert, _none)

    def plan_unlock_terminal(self, terminal, *, actor="admin") -> Plan:
        """Clear a terminal's misses and lock -> UnlockResult."""
        terminal = text(terminal, "terminal", limits.terminal_bytes_max)

        def convert(raw) -> UnlockResult:
            before = TerminalState(*raw)
            status = (UnlockTerminalStatus.UNLOCKED if before.misses or before.locked
                      else UnlockTerminalStatus.NOT_LOCKED)
            return UnlockResult(status, before)

        return Plan(self.ops.unlock_terminal, (terminal,), actor, convert, lambda: UnlockResult(
            UnlockTerminalStatus.STORAGE_FULL, TerminalState(0, 0)))

    def _plan_code_op(self, function, refs, actor) -> Plan:
        refs = items(refs, "codes", limits.codes_per_batch_max)
        checked = []
        for index, ref in enumerate(refs):
            if isinstance(ref, int) and not isinstance(ref, bool):
                checked.append(integer(ref, f"codes[{index}]", 1, 2**63))
            else:
                checked.append(code(ref, f"codes[{index}]"))

        def convert(raw) -> list[CodeOpResult]:
            return [CodeOpResult(CodeOpStatus(status), code_id, _CODE_STATES[state])
                    for status, code_id, state in raw]

        return Plan(function, (checked,), actor, convert, lambda: _each(
            len(checked), CodeOpResult(CodeOpStatus.STORAGE_FULL, 0, None)))

    def plan_freeze(self, codes, *, actor="admin") -> Plan:
        """codes: code ids or plaintexts (a leaked list can be frozen as it is)."""
        return self._plan_code_op(self.ops.freeze, codes, actor)

    def plan_unfreeze(self, codes, *, actor="admin") -> Plan:
        return self._plan_code_op(self.ops.unfreeze, codes, actor)

    def plan_void(self, codes, *, actor="admin") -> Plan:
        return self._plan_code_op(self.ops.void, codes, actor)

    def plan_report_invalid(self, reports, *, actor="system") -> Plan:
        """reports: [(order_id, code_id)]"""
        reports = items(reports, "items", limits.codes_per_batch_max)
        checked = [(text(order_id, f"items[{index}].order_id", limits.order_id_bytes_max),
                    integer(code_id, f"items[{index}].code_id", 1, 2**63))
                   for index, (order_id, code_id) in enumerate(reports)]

        def convert(raw) -> list[ReportInvalidResult]:
            return [ReportInvalidResult(ReportInvalidStatus(status), replacement)
                    for status, replacement in raw]

        return Plan(self.ops.report_invalid, (checked,), actor, convert, lambda: _each(
            len(checked), ReportInvalidResult(ReportInvalidStatus.STORAGE_FULL, 0)))

    def plan_rotate_keys(self, new_master_key=None, *, actor="admin") -> Plan:
        """-> the number of batches re-wrapped, or None when the data file is full. Without a
        new key one is generated and saved in the key file; with the master key from
        KAMICORE_MASTER_KEY the new key must be given (and the variable set to it)."""
        if new_master_key is not None and (not isinstance(new_master_key, bytes)
                                           or len(new_master_key) != keyring.key_bytes):
            raise InvalidArgument("new_master_key", f"must be {keyring.key_bytes} bytes")
        if new_master_key is None and self.keys.ring.path is None:
            raise InvalidArgument("new_master_key", f"is required when the master key comes "
                                  f"from {keyring.MASTER_KEY_ENV}: nowhere to save a new one")
        return Plan(keys_module.rotate_keys, (self.keys, self.codec, new_master_key), actor,
                    _same, _none)


def _same(raw):
    return raw


def _none():
    return None
