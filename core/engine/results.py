"""What the engine answers: one result type per operation, and views of stored things.

These are plain values (no LMDB, no protobuf): the domain layers and the gRPC servicers build
their answers from them, and a second storage backend would return the same types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportCodeStatus, ImportStatus, OrderState,
    ReportInvalidStatus, ReserveStatus, UnlockTerminalStatus, VerifyStatus,
)


@dataclass(frozen=True)
class ImportResult:
    status: ImportStatus
    imported: int
    duplicates: int
    rejected: list[tuple[int, ImportCodeStatus]]  # (row index, status) of every rejected code
    statuses: list[ImportCodeStatus]  # one per code, in order
    code_ids: list[int]  # 0 where not imported


@dataclass(frozen=True)
class ReserveResult:
    status: ReserveStatus
    code_ids: list[int]
    hold_until_ms: int


@dataclass(frozen=True)
class ConfirmResult:
    status: ConfirmStatus
    code_ids: list[int]
    late: bool  # the hold had lapsed; the order was filled again from stock


class RedeemResult(tuple):
    """(status, code_id, redeemed_at_ms, redeemed_by): a tuple, for the hot path."""

    __slots__ = ()
    status = property(lambda self: self[0])
    code_id = property(lambda self: self[1])
    redeemed_at_ms = property(lambda self: self[2])
    redeemed_by = property(lambda self: self[3].decode())


@dataclass(frozen=True)
class CodeOpResult:
    status: CodeOpStatus
    code_id: int
    state: CodeState | None  # the code's state after the call (when found)


@dataclass(frozen=True)
class ReportInvalidResult:
    status: ReportInvalidStatus
    replacement_code_id: int


@dataclass(frozen=True)
class CodeView:
    """A code as anyone but its buyer may see it: no plaintext."""

    code_id: int
    state: CodeState
    sku: str
    batch: str
    valid_from_ms: int
    valid_until_ms: int
    order_id: str
    hold_until_ms: int
    sold_at_ms: int
    redeemed_at_ms: int
    redeemed_by: str
    replaced_by: int
    masked: str


@dataclass(frozen=True)
class TerminalState:
    """A terminal's guessing record: consecutive misses, and until when it is locked."""
    misses: int
    locked_until_ms: int  # 0: not locked

    @property
    def locked(self) -> bool:
        return self.locked_until_ms != 0


@dataclass(frozen=True)
class MissResult:
    """Misses counted outside redeem (a terminal's VerifyCode)."""
    was_locked: bool  # the terminal was locked already: nothing was counted
    terminal: TerminalState  # as the count left it


@dataclass(frozen=True)
class UnlockResult:
    status: UnlockTerminalStatus
    before: TerminalState  # what the unlock cleared


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    code: CodeView | None


@dataclass(frozen=True)
class Stock:
    sku: str
    counts: dict[CodeState, int]  # every state, zeros included
    sellable: int  # AVAILABLE and inside the validity window now
    expired_available: int  # AVAILABLE but past valid_until: never sold
    soonest_valid_until_ms: int  # of the sellable codes; 0 when none


@dataclass(frozen=True)
class BatchStock:
    batch: str
    supplier: str
    valid_until_ms: int
    counts: dict[CodeState, int]  # states with codes only
    valid_from_ms: int = 0
    sellable: int = 0  # AVAILABLE and inside the batch's validity window now
    expired_available: int = 0  # AVAILABLE but past valid_until: never sold
    unit_cost_micros: int = 0  # what one code of the batch cost, in its SKU's currency


@dataclass(frozen=True)
class OrderView:
    order_id: str
    state: OrderState
    hold_until_ms: int
    created_ms: int
    lines: list[tuple[str, int]]
    codes: list[CodeView]  # the requested part of the order's codes (all by default)
    plaintexts: list[str] | None  # of those codes, only when revealed to the buyer
    code_ids: list[int] = field(default_factory=list)  # every code of the order, in order


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    blocks: int
    events: int
    head: bytes
    problem: str  # empty when ok
