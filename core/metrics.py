"""Prometheus metrics, shared by every worker process (prometheus-client multiprocess mode).

The supervisor sets PROMETHEUS_MULTIPROC_DIR before starting workers; each worker records into
its own files there, and the supervisor's HTTP endpoint merges them, adding stock gauges read
straight from the data file at scrape time. Names carry their units. No label ever holds a code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                           1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def prepare_directory(data_dir: Path) -> Path:
    """A fresh multiprocess directory for this server run (old runs' files would add up)."""
    path = Path(data_dir) / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


class WorkerMetrics:
    """What a worker records. Created after PROMETHEUS_MULTIPROC_DIR is set."""

    def __init__(self):
        from prometheus_client import Counter, Gauge, Histogram
        self.rpcs = Counter("kamicore_rpcs_total", "RPCs by method and gRPC status code",
                            ["method", "code"])
        self.latency = Histogram("kamicore_rpc_latency_seconds", "RPC latency by method",
                                 ["method"], buckets=LATENCY_BUCKETS_SECONDS)
        self.outcomes = Counter("kamicore_outcomes_total",
                                "Business outcomes by method and status", ["method", "status"])
        self.commit_operations = Histogram(
            "kamicore_engine_commit_operations", "Operations applied per group commit",
            buckets=BATCH_BUCKETS)
        self.commit_latency = Histogram(
            "kamicore_engine_commit_seconds", "Time to apply and fsync one group commit",
            buckets=LATENCY_BUCKETS_SECONDS)
        self.redemptions = Counter("kamicore_redemptions_total", "Redemption outcomes",
                                   ["status"])
        self.leaks = Counter("kamicore_leaked_code_presentations_total",
                             "Codes presented at a till before their sale (each frozen at once: "
                             "see the audit log's leak events for the terminal)")
        self.limited = Counter("kamicore_rpcs_limited_total",
                               "Calls refused or ended by a fair-use limit, by method and limit "
                               "(the setting's name)", ["method", "limit"])
        self.bad_requests = Counter(
            "kamicore_bad_requests_total",
            "Refused requests by method and reason (kamicore.grpc.refusals.REASONS)",
            ["method", "reason"])
        self.risk_decisions = Counter(
            "kamicore_risk_decisions_total", "Orders scored by risk, by decision and whether "
            "it was a dry run", ["decision", "dry_run"])
        self.risk_rules_fired = Counter("kamicore_risk_rules_fired_total",
                                        "Risk rules that fired on an order, by rule and the "
                                        "order's decision", ["rule", "decision"])
        self.watchers = Gauge("kamicore_event_watchers", "WatchEvents streams open",
                              multiprocess_mode="livesum")
        self.events_written = Counter("kamicore_events_sent_total",
                                      "Events written to WatchEvents streams")
        self.watchers_ended = Counter(
            "kamicore_event_watchers_cut_off_total", "WatchEvents streams the server ended, by "
            "reason: slow_reader (stopped reading), pruned (fell behind the outbox's pruning)",
            ["reason"])

        self._children: dict = {}

    def _child(self, metric, *labels):
        """labels() takes a lock and builds a key on every call; a handful of children per
        worker are kept here instead."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def rpc(self, method: str, code: str, seconds: float | None = None) -> None:
        self._child(self.rpcs, method, code).inc()
        if seconds is not None:
            self._child(self.latency, method).observe(seconds)

    def limit(self, method: str, limit: str) -> None:
        """A call refused or ended by the fair-use limit named by its setting."""
        self._child(self.limited, method, limit).inc()
    def bad_request(self, method: str, reason: str) -> None:
        self._child(self.bad_requests, method, reason).inc()

    def outcome(self, method: str, status: str) -> None:
        self._child(self.outcomes, method, status).inc()

    def risk(self, assessment: dict, dry_run: bool) -> None:
        """An order scored: its decision, and each rule that fired."""
        decision = assessment["decision"]
        self._child(self.risk_decisions, decision, "true" if dry_run else "false").inc()
        for fired in assessment["fired"]:
            self._child(self.risk_rules_fired, fired["name"], decision).inc()

    def redemption(self, status: str, count: int = 1) -> None:
        self._child(self.redemptions, status).inc(count)

    def leak(self, count: int = 1) -> None:
        self.leaks.inc(count)

    def on_commit(self, operations: int, seconds: float) -> None:
        self.commit_operations.observe(operations)
        self.commit_latency.observe(seconds)

    def watcher_opened(self) -> None:
        self.watchers.inc()

    def watcher_closed(self) -> None:
        self.watchers.dec()

    def events_sent(self, count: int) -> None:
        if count:
            self.events_written.inc(count)

    def watcher_cut_off(self, reason: str) -> None:
        self._child(self.watchers_ended, reason).inc()


class SupervisorMetrics:
    """The supervisor's own metrics (it runs the hold sweeper)."""

    def __init__(self):
        from prometheus_client import Counter
        self.expired_holds = Counter("kamicore_expired_holds_total",
                                     "Unpaid orders whose hold expired and went back to stock")


class DispatcherMetrics:
    """What the dispatcher process records (kamicore.runtime.dispatcher)."""

    def __init__(self):
        from prometheus_client import Counter
        self.task_failures = Counter("kamicore_dispatcher_task_failures_total",
                                     "Dispatcher task runs that ended in an error, by task",
                                     ["task"])

    def task_failed(self, task: str) -> None:
        self.task_failures.labels(task).inc()


class TopUpMetrics:
    """Direct top-ups, recorded by the workers and the dispatcher alike (one per process:
    topup_metrics())."""

    def __init__(self):
        from prometheus_client import Counter
        self.callbacks = Counter(
            "kamicore_supplier_callbacks_total", "Supplier callbacks (HTTP and gRPC) by "
            "outcome: accepted, late (a success after the order went on: reconcile), duplicate, "
            "replayed, conflict (a second, different answer), unknown (request id), "
            "unknown_supplier, bad_signature, stale_timestamp, malformed, storage_full",
            ["outcome"])
        self.reconciliations = Counter(
            "kamicore_topup_reconciliations_total", "Top-up successes that came after their "
            "order was fulfilled by another attempt (or had failed over): topped up twice, "
            "flagged for reconciliation with the supplier")
        self.answers = Counter("kamicore_topup_answers_total", "Answers to kamicore's TopUp "
                               "and QueryTopUp calls, by call and result", ["call", "result"])

    def callback(self, outcome: str) -> None:
        self.callbacks.labels(outcome).inc()

    def reconciliation(self) -> None:
        self.reconciliations.inc()

    def answer(self, call: str, result: str) -> None:
        self.answers.labels(call, result).inc()


_topup_metrics: TopUpMetrics | None = None


def topup_metrics() -> TopUpMetrics:
    global _topup_metrics
    if _topup_metrics is None:
        _topup_metrics = TopUpMetrics()
    return _topup_metrics


class StockCollector:
    """kamicore_stock_codes{sku, state}: the engine's O(1) counters, read at scrape time."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        family = GaugeMetricFamily("kamicore_stock_codes", "Codes by SKU and state",
                                   labels=["sku", "state"])
        sellable = GaugeMetricFamily("kamicore_stock_sellable_codes",
                                     "Codes that can be sold right now", labels=["sku"])
        for sku in self.engine.skus():
            stock = self.engine.stock(sku)
            for state, count in stock.counts.items():
                family.add_metric([sku, state.name], count)
            sellable.add_metric([sku], stock.sellable)
        yield family
        yield sellable


class SupplierCollector:
    """Suppliers' figures, read from the data file at scrape time (kamicore.domain.routing
    keeps them in the commits of the outcomes, whichever process recorded them): outcomes by
    supplier, SKU and result, latency, late callbacks, cost, invalid codes, and each breaker's
    state. Labels are supplier and SKU ids only."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
        )

        from . import limits
        from .domain import routing
        from .statuses import CircuitState
        attempts = CounterMetricFamily("kamicore_supplier_attempts", "Supplier call outcomes by "
                                       "supplier, SKU and result", labels=["supplier", "sku",
                                                                           "result"])
        latency = HistogramMetricFamily("kamicore_supplier_latency_seconds", "Supplier call "
                                        "latency", labels=["supplier", "sku"])
        late = CounterMetricFamily("kamicore_supplier_late_callbacks", "Callbacks for attempts "
                                   "already settled or failed over", labels=["supplier", "sku"])
        cost = CounterMetricFamily("kamicore_supplier_cost_micros", "What successful supplier "
                                   "calls cost", labels=["supplier", "sku", "currency"])
        invalid = CounterMetricFamily("kamicore_supplier_invalid_codes", "Codes reported "
                                      "invalid, by the supplier of their batch",
                                      labels=["supplier", "sku"])
        circuit = GaugeMetricFamily("kamicore_supplier_circuit_state", "1 for the state each "
                                    "supplier's circuit breaker is in", labels=["supplier",
                                                                               "state"])
        now_ms = self.engine.now_ms()
        invalid_counts: dict = {}
        for key, value in self.engine.scan(routing.TABLE):
            kind, rest = key[:1], bytes(key[1:])
            if kind == b"c":
                state = routing.circuit_state(json.loads(value), now_ms)
                for member in CircuitState:
                    circuit.add_metric([rest.decode(), member.name], float(member == state))
            elif kind == b"i":
                labels = tuple(part.decode() for part in rest.split(b"\0")[:2])
                invalid_counts[labels] = invalid_counts.get(labels, 0) + 1
            elif kind == b"s":
                labels = [part.decode() for part in rest.split(b"\0", 1)]
                record = json.loads(value)
                for result, name in (("SUCCEEDED", "successes"), ("FAILED", "failures"),
                                     ("UNKNOWN", "unknown"), ("NOT_FOUND", "not_found")):
                    attempts.add_metric([*labels, result], record[name])
                cumulative, buckets = 0, []
                for bound, count in zip((*limits.supplier_latency_buckets_ms, None),
                                        record["buckets"], strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound is None else str(bound / 1000), cumulative))
                latency.add_metric(labels, buckets, record.get("latency_sum_ms", 0) / 1000)
                late.add_metric(labels, record["late"])
                cost.add_metric([*labels, record["currency"]], record["cost_micros"])
        for labels, count in invalid_counts.items():
            invalid.add_metric(list(labels), count)
        yield from (attempts, latency, late, cost, invalid, circuit)


