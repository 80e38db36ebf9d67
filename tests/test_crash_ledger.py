"""kill -9 while orders are created, paid, reported invalid and cancelled through the domain
plans (as the server runs them), with the sweeper's roll-up of the
balances in between: after every crash the books are whole (every entry balances,
ids without gaps, stored balances equal the entries, each currency sums to zero), every
payment a caller was told of is in them, and they equal the orders and codes as stored -
revenue the paid orders' totals, refunds the refunded codes' prices, cost of goods the unit
costs of the delivered codes, supplier claims those of the invalid ones. (The engine's own
crash test: tests/test_crash.py.)"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from kamicore.domain import ledger
from kamicore.engine import Engine
from kamicore.statuses import CodeState

from .ledger_support import whole_books
from .test_crash import read_log

ROUNDS = 8
PRICE, UNIT_COST = 9_000_000, 3_000_000

CHILD = r"""
import json, os, random, secrets, sys
from kamicore.domain import ledger, order_requests, orders, refunds
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
from kamicore.engine import Engine
from kamicore.statuses import ConfirmPaymentStatus, CreateOrderStatus, DeliveryKind

data_dir, ack_path, round_no, price, unit_cost = sys.argv[1:6]
price, unit_cost = int(price), int(unit_cost)
acks = open(ack_path, "a")

def ack(**record):
    acks.write(json.dumps(record) + "\n")
    acks.flush()
    os.fsync(acks.fileno())

engine = Engine(data_dir)
Catalog(engine).create(Sku("gift", "gift", "USD", 10_000_000, DeliveryKind.CODE,
                           (ChannelPrice("web", price),)))
risk = orders.Orders(engine).risk
run = lambda function, *args: engine.run(engine.plan(function, args, "storefront:web",
                                                     full=lambda: None))
print("ready", flush=True)
rng = random.Random()
step = 0
while True:
    step += 1
    tag = f"r{round_no}-{step}"
    engine.import_codes("gift", f"batch-{tag}",
                        [f"C-{tag}-{k}-{secrets.token_hex(5)}" for k in range(3)],
                        supplier="acme", unit_cost_micros=unit_cost)
    quantity = rng.randint(1, 3)
    request = order_requests.validate_create(order_requests.OrderRequest(tag, "alice", "", "",
                                                         [("gift", quantity)], 60), 60)
    order_id = f"shop/{tag}".encode()
    if run(orders.create_order, order_id, "storefront:web", "web", request,
           risk)[0] != CreateOrderStatus.CREATED:
        continue
    status = run(orders.confirm_payment, order_id, f"pay-{tag}", "USD", price * quantity,
                 "default")[0]
    assert status == ConfirmPaymentStatus.PAID, status
    ack(op="paid", order_id=order_id.decode(), reference=f"pay-{tag}")
    if rng.random() < 0.5:
        code_id = engine.order(order_id.decode()).code_ids[0]
        run(refunds.report_invalid, order_id, code_id)
        run(orders.cancel, order_id)
    if rng.random() < 0.3:
        ledger.roll_up_all(engine)
"""


def check_books(engine: Engine, acks: list[dict]) -> None:
    balances = whole_books(engine)
    for paid in acks:
        kinds = [entry["kind"] for entry in ledger.by_reference(engine, paid["reference"])]
        assert kinds[0] == "sale" and set(kinds[1:]) <= {"refund"}, (paid, kinds)
    revenue = refunds = 0
    delivered = invalid = 0
    for key, value in engine.scan("order_meta"):
        meta = json.loads(value)
        if not meta["payment_reference"]:
            continue
        revenue += meta["total_micros"]
        refunds += PRICE * len(meta.get("refunded_codes", []))
        states = [code.state for code in engine.order(key.decode()).codes]
        delivered += sum(state in (CodeState.SOLD, CodeState.REDEEMED) for state in states)
        invalid += states.count(CodeState.INVALID)
    expected = {("revenue:web", "USD"): -revenue, ("receivable:default", "USD"): revenue,
                ("refunds:web", "USD"): refunds, ("refunds_due:default", "USD"): -refunds,
                ("cogs:acme", "USD"): UNIT_COST * delivered,
                ("supplier_claims:acme", "USD"): UNIT_COST * invalid,
                ("payable:acme", "USD"): -UNIT_COST * (delivered + invalid)}
    assert balances == {key: amount for key, amount in expected.items() if amount}


def test_sigkill_leaves_the_books_whole_and_equal_to_the_orders(tmp_path, monkeypatch):
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    data_dir, ack_path = tmp_path / "data", tmp_path / "acks.jsonl"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {key: value for key, value in os.environ.items() if key != "KAMICORE_MASTER_KEY"}
    rng = random.Random()
    for round_no in range(ROUNDS):
        stderr_path = tmp_path / f"child-{round_no}.stderr"
        with open(stderr_path, "w") as stderr:
            child = subprocess.Popen(
                [sys.executable, str(script), str(data_dir), str(ack_path), str(round_no),
                 str(PRICE), str(UNIT_COST)],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            assert child.stdout.readline().strip() == "ready", stderr_path.read_text()
            time.sleep(rng.uniform(0.05, 0.4))
            assert child.poll() is None, stderr_path.read_text()
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        with Engine(data_dir) as engine:
            check_books(engine, read_log(ack_path))
            assert engine.check() == []
    acks = read_log(ack_path)
    assert len(acks) >= ROUNDS, "the child paid for too few orders between kills"
