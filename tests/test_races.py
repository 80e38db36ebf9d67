"""Several processes on one data dir, racing for the same codes.

The engine lets several server processes share a data dir (LMDB's lock serialises their write
transactions); each has its own group-commit writer and its own caches. These tests start real
processes (each opens its own Engine after it starts), line them up on a start signal and let
them race: for the last codes of a SKU at checkout, and for the same codes at eight POS
terminals. Afterwards the parent checks what a merchant would lose money on: a code in two
orders, a code redeemed twice, counters that disagree with the codes.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from kamicore.engine import Engine
from kamicore.statuses import (
    CodeState, ConfirmStatus, OrderState, RedeemStatus, ReserveStatus, VerifyStatus,
)

SKU = "gift-100"
CODES = 1_000
PROCESS_TIMEOUT_SECONDS = 120

# A worker opens its own Engine, says "ready", waits for "go" on stdin, works, writes what it
# was answered to a JSON file and closes.
WORKER_PRELUDE = """
import json, os, random, sys
from kamicore.engine import Engine
from kamicore.statuses import RedeemStatus, ReserveStatus

data_dir, name, out_path, in_path = sys.argv[1:5]
engine = Engine(data_dir)
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
rng = random.Random()
"""

RESERVE_WORKER = WORKER_PRELUDE + """
sku = json.load(open(in_path))["sku"]
orders, refused, retried = [], [], 0
misses_in_a_row = 0
number = 0
while misses_in_a_row < 25:
    batch = []
    for _ in range(rng.randint(1, 3)):
        number += 1
        batch.append((f"{name}-order-{number}", [(sku, rng.randint(1, 5))], 3600))
    if orders and rng.random() < 0.1:  # a client retrying an order it already holds
        order_id, quantity, _ = orders[rng.randrange(len(orders))]
        batch.append((order_id, [(sku, quantity)], 3600))
    results = engine.reserve(batch)
    for (order_id, lines, _), result in zip(batch, results):
        if any(order[0] == order_id for order in orders):
            assert result.status == ReserveStatus.RESERVED, result
            held = next(order for order in orders if order[0] == order_id)
            assert result.code_ids == held[2], (result, held)
            retried += 1
        elif result.status == ReserveStatus.RESERVED:
            assert len(result.code_ids) == lines[0][1], result
            orders.append((order_id, lines[0][1], result.code_ids))
            misses_in_a_row = 0
        elif result.status == ReserveStatus.INSUFFICIENT_STOCK:
            assert result.code_ids == [], result
            refused.append(order_id)
            misses_in_a_row += 1
        else:
            raise AssertionError(f"unexpected answer {result}")
engine.close()
with open(out_path, "w") as out:
    json.dump({"orders": orders, "refused": refused, "retried": retried}, out)
"""

REDEEM_WORKER = WORKER_PRELUDE + """
codes = json.load(open(in_path))["codes"]
order = list(range(len(codes)))
rng.shuffle(order)
answers = []
position = 0
while position < len(order):
    chunk = order[position:position + rng.randint(1, 8)]
    items = [(codes[index], f"{name}-request-{position + offset}")
             for offset, index in enumerate(chunk)]
    position += len(chunk)
    for index, result in zip(chunk, engine.redeem(items, name)):
        answers.append([index, result.status.name, result.code_id, result.redeemed_at_ms,
                        result.redeemed_by])
engine.close()
with open(out_path, "w") as out:
    json.dump(answers, out)