class ReplenishmentCollector:
    """kamicore_replenishment_requests_open{sku} (1 while a SKU's purchase request is open)
    and kamicore_replenishment_requests_open_total, read from the data file at scrape time."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from .domain import replenishment
        requests = replenishment.open_requests(self.engine)
        per_sku = GaugeMetricFamily("kamicore_replenishment_requests_open",
                                    "Open replenishment purchase requests, by SKU",
                                    labels=["sku"])
        for record in requests:
            per_sku.add_metric([record["sku_id"]], 1)
        yield per_sku
        yield GaugeMetricFamily("kamicore_replenishment_requests_open_total",
                                "Open replenishment purchase requests", value=len(requests))


class WebhookCollector:
    """Per webhook endpoint, read from the data file at scrape time (the dispatcher commits
    the delivery state): kamicore_webhook_backlog{webhook} (event ids after its cursor: an
    upper bound of what it still has to get), kamicore_webhook_consecutive_failures{webhook}
    and kamicore_webhook_failing{webhook} (1 while it fails past its retry window: alert on
    it). Labels are webhook ids only."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from .domain import events, webhooks
        from .statuses import WebhookDeliveryState
        backlog = GaugeMetricFamily("kamicore_webhook_backlog", "Event ids committed after a "
                                    "webhook endpoint's cursor", labels=["webhook"])
        failures = GaugeMetricFamily("kamicore_webhook_consecutive_failures", "Failed POSTs "
                                     "in a row, by endpoint", labels=["webhook"])
        failing = GaugeMetricFamily("kamicore_webhook_failing", "1 while an endpoint fails "
                                    "past its retry window (its events held)", labels=["webhook"])
        head, now_ms = events.head(self.engine), self.engine.now_ms()
        for webhook in webhooks.every(self.engine):
            delivery = webhooks.delivery(self.engine, webhook.webhook_id)
            labels = [webhook.webhook_id]
            backlog.add_metric(labels, max(0, head - delivery.cursor))
            failures.add_metric(labels, delivery.consecutive_failures)
            failing.add_metric(labels, float(delivery.state(webhook, now_ms)
                                             == WebhookDeliveryState.FAILING))
        yield from (backlog, failures, failing)


def start_http(listen: str, engine) -> None:
    """Serve /metrics on host:port, merging every worker's files and the stock gauges."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(StockCollector(engine))
    registry.register(SupplierCollector(engine))
    registry.register(ReplenishmentCollector(engine))
    registry.register(WebhookCollector(engine))
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)


def worker_exited(pid: int) -> None:
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid)
