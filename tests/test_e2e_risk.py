"""Risk over a real 2-worker server of its own (its rules change under it, so it does not share
the session server): rules from the settings file at start, read and replaced at runtime and
seen by both workers at the next order, velocity exact under concurrent orders through both
workers, a challenge passed with proof, dry runs, reasons in every reply, and bad rules refused
naming the field."""

from __future__ import annotations

import concurrent.futures
import json
import time

import grpc
import pytest

from kamicore.v1 import risk_pb2, risk_pb2_grpc

from .e2e_support import O, metric_samples, metric_value, rpc_error, uid, wait_until
from .server_harness import (
    Server, cli, order_request, pay_request, risk_settings_file, stocked_sku,
)


FRESH_CLIENTS = 8  # fresh connections land on either worker (SO_REUSEPORT)
START_RULES = {"challenge_score": 50, "reject_score": 100, "rules": [
    {"name": "captcha-over-3", "kind": "order_value", "min_micros": 3 * 9_000_000,
     "weight": 10, "decision": "CHALLENGE"}]}


@pytest.fixture(scope="module")
def risky(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e-risk")
    settings = {"config": str(risk_settings_file(base / "kamicore.toml", START_RULES))}
    server = Server(base / "data", base, "risk", settings=settings).start()
    try:
        web_key, _ = server.create_key("storefront", "web")
        server.admin = server.client(server.admin_key)
        server.risk = risk_pb2_grpc.RiskStub(server.channel())
        server.shops = [server.client(web_key, fresh=True) for _ in range(FRESH_CLIENTS)]
        yield server
    finally:
        assert server.stop() == 0, server.logs()[-3000:]


def get_rules(server) -> risk_pb2.GetRiskRulesResponse:
    return server.risk.GetRiskRules(risk_pb2.GetRiskRulesRequest(), timeout=30,
                                    metadata=server.admin.metadata)


def set_rules(server, *rules, **settings) -> risk_pb2.SetRiskRulesResponse:
    """Replace the rule set (a rule set without review_score sends nothing to review)."""
    reply = server.risk.SetRiskRules(risk_pb2.SetRiskRulesRequest(
        rules=risk_pb2.RiskRules(rules=list(rules), **settings),
        expected_version=get_rules(server).version), timeout=30, metadata=server.admin.metadata)
    assert reply.status == risk_pb2.SET_RISK_RULES_STATUS_SET, reply
    return reply


def fired(reply) -> list[str]:
    return [rule.name for rule in reply.risk.fired]


def test_the_settings_file_rules_are_in_force_from_the_start(risky):
    current = get_rules(risky)
    assert (current.version, current.set_by) == (1, "config")
    assert [rule.name for rule in current.rules.rules] == ["captcha-over-3"]
    assert current.rules.rules[0].verification == "captcha"  # the default, filled in


def test_a_challenge_is_passed_by_a_retry_with_proof(risky):
    set_rules(risky, risk_pb2.RiskRule(name="captcha-over-3", kind="order_value",
                                       min_micros=3 * 9_000_000, weight=10,
                                       decision=O.RISK_DECISION_CHALLENGE))
    sku = uid("chal")
    stocked_sku(risky.admin, sku, 5)
    shop = risky.shops[0]
    request = order_request(uid("order"), sku, 3)
    refused = shop.orders.CreateOrder(request)
    assert refused.status == O.CREATE_ORDER_STATUS_CHALLENGE_REQUIRED
    assert (refused.risk.decision, refused.risk.score, fired(refused),
            list(refused.risk.verifications_required)) == (
        O.RISK_DECISION_CHALLENGE, 10, ["captcha-over-3"], ["captcha"])
    assert not refused.HasField("order")
    assert risky.admin.stock(sku).sellable == 5  # nothing reserved
    request.verifications_passed.append("captcha")
    created = shop.orders.CreateOrder(request)  # the same idempotency key, now with proof
    assert created.status == O.CREATE_ORDER_STATUS_CREATED, created
    assert len(created.order.codes) == 3 and fired(created) == ["captcha-over-3"]
    assert shop.orders.CreateOrder(request).order.order_id == created.order.order_id
    assert risky.admin.stock(sku).sellable == 2


def test_a_dry_run_answers_the_score_and_orders_nothing(risky):
    set_rules(risky, risk_pb2.RiskRule(name="big", kind="order_value", min_micros=1,
                                       weight=7))
    sku = uid("dry")
    stocked_sku(risky.admin, sku, 2)
    request = order_request(uid("order"), sku, 2)
    request.dry_run = True
    reply = risky.shops[1].orders.CreateOrder(request)
    assert (reply.status, reply.risk.decision, reply.risk.score, fired(reply)) == (
        O.CREATE_ORDER_STATUS_SCORED, O.RISK_DECISION_ALLOW, 7, ["big"])
    assert risky.admin.stock(sku).sellable == 2
    assert metric_value(metric_samples(risky.metrics()), "kamicore_risk_decisions_total",
                        decision="ALLOW", dry_run="true") == 1
    request.dry_run = False
    assert risky.shops[1].orders.CreateOrder(request).status == O.CREATE_ORDER_STATUS_CREATED


def test_a_rule_change_applies_to_the_next_order_in_both_workers(risky):
    sku = uid("block")
    stocked_sku(risky.admin, sku, 2 * FRESH_CLIENTS)
    version = set_rules(risky, risk_pb2.RiskRule(
        name="no-mallory", kind="block_account", values=["mallory"],
        decision=O.RISK_DECISION_REJECT)).version
    for shop in risky.shops:
        reply = shop.orders.CreateOrder(order_request(uid("m"), sku, 1, account="mallory"))
        assert (reply.status, fired(reply), reply.risk.rules_version) == (
            O.CREATE_ORDER_STATUS_RISK_REJECTED, ["no-mallory"], version)
    shown = get_rules(risky).rules.rules[0].values
    assert len(shown) == 1 and shown[0].startswith("hash:")  # never kept in the clear
    set_rules(risky)
    for shop in risky.shops:
        reply = shop.orders.CreateOrder(order_request(uid("m"), sku, 1, account="mallory"))
        assert reply.status == O.CREATE_ORDER_STATUS_CREATED, reply
    assert risky.admin.stock(sku).sellable == FRESH_CLIENTS


def test_velocity_is_exact_across_both_workers_under_concurrent_orders(risky):
    limit, attempts = 7, 40
    sku = uid("fast")
    stocked_sku(risky.admin, sku, attempts)
    set_rules(risky, risk_pb2.RiskRule(name="seven-an-hour", kind="velocity",
                                       subject="device", window="hour", max=limit, weight=5,
                                       decision=O.RISK_DECISION_REJECT))
    if time.time() % 3600 > 3590:  # not across the top of the hour: the window restarts there
        time.sleep(11)
    device = uid("device")

    def order(number: int):
        request = order_request(uid("v"), sku, 1, account=f"buyer-{number}")
        request.buyer.device_id = device
        return risky.shops[number % FRESH_CLIENTS].orders.CreateOrder(request).status

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(order, range(attempts)))
    assert statuses.count(O.CREATE_ORDER_STATUS_CREATED) == limit
    assert statuses.count(O.CREATE_ORDER_STATUS_RISK_REJECTED) == attempts - limit
    assert risky.admin.stock(sku).sellable == attempts - limit
    samples = metric_samples(risky.metrics())
    assert metric_value(samples, "kamicore_risk_rules_fired_total", rule="seven-an-hour",
                        decision="REJECT") == attempts - limit


