"""Each connector against a real simulated supplier process, over both wires: what kamicore
learns of a top-up or a purchase, and that the supplier really topped up once (its count).

The rule under test throughout: an answer kamicore cannot trust is UNKNOWN, never FAILED, and
the supplier may well have done the work (then a query tells)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiohttp import web

from kamicore import limits
from kamicore.connectors import Result, close_all, connector_for
from kamicore.connectors.http_callbacks import application
from kamicore.connectors.signing import now_ms, parse_callback, verify
from .server_harness import free_port
from .supplier_harness import simulated_supplier

PROTOCOLS = ["grpc", "http"]
wait_seconds = 20.0  # for a callback that is due within a fraction of a second


@pytest.fixture(scope="module")
def supplier():
    with simulated_supplier() as process:
        yield process


@pytest.fixture
def simulator(supplier):
    supplier.reset()
    return supplier


def run(coroutine_function, *arguments):
    async def body():
        try:
            return await coroutine_function(*arguments)
        finally:
            await close_all()
    return asyncio.run(body())


def top_up(endpoint, request_id, callback_url=""):
    return connector_for(endpoint).top_up(request_id, "phone-50", "+8613800000000",
                                          50_000_000, "CNY", callback_url)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_top_up_succeeds_once_and_a_query_says_so(simulator, protocol):
    async def body():
        endpoint = simulator.endpoint(protocol)
        first = await top_up(endpoint, "r-1")
        return first, await connector_for(endpoint).query("r-1")

    first, queried = run(body)
    assert first.result is Result.SUCCEEDED and first.supplier_reference
    assert queried.result is Result.SUCCEEDED
    assert queried.supplier_reference == first.supplier_reference
    state = simulator.state()
    assert state["topups"] == {"r-1": 1}
    assert state["requests"]["r-1"]["recipient"] == "+8613800000000"
    assert state["requests"]["r-1"]["amount_micros"] == 50_000_000


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_definite_failure_is_failed_and_tops_nothing_up(simulator, protocol):
    simulator.configure(failure_rate=1.0)

    async def body():
        endpoint = simulator.endpoint(protocol)
        return await top_up(endpoint, "r-1"), await connector_for(endpoint).query("r-1")

    first, queried = run(body)
    assert first.result is Result.FAILED and first.message
    assert queried.result is Result.FAILED
    assert simulator.state()["topups"] == {"r-1": 0}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unknown_request_id_is_not_found(simulator, protocol):
    outcome = run(lambda: connector_for(simulator.endpoint(protocol)).query("never-sent"))
    assert outcome.result is Result.NOT_FOUND


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_retry_tops_up_once_and_answers_as_the_first_time(simulator, protocol):
    async def body():
        endpoint = simulator.endpoint(protocol)
        concurrent = await asyncio.gather(*(top_up(endpoint, "r-1") for _ in range(5)))
        return [*concurrent, await top_up(endpoint, "r-1")]

    outcomes = run(body)
    assert {outcome.result for outcome in outcomes} == {Result.SUCCEEDED}
    assert len({outcome.supplier_reference for outcome in outcomes}) == 1
    state = simulator.state()
    assert state["topups"] == {"r-1": 1}
    assert state["requests"]["r-1"]["received"] == 6


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pending_then_a_signed_callback_reaches_the_listener(simulator, protocol):
    simulator.configure(pending_rate=1.0, late_callback_ms=50)
    received = []

    async def body():
        arrived = asyncio.Event()

        async def handler(supplier_id, timestamp_ms, payload, signature):
            received.append((supplier_id,
                             verify(simulator.secret, timestamp_ms, payload, signature, now_ms()),
                             parse_callback(payload)))
            arrived.set()
            return 200, "accepted"

        runner = web.AppRunner(application(handler))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/callbacks/sim"
        try:
            endpoint = simulator.endpoint(protocol)
            first = await top_up(endpoint, "r-1", url)
            await asyncio.wait_for(arrived.wait(), wait_seconds)
            return url, first, await connector_for(endpoint).query("r-1")
        finally:
            await runner.cleanup()

    url, first, queried = run(body)
    assert first.result is Result.PENDING
    [(supplier_id, reason, callback)] = received
    assert supplier_id == "sim" and reason is None
    assert callback.request_id == "r-1" and callback.result is Result.SUCCEEDED
    assert callback.supplier_reference == first.supplier_reference
    assert queried.result is Result.SUCCEEDED
    state = simulator.state()
    assert state["topups"] == {"r-1": 1}
    assert [(sent["url"], sent["http_status"]) for sent in state["callbacks_sent"]] \
        == [(url, 200)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_timeout_is_unknown_although_the_supplier_topped_up(simulator, protocol):
    simulator.configure(timeout_rate=1.0, hang_ms=3000)

    async def body():
        timed_out = await top_up(simulator.endpoint(protocol, timeout_ms=300), "r-1")
        queried = await connector_for(simulator.endpoint(protocol)).query("r-1")
        retried = await top_up(simulator.endpoint(protocol), "r-1")
        return timed_out, queried, retried

    timed_out, queried, retried = run(body)
    assert timed_out.result is Result.UNKNOWN
    assert queried.result is Result.SUCCEEDED
    assert retried.result is Result.SUCCEEDED  # answered as before, no second hang
    assert simulator.state()["topups"] == {"r-1": 1}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_caller_that_gives_up_on_a_slow_supplier_leaves_the_top_up_done(simulator, protocol):
    simulator.configure(latency_ms=2000)
    outcome = run(lambda: top_up(simulator.endpoint(protocol, timeout_ms=200), "r-1"))
    assert outcome.result is Result.UNKNOWN
    assert simulator.state()["topups"] == {"r-1": 1}  # done on arrival, as a supplier would
    simulator.configure(latency_ms=0)
    queried = run(lambda: connector_for(simulator.endpoint(protocol)).query("r-1"))
    assert queried.result is Result.SUCCEEDED


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_lost_on_the_way_is_unknown_then_not_found(simulator, protocol):
    simulator.configure(drop_rate=1.0, hang_ms=3000)

    async def body():
        lost = await top_up(simulator.endpoint(protocol, timeout_ms=300), "r-1")
        return lost, await connector_for(simulator.endpoint(protocol)).query("r-1")

    lost, queried = run(body)
    assert lost.result is Result.UNKNOWN
    assert queried.result is Result.NOT_FOUND  # only now may kamicore try another supplier
    assert simulator.state()["topups"] == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_badly_signed_answer_is_unknown(simulator, protocol):
    simulator.configure(bad_signature_rate=1.0)
    outcome = run(lambda: top_up(simulator.endpoint(protocol), "r-1"))
    assert outcome.result is Result.UNKNOWN
    assert "signature" in outcome.message
    assert simulator.state()["topups"] == {"r-1": 1}  # it did happen: a query would tell


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_call_signed_with_the_wrong_secret_is_refused_and_unknown(simulator, protocol):
    endpoint = simulator.endpoint(protocol, secret=b"not the shared secret")
    outcome = run(lambda: top_up(endpoint, "r-1"))
    assert outcome.result is Result.UNKNOWN
    state = simulator.state()
    assert state["refused_calls"] == 1 and state["topups"] == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_supplier_that_is_not_there_is_unknown(simulator, protocol):
    address = f"127.0.0.1:{free_port()}"
    endpoint = simulator.endpoint(protocol)
    endpoint = type(endpoint)(endpoint.supplier_id, protocol, address, 1000, endpoint.secret)
    outcome = run(lambda: top_up(endpoint, "r-1"))
    assert outcome.result is Result.UNKNOWN and outcome.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_purchase_codes_returns_fresh_codes_once_per_request_id(simulator, protocol):
    simulator.configure(unit_cost_micros=42_000_000, currency="USD")

    async def body():
        connector = connector_for(simulator.endpoint(protocol))
        first = await connector.purchase_codes("p-1", "steam-50", 5)
        again = await connector.purchase_codes("p-1", "steam-50", 5)
        other = await connector.purchase_codes("p-2", "steam-50", 5)
        return first, again, other

    first, again, other = run(body)
    assert first.result is Result.SUCCEEDED and len(set(first.codes)) == 5
    assert first.batch_id and first.unit_cost_micros == 42_000_000 and first.currency == "USD"
    assert first.valid_until_ms > now_ms()
    assert again.codes == first.codes and again.batch_id == first.batch_id
    assert not set(other.codes) & set(first.codes) and other.batch_id != first.batch_id
    assert "codes=<5 codes>" in repr(first) and first.codes[0] not in repr(first)
    purchases = simulator.state()["purchases"]
    assert purchases["p-1"]["codes_sha256"] == [hashlib.sha256(code.encode()).hexdigest()
                                                for code in first.codes]
    assert first.codes[0] not in str(simulator.state()) + simulator.log()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_largest_purchase_arrives_whole(simulator, protocol):
    outcome = run(lambda: connector_for(simulator.endpoint(protocol)).purchase_codes(
        "p-1", "steam-50", limits.supplier_codes_per_purchase_max))
    assert outcome.result is Result.SUCCEEDED
    assert len(set(outcome.codes)) == limits.supplier_codes_per_purchase_max


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_refused_purchase_is_failed_without_codes(simulator, protocol):
    simulator.configure(products=["steam-50"])
    outcome = run(lambda: connector_for(simulator.endpoint(protocol)).purchase_codes(
        "p-1", "no-such-product", 5))
    assert outcome.result is Result.FAILED and outcome.codes == ()


def test_connectors_are_shared_per_endpoint_and_renewed_when_it_changes(simulator):
    async def body():
        endpoint = simulator.endpoint("http")
        first = connector_for(endpoint)
        same = connector_for(simulator.endpoint("http"))
        longer = connector_for(simulator.endpoint("http", timeout_ms=5000))
        rekeyed = connector_for(simulator.endpoint("http", timeout_ms=5000, secret=b"k"))
        grpc = connector_for(simulator.endpoint("grpc", supplier_id="other"))
        return first, same, longer, rekeyed, grpc, await top_up(longer.endpoint, "r-1")

    first, same, longer, rekeyed, grpc, outcome = run(body)
    assert first is same and longer is not first and rekeyed is not longer
    assert grpc is not rekeyed and grpc.endpoint.supplier_id == "other"
    assert outcome.result is Result.SUCCEEDED
