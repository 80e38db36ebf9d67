"""Guessing at the till, end to end against the shared `kamicore serve` (tests/conftest.py):
consecutive misses of one terminal, counted across Redeem, RedeemBatch, RedeemStream and
VerifyCode, lock it; an admin unlocks it (the RPC and the CLI); a code never sold answers a
terminal exactly as a code that does not exist. Each test has terminals of its own, so the
shared ones (T-01, T-02) never collect misses from here. The cool-down is the engine's
(tests/test_engine_lockout.py, with a clock that moves on command)."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from kamicore import limits
from kamicore.v1 import common_pb2

from .e2e_support import CREATED, R, metric_samples, metric_value, plaintexts, uid
from .server_harness import buy, cli, order_request, stocked_sku

LOCKED = R.REDEEM_STATUS_TERMINAL_LOCKED


def terminal_client(server, prefix: str):
    terminal = uid(prefix)
    key, _ = server.create_key("pos", terminal)
    return terminal, server.client(key, fresh=True)


def redeem(client, code: str, request_id: str | None = None):
    return client.redemption.Redeem(R.RedeemRequest(code=code, request_id=request_id or uid("r")))


def guesses(count: int) -> list[R.RedeemRequest]:
    return [R.RedeemRequest(code=uid("GUESS"), request_id=uid("g")) for _ in range(count)]


def test_misses_over_the_four_rpcs_lock_the_terminal_until_an_admin_unlocks_it(server, c):
    sku_id = uid("lock")
    stocked_sku(c.admin, sku_id, 3)
    sold = plaintexts(buy(c.web, sku_id, 2).order)
    in_stock = stocked_sku(c.admin, uid("lock-unsold"), 1)
    terminal, pos = terminal_client(server, "T-lock")
    first_request, first_guess = uid("first"), uid("GUESS")

    assert redeem(pos, first_guess, first_request).status == R.REDEEM_STATUS_NOT_FOUND  # 1
    for code in (uid("GUESS"), in_stock[0]):  # 2, 3: unknown, and never sold
        assert pos.redemption.VerifyCode(R.VerifyCodeRequest(code=code)).status == \
            R.VERIFY_STATUS_NOT_FOUND
    replies = list(pos.redemption.RedeemStream(iter(guesses(2))))  # 4, 5
    assert [reply.status for reply in replies] == [R.REDEEM_STATUS_NOT_FOUND] * 2
    remaining = limits.terminal_misses_lock - 5
    batch = pos.redemption.RedeemBatch(R.RedeemBatchRequest(items=[
        *guesses(remaining), R.RedeemRequest(code=sold[0], request_id=uid("real"))]))
    # each miss of the batch counts: its last guess is the 20th miss, and locks the terminal
    assert [reply.status for reply in batch.results] == \
        [R.REDEEM_STATUS_NOT_FOUND] * remaining + [LOCKED]

    # locked: a real code, a verification, a stream, and a retry of an answered request
    assert redeem(pos, sold[0]).status == LOCKED
    assert redeem(pos, first_guess, first_request).status == LOCKED
    assert pos.redemption.VerifyCode(R.VerifyCodeRequest(code=sold[0])).status == \
        R.VERIFY_STATUS_TERMINAL_LOCKED
    streamed = list(pos.redemption.RedeemStream(iter([
        R.RedeemRequest(code=sold[1], request_id=uid("s"))])))
    assert [reply.status for reply in streamed] == [LOCKED]
    # other terminals are not locked
    assert redeem(c.pos2, sold[1]).status == R.REDEEM_STATUS_REDEEMED

    with pytest.raises(grpc.RpcError) as refused:  # a terminal cannot unlock itself
        pos.redemption.UnlockTerminal(R.UnlockTerminalRequest(terminal=terminal))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    unlocked = c.admin.redemption.UnlockTerminal(R.UnlockTerminalRequest(terminal=terminal))
    assert unlocked.status == R.UNLOCK_TERMINAL_STATUS_UNLOCKED
    assert unlocked.misses == limits.terminal_misses_lock
    assert unlocked.locked_until_ms > time.time() * 1000 + limits.terminal_lock_seconds * 500
    again = c.admin.redemption.UnlockTerminal(R.UnlockTerminalRequest(terminal=terminal))
    assert (again.status, again.misses, again.locked_until_ms) == \
        (R.UNLOCK_TERMINAL_STATUS_NOT_LOCKED, 0, 0)
    # unlocked: the retry gets its first answer again, and a real code redeems
    assert redeem(pos, first_guess, first_request).status == R.REDEEM_STATUS_NOT_FOUND
    assert redeem(pos, sold[0]).status == R.REDEEM_STATUS_REDEEMED


def test_unlock_terminal_names_a_bad_terminal(c):
    with pytest.raises(grpc.RpcError) as refused:
        c.admin.redemption.UnlockTerminal(R.UnlockTerminalRequest(terminal=""))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("terminal")


def test_the_cli_shows_and_unlocks_a_locked_terminal(server):
    terminal, pos = terminal_client(server, "T-cli")
    batch = pos.redemption.RedeemBatch(R.RedeemBatchRequest(
        items=guesses(limits.terminal_misses_lock + 1)))
    assert batch.results[-1].status == LOCKED
    shown = json.loads(cli(server.data_dir, "terminal", "show", terminal).stdout)
    assert shown["locked"] and shown["misses"] == limits.terminal_misses_lock
    done = json.loads(cli(server.data_dir, "terminal", "unlock", terminal).stdout)
    assert done["status"] == "UNLOCK_TERMINAL_STATUS_UNLOCKED" and done["before"]["locked"]
    assert json.loads(cli(server.data_dir, "terminal", "show", terminal).stdout) == {
        "terminal": terminal, "misses": 0, "locked": False, "locked_until_ms": 0}
    assert redeem(pos, uid("GUESS")).status == R.REDEEM_STATUS_NOT_FOUND  # served again


def test_a_code_never_sold_answers_a_terminal_as_an_unknown_code(server, c):
    sku_id = uid("unsold")
    codes = stocked_sku(c.admin, sku_id, 2)
    assert c.web.orders.CreateOrder(order_request(uid("held"), sku_id, 1)).status == CREATED
    by_state = {c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=code)).state: code
                for code in codes}
    available = by_state[common_pb2.CODE_STATE_AVAILABLE]
    reserved = by_state[common_pb2.CODE_STATE_RESERVED]
    _, pos = terminal_client(server, "T-unsold")
    before = metric_samples(server.metrics())

    answers = {}
    for name, code in (("unknown", uid("NEVER-IMPORTED")), ("available", available),
                       ("reserved", reserved)):
        reply = redeem(pos, code, "same-request-" + name)
        reply.request_id = ""
        streamed = list(pos.redemption.RedeemStream(iter([
            R.RedeemRequest(code=code, request_id="stream-" + name)])))[0]
        streamed.request_id = ""
        verified = pos.redemption.VerifyCode(R.VerifyCodeRequest(code=code))
        answers[name] = (reply.SerializeToString(), streamed.SerializeToString(),
                         verified.SerializeToString())
    assert answers["available"] == answers["unknown"] == answers["reserved"]
    assert R.RedeemResponse.FromString(answers["unknown"][0]).status == \
        R.REDEEM_STATUS_NOT_FOUND
    # operators still see the difference: the admin's VerifyCode (the code is frozen: it
    # leaked, tests/test_e2e_leaks.py) and the metrics
    assert c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=available)).state == \
        common_pb2.CODE_STATE_FROZEN
    after = metric_samples(server.metrics())

    def delta(status):
        return (metric_value(after, "kamicore_redemptions_total", status=status)
                - metric_value(before, "kamicore_redemptions_total", status=status))

    assert delta("REDEEM_STATUS_NOT_SOLD") == 4 and delta("REDEEM_STATUS_NOT_FOUND") == 2