def test_a_stale_version_conflicts_and_changes_nothing(risky):
    current = get_rules(risky)
    reply = risky.risk.SetRiskRules(risk_pb2.SetRiskRulesRequest(
        rules=risk_pb2.RiskRules(), expected_version=current.version - 1), timeout=30,
        metadata=risky.admin.metadata)
    assert (reply.status, reply.version) == (risk_pb2.SET_RISK_RULES_STATUS_VERSION_CONFLICT,
                                             current.version)
    assert get_rules(risky) == current


@pytest.mark.parametrize("rule, field", [
    (risk_pb2.RiskRule(name="x", kind="velocity", subject="ip", window="day", max=1),
     "rules.rules[0].window"),
    (risk_pb2.RiskRule(name="x", kind="velocity", subject="ip", window="hour"),
     "rules.rules[0].max"),
    (risk_pb2.RiskRule(name="x", kind="block_ip", values=["300.1.1.1"]),
     "rules.rules[0].values[0]"),
    (risk_pb2.RiskRule(name="x", kind="order_value", min_micros=1, age_hours=3),
     "rules.rules[0].age_hours"),
    (risk_pb2.RiskRule(kind="order_value", min_micros=1), "rules.rules[0].name"),
])
def test_bad_rules_are_refused_naming_the_field(risky, rule, field):
    before = get_rules(risky)
    error = rpc_error(risky.risk.SetRiskRules, risk_pb2.SetRiskRulesRequest(
        rules=risk_pb2.RiskRules(rules=[rule]), expected_version=before.version), timeout=30,
        metadata=risky.admin.metadata)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"{field}:"), error.details()
    assert get_rules(risky) == before


