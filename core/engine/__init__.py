"""The engine package: the only part of kamicore that knows LMDB and the compiled engine.

Its public API is the seam a second storage backend (PostgreSQL, later) implements:
- writes are plans run by the one commit path: `Engine.run(plan)` / `await run_async(plan)`,
  with the engine's own operations planned by `plan_*` (import, reserve, confirm, release,
  expire holds, redeem, count misses, unlock terminal, freeze, unfreeze, void, report invalid,
  rotate keys) and the domain layers' writes by `Engine.plan(function, args, actor,
  full=...)`, whose function gets a `Transaction` (their own tables plus the code
  transitions, committed together);
- reads: verify, terminal_state, code, stock, batch_stock, order, skus, and get/scan of the
  domain tables;
- integrity: check, verify_audit, counters and scan_counts.
Every answer is a plain result type (kamicore.engine.results) carrying a kamicore.statuses
enum; a full data file is each operation's own STORAGE_FULL status, never an exception.
"""

from .engine import AsyncEngine, Engine, wall_clock_ms
from .errors import EngineClosed, InvalidArgument
from .implementation import load_implementation
from .results import (
    AuditReport, BatchStock, CodeOpResult, CodeView, ConfirmResult, ImportResult, OrderView,
    MissResult, RedeemResult, ReportInvalidResult, ReserveResult, Stock, TerminalState,
    UnlockResult, VerifyResult,
)
from .transaction import TABLES, Transaction
from .writer import Plan

__all__ = [
    "AsyncEngine", "AuditReport", "BatchStock", "CodeOpResult", "CodeView", "ConfirmResult",
    "Engine", "EngineClosed", "ImportResult", "InvalidArgument", "MissResult", "OrderView",
    "Plan", "RedeemResult", "ReportInvalidResult", "ReserveResult", "Stock", "TABLES",
    "TerminalState", "Transaction", "UnlockResult", "VerifyResult", "load_implementation",
    "wall_clock_ms",
]
