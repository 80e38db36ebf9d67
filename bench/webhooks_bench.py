"""Webhooks benchmark: orders/s while webhook endpoints take every event, and while they are
down, against no endpoint at all, in the same run; and how fast the events reach a receiver.

One kamicore (`kamicore serve --workers 2` on free 127.0.0.1 ports, a data dir under
bench/results/tmp, removed at the end) is seeded with codes; a driver of 2 processes
(bench/driver.py, 32 orders in flight each) runs rounds of one-code orders (CreateOrder +
ConfirmPayment: three events each, created, paid, delivered) under three settings, in rotating
order: `none` (no endpoint), `receiving` (--endpoints endpoints of scope ALL, each POSTing to
its own receiver on 127.0.0.1 that acknowledges everything: tests/webhook_receiver.py) and `down`
(the same endpoints to a receiver that holds every POST open: each endpoint has a request in
flight and retries after the timeout). Endpoints are registered afresh for each round, so each
starts at that round's first event. Figures: orders/s per round (median per setting), the
ratios to `none` round by round, and for `receiving` the events delivered per second from
the round's start until every receiver has every event of the round (3 x orders x
endpoints).
Each receiver must hold every event of every receiving round exactly once, in id order.

On a 2-core machine the dispatcher's deliveries share the CPUs with the workers: the orders
never wait for a webhook, but they do share the machine.

Usage: .venv/bin/python bench/webhooks_bench.py [--quick] [--rounds N] [--orders N]
       [--endpoints N]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import signal
import statistics
import sys
import time

import server_seed
from common import REPO, expect, log, machine, ratios_text, stop_on_signals, temp_dir
from driver import DriverPool
from processes import Children
from risk_bench import DRIVER_PROCESSES, IN_FLIGHT, order_pairs
from rpcs import CHANNEL, bearer
from servers import KamicoreServer

sys.path.insert(0, str(REPO))
from tests.webhook_receiver import HANG, Receiver  # noqa: E402

SECRET = b"bench-webhook-secret-0123456789"
SETTINGS = ("none", "receiving", "down")
delivery_wait_seconds = 600.0


def stub(target: str):
    import grpc
    from kamicore.v1 import webhooks_pb2_grpc
    channel = grpc.insecure_channel(target)
    return channel, webhooks_pb2_grpc.WebhooksStub(channel)


def register(target: str, admin: str, ids: list[str], urls: list[str]) -> None:
    from kamicore.v1 import webhooks_pb2 as W
    channel, webhooks = stub(target)
    with channel:
        for webhook_id, url in zip(ids, urls, strict=True):
            reply = webhooks.RegisterWebhook(W.RegisterWebhookRequest(webhook=W.Webhook(
                webhook_id=webhook_id, url=url, signing_secret=SECRET, enabled=True,
                scope=W.WEBHOOK_SCOPE_ALL)), metadata=bearer(admin), timeout=30)
            expect(reply.status == W.REGISTER_WEBHOOK_STATUS_REGISTERED, f"register: {reply}")


def delete(target: str, admin: str, ids: list[str]) -> None:
    from kamicore.v1 import webhooks_pb2 as W
    channel, webhooks = stub(target)
    with channel:
        for webhook_id in ids:
            reply = webhooks.DeleteWebhook(W.DeleteWebhookRequest(webhook_id=webhook_id),
                                           metadata=bearer(admin), timeout=30)
            expect(reply.status == W.DELETE_WEBHOOK_STATUS_DELETED, f"delete: {reply}")


def order_id(number: int) -> str:
    return f"storefront:{CHANNEL}/hooks-{number}"  # as risk_bench.order_pairs names them


def has_round(receiver: Receiver, round_orders: list[str]) -> bool:
    wanted = set(round_orders)
    return sum(event["order_id"] in wanted for event in receiver.events()) \
        >= 3 * len(round_orders)


def check_receiver(index: int, receiver: Receiver, orders: list[list[str]]) -> None:
    """Every event of every receiving round exactly once (no crash: no duplicate), in id
    order, every signature good."""
    ids = receiver.ids()
    expect(ids == sorted(set(ids)), f"receiver {index}: ids out of order or repeated")
    got = collections.Counter(event["order_id"] for event in receiver.events())
    missing = [order for round_orders in orders for order in round_orders if got[order] != 3]
    expect(not missing and receiver.bad_signatures == 0,
           f"receiver {index}: {len(missing)} orders without their 3 events (first "
           f"{missing[:3]}: {[got[order] for order in missing[:3]]}), "
           f"{receiver.bad_signatures} bad signatures")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting (default 3)")
    parser.add_argument("--orders", type=int, default=2000, help="orders per round")
    parser.add_argument("--endpoints", type=int, default=4, help="endpoints (default 4)")
    parser.add_argument("--time-limit", type=int, default=1800,
                        help="stop everything after this many seconds")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.orders = 1, 500

    stop_on_signals(options.time_limit)
    root = temp_dir("webhooks-bench-")
    children = Children(root)
    pool = None
    receivers = [Receiver(SECRET).start() for _ in range(options.endpoints)]
    down = Receiver(SECRET).start()
    down.fail(HANG)
    try:
        pool = DriverPool(DRIVER_PROCESSES)
        server = KamicoreServer(children, root / "data", workers=2)
        keys = server_seed.prepare(server.data_dir)
        server.start()
        admin = keys["admin"] = server_seed.admin_key(server.data_dir)
        total = len(SETTINGS) * (options.rounds + 1) * options.orders  # the warm-up: half
        log(f"seeding {total:,} codes ...")
        server_seed.seed(server.target, keys, 0, total)
        rates: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
        orders: list[list[str]] = []  # the order ids of each receiving round
        deliveries: list[float] = []
        number = 0
        for round_number in range(-1, options.rounds):  # round -1 warms up, unmeasured
            shift = max(round_number, 0) % len(SETTINGS)
            for setting in SETTINGS[shift:] + SETTINGS[:shift]:
                ids = [f"{setting}-{round_number + 1}-{n}" for n in range(options.endpoints)]
                urls = {"receiving": [receiver.url for receiver in receivers],
                        "down": [down.url] * options.endpoints}.get(setting)
                if urls is not None:
                    register(server.target, admin, ids, urls)
                count = options.orders // (2 if round_number < 0 else 1)
                pairs = order_pairs("hooks", number, count)
                number += count
                started = time.perf_counter()
                outcome = pool.drive(server.target, "orders", pairs, keys["storefront"],
                                     IN_FLIGHT, 600, decode=True)
                expect(outcome.succeeded == len(pairs) and not outcome.errors,
                       f"{outcome.succeeded:,} of {len(pairs):,} orders paid; "
                       f"errors {dict(outcome.errors)}")
                if setting == "receiving":
                    orders.append([order_id(n) for n in range(number - count, number)])
                    for receiver in receivers:  # orders finish out of order: count them all
                        receiver.wait_for(lambda r=receiver: has_round(r, orders[-1]),
                                          "every event of the round", delivery_wait_seconds)
                    per_second = 3 * count * options.endpoints / (time.perf_counter() - started)
                if urls is not None:
                    delete(server.target, admin, ids)
                if round_number < 0:
                    continue
                rates[setting].append(len(pairs) / outcome.seconds)
                if setting == "receiving":
                    deliveries.append(per_second)
                log(f"round {round_number + 1}: {setting:9} {rates[setting][-1]:,.0f} orders/s"
                    + (f", {per_second:,.0f} events delivered/s" if setting == "receiving"
                       else ""))
        outcomes: dict[str, float] = collections.Counter()
        for (name, labels), value in server.metrics().items():
            if name == "kamicore_webhook_deliveries_total" \
                    and dict(labels)["webhook"].startswith("receiving"):
                outcomes[dict(labels)["outcome"]] += value
        log(f"POSTs to the receiving endpoints by outcome: {dict(outcomes)}")
        for index, receiver in enumerate(receivers):
            check_receiver(index, receiver, orders)
        ratios = {setting: [rate / none for rate, none in zip(rates[setting], rates["none"],
                                                              strict=True)]
                  for setting in ("receiving", "down")}
        result = {"machine": machine(), "rounds": options.rounds,
                  "orders_per_round": options.orders, "endpoints": options.endpoints,
                  **{f"orders_per_second_{setting}": statistics.median(rates[setting])
                     for setting in SETTINGS},
                  **{f"ratio_{setting}": statistics.median(values)
                     for setting, values in ratios.items()},
                  "events_delivered_per_second": statistics.median(deliveries),
                  "receiving_posts_by_outcome": dict(outcomes)}
        log(f"orders/s: none {result['orders_per_second_none']:,.0f}, receiving "
            f"{result['orders_per_second_receiving']:,.0f} (x{result['ratio_receiving']:.2f}: "
            f"{ratios_text(ratios['receiving'])}), down {result['orders_per_second_down']:,.0f} "
            f"(x{result['ratio_down']:.2f}: {ratios_text(ratios['down'])}); "
            f"{result['events_delivered_per_second']:,.0f} events delivered/s to "
            f"{options.endpoints} endpoints")
    except BaseException:
        for name, _ in children.processes:
            log(f"{name} log (tail):\n{children.log_tail(name)}")
        raise
    finally:
        signal.alarm(0)
        if pool is not None:
            pool.close()
        children.stop_all()
        for receiver in (*receivers, down):
            receiver.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