def test_a_bad_rule_in_the_settings_file_stops_the_start_naming_it(tmp_path):
    path = risk_settings_file(tmp_path / "bad.toml", {"rules": [
        {"name": "x", "kind": "velocity", "subject": "ip", "window": "week", "max": 1}]})
    result = cli(tmp_path / "data", "serve", "--config", str(path), "--listen",
                 "127.0.0.1:0", "--metrics-listen", "", check=False)
    assert result.returncode != 0
    assert "[risk] rules[0].window: must be minute or hour" in result.stderr


def list_reviews(server) -> list[str]:
    reply = server.risk.ListReviews(risk_pb2.ListReviewsRequest(), timeout=30,
                                    metadata=server.admin.metadata)
    return [review.order_id for review in reply.reviews]


def decide(server, order_id: str, approve: bool) -> risk_pb2.DecideReviewResponse:
    return server.risk.DecideReview(risk_pb2.DecideReviewRequest(
        order_id=order_id, approve=approve), timeout=30, metadata=server.admin.metadata)


def test_reviews_approved_rejected_and_expired(risky):
    set_rules(risky, risk_pb2.RiskRule(name="big", kind="order_value", min_micros=1,
                                       weight=40), review_score=40)
    sku = uid("review")
    stocked_sku(risky.admin, sku, 6)
    shop = risky.shops[2]
    orders = []
    for hold_seconds in (0, 0, 1):
        reply = shop.orders.CreateOrder(order_request(uid("r"), sku, 2,
                                                      hold_seconds=hold_seconds))
        assert (reply.status, reply.risk.decision, reply.risk.score, fired(reply)) == (
            O.CREATE_ORDER_STATUS_IN_REVIEW, O.RISK_DECISION_REVIEW, 40, ["big"])
        orders.append(reply.order)
    approved, rejected, expiring = orders
    assert risky.admin.stock(sku).sellable == 0  # reserved while in review
    assert set(list_reviews(risky)) >= {order.order_id for order in orders}
    assert shop.orders.ConfirmPayment(pay_request(approved)).status == \
        O.CONFIRM_PAYMENT_STATUS_IN_REVIEW
    reply = decide(risky, approved.order_id, True)
    assert (reply.status, reply.review.state, reply.review.risk.score) == (
        risk_pb2.DECIDE_REVIEW_STATUS_DECIDED, risk_pb2.REVIEW_STATE_APPROVED, 40)
    paid = shop.orders.ConfirmPayment(pay_request(approved))
    assert paid.status == O.CONFIRM_PAYMENT_STATUS_PAID and len(paid.order.codes) == 2
    assert decide(risky, rejected.order_id, False).status == \
        risk_pb2.DECIDE_REVIEW_STATUS_DECIDED
    assert shop.orders.ConfirmPayment(pay_request(rejected)).status == \
        O.CONFIRM_PAYMENT_STATUS_RISK_REJECTED
    wait_until(lambda: expiring.order_id not in list_reviews(risky), 15,
               "the undecided review to expire with its 1 s hold")
    assert decide(risky, expiring.order_id, True).status == risk_pb2.DECIDE_REVIEW_STATUS_EXPIRED
    assert risky.admin.stock(sku).sellable == 4  # the rejected and expired orders' codes
    assert {approved.order_id, rejected.order_id} & set(list_reviews(risky)) == set()


def test_an_operator_reads_the_rules_with_kamicore_call(risky):
    result = cli(risky.data_dir, "call", "Risk/GetRiskRules", "{}", "--target", risky.target,
                 "--key", risky.admin_key)
    assert json.loads(result.stdout)["version"] == str(get_rules(risky).version)
