"""The reference model's till: a terminal's consecutive misses and its lock, and the freeze of
codes presented before their sale (leaks). Mixed into tests/reference_model.py's
ReferenceModel, whose codes, orders, clock, pick and _release it uses; written from the issue
and kamicore.limits, not from the engine."""

from __future__ import annotations

from kamicore import limits
from kamicore.engine import MissResult, TerminalState, UnlockResult
from kamicore.statuses import CodeState, OrderState, UnlockTerminalStatus


class TillModel:
    # -- guessing at the till: consecutive misses lock a terminal -------------------------

    def terminal_state(self, terminal: bytes) -> TerminalState:
        """As of now: a lock whose cool-down has passed is gone, and its misses with it."""
        misses, locked_until_ms = self.misses.get(terminal, (0, 0))
        if locked_until_ms and locked_until_ms <= self.clock():
            return TerminalState(0, 0)
        return TerminalState(misses, locked_until_ms)

    def _miss(self, state: TerminalState) -> TerminalState:
        misses = state.misses + 1
        if misses >= limits.terminal_misses_lock:
            return TerminalState(misses, self.clock() + limits.terminal_lock_seconds * 1000)
        return TerminalState(misses, 0)

    def count_misses(self, terminal: bytes, count: int = 1) -> MissResult:
        state = self.terminal_state(terminal)
        if state.locked:
            return MissResult(True, state)
        for _ in range(count):
            state = self._miss(state)
        self.misses[terminal] = (state.misses, state.locked_until_ms)
        return MissResult(False, state)

    def unlock_terminal(self, terminal: bytes) -> UnlockResult:
        before = self.terminal_state(terminal)
        self.misses.pop(terminal, None)
        return UnlockResult(UnlockTerminalStatus.UNLOCKED if before.misses or before.locked
                            else UnlockTerminalStatus.NOT_LOCKED, before)

    def _freeze_leaked(self, code_ids) -> None:
        """A code presented at a till before its sale has leaked: frozen at once, and out of
        any unpaid order (another code in its place, or the order released)."""
        for code_id in code_ids:
            code = self.codes[code_id]
            if code.state not in (CodeState.AVAILABLE, CodeState.RESERVED):
                continue
            was, order_id = code.state, code.order_id
            code.state, code.prior_state = CodeState.FROZEN, CodeState.AVAILABLE
            code.order_id, code.hold_until_ms = b"", 0
            if was != CodeState.RESERVED:
                continue
            order = self.orders[order_id]
            picked = self.pick(code.sku, 1)
            if not picked:
                order.code_ids.remove(code_id)
                self._release(order, OrderState.CANCELLED)
                continue
            replacement = self.codes[picked[0]]
            replacement.state, replacement.order_id = CodeState.RESERVED, order_id
            replacement.hold_until_ms = order.hold_until_ms
            order.code_ids = [picked[0] if other == code_id else other
                              for other in order.code_ids]