"""


def run_workers(script: str, names: list[str], data_dir: Path, work: dict, tmp_path: Path):
    """Start one process per name, release them together, and return their JSON outputs."""
    script_path = tmp_path / "worker.py"
    script_path.write_text(script)
    in_path = tmp_path / "work.json"
    in_path.write_text(json.dumps(work))
    env = {key: value for key, value in os.environ.items() if key != "KAMICORE_MASTER_KEY"}
    workers = []
    for name in names:
        out_path = tmp_path / f"{name}.json"
        stderr = open(tmp_path / f"{name}.stderr", "w")
        process = subprocess.Popen(
            [sys.executable, str(script_path), str(data_dir), name, str(out_path), str(in_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        workers.append((name, process, out_path, stderr))
    try:
        for name, process, _, _ in workers:
            line = process.stdout.readline()
            assert line.strip() == "ready", (name, line, (tmp_path / f"{name}.stderr")
                                             .read_text())
        for _, process, _, _ in workers:
            process.stdin.write("go\n")
            process.stdin.flush()
        for _, process, _, _ in workers:
            process.stdin.close()
        outputs = {}
        for name, process, out_path, stderr in workers:
            process.wait(timeout=PROCESS_TIMEOUT_SECONDS)
            stderr.close()
            assert process.returncode == 0, (name, (tmp_path / f"{name}.stderr").read_text())
            outputs[name] = json.loads(out_path.read_text())
        return outputs
    finally:
        for _, process, _, stderr in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            stderr.close()


@pytest.fixture
def shared_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    return tmp_path / "data"


def import_stock(data_dir: Path, count: int = CODES) -> list[str]:
    rng = random.Random()
    codes = [f"RACE-{index:04d}-{rng.getrandbits(48):012X}" for index in range(count)]
    with Engine(data_dir) as engine:
        result = engine.import_codes(SKU, "batch-race", codes)
        assert result.imported == count
    return codes


def test_four_processes_never_sell_one_code_twice(shared_dir, tmp_path):
    import_stock(shared_dir)
    names = [f"P{number}" for number in range(1, 5)]
    outputs = run_workers(RESERVE_WORKER, names, shared_dir, {"sku": SKU}, tmp_path)

    with Engine(shared_dir) as engine:
        owner: dict[int, str] = {}
        reserved = 0
        for name in names:
            assert outputs[name]["orders"], f"{name} never got to reserve: no race happened"
            for order_id, quantity, code_ids in outputs[name]["orders"]:
                view = engine.order(order_id)
                assert view is not None and view.state == OrderState.RESERVED
                assert view.lines == [(SKU, quantity)]
                assert [code.code_id for code in view.codes] == code_ids
                for code in view.codes:
                    assert code.state == CodeState.RESERVED
                    assert code.order_id == order_id
                    assert code.sku == SKU
                    assert code.code_id not in owner, (
                        f"code {code.code_id} in {owner[code.code_id]} and {order_id}")
                    owner[code.code_id] = order_id
                reserved += len(code_ids)
            # an order that was refused reserved nothing
            for order_id in outputs[name]["refused"]:
                assert engine.order(order_id) is None

        counters = engine.counters()
        available = counters.get((SKU, CodeState.AVAILABLE), 0)
        assert reserved == CODES - available
        assert counters.get((SKU, CodeState.RESERVED), 0) == reserved
        assert available < 5  # they stopped because the SKU ran out, not early
        stock = engine.stock(SKU)
        assert stock.counts[CodeState.RESERVED] == reserved
        assert stock.sellable == available
        assert counters == engine.scan_counts()
        assert engine.check() == []
        assert engine.verify_audit().ok

        # the held codes are still sellable exactly once: confirm a few of them
        some = [order_id for order_id, _, _ in outputs[names[0]]["orders"][:3]]
        assert [r.status for r in engine.confirm(some)] == [ConfirmStatus.SOLD] * len(some)
        assert engine.check() == []


def test_eight_terminals_redeem_each_code_exactly_once(shared_dir, tmp_path):
    codes = import_stock(shared_dir)
    with Engine(shared_dir) as engine:
        orders = [(f"order-{number}", [(SKU, 250)], 3600) for number in range(4)]
        assert [r.status for r in engine.reserve(orders)] == [ReserveStatus.RESERVED] * 4
        assert [r.status for r in engine.confirm([order_id for order_id, _, _ in orders])] == [
            ConfirmStatus.SOLD] * 4
        assert engine.counters()[(SKU, CodeState.SOLD)] == CODES

    terminals = [f"T-{number}" for number in range(1, 9)]
    outputs = run_workers(REDEEM_WORKER, terminals, shared_dir, {"codes": codes}, tmp_path)

    answers = defaultdict(list)  # code index -> [(terminal, status, code id, at, by)]
    for terminal in terminals:
        assert sorted(index for index, *_ in outputs[terminal]) == list(range(CODES))
        for index, status, code_id, at_ms, by in outputs[terminal]:
            answers[index].append((terminal, status, code_id, at_ms, by))

    winners = Counter()
    with Engine(shared_dir) as engine:
        stored = []
        for start in range(0, CODES, 500):
            stored += engine.verify(codes[start:start + 500])
        for index in range(CODES):
            record = stored[index]
            assert record.status == VerifyStatus.FOUND
            view = record.code
            assert view.state == CodeState.REDEEMED
            got = answers[index]
            redeemed = [answer for answer in got if answer[1] == "REDEEMED"]
            assert len(redeemed) == 1, (codes[index], got)
            terminal, _, code_id, at_ms, by = redeemed[0]
            winners[terminal] += 1
            assert (code_id, at_ms, by) == (view.code_id, view.redeemed_at_ms, terminal)
            assert view.redeemed_by == terminal
            for other in got:
                if other is redeemed[0]:
                    continue
                assert other[1] == "ALREADY_REDEEMED", (codes[index], got)
                assert other[2:] == (view.code_id, view.redeemed_at_ms, view.redeemed_by), (
                    codes[index], got)

        assert engine.counters()[(SKU, CodeState.REDEEMED)] == CODES
        assert (SKU, CodeState.SOLD) not in engine.counters()
        assert engine.counters() == engine.scan_counts()
        assert engine.check() == []
        assert engine.verify_audit().ok
        # a retry of a finished request gets its first answer, from any process
        terminal, status, _, at_ms, _ = answers[0][0]
        position = next(offset for offset, (index, *_) in enumerate(outputs[terminal])
                        if index == 0)
        # request ids were numbered by position in the worker's shuffled walk
        retry = engine.redeem([(codes[0], f"{terminal}-request-{position}")], terminal)[0]
        assert retry.status == RedeemStatus[status]
        if status == "REDEEMED":
            assert retry.redeemed_at_ms == at_ms
    # the race was real: more than one terminal won some codes
    assert len(winners) > 1, winners
