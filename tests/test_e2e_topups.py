"""Direct top-ups over real sockets: a real `kamicore serve` (2 workers and the dispatcher, with
its HTTP callback listener) and simulated suppliers in their own processes
(tests/supplier_harness.py), whose inspection API says how many top-ups they really performed.
Each answer kind, PENDING settled by an HTTP or a gRPC callback, bad callbacks that change
nothing, a timeout then a success (queried, no failover, one top-up), failover on a definite
failure, a late success flagged; and kill -9 of the whole server between an attempt's call and
its answer, then recovery with exactly one top-up."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from kamicore.connectors.signing import now_ms
from kamicore.v1 import orders_pb2 as O, suppliers_pb2 as S

from .e2e_support import metric_samples, metric_value, rpc_error, uid, wait_until
from .supplier_harness import simulated_supplier
from .topups_support import (
    callback_body, get, grpc_callback, order, pay, post_callback, register, topup_server,
    topup_sku, wait_state,
)

STATE = O.TopUpAttemptState


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = topup_server(tmp_path_factory.mktemp("e2e-topups")).start()
    try:
        yield running
    finally:
        assert running.stop() == 0, running.logs()[-3000:]
        # SIGTERM stopped the dispatcher too, in time and cleanly
        assert "did not stop in time" not in running.logs()
        assert "Traceback" not in running.logs(), running.logs()[-3000:]


@pytest.fixture(scope="module")
def sims():
    with simulated_supplier() as first, simulated_supplier() as second:
        yield first, second


@pytest.fixture
def sim(sims):
    """Two simulated suppliers, each back to answering at once with success."""
    for one in sims:
        one.reset()
        one.configure(failure_rate=0.0, timeout_rate=0.0, pending_rate=0.0, latency_ms=0,
                      late_callback_ms=100, duplicate_callbacks=0)
    return sims


@pytest.fixture(scope="module")
def shop(server):
    return server.client(server.create_key("storefront", "web")[0])


def callbacks_counted(server, outcome: str) -> float:
    return metric_value(metric_samples(server.metrics()), "kamicore_supplier_callbacks_total",
                        outcome=outcome)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answered_at_once_fulfils_once_and_a_retry_tops_up_nothing(server, shop, sim,
                                                                   protocol):
    sku = topup_sku(server.client(server.admin_key))
    supplier = register(server, sku, sim[0], protocol)
    placed = order(shop, sku)
    paid = pay(shop, placed)
    assert paid.status == O.CONFIRM_PAYMENT_STATUS_FULFILLED, paid
    [attempt] = paid.order.attempts
    assert (attempt.supplier_id, attempt.state) == (supplier, STATE.TOP_UP_ATTEMPT_STATE_SUCCEEDED)
    assert attempt.supplier_reference.startswith("sim-") and attempt.answered_ms
    assert paid.order.topup_state == O.TOP_UP_STATE_FULFILLED
    assert paid.order.recipient and not paid.order.reconciliation_required
    again = pay(shop, placed)
    assert again.status == O.CONFIRM_PAYMENT_STATUS_FULFILLED
    assert len(get(shop, placed.order_id).attempts) == 1
    assert sim[0].state()["topups"][attempt.request_id] == 1


def test_a_definite_failure_fails_over_and_every_failure_refunds(server, shop, sim):
    admin = server.client(server.admin_key)
    sku = topup_sku(admin)
    first = register(server, sku, sim[0], priority=0)
    second = register(server, sku, sim[1], "grpc", priority=1)
    sim[0].configure(failure_rate=1.0)
    paid = pay(shop, order(shop, sku))
    assert paid.status == O.CONFIRM_PAYMENT_STATUS_FULFILLED
    assert [(a.supplier_id, a.state) for a in paid.order.attempts] == [
        (first, STATE.TOP_UP_ATTEMPT_STATE_FAILED), (second, STATE.TOP_UP_ATTEMPT_STATE_SUCCEEDED)]
    rids = [a.request_id for a in paid.order.attempts]
    assert sim[0].state()["topups"][rids[0]] == 0 and sim[1].state()["topups"][rids[1]] == 1
    sim[1].configure(failure_rate=1.0)
    refused = pay(shop, order(shop, sku))
    assert refused.status == O.CONFIRM_PAYMENT_STATUS_FAILED_REFUND_REQUIRED
    assert [a.state for a in refused.order.attempts] == [STATE.TOP_UP_ATTEMPT_STATE_FAILED] * 2


def test_pending_then_the_http_callback_fulfils(server, shop, sim):
    sku = topup_sku(server.client(server.admin_key))
    register(server, sku, sim[0])
    sim[0].configure(pending_rate=1.0, late_callback_ms=300, duplicate_callbacks=1)
    before = callbacks_counted(server, "accepted")
    placed = order(shop, sku)
    paid = pay(shop, placed)
    assert paid.status == O.CONFIRM_PAYMENT_STATUS_PENDING
    assert paid.order.attempts[0].state == STATE.TOP_UP_ATTEMPT_STATE_PENDING
    done = wait_state(shop, placed.order_id, O.TOP_UP_STATE_FULFILLED)
    rid = done.attempts[0].request_id
    sent = wait_until(lambda: _answered_callbacks(sim[0], rid, 2), 10, "both callbacks")
    assert sorted(c["http_status"] for c in sent) == [200, 200]  # the copy: a duplicate
    assert callbacks_counted(server, "accepted") >= before + 1
    assert pay(shop, placed).status == O.CONFIRM_PAYMENT_STATUS_FULFILLED
    assert sim[0].state()["topups"][rid] == 1


def test_callbacks_that_change_nothing_over_http_and_grpc(server, shop, sim):
    admin = server.client(server.admin_key)
    sku = topup_sku(admin)
    supplier = register(server, sku, sim[0])
    sim[0].configure(pending_rate=1.0, late_callback_ms=60_000)  # the test calls back itself
    placed = order(shop, sku)
    assert pay(shop, placed).status == O.CONFIRM_PAYMENT_STATUS_PENDING
    rid = get(shop, placed.order_id).attempts[0].request_id
    secret = sim[0].secret
    key = server.create_key("supplier", supplier)[0]
    other_key = server.create_key("supplier", uid("other"))[0]
    body = callback_body(rid)
    counted = {outcome: callbacks_counted(server, outcome) for outcome in (
        "bad_signature", "stale_timestamp", "unknown", "replayed", "duplicate", "conflict")}
    # refused before anything is decided: nothing changes
    assert post_callback(server, supplier, body, b"not-the-secret-0123") == (401, "bad_signature")
    assert post_callback(server, supplier, body, secret, now_ms() - 3_600_000) == (
        401, "stale_timestamp")
    assert post_callback(server, supplier, callback_body("tu-no-such"), secret) == (404,
                                                                                    "unknown")
    assert post_callback(server, "no-such-supplier", body, secret) == (404, "unknown_supplier")
    ts = now_ms()
    assert grpc_callback(server, key, supplier, body, b"wrong-secret-01234", ts).status == \
        S.SUPPLIER_CALLBACK_STATUS_BAD_SIGNATURE
    denied = rpc_error(grpc_callback, server, other_key, supplier, body, secret, ts)
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "supplier_id" in denied.details()
    assert get(shop, placed.order_id).topup_state == O.TOP_UP_STATE_PENDING
    # the valid one over gRPC; then its replay, a fresh duplicate, a conflicting answer
    assert grpc_callback(server, key, supplier, body, secret, ts).status == \
        S.SUPPLIER_CALLBACK_STATUS_ACCEPTED
    done = get(shop, placed.order_id)
    assert done.topup_state == O.TOP_UP_STATE_FULFILLED
    assert done.attempts[0].supplier_reference == "cb-ref"
    assert grpc_callback(server, key, supplier, body, secret, ts).status == \
        S.SUPPLIER_CALLBACK_STATUS_REPLAYED
    assert post_callback(server, supplier, body, secret) == (200, "duplicate")
    assert post_callback(server, supplier, callback_body(rid, "FAILED"), secret) == (
        409, "conflict")
    assert get(shop, placed.order_id) == done
    samples = metric_samples(server.metrics())
    for outcome in counted:
        assert metric_value(samples, "kamicore_supplier_callbacks_total",
                            outcome=outcome) > counted[outcome], outcome
    malformed = rpc_error(grpc_callback, server, key, supplier, b"{}", secret, now_ms())
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert malformed.details().startswith("payload: request_id: ")


def test_a_timeout_is_queried_never_failed_over_and_tops_up_once(server, shop, sim):
    sku = topup_sku(server.client(server.admin_key))
    register(server, sku, sim[0], "grpc", timeout_ms=300, priority=0)
    register(server, sku, sim[1], priority=1)
    sim[0].configure(timeout_rate=1.0)
    placed = order(shop, sku)
    paid = pay(shop, placed)
    assert paid.status == O.CONFIRM_PAYMENT_STATUS_PENDING
    assert paid.order.attempts[0].state == STATE.TOP_UP_ATTEMPT_STATE_UNKNOWN
    done = wait_state(shop, placed.order_id, O.TOP_UP_STATE_FULFILLED)
    [attempt] = done.attempts  # no failover
    assert attempt.state == STATE.TOP_UP_ATTEMPT_STATE_SUCCEEDED
    state = sim[0].state()
    assert state["topups"][attempt.request_id] == 1
    assert state["requests"][attempt.request_id]["received"] == 1
    assert attempt.request_id not in sim[1].state()["requests"]


def test_a_success_after_a_failover_is_flagged_for_reconciliation(server, shop, sim):
    sku = topup_sku(server.client(server.admin_key))
    first = register(server, sku, sim[0], priority=0)
    register(server, sku, sim[1], priority=1)
    sim[0].configure(failure_rate=1.0)
    placed = order(shop, sku)
    assert pay(shop, placed).status == O.CONFIRM_PAYMENT_STATUS_FULFILLED
    failed = get(shop, placed.order_id).attempts[0]
    before = metric_value(metric_samples(server.metrics()), "kamicore_topup_reconciliations_total")
    # the first supplier changes its mind: it did top the account up after all
    assert post_callback(server, first, callback_body(failed.request_id), sim[0].secret) == (
        200, "late")
    flagged = get(shop, placed.order_id)
    assert flagged.topup_state == O.TOP_UP_STATE_FULFILLED and flagged.reconciliation_required
    assert [(a.state, a.reconciliation_required) for a in flagged.attempts] == [
        (STATE.TOP_UP_ATTEMPT_STATE_SUCCEEDED, True), (STATE.TOP_UP_ATTEMPT_STATE_SUCCEEDED, False)]
    after = metric_value(metric_samples(server.metrics()), "kamicore_topup_reconciliations_total")
    assert after == before + 1


def test_kill_9_between_the_call_and_its_answer_then_recovery_tops_up_once(tmp_path, sim):
    """The supplier answers after 1.5 s; the whole server is killed while the call waits.
    After a restart the dispatcher asks the supplier and completes the order, once."""
    server = topup_server(tmp_path, "killed").start()
    try:
        shop = server.client(server.create_key("storefront", "web")[0])
        sku = topup_sku(server.client(server.admin_key))
        register(server, sku, sim[0], timeout_ms=2000)
        register(server, sku, sim[1], priority=1)
        sim[0].configure(latency_ms=1500)
        placed = order(shop, sku)
        threading.Thread(target=lambda: _quietly(pay, shop, placed), daemon=True).start()
        wait_until(lambda: sim[0].state()["calls"].get("TopUp"), 10, "the TopUp call")
        server.kill()  # SIGKILL: supervisor, workers and dispatcher
        time.sleep(2)  # meanwhile the supplier completes the top-up
        server.start()
        shop = server.client(server.create_key("storefront", "web")[0])
        done = wait_state(shop, placed.order_id, O.TOP_UP_STATE_FULFILLED, timeout=30)
        [attempt] = done.attempts
        state = sim[0].state()
        assert state["topups"] == {attempt.request_id: 1}
        assert state["requests"][attempt.request_id]["received"] == 1  # queried, not re-sent
        assert sim[1].state()["topups"] == {}
    finally:
        assert server.stop() == 0, server.logs()[-3000:]


def test_the_supervisor_restarts_a_dead_dispatcher(server, shop, sim):
    """kill -9 of the dispatcher alone: a new one serves the callback listener again."""
    first = wait_until(lambda: _listener_pid(server), 10, "the callback listener's process")
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: (lambda pid: pid if pid not in (None, first) else None)(
        _listener_pid(server)), 30, "a new dispatcher")
    assert second in server._worker_pids()
    sku = topup_sku(server.client(server.admin_key))
    register(server, sku, sim[0])
    sim[0].configure(pending_rate=1.0, late_callback_ms=200)
    placed = order(shop, sku)
    assert pay(shop, placed).status == O.CONFIRM_PAYMENT_STATUS_PENDING
    wait_state(shop, placed.order_id, O.TOP_UP_STATE_FULFILLED)


def _listener_pid(server) -> int | None:
    """The child of the supervisor listening on the callback port (from /proc)."""
    port = int(server.callback_listen.rpartition(":")[2])
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "0A":  # LISTEN
            inodes.add(fields[9])
    for pid in server._worker_pids():
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return pid
    return None


def _answered_callbacks(simulator, request_id: str, count: int):
    sent = [c for c in simulator.state()["callbacks_sent"]
            if c["request_id"] == request_id and c["http_status"]]
    return sent if len(sent) >= count else None


def _quietly(call, *args):
    try:
        call(*args)
    except grpc.RpcError:
        pass  # the server was killed under it
