"""A terminal's consecutive misses, in the engine (compiled and interpreted, the `engine`
fixture): what counts, what starts afresh, the lock, the cool-down and the unlock. The servicer's
slow-down is the function at the end; the four RPCs are tests/test_e2e_lockout.py's."""

from __future__ import annotations

import pytest

from kamicore import limits
from kamicore.engine import InvalidArgument, TerminalState
from kamicore.grpc.redemption import miss_delay_seconds
from kamicore.statuses import RedeemStatus, UnlockTerminalStatus

from .support import T0_MS, sell

LOCK = limits.terminal_misses_lock
COOL_DOWN_MS = limits.terminal_lock_seconds * 1000
LOCKED = RedeemStatus.TERMINAL_LOCKED


def guesses(count: int, prefix: str = "g") -> list[tuple[str, str]]:
    return [(f"GUESS-{prefix}-{index}", f"{prefix}-{index}") for index in range(count)]


def statuses(results) -> list:
    return [result.status for result in results]


def test_the_miss_that_reaches_the_limit_locks_the_rest_of_the_batch(engine):
    [code_id] = sell(engine, ["REAL-1"])
    results = engine.redeem([*guesses(LOCK - 1), ("", "bad"), ("GUESS-last", "last"),
                             ("REAL-1", "real"), ("", "bad-2")], "T-1")
    # a malformed code is never looked up: it neither counts nor locks
    assert statuses(results) == [RedeemStatus.NOT_FOUND] * (LOCK - 1) + [
        RedeemStatus.MALFORMED, RedeemStatus.NOT_FOUND, LOCKED, LOCKED]
    assert engine.terminal_state("T-1") == TerminalState(LOCK, T0_MS + COOL_DOWN_MS)
    assert engine.code(code_id).state.name == "SOLD"  # nothing past the lock was looked at
    assert engine.terminal_state("T-2") == TerminalState(0, 0)
    assert statuses(engine.redeem([("REAL-1", "t2")], "T-2")) == [RedeemStatus.REDEEMED]


def test_a_locked_terminal_is_refused_everything_retries_too(engine, clock):
    sell(engine, ["REAL-1", "REAL-2"])
    assert statuses(engine.redeem([("REAL-1", "ok")], "T-1")) == [RedeemStatus.REDEEMED]
    engine.redeem(guesses(LOCK), "T-1")
    # a retry of a committed request would be answered from a snapshot: still refused
    assert statuses(engine.redeem([("REAL-1", "ok")], "T-1")) == [LOCKED]
    assert statuses(engine.redeem([("REAL-2", "new"), ("GUESS-g-0", "g-0")], "T-1")) == \
        [LOCKED, LOCKED]
    missed = engine.count_misses("T-1")
    assert missed.was_locked and missed.terminal.misses == LOCK  # nothing more counted
    assert engine.terminal_state("T-1").misses == LOCK
    # nothing refused was remembered: after an unlock the same request ids are new
    assert engine.unlock_terminal("T-1").status == UnlockTerminalStatus.UNLOCKED
    assert statuses(engine.redeem([("REAL-1", "ok"), ("REAL-2", "new")], "T-1")) == \
        [RedeemStatus.REDEEMED, RedeemStatus.REDEEMED]


def test_the_cool_down_ends_the_lock_and_its_misses(engine, clock):
    sell(engine, ["REAL-1"])
    engine.redeem(guesses(LOCK), "T-1")
    clock.advance(COOL_DOWN_MS - 1)
    assert statuses(engine.redeem([("REAL-1", "early")], "T-1")) == [LOCKED]
    assert engine.terminal_state("T-1").locked
    clock.advance(1)
    assert engine.terminal_state("T-1") == TerminalState(0, 0)
    assert statuses(engine.redeem([("GUESS-after", "after")], "T-1")) == \
        [RedeemStatus.NOT_FOUND]
    assert engine.terminal_state("T-1") == TerminalState(1, 0)  # counting afresh
    assert statuses(engine.redeem([("REAL-1", "late")], "T-1")) == [RedeemStatus.REDEEMED]


def test_only_a_redemption_starts_the_count_afresh(engine):
    sell(engine, ["REAL-1", "REAL-2"])
    engine.import_codes("sku", "stock", ["STOCK-1"])
    engine.redeem([("REAL-1", "r1")], "T-9")
    engine.redeem(guesses(3), "T-1")
    # a code never sold is a miss; a used code, a retry and a conflict are not, nor reset
    engine.redeem([("STOCK-1", "s"), ("REAL-1", "used"), ("GUESS-g-0", "g-0"),
                   ("REAL-2", "g-1")], "T-1")
    assert engine.terminal_state("T-1").misses == 4
    engine.count_misses("T-1", 2)  # a terminal's VerifyCode
    assert engine.terminal_state("T-1").misses == 6
    assert statuses(engine.redeem([("REAL-2", "r2")], "T-1")) == [RedeemStatus.REDEEMED]
    assert engine.terminal_state("T-1") == TerminalState(0, 0)


def test_verify_misses_lock_too_and_unlock_reports_what_it_cleared(engine, clock):
    assert engine.count_misses("T-1", LOCK - 1).terminal == TerminalState(LOCK - 1, 0)
    locked = engine.count_misses("T-1")
    assert not locked.was_locked and locked.terminal.locked
    assert statuses(engine.redeem(guesses(1), "T-1")) == [LOCKED]
    result = engine.unlock_terminal("T-1", actor="admin")
    assert result.status == UnlockTerminalStatus.UNLOCKED
    assert result.before == TerminalState(LOCK, T0_MS + COOL_DOWN_MS)
    assert engine.unlock_terminal("T-1").status == UnlockTerminalStatus.NOT_LOCKED
    assert engine.check() == []


def test_a_bad_terminal_is_named(engine):
    for call in (lambda: engine.unlock_terminal(""), lambda: engine.terminal_state("x" * 65),
                 lambda: engine.count_misses("T-1", 0)):
        with pytest.raises(InvalidArgument):
            call()


@pytest.mark.parametrize("misses, seconds", [
    (0, 0.0), (limits.terminal_misses_slow_min - 1, 0.0),
    (limits.terminal_misses_slow_min, limits.terminal_miss_delay_seconds),
    (limits.terminal_misses_slow_min + 1, 2 * limits.terminal_miss_delay_seconds),
    (LOCK, limits.terminal_miss_delay_seconds_max),
    (10 * LOCK, limits.terminal_miss_delay_seconds_max),
])
def test_the_slow_down_grows_with_the_misses_up_to_its_cap(misses, seconds):
    assert miss_delay_seconds(misses) == pytest.approx(seconds)
