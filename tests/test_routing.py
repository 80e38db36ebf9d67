"""Routing without a server: every strategy's order of choice (properties over random routes,
and tables through the data file), the circuit breaker driven by an explicit clock, and the
statistics' percentiles."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from kamicore import limits
from kamicore.domain import routing, supplier_stats
from kamicore.domain.suppliers import Route
from kamicore.engine import Engine
from kamicore.statuses import CircuitState, RoutingStrategy

from .suppliers_support import (
    SKU, claim, ranked_ids, record, register, route, supplier, topup_sku,
)
from .support import FakeClock

S = RoutingStrategy
COOL_DOWN_MS = limits.circuit_cool_down_seconds * 1000
TO_OPEN = limits.circuit_failures_to_open


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(tmp_path, clock, monkeypatch):
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    with Engine(tmp_path / "data", clock=clock) as opened:
        yield opened


# -- properties of `order` over random candidates -------------------------------------------------

WINDOW = st.fixed_dictionaries({"outcomes": st.integers(0, 50).map(float),
                                "successes": st.integers(0, 50).map(float),
                                "latency_ms": st.integers(0, 10_000).map(float),
                                "timed": st.integers(0, 50).map(float)})


@st.composite
def candidates(draw):
    count = draw(st.integers(0, 8))
    ids = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=count,
                        max_size=count, unique=True))
    routes = [Route(SKU, supplier_id, "P", draw(st.integers(0, 5)) * 1_000_000, "CNY",
                    draw(st.integers(0, 3))) for supplier_id in ids]
    windows = {}
    for supplier_id in ids:
        window = draw(WINDOW)
        window["successes"] = min(window["successes"], window["outcomes"])
        windows[supplier_id] = window
    return routes, windows


def _rate(window, pooled):
    prior = limits.supplier_recent_prior_outcomes
    return (window["successes"] + prior * pooled) / (window["outcomes"] + prior)


@settings(max_examples=300, deadline=None)
@given(candidates(), st.sampled_from(list(S)), st.randoms(use_true_random=False))
def test_every_strategy_orders_a_permutation_the_same_way_whatever_the_input_order(
        drawn, strategy, random):
    routes, windows = drawn
    ordered = routing.order(routes, strategy, windows)
    assert sorted(ordered, key=lambda one: one.supplier_id) == \
        sorted(routes, key=lambda one: one.supplier_id)
    shuffled = list(routes)
    random.shuffle(shuffled)
    assert routing.order(shuffled, strategy, windows) == ordered  # deterministic tie-breaks


@settings(max_examples=300, deadline=None)
@given(candidates())
def test_cheapest_never_puts_a_dearer_route_before_a_cheaper_one(drawn):
    routes, windows = drawn
    costs = [one.cost_micros for one in routing.order(routes, S.CHEAPEST, windows)]
    assert costs == sorted(costs)


@settings(max_examples=300, deadline=None)
@given(candidates())
def test_priority_goes_by_priority_then_cost_then_supplier_id(drawn):
    routes, windows = drawn
    keys = [(one.priority, one.cost_micros, one.supplier_id)
            for one in routing.order(routes, S.PRIORITY, windows)]
    assert keys == sorted(keys)


@settings(max_examples=300, deadline=None)
@given(candidates())
def test_highest_success_rate_never_puts_a_worse_recent_record_first(drawn):
    routes, windows = drawn
    ordered = routing.order(routes, S.HIGHEST_SUCCESS_RATE, windows)
    total = sum(window["outcomes"] for window in windows.values())
    pooled = sum(window["successes"] for window in windows.values()) / total if total else 0
    rates = [_rate(windows[one.supplier_id], pooled) for one in ordered]
    assert rates == sorted(rates, reverse=True)
    for before, after in zip(ordered, ordered[1:], strict=False):
        first, second = windows[before.supplier_id], windows[after.supplier_id]
        if first["outcomes"] == second["outcomes"]:  # the same weight: more successes first
            assert first["successes"] >= second["successes"]


@settings(max_examples=300, deadline=None)
@given(candidates())
def test_fastest_never_puts_a_slower_recent_mean_first(drawn):
    routes, windows = drawn
    ordered = routing.order(routes, S.FASTEST, windows)
    for before, after in zip(ordered, ordered[1:], strict=False):
        first, second = windows[before.supplier_id], windows[after.supplier_id]
        if first["timed"] == second["timed"]:
            assert first["latency_ms"] <= second["latency_ms"]


@pytest.mark.parametrize("strategy, window_of_new", [
    (S.HIGHEST_SUCCESS_RATE, {"outcomes": 0.0, "successes": 0.0}),
    (S.FASTEST, {"timed": 0.0, "latency_ms": 0.0}),
])
def test_a_supplier_without_history_is_neither_favoured_nor_starved(strategy, window_of_new):
    """Between a good and a bad supplier whatever their priorities: the average of the two."""
    good = {"outcomes": 20.0, "successes": 19.0, "timed": 20.0, "latency_ms": 20 * 100.0}
    bad = {"outcomes": 20.0, "successes": 2.0, "timed": 20.0, "latency_ms": 20 * 3000.0}
    new = {**good, **window_of_new}
    routes = [Route(SKU, "good", "P", 0, "CNY", 5), Route(SKU, "bad", "P", 0, "CNY", 0),
              Route(SKU, "new", "P", 0, "CNY", 9)]
    ordered = routing.order(routes, strategy, {"good": good, "bad": bad, "new": new})
    assert [one.supplier_id for one in ordered] == ["good", "new", "bad"]


# -- ranked, through the data file ----------------------------------------------------------------

def _three(engine, strategy):
    topup_sku(engine, strategy=strategy)
    register(engine, supplier("alpha", route(cost_micros=9_500_000, priority=2)),
             supplier("bravo", route(cost_micros=9_000_000, priority=3)),
             supplier("charlie", route(cost_micros=9_800_000, priority=1)))


@pytest.mark.parametrize("strategy, expected", [
    (S.PRIORITY, ["charlie", "alpha", "bravo"]),
    (S.CHEAPEST, ["bravo", "alpha", "charlie"]),
    # no outcomes yet: every supplier is average, so route priority decides
    (S.HIGHEST_SUCCESS_RATE, ["charlie", "alpha", "bravo"]),
    (S.FASTEST, ["charlie", "alpha", "bravo"]),
])
def test_each_strategy_orders_the_routes_of_a_sku(engine, strategy, expected):
    _three(engine, strategy)
    assert ranked_ids(engine) == expected


def test_recent_outcomes_reorder_the_statistics_strategies(engine, clock):
    _three(engine, S.HIGHEST_SUCCESS_RATE)
    for _ in range(4):
        record(engine, "bravo", "SUCCEEDED", latency_ms=50)
        record(engine, "charlie", "FAILED", latency_ms=900)
    record(engine, "alpha", "SUCCEEDED", latency_ms=400)
    record(engine, "alpha", "UNKNOWN", latency_ms=2000)
    assert ranked_ids(engine) == ["bravo", "alpha", "charlie"]


def test_disabled_routes_suppliers_and_other_skus_are_not_ranked(engine):
    topup_sku(engine)
    topup_sku(engine, "other")
    register(engine, supplier("on", route()), supplier("off", route(), enabled=False),
             supplier("route-off", route(enabled=False)),
             supplier("elsewhere", route(sku_id="other")))
    assert ranked_ids(engine) == ["on"]
    assert ranked_ids(engine, "other") == ["elsewhere"]
    assert ranked_ids(engine, "no-such-sku") == []


def test_every_route_of_a_sku_is_found_however_many_and_none_of_its_neighbours(engine):
    for sku_id in ("topup-1", SKU, "topup-100"):  # neighbours in key order
        topup_sku(engine, sku_id)
    for number in range(40):
        register(engine, supplier(f"s{number:02}", route(priority=40 - number),
                                  route(sku_id="topup-1"), route(sku_id="topup-100")))
    assert ranked_ids(engine) == [f"s{number:02}" for number in reversed(range(40))]
    assert len(ranked_ids(engine, "topup-1")) == 40


def test_the_statistics_strategies_forget_old_outcomes(engine, clock):
    """A supplier that failed long ago and succeeds now overtakes one that did the opposite."""
    _three(engine, S.HIGHEST_SUCCESS_RATE)
    for _ in range(20):
        record(engine, "charlie", "SUCCEEDED")
        record(engine, "alpha", "FAILED")
        clock.advance(limits.circuit_failure_window_seconds * 1000 + 1)  # never opens
    clock.advance(10 * limits.supplier_recent_half_life_seconds * 1000)
    for _ in range(3):
        record(engine, "charlie", "FAILED")
        record(engine, "alpha", "SUCCEEDED")
    assert ranked_ids(engine)[0] == "alpha"


_EXAMPLES = iter(range(10**6))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.integers(0, 3)),
                max_size=6), st.sampled_from(list(S)))
def test_ranked_is_a_permutation_of_the_enabled_routes_whose_breaker_is_closed(
        engine_for_examples, drawn, strategy):
    engine = engine_for_examples
    example = next(_EXAMPLES)
    sku_id = f"sku-{example}"
    topup_sku(engine, sku_id, strategy=strategy)
    expected = set()
    for number, (supplier_on, route_on, tripped, priority) in enumerate(drawn):
        supplier_id = f"s{example}-{number}"
        register(engine, supplier(supplier_id, route(sku_id, priority=priority,
                                                     enabled=route_on), enabled=supplier_on))
        for _ in range(TO_OPEN if tripped else 0):
            record(engine, supplier_id, "UNKNOWN", sku_id=sku_id)
        if supplier_on and route_on and not tripped:
            expected.add(supplier_id)
    ranked = ranked_ids(engine, sku_id)
    assert len(ranked) == len(set(ranked)) and set(ranked) == expected


@pytest.fixture(scope="module")
def engine_for_examples(tmp_path_factory):
    with Engine(tmp_path_factory.mktemp("examples") / "data", clock=FakeClock()) as opened:
        yield opened


# -- the circuit breaker --------------------------------------------------------------------------

def _breaker(engine):
    return routing.circuit(engine, "bravo", engine.now_ms())[0]


def test_the_breaker_opens_skips_tries_once_and_closes(engine, clock):
    _three(engine, S.CHEAPEST)
    for result in ["FAILED", "UNKNOWN"] * TO_OPEN:
        if _breaker(engine) == CircuitState.OPEN:
            break
        assert ranked_ids(engine)[0] == "bravo"
        record(engine, "bravo", result)
    assert _breaker(engine) == CircuitState.OPEN
    assert ranked_ids(engine) == ["alpha", "charlie"]  # skipped while open
    assert not claim(engine, "bravo")
    clock.advance(COOL_DOWN_MS - 1)
    assert ranked_ids(engine) == ["alpha", "charlie"]
    clock.advance(1)
    assert _breaker(engine) == CircuitState.HALF_OPEN
    assert ranked_ids(engine)[0] == "bravo"  # one trial
    assert claim(engine, "bravo")
    assert ranked_ids(engine) == ["alpha", "charlie"]  # the trial is taken
    assert not claim(engine, "bravo")
    assert record(engine, "bravo", "SUCCEEDED") == CircuitState.CLOSED
    assert ranked_ids(engine)[0] == "bravo"
    assert claim(engine, "bravo") and claim(engine, "bravo")  # closed: every call may go


def test_a_failed_trial_opens_the_breaker_for_another_cool_down(engine, clock):
    _three(engine, S.CHEAPEST)
    for _ in range(TO_OPEN):
        record(engine, "bravo", "FAILED")
    clock.advance(COOL_DOWN_MS)
    assert claim(engine, "bravo")
    assert record(engine, "bravo", "UNKNOWN") == CircuitState.OPEN
    assert "bravo" not in ranked_ids(engine)
    clock.advance(COOL_DOWN_MS)
    assert ranked_ids(engine)[0] == "bravo"


def test_a_trial_whose_outcome_never_came_frees_the_slot(engine, clock):
    _three(engine, S.CHEAPEST)
    for _ in range(TO_OPEN):
        record(engine, "bravo", "FAILED")
    clock.advance(COOL_DOWN_MS)
    assert claim(engine, "bravo")
    clock.advance(limits.circuit_trial_seconds * 1000)
    assert claim(engine, "bravo")


@pytest.mark.parametrize("between", ["SUCCEEDED", "spread", "NOT_FOUND", "late"])
def test_the_breaker_counts_only_failures_in_a_row_within_the_window(engine, clock, between):
    _three(engine, S.CHEAPEST)
    for _ in range(TO_OPEN - 1):
        record(engine, "bravo", "FAILED")
    if between == "SUCCEEDED":
        record(engine, "bravo", "SUCCEEDED")  # the streak starts over
    elif between == "spread":
        clock.advance(limits.circuit_failure_window_seconds * 1000 + 1)
    elif between == "late":
        record(engine, "bravo", "FAILED", late=True)  # a late callback leaves it as it is
    else:
        record(engine, "bravo", "NOT_FOUND")  # neither a failure nor a success
    record(engine, "bravo", "FAILED")
    assert _breaker(engine) == (CircuitState.OPEN if between in ("NOT_FOUND", "late")
                                else CircuitState.CLOSED)


def test_every_process_sees_the_same_breaker(engine, tmp_path, clock):
    """Kept in the data file: a second engine on the same dir (another worker, the
    dispatcher) skips the supplier too."""
    _three(engine, S.CHEAPEST)
    for _ in range(TO_OPEN):
        record(engine, "bravo", "FAILED")
    script = ("import sys; from kamicore.engine import Engine; from kamicore.domain import "
              "routing\nwith Engine(sys.argv[1], clock=lambda: int(sys.argv[2])) as engine:\n"
              "    print(' '.join(one.supplier_id for one in routing.ranked(engine, sys.argv[3], "
              "engine.now_ms())))")
    seen = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data"),
                           str(clock.now_ms), SKU], capture_output=True, text=True, check=True)
    assert seen.stdout.split() == ["alpha", "charlie"]


# -- statistics -----------------------------------------------------------------------------------

@pytest.mark.parametrize("latencies, expected", [
    ([], (0, 0, 0)),
    ([7] * 99 + [9], (9, 9, 9)),  # the bucket's upper bound, never above the slowest seen
    ([3] * 50 + [40] * 40 + [700] * 9 + [90_000], (5, 50, 1_000)),
    ([3] * 98 + [61_000, 90_000], (5, 5, 90_000)),  # past the last bucket: the slowest seen
    ([4] * 60 + [30] * 35 + [45] * 5, (5, 45, 45)),
])
def test_latency_percentiles_from_the_stored_buckets(engine, latencies, expected):
    topup_sku(engine)
    register(engine, supplier("alpha", route()))
    for latency in latencies:
        record(engine, "alpha", "SUCCEEDED", latency_ms=latency, cost_micros=9_000_000)
    [stats] = supplier_stats.report(engine, "alpha").skus or [None]
    if not latencies:
        assert stats is None
        return
    assert (stats.latency_p50_ms, stats.latency_p90_ms, stats.latency_p99_ms) == expected
    assert stats.cost_micros == 9_000_000 * len(latencies) and stats.currency == "CNY"


def test_counts_by_outcome_late_callbacks_and_cost(engine):
    topup_sku(engine)
    register(engine, supplier("alpha", route()))
    for result in ["SUCCEEDED", "SUCCEEDED", "FAILED", "UNKNOWN", "NOT_FOUND"]:
        record(engine, "alpha", result, cost_micros=5 if result == "SUCCEEDED" else 0)
    record(engine, "alpha", "SUCCEEDED", cost_micros=5, late=True)
    report = supplier_stats.report(engine, "alpha")
    [stats] = report.skus
    assert (stats.attempts, stats.successes, stats.failures, stats.unknown, stats.not_found,
            stats.late_callbacks, stats.cost_micros) == (5, 2, 1, 1, 1, 1, 15)
    assert stats.success_rate == pytest.approx(0.4)
    assert report.circuit == CircuitState.CLOSED and report.consecutive_failures == 2
    assert supplier_stats.report(engine, "nobody") is None


def test_the_metrics_are_read_from_the_data_file(engine):
    """Whichever process recorded them: outcomes by result, latency, late callbacks, cost,
    invalid codes and the breaker's state, labelled by supplier and SKU."""
    from kamicore.metrics import SupplierCollector
    _three(engine, S.CHEAPEST)
    for _ in range(TO_OPEN):
        record(engine, "bravo", "UNKNOWN", latency_ms=2_000)
    record(engine, "alpha", "SUCCEEDED", latency_ms=40, cost_micros=9_500_000)
    record(engine, "alpha", "SUCCEEDED", latency_ms=40, cost_micros=9_500_000, late=True)
    for code_id in (1, 2, 2):
        engine.run(engine.plan(routing.record_invalid_code, (SKU, "b-1", "alpha", code_id),
                               "test", full=lambda: None))
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in SupplierCollector(engine).collect() for sample in family.samples}

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    assert value("kamicore_supplier_attempts_total", supplier="bravo", sku=SKU,
                 result="UNKNOWN") == TO_OPEN
    assert value("kamicore_supplier_attempts_total", supplier="alpha", sku=SKU,
                 result="SUCCEEDED") == 1
    assert value("kamicore_supplier_latency_seconds_bucket", supplier="alpha", sku=SKU,
                 le="0.05") == 1
    assert value("kamicore_supplier_latency_seconds_count", supplier="bravo", sku=SKU) == TO_OPEN
    assert value("kamicore_supplier_late_callbacks_total", supplier="alpha", sku=SKU) == 1
    assert value("kamicore_supplier_cost_micros_total", supplier="alpha", sku=SKU,
                 currency="CNY") == 19_000_000
    assert value("kamicore_supplier_invalid_codes_total", supplier="alpha", sku=SKU) == 2
    assert value("kamicore_supplier_circuit_state", supplier="bravo", state="OPEN") == 1
    assert value("kamicore_supplier_circuit_state", supplier="bravo", state="CLOSED") == 0
