"""kill -9 in the middle of real work, over and over, on one data dir.

A caller hears "done" only after the commit that holds its change returned (group commit with
fsync), and every operation is all-or-nothing. So after any crash: everything a caller was told
happened is there, nothing is half-applied, and the invariants of check() hold. A child process
works on the data dir (imports, reserve + confirm, redemptions) and writes every answer it got
to an ack file, fsynced, *after* the call returned - the acks are a lower bound of what
committed, and an intents file written *before* each call is an upper bound. The parent
SIGKILLs the child at random moments, reopens the data dir and holds the store to both bounds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kamicore.domain import events
from kamicore.engine import Engine
from kamicore.statuses import CodeState, OrderState, VerifyStatus

SKU = "topup-30"
ROUNDS = 22
SOAK_ROUNDS = 200  # make soak
TERMINAL = "T-crash"

CHILD = r"""
import json, os, random, secrets, sys
from kamicore.domain import events
from kamicore.engine import Engine
from kamicore.statuses import ConfirmStatus, ImportStatus, RedeemStatus, ReserveStatus

data_dir, ack_path, intent_path, round_no, sku, terminal = sys.argv[1:7]
acks = open(ack_path, "a")
intents = open(intent_path, "a")

def log(stream, **record):
    stream.write(json.dumps(record) + "\n")
    stream.flush()
    os.fsync(stream.fileno())

engine = Engine(data_dir)
print("ready", flush=True)
rng = random.Random()
sold = []  # plaintexts sold in this round and not redeemed yet
step = 0
while True:
    step += 1
    tag = f"r{round_no}-{step}"
    codes = [f"C-{tag}-{k}-{secrets.token_hex(5)}" for k in range(rng.randint(2, 10))]
    log(intents, op="import", codes=codes)
    result = engine.import_codes(sku, f"batch-{tag}", codes)
    assert result.status == ImportStatus.OK and result.imported == len(codes), result
    log(acks, op="import", codes=codes, code_ids=result.code_ids)

    order_id = f"order-{tag}"
    quantity = rng.randint(1, 4)
    log(intents, op="order", order_id=order_id)
    reserved = engine.reserve([(order_id, [(sku, quantity)], 3600)])[0]
    if reserved.status != ReserveStatus.RESERVED:
        assert reserved.status == ReserveStatus.INSUFFICIENT_STOCK, reserved
        continue
    log(acks, op="reserved", order_id=order_id, code_ids=reserved.code_ids)
    confirmed = engine.confirm([order_id])[0]
    assert confirmed.status == ConfirmStatus.SOLD, confirmed
    view = engine.order(order_id, reveal=True)
    log(acks, op="sold", order_id=order_id, code_ids=confirmed.code_ids, codes=view.plaintexts)
    sold += view.plaintexts

    if sold and rng.random() < 0.7:
        picked = rng.sample(sold, rng.randint(1, min(3, len(sold))))
        items = [(code, f"rq-{tag}-{k}") for k, code in enumerate(picked)]
        answers = engine.redeem(items, terminal)
        assert [a.status for a in answers] == [RedeemStatus.REDEEMED] * len(items), answers
        log(acks, op="redeemed", codes=picked, at_ms=[a.redeemed_at_ms for a in answers])
        sold = [code for code in sold if code not in picked]
