"""Risk benchmark: the server CPU one order costs (CreateOrder + ConfirmPayment of a one-code
order) with the default risk rules, against the same with risk off, in the same run.

One kamicore (`kamicore serve --workers 2` on free 127.0.0.1 ports, a data dir under
bench/results/tmp, removed at the end) is seeded with codes over ImportCodes; a driver of 2
processes (bench/driver.py, 32 orders in flight each) then runs rounds of orders, alternating
risk off (the storefront's channel in off_channels) and the default rule set
(kamicore.domain.risk_rules.DEFAULT_RULES), switched at runtime with Risk/SetRiskRules. Every
order has its own account, IP address and device, as many real buyers do, so each is scored by
every default rule and passes (a refused order would cost less, not more); every order must be
CREATED and PAID. The figure is the server's CPU seconds (supervisor and workers, from /proc)
per order, summed over the rounds of each setting, and their ratio; the per-round ratios show
the spread. The budget: at most 15% more with the default rules.

Usage: .venv/bin/python bench/risk_bench.py [--quick] [--rounds N] [--orders N] [--out FILE]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys

import server_seed
from common import expect, log, machine, ratios_text, stop_on_signals, temp_dir, write_result
from driver import DriverPool
from processes import Children, cpu_seconds
from rpcs import CHANNEL, CURRENCY, PRICES, bearer
from server_seed import SKU
from servers import KamicoreServer

DRIVER_PROCESSES = 2
IN_FLIGHT = 32  # orders in flight per driver process
BUDGET = 1.15  # the default rules may cost at most 15% more server CPU per order


def order_pairs(tag: str, first: int, count: int) -> list[tuple[bytes, bytes]]:
    """(CreateOrder, ConfirmPayment) of one-code orders, each from its own buyer."""
    from kamicore.v1 import common_pb2, orders_pb2
    pairs = []
    for number in range(first, first + count):
        key = f"{tag}-{number}"
        create = orders_pb2.CreateOrderRequest(
            idempotency_key=key, lines=[orders_pb2.OrderLine(sku_id=SKU, quantity=1)],
            buyer=orders_pb2.Buyer(account_id=f"buyer-{number}",
                                   ip=f"10.{number >> 16 & 255}.{number >> 8 & 255}."
                                      f"{number & 255}", device_id=f"device-{number}"),
            hold_seconds=900)
        confirm = orders_pb2.ConfirmPaymentRequest(
            order_id=f"storefront:{CHANNEL}/{key}", payment_reference=f"pay-{key}",
            amount=common_pb2.Money(currency=CURRENCY, amount_micros=PRICES[CHANNEL]))
        pairs.append((create.SerializeToString(), confirm.SerializeToString()))
    return pairs


def set_rules(target: str, admin_key: str, risk_on: bool) -> None:
    """Risk off on the bench channel, or the default rule set, through the Risk service."""
    import grpc
    from kamicore.domain.risk_rules import DEFAULT_RULES
    from kamicore.v1 import risk_pb2, risk_pb2_grpc
    decisions = {"CHALLENGE": 2, "REJECT": 3}
    with grpc.insecure_channel(target) as channel:
        stub = risk_pb2_grpc.RiskStub(channel)
        metadata = bearer(admin_key)
        rules = risk_pb2.RiskRules(off_channels=[CHANNEL])
        if risk_on:
            rules = risk_pb2.RiskRules(
                challenge_score=DEFAULT_RULES["challenge_score"],
                reject_score=DEFAULT_RULES["reject_score"],
                rules=[risk_pb2.RiskRule(**{**rule, "decision": decisions.get(
                    rule.get("decision"), 0)}) for rule in DEFAULT_RULES["rules"]])
        version = stub.GetRiskRules(risk_pb2.GetRiskRulesRequest(), metadata=metadata,
                                    timeout=30).version
        reply = stub.SetRiskRules(risk_pb2.SetRiskRulesRequest(rules=rules,
                                                               expected_version=version),
                                  metadata=metadata, timeout=30)
        expect(reply.status == risk_pb2.SET_RISK_RULES_STATUS_SET, f"SetRiskRules: {reply}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per setting (default 6)")
    parser.add_argument("--orders", type=int, default=3000, help="orders per round")
    parser.add_argument("--time-limit", type=int, default=1200,
                        help="seconds; past it everything is stopped")
    parser.add_argument("--out", default=None, help="JSON results (default: print)")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.orders = 2, 500

    stop_on_signals(options.time_limit)
    root = temp_dir("risk-bench-")
    children = Children(root)
    pool = None
    try:
        pool = DriverPool(DRIVER_PROCESSES)
        server = KamicoreServer(children, root / "data", workers=2)
        keys = server_seed.prepare(server.data_dir)
        server.start()
        admin = keys["admin"] = server_seed.admin_key(server.data_dir)
        orders_total = 2 * options.rounds * options.orders + options.orders
        log(f"seeding {orders_total:,} codes ...")
        server_seed.seed(server.target, keys, 0, orders_total)
        cpu = {False: 0.0, True: 0.0}
        orders = {False: 0, True: 0}
        ratios_off, ratios_on = [], []
        number = 0
        for round_number in range(-1, options.rounds):  # round -1 warms up, unmeasured
            for risk_on in (False, True) if round_number % 2 else (True, False):
                set_rules(server.target, admin, risk_on)
                pairs = order_pairs("risk", number, options.orders // (2 if round_number < 0
                                                                        else 1))
                number += len(pairs)
                before = cpu_seconds([server.process.pid])
                outcome = pool.drive(server.target, "orders", pairs, keys["storefront"],
                                     IN_FLIGHT, 600, decode=True)
                used = cpu_seconds([server.process.pid]) - before
                expect(outcome.succeeded == len(pairs) and not outcome.errors,
                       f"{outcome.succeeded:,} of {len(pairs):,} orders paid; "
                       f"errors {dict(outcome.errors)}")
                if round_number < 0:
                    continue
                cpu[risk_on] += used
                orders[risk_on] += len(pairs)
                (ratios_on if risk_on else ratios_off).append(used / len(pairs))
                log(f"round {round_number + 1}: risk {'on ' if risk_on else 'off'} "
                    f"{used / len(pairs) * 1e3:.3f} ms CPU per order, "
                    f"{len(pairs) / outcome.seconds:,.0f} orders/s")
        per_order = {setting: cpu[setting] / orders[setting] for setting in cpu}
        ratio = per_order[True] / per_order[False]
        round_ratios = [on / off for on, off in zip(ratios_on, ratios_off, strict=True)]
        result = {"machine": machine(), "rounds": options.rounds,
                  "orders_per_round": options.orders,
                  "cpu_ms_per_order_risk_off": per_order[False] * 1e3,
                  "cpu_ms_per_order_default_rules": per_order[True] * 1e3,
                  "ratio": ratio, "round_ratios": round_ratios, "budget": BUDGET,
                  "within_budget": ratio <= BUDGET}
        log(f"server CPU per order: risk off {per_order[False] * 1e3:.3f} ms, default rules "
            f"{per_order[True] * 1e3:.3f} ms: x{ratio:.3f} (rounds {ratios_text(round_ratios)}); "
            f"budget x{BUDGET}")
    except BaseException:
        for name, _ in children.processes:
            log(f"{name} log (tail):\n{children.log_tail(name)}")
        raise
    finally:
        signal.alarm(0)
        if pool is not None:
            pool.close()
        children.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    write_result(result, options.out)
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
