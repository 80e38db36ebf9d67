"""WatchEvents over a server of two workers: a watcher hears of orders another worker commits
(its own worker commits nothing meanwhile), a watch holds its key's share of the worker, and a
watcher that stops reading is cut off with RESOURCE_EXHAUSTED naming the last event it was sent,
while orders go on being served.

Which worker a connection reached is found out with the fair-use limit, which is per worker:
with key_in_flight_rpcs_max = 1, a key whose watch is open on a worker is refused there, so a
connection on which the same key's next call is answered is on the OTHER worker."""

from __future__ import annotations

import grpc
import pytest
from kamicore.domain.risk_rules import DEFAULT_RULES
from kamicore.v1 import catalog_pb2, events_pb2, events_pb2_grpc
from kamicore_client import Client

from .e2e_support import metric_samples, metric_value, rpc_error, uid, wait_until
from .events_support import METHOD, flat, take, type_name, until, watch
from .server_harness import Client as Stubs
from .server_harness import Server, bearer, buy, risk_settings_file, stocked_sku

WRITE_TIMEOUT_SECONDS = 1.0
ORDERS_MADE = 30  # while a watcher reads nothing: far more events than its window holds
FRESH_CONNECTIONS_MAX = 32  # fresh connections tried to reach the other worker (2^-31 to fail)
# a client that reads nothing: it offers the server a flow-control window of about one small
# message, and never lets it grow (no BDP probing)
NON_READER_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    base = tmp_path_factory.mktemp("events-workers")
    rules = {**DEFAULT_RULES, "rules": [rule for rule in DEFAULT_RULES["rules"]
                                        if rule["kind"] not in ("velocity", "quantity")]}
    running = Server(base / "data", base, "events-workers", settings={
        "config": str(risk_settings_file(base / "kamicore.toml", rules)),
        "key_in_flight_rpcs_max": "1",
        "watch_write_timeout_seconds": str(WRITE_TIMEOUT_SECONDS)}).start()
    try:
        yield running
    finally:
        assert running.stop() == 0, running.logs()[-3000:]


def _elsewhere(server: Server, key: str) -> grpc.Channel:
    """A connection to the worker other than the one where `key` has a watch open."""
    for _ in range(FRESH_CONNECTIONS_MAX):
        channel = server.channel(fresh=True)
        try:
            Stubs(channel, key).catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id="none"))
            return channel
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            assert "key_in_flight_rpcs_max" in error.details(), error
            channel.close()
    raise AssertionError("every fresh connection reached the watcher's worker")


def _scene(server: Server, prefix: str, codes: int) -> tuple[str, str, str]:
    """(a SKU with `codes` codes, an admin key to watch with, a storefront key to buy with)."""
    sku = uid(prefix)
    stocked_sku(server.client(server.admin_key), sku, codes)
    return sku, server.create_key("admin")[0], server.create_key("storefront", "web")[0]


def _order_events(orders: list[str]) -> list[tuple[str, str]]:
    return [(kind, order) for order in orders
            for kind in ("order.created", "order.paid", "order.delivered")]


def _seen(got) -> list[tuple[str, str]]:
    return [(type_name(event.type), event.order_id) for event in got]


def _cut_off(server: Server) -> float:
    return metric_value(metric_samples(server.metrics()), "kamicore_event_watchers_cut_off_total",
                        reason="slow_reader")


def test_a_watcher_hears_of_orders_committed_by_the_other_worker(workers):
    sku, watcher_key, shop_key = _scene(workers, "ev-workers", 4)
    here = watch(workers.channel(fresh=True), watcher_key, skus=[sku], from_now=True)
    shop = Stubs(_elsewhere(workers, watcher_key), shop_key)
    orders = [buy(shop, sku, account=f"buyer-{n}").order.order_id for n in range(2)]
    got = until(here, lambda event: type_name(event.type) == "order.delivered"
                and event.order_id == orders[-1])
    assert _seen(got) == _order_events(orders)
    here.cancel()


def test_a_watcher_that_stops_reading_is_cut_off_and_told_where_to_resume(workers):
    sku, slow_key, shop_key = _scene(workers, "ev-slow", ORDERS_MADE)
    channel = grpc.insecure_channel(workers.target, options=NON_READER_OPTIONS)
    slow = watch(channel, slow_key, skus=[sku], from_now=True)
    before = _cut_off(workers)
    shop = workers.client(shop_key, fresh=True)
    for n in range(ORDERS_MADE):  # every order is served while the watcher reads nothing
        buy(shop, sku, account=f"buyer-{n}")

    wait_until(lambda: _cut_off(workers) > before, 30, "the watcher to be cut off")
    received = []
    with pytest.raises(grpc.RpcError) as ended:
        received.extend(flat(slow))  # keeps what came before the status
    error = ended.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    assert received and len(received) < 3 * ORDERS_MADE, len(received)
    assert f"the last event sent on this stream is {received[-1].id} " in error.details(), \
        error.details()
    resumed = watch(workers.channel(fresh=True), slow_key, skus=[sku], after_id=received[-1].id)
    rest = take(resumed, 3 * ORDERS_MADE - len(received))
    assert len({event.id for event in received + rest}) == 3 * ORDERS_MADE
    resumed.cancel()
    channel.close()


def test_the_python_clients_watch_resumes_by_itself_after_being_cut_off(workers):
    sku, watcher_key, shop_key = _scene(workers, "ev-slow-sdk", ORDERS_MADE)
    shop = workers.client(shop_key, fresh=True)
    before = _cut_off(workers)
    with Client(workers.target, watcher_key, options=NON_READER_OPTIONS) as client, \
            client.watch_events(skus=[sku], from_now=True) as stream:
        orders = [buy(shop, sku, account=f"buyer-{n}").order.order_id
                  for n in range(ORDERS_MADE)]
        wait_until(lambda: _cut_off(workers) > before, 30, "the watcher to be cut off")
        got = [next(stream) for _ in range(3 * ORDERS_MADE)]
    assert _seen(got) == _order_events(orders)


def test_a_watch_holds_its_keys_share_of_the_worker(workers):
    """It is a call in flight like any other: with one call per key and worker, the key's next
    call on that worker is refused RESOURCE_EXHAUSTED; once the watch ends, it is answered."""
    key, _ = workers.create_key("admin")
    channel = workers.channel(fresh=True)
    watcher = watch(channel, key, from_now=True)
    stub = events_pb2_grpc.EventsStub(channel)
    refused = rpc_error(lambda: next(stub.WatchEvents(
        events_pb2.WatchEventsRequest(from_now=True), metadata=bearer(key), timeout=30)))
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
    watcher.cancel()
    wait_until(lambda: metric_value(metric_samples(workers.metrics()), "kamicore_rpcs_total",
                                    method=METHOD, code="CANCELLED"), 30, "the watch to end")
    Stubs(channel, key).catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id="none"))


def test_a_server_that_stops_ends_its_watchers_at_once_unavailable(tmp_path):
    """Not after the grace period given to calls in flight (here longer than the harness waits
    for a stop before it kills): a watcher would never finish by itself."""
    server = Server(tmp_path / "data", tmp_path, "events-stop", workers=1,
                    settings={"grace_seconds": "600"}).start()
    channel = grpc.insecure_channel(server.target)  # not the harness's: stop() closes those
    try:
        watcher = watch(channel, server.admin_key, from_now=True)
        assert server.stop() == 0, server.logs()[-3000:]
        error = rpc_error(next, watcher)
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error
        assert error.details().startswith("the server is shutting down"), error.details()
    finally:
        channel.close()
        server.kill()