"""


def read_log(path: Path) -> list[dict]:
    """Whole lines only: a line cut by the kill was never acknowledged."""
    if not path.exists():
        return []
    # a line without its newline was being written when the process was killed
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True)
            if line.endswith("\n")]


def verify_all(engine: Engine, codes: list[str]) -> dict:
    found = {}
    for start in range(0, len(codes), 1000):
        chunk = codes[start:start + 1000]
        found.update(zip(chunk, engine.verify(chunk), strict=True))
    return found


def check_store(engine: Engine, acks: list[dict], intents: list[dict]) -> None:
    acked_codes = [code for ack in acks if ack["op"] == "import" for code in ack["codes"]]
    # a later round may sell a code whose import committed but was killed before its ack
    found = verify_all(engine, list(dict.fromkeys(
        acked_codes + [code for ack in acks if ack["op"] in ("sold", "redeemed")
                       for code in ack["codes"]])))
    for ack in acks:
        if ack["op"] == "import":
            for code, code_id in zip(ack["codes"], ack["code_ids"], strict=True):
                assert found[code].status == VerifyStatus.FOUND, code
                assert found[code].code.code_id == code_id
                assert found[code].code.sku == SKU

    acked_orders = {}
    for ack in acks:
        if ack["op"] == "reserved":
            acked_orders.setdefault(ack["order_id"], OrderState.RESERVED)
            view = engine.order(ack["order_id"])
            assert view is not None and view.state in (OrderState.RESERVED, OrderState.PAID)
            assert [code.code_id for code in view.codes] == ack["code_ids"]
        elif ack["op"] == "sold":
            acked_orders[ack["order_id"]] = OrderState.PAID
            view = engine.order(ack["order_id"], reveal=True)
            assert view is not None and view.state == OrderState.PAID
            assert [code.code_id for code in view.codes] == ack["code_ids"]
            assert view.plaintexts == ack["codes"]
            for code in ack["codes"]:
                assert found[code].status == VerifyStatus.FOUND, code
                assert found[code].code.state in (CodeState.SOLD, CodeState.REDEEMED), code
                assert found[code].code.order_id == ack["order_id"]
        elif ack["op"] == "redeemed":
            for code, at_ms in zip(ack["codes"], ack["at_ms"], strict=True):
                assert found[code].status == VerifyStatus.FOUND, code
                assert found[code].code.state == CodeState.REDEEMED, code
                assert found[code].code.redeemed_by == TERMINAL
                assert found[code].code.redeemed_at_ms == at_ms

    # every order ever attempted is absent, or whole in the state it claims
    for intent in intents:
        if intent["op"] != "order":
            continue
        order_id = intent["order_id"]
        view = engine.order(order_id)
        if order_id in acked_orders:
            assert view is not None, order_id
            if acked_orders[order_id] == OrderState.PAID:
                assert view.state == OrderState.PAID, order_id
        if view is None:
            continue
        assert view.state in (OrderState.RESERVED, OrderState.PAID), (order_id, view.state)
        quantity = sum(count for _, count in view.lines)
        assert len(view.codes) == quantity, order_id
        allowed = ((CodeState.RESERVED,) if view.state == OrderState.RESERVED
                   else (CodeState.SOLD, CodeState.REDEEMED))
        for code in view.codes:
            assert code.state in allowed, (order_id, view.state, code)
            assert code.order_id == order_id, (order_id, code)

    # nothing stored that was never asked for, nothing acknowledged that is missing
    intended_codes = sum(len(intent["codes"]) for intent in intents if intent["op"] == "import")
    stored = sum(engine.scan_counts().values())
    assert len(acked_codes) <= stored <= intended_codes

    assert engine.counters() == engine.scan_counts()
    assert engine.check() == []
    audit = engine.verify_audit()
    assert audit.ok, audit.problem

    # the outbox tells each redemption exactly once: written in its commit, or neither was
    redeemed = sorted(view.code.code_id for view in found.values()
                      if view.status == VerifyStatus.FOUND
                      and view.code.state == CodeState.REDEEMED)
    told, cursor = [], 0
    while True:
        page, next_cursor = events.read(engine, cursor)
        told += [event.code_id for event in page if event.type == events.CODE_REDEEMED]
        if next_cursor == cursor:
            break
        cursor = next_cursor
    assert sorted(told) == redeemed


@pytest.mark.parametrize("rounds", [ROUNDS, pytest.param(SOAK_ROUNDS, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path, monkeypatch, rounds):
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    data_dir = tmp_path / "data"
    ack_path, intent_path = tmp_path / "acks.jsonl", tmp_path / "intents.jsonl"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {key: value for key, value in os.environ.items() if key != "KAMICORE_MASTER_KEY"}
    rng = random.Random()
    killed_while_working = 0

    for round_no in range(rounds):
        stderr_path = tmp_path / f"child-{round_no}.stderr"
        with open(stderr_path, "w") as stderr:
            child = subprocess.Popen(
                [sys.executable, str(script), str(data_dir), str(ack_path), str(intent_path),
                 str(round_no), SKU, TERMINAL],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            # most rounds: kill while it works; every fourth: counted from the start, so some
            # kills land while it imports Python or opens the data dir
            if round_no % 4 != 3:
                line = child.stdout.readline()
                assert line.strip() == "ready", stderr_path.read_text()
            time.sleep(rng.uniform(0.05, 0.6))
            assert child.poll() is None, (
                f"round {round_no}: the child stopped by itself\n{stderr_path.read_text()}")
            killed_while_working += round_no % 4 != 3
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            assert child.returncode == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()

        acks, intents = read_log(ack_path), read_log(intent_path)
        with Engine(data_dir) as engine:
            check_store(engine, acks, intents)

    # the test exercised what it claims: the child got work done between kills
    acks = read_log(ack_path)
    done = {op: sum(1 for ack in acks if ack["op"] == op)
            for op in ("import", "reserved", "sold", "redeemed")}
    assert all(count >= rounds // 2 for count in done.values()), done
    assert killed_while_working >= rounds // 2
    # after all that, the store still works: sell and redeem what is left of one order
    with Engine(data_dir) as engine:
        stock = engine.stock(SKU)
        assert stock.counts[CodeState.AVAILABLE] == stock.sellable
        if stock.sellable:
            assert engine.reserve([("after-crashes", [(SKU, 1)], 60)])[0].code_ids
            assert engine.confirm(["after-crashes"])[0].code_ids
        assert engine.check() == []
