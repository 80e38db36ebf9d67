"""A pure-Python reference model of the code state machine: dicts, no storage, no crypto.

It is written from DESIGN.md and kamicore.statuses, not from the engine, and answers every
write with the same result types as kamicore.engine.Engine. tests/test_model.py drives both
side by side and compares every answer and every count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kamicore.engine import (
    CodeOpResult, ConfirmResult, ImportResult, RedeemResult, ReportInvalidResult, ReserveResult,
    TerminalState,
)
from kamicore.statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportCodeStatus, ImportStatus, OrderState,
    RedeemStatus, ReleaseStatus, ReportInvalidStatus, ReserveStatus,
)

from .reference_till import TillModel

CODE_BYTES_MAX = 128
NEVER_MS = 2**62


def check_code(raw: bytes) -> ImportCodeStatus:
    if not raw:
        return ImportCodeStatus.EMPTY
    if len(raw) > CODE_BYTES_MAX:
        return ImportCodeStatus.TOO_LONG
    if any(byte < 0x20 or byte == 0x7F for byte in raw):
        return ImportCodeStatus.CONTROL_CHARACTER
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return ImportCodeStatus.NOT_UTF8
    if not normalize(raw):
        return ImportCodeStatus.EMPTY
    return ImportCodeStatus.IMPORTED


def normalize(raw: bytes) -> bytes:
    return bytes(byte for byte in raw.upper() if byte not in b" -")


@dataclass
class Code:
    plaintext: bytes
    sku: bytes
    batch: bytes
    valid_from_ms: int
    valid_until_ms: int
    state: CodeState = CodeState.AVAILABLE
    prior_state: CodeState | None = None
    order_id: bytes = b""
    hold_until_ms: int = 0
    sold_at_ms: int = 0
    redeemed_at_ms: int = 0
    terminal: bytes = b""
    replaced_by: int = 0


@dataclass
class Order:
    state: OrderState
    hold_until_ms: int
    lines: list[tuple[bytes, int]]
    code_ids: list[int] = field(default_factory=list)


class ReferenceModel(TillModel):
    def __init__(self, clock):
        self.clock = clock
        self.codes: dict[int, Code] = {}
        self.lookup: dict[bytes, int] = {}
        self.batches: dict[bytes, tuple] = {}
        self.skus: set[bytes] = set()
        self.orders: dict[bytes, Order] = {}
        self.redemptions: dict[tuple[bytes, bytes], tuple] = {}
        self.misses: dict[bytes, tuple[int, int]] = {}  # terminal -> (misses, locked_until_ms)
        self.next_code_id = 1

    # -- helpers -----------------------------------------------------------------------

    def sellable(self, code: Code) -> bool:
        now = self.clock()
        return (code.state == CodeState.AVAILABLE and code.valid_from_ms <= now
                < code.valid_until_ms)

    def pick(self, sku: bytes, quantity: int) -> list[int]:
        """FEFO: soonest valid_until first, then oldest code id."""
        candidates = sorted((code.valid_until_ms, code_id) for code_id, code in self.codes.items()
                            if code.sku == sku and self.sellable(code))
        return [code_id for _, code_id in candidates[:quantity]]

    def pick_lines(self, lines) -> list[int] | None:
        wanted: dict[bytes, int] = {}
        for sku, quantity in lines:
            wanted[sku] = wanted.get(sku, 0) + quantity
        picks = {}
        for sku, quantity in wanted.items():
            picks[sku] = self.pick(sku, quantity)
            if len(picks[sku]) < quantity:
                return None
        ordered, used = [], {}
        for sku, quantity in lines:
            start = used.get(sku, 0)
            ordered.extend(picks[sku][start:start + quantity])
            used[sku] = start + quantity
        return ordered

    def counts(self) -> dict[tuple[str, CodeState], int]:
        result: dict = {}
        for code in self.codes.values():
            key = (code.sku.decode(), code.state)
            result[key] = result.get(key, 0) + 1
        return result

    def sell(self, order_id: bytes, code_id: int) -> None:
        code = self.codes[code_id]
        code.state = CodeState.SOLD
        code.order_id = order_id
        code.hold_until_ms = 0
        code.sold_at_ms = self.clock()

    # -- operations --------------------------------------------------------------------

    def import_codes(self, sku: bytes, batch: bytes, codes: list[bytes], supplier=b"",
                     unit_cost_micros=0, valid_from_ms=0, valid_until_ms=NEVER_MS):
        terms = (sku, supplier, unit_cost_micros, valid_from_ms, valid_until_ms)
        if batch in self.batches and self.batches[batch] != terms:
            return ImportResult(ImportStatus.BATCH_MISMATCH, 0, 0, [], [], [0] * len(codes))
        self.batches[batch] = terms
        self.skus.add(sku)
        statuses, code_ids = [], []
        for raw in codes:
            status = check_code(raw)
            if status == ImportCodeStatus.IMPORTED and normalize(raw) in self.lookup:
                status = ImportCodeStatus.DUPLICATE
            if status != ImportCodeStatus.IMPORTED:
                statuses.append(status)
                code_ids.append(0)
                continue
            code_id = self.next_code_id
            self.next_code_id += 1
            self.lookup[normalize(raw)] = code_id
            self.codes[code_id] = Code(raw, sku, batch, valid_from_ms, valid_until_ms)
            statuses.append(status)
            code_ids.append(code_id)
        rejected = [(row, status) for row, status in enumerate(statuses)
                    if status not in (ImportCodeStatus.IMPORTED, ImportCodeStatus.DUPLICATE)]
        return ImportResult(ImportStatus.OK, statuses.count(ImportCodeStatus.IMPORTED),
                            statuses.count(ImportCodeStatus.DUPLICATE), rejected, statuses,
                            code_ids)

    def reserve(self, orders):
        results = []
        for order_id, lines, hold_seconds in orders:
            lines = [(sku, quantity) for sku, quantity in lines]
            existing = self.orders.get(order_id)
            unknown = any(sku not in self.skus for sku, _ in lines)
            if existing is not None:
                if existing.lines != lines or unknown:
                    results.append(ReserveResult(ReserveStatus.ORDER_ID_CONFLICT, [], 0))
                else:
                    results.append(ReserveResult(ReserveStatus.RESERVED,
                                                 list(existing.code_ids), existing.hold_until_ms))
                continue
            if unknown:
                results.append(ReserveResult(ReserveStatus.SKU_NOT_FOUND, [], 0))
                continue
            picked = self.pick_lines(lines)
            if picked is None:
                results.append(ReserveResult(ReserveStatus.INSUFFICIENT_STOCK, [], 0))
                continue
            hold_until_ms = self.clock() + hold_seconds * 1000
            for code_id in picked:
                code = self.codes[code_id]
                code.state = CodeState.RESERVED
                code.order_id = order_id
                code.hold_until_ms = hold_until_ms
            self.orders[order_id] = Order(OrderState.RESERVED, hold_until_ms, lines, list(picked))
            results.append(ReserveResult(ReserveStatus.RESERVED, list(picked), hold_until_ms))
        return results

    def confirm(self, order_ids):
        results = []
        for order_id in order_ids:
            order = self.orders.get(order_id)
            if order is None:
                results.append(ConfirmResult(ConfirmStatus.ORDER_NOT_FOUND, [], False))
            elif order.state == OrderState.PAID:
                results.append(ConfirmResult(ConfirmStatus.SOLD, list(order.code_ids), False))
            elif order.state == OrderState.RESERVED:
                for code_id in order.code_ids:
                    self.sell(order_id, code_id)
                order.state, order.hold_until_ms = OrderState.PAID, 0
                results.append(ConfirmResult(ConfirmStatus.SOLD, list(order.code_ids), False))
            else:
                picked = self.pick_lines(order.lines)
                if picked is None:
                    results.append(ConfirmResult(ConfirmStatus.ORDER_RELEASED_NO_STOCK, [],
                                                 False))
                    continue
                for code_id in picked:
                    self.sell(order_id, code_id)
                order.state, order.hold_until_ms, order.code_ids = OrderState.PAID, 0, list(picked)
                results.append(ConfirmResult(ConfirmStatus.SOLD, list(picked), True))
        return results

    def _release(self, order: Order, final_state: str) -> None:
        for code_id in order.code_ids:
            code = self.codes[code_id]
            code.state = CodeState.AVAILABLE
            code.order_id = b""
            code.hold_until_ms = 0
        order.state, order.hold_until_ms, order.code_ids = final_state, 0, []

    def release(self, order_ids):
        results = []
        for order_id in order_ids:
            order = self.orders.get(order_id)
            if order is None:
                results.append(ReleaseStatus.ORDER_NOT_FOUND)
            elif order.state == OrderState.PAID:
                results.append(ReleaseStatus.ORDER_SOLD)
            else:
                if order.state == OrderState.RESERVED:
                    self._release(order, OrderState.CANCELLED)
                results.append(ReleaseStatus.RELEASED)
        return results

    def expire_holds(self, limit=1000):
        now = self.clock()
        due = sorted((order.hold_until_ms, order_id) for order_id, order in self.orders.items()
                     if order.state == OrderState.RESERVED and order.hold_until_ms <= now)[:limit]
        for _, order_id in due:
            self._release(self.orders[order_id], OrderState.EXPIRED)
        return [order_id.decode() for _, order_id in due]

    def _ladder(self, code: Code) -> RedeemStatus:
        now = self.clock()
        if code.state == CodeState.VOID:
            return RedeemStatus.VOID
        if code.state == CodeState.INVALID:
            return RedeemStatus.INVALID
        if code.state == CodeState.FROZEN:  # frozen before its sale: never sold all the same
            return (RedeemStatus.FROZEN if code.prior_state == CodeState.SOLD
                    else RedeemStatus.NOT_SOLD)
        if code.state == CodeState.REDEEMED:
            return RedeemStatus.ALREADY_REDEEMED
        if code.state != CodeState.SOLD:
            return RedeemStatus.NOT_SOLD
        if now < code.valid_from_ms:
            return RedeemStatus.NOT_YET_VALID
        if now >= code.valid_until_ms:
            return RedeemStatus.EXPIRED
        return RedeemStatus.REDEEMED

    def _answer(self, status, code_id):
        if status == RedeemStatus.ALREADY_REDEEMED:
            code = self.codes[code_id]
            return RedeemResult((status, code_id, code.redeemed_at_ms, code.terminal))
        return RedeemResult((status, code_id, 0, b""))

    def redeem(self, items, terminal: bytes):
        now = self.clock()
        results = []
        state = self.terminal_state(terminal)
        for raw, request_id in items:
            if state.locked:  # before the call, or since an earlier item of it
                results.append(RedeemResult((RedeemStatus.TERMINAL_LOCKED, 0, 0, b"")))
                continue
            if check_code(raw) != ImportCodeStatus.IMPORTED:
                results.append(RedeemResult((RedeemStatus.MALFORMED, 0, 0, b"")))
                continue
            normalized = normalize(raw)
            code_id = self.lookup.get(normalized, 0)
            first = self.redemptions.get((terminal, request_id))
            if first is not None:
                status, first_code_id, at_ms, first_normalized = first
                if first_normalized != normalized:
                    results.append(RedeemResult((RedeemStatus.REQUEST_ID_CONFLICT, 0, 0, b"")))
                elif status == RedeemStatus.REDEEMED:
                    results.append(RedeemResult((status, first_code_id, at_ms, terminal)))
                else:
                    results.append(self._answer(status, first_code_id))
                continue
            status = self._ladder(self.codes[code_id]) if code_id else RedeemStatus.NOT_FOUND
            self.redemptions[(terminal, request_id)] = (status, code_id, now, normalized)
            if status in (RedeemStatus.NOT_FOUND, RedeemStatus.NOT_SOLD):
                state = self._miss(state)
            elif status == RedeemStatus.REDEEMED:
                state = TerminalState(0, 0)
            if status == RedeemStatus.REDEEMED:
                code = self.codes[code_id]
                code.state, code.redeemed_at_ms, code.terminal = CodeState.REDEEMED, now, terminal
                results.append(RedeemResult((status, code_id, now, terminal)))
            else:
                results.append(self._answer(status, code_id))
        self.misses[terminal] = (state.misses, state.locked_until_ms)
        self._freeze_leaked([result.code_id for result in results
                             if result.status == RedeemStatus.NOT_SOLD])
        return results

    def _resolve(self, ref):
        if isinstance(ref, int):
            return (CodeOpStatus.DONE, ref) if ref in self.codes else (CodeOpStatus.NOT_FOUND, 0)
        if check_code(ref) != ImportCodeStatus.IMPORTED:
            return CodeOpStatus.MALFORMED, 0
        code_id = self.lookup.get(normalize(ref), 0)
        return (CodeOpStatus.DONE, code_id) if code_id else (CodeOpStatus.NOT_FOUND, 0)

    def _code_op(self, refs, allowed, apply):
        results = []
        for ref in refs:
            status, code_id = self._resolve(ref)
            if status != CodeOpStatus.DONE:
                results.append(CodeOpResult(status, 0, None))
                continue
            code = self.codes[code_id]
            if code.state not in allowed:
                results.append(CodeOpResult(CodeOpStatus.WRONG_STATE, code_id, code.state))
                continue
            apply(code)
            results.append(CodeOpResult(CodeOpStatus.DONE, code_id, code.state))
        return results

    def freeze(self, refs):
        def apply(code):
            code.prior_state, code.state = code.state, CodeState.FROZEN
        return self._code_op(refs, (CodeState.AVAILABLE, CodeState.SOLD), apply)

    def unfreeze(self, refs):
        def apply(code):
            code.state, code.prior_state = code.prior_state, None
        return self._code_op(refs, (CodeState.FROZEN,), apply)

    def void(self, refs):
        def apply(code):
            code.state = CodeState.VOID
        return self._code_op(refs, (CodeState.SOLD,), apply)

    def report_invalid(self, items):
        results = []
        for order_id, code_id in items:
            order = self.orders.get(order_id)
            if order is None:
                results.append(ReportInvalidResult(ReportInvalidStatus.ORDER_NOT_FOUND, 0))
                continue
            if order.state != OrderState.PAID or code_id not in order.code_ids:
                results.append(ReportInvalidResult(ReportInvalidStatus.CODE_NOT_IN_ORDER, 0))
                continue
            code = self.codes[code_id]
            if code.state == CodeState.INVALID:
                results.append(ReportInvalidResult(
                    ReportInvalidStatus.REISSUED if code.replaced_by
                    else ReportInvalidStatus.NO_REPLACEMENT, code.replaced_by))
                continue
            if code.state != CodeState.SOLD:
                results.append(ReportInvalidResult(ReportInvalidStatus.NOT_SOLD, 0))
                continue
            picked = self.pick(code.sku, 1)
            code.state = CodeState.INVALID
            if picked:
                self.sell(order_id, picked[0])
                code.replaced_by = picked[0]
                order.code_ids.append(picked[0])
                results.append(ReportInvalidResult(ReportInvalidStatus.REISSUED, picked[0]))
            else:
                results.append(ReportInvalidResult(ReportInvalidStatus.NO_REPLACEMENT, 0))
        return results
