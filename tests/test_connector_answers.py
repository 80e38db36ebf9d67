"""Answers no honest supplier gives, from small in-process servers: each is UNKNOWN (never
FAILED), and the HTTP callback app hands every callback, however malformed, to its handler."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from aiohttp import ClientSession, web

from kamicore import limits
from kamicore.connectors import Endpoint, Result, close_all, connector_for
from kamicore.connectors.http_callbacks import application
from kamicore.connectors.signing import signed_headers
from kamicore.supplier.v1 import supplier_pb2

SECRET = b"k" * 32


async def _serve_http(handler):
    app = web.Application()
    app.router.add_post("/{path}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def signed(document, secret=SECRET, status=200) -> web.Response:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return web.Response(body=body, status=status, headers=signed_headers(secret, body))


def http_answers(answer):
    """What the HTTP connector makes of `answer(request_document) -> web.Response`."""
    async def body():
        async def handler(request):
            return answer(json.loads(await request.read()))
        runner, url = await _serve_http(handler)
        try:
            connector = connector_for(Endpoint("fake", "http", url, 1000, SECRET))
            return (await connector.top_up("r-1", "p", "alice", 1, "CNY", ""),
                    await connector.purchase_codes("r-1", "p", 2))
        finally:
            await close_all()
            await runner.cleanup()
    return asyncio.run(body())


TOP_UP = {"request_id": "r-1", "result": "SUCCEEDED", "supplier_reference": "x"}
PURCHASE = {"request_id": "r-1", "result": "SUCCEEDED", "codes": ["A", "B"], "batch_id": "b",
            "unit_cost_micros": "5", "currency": "cny", "valid_until_ms": 0}


def test_an_honest_answer_is_believed():
    outcome, purchase = http_answers(
        lambda request: signed(TOP_UP if "quantity" not in request else PURCHASE))
    assert outcome.result is Result.SUCCEEDED
    assert purchase.result is Result.SUCCEEDED and purchase.codes == ("A", "B")
    assert purchase.unit_cost_micros == 5 and purchase.currency == "CNY"


@pytest.mark.parametrize("answer,why", [
    (lambda r: signed(TOP_UP, status=500), "HTTP status 500"),
    (lambda r: signed(TOP_UP, status=503), "HTTP status 503"),
    (lambda r: signed(TOP_UP, status=400), "HTTP status 400"),
    (lambda r: web.Response(status=307, headers={"location": "http://127.0.0.1:9/"}),
     "HTTP status 307"),
    (lambda r: web.json_response(TOP_UP), "signature: bad_signature"),
    (lambda r: signed(TOP_UP, secret=b"other"), "signature: bad_signature"),
    (lambda r: signed(b"<html>oops</html>"), "not JSON"),
    (lambda r: signed([1, 2]), "not a JSON object"),
    (lambda r: signed({**TOP_UP, "request_id": "r-2"}), "another request id"),
    (lambda r: signed({**TOP_UP, "result": "DONE"}), "result is not one of"),
    (lambda r: signed({**TOP_UP, "result": "NOT_FOUND"}), "result is not one of"),
    (lambda r: signed(b"x" * (limits.supplier_answer_bytes_max + 1)), "too long"),
], ids=["500", "503", "400", "redirect", "unsigned", "wrong secret", "html", "array",
        "other request", "made-up result", "not_found to a top-up", "too long"])
def test_an_answer_that_cannot_be_trusted_is_unknown(answer, why):
    outcome, purchase = http_answers(answer)
    assert outcome.result is Result.UNKNOWN and why in outcome.message
    assert purchase.result is Result.UNKNOWN and purchase.codes == ()


@pytest.mark.parametrize("change,why", [
    ({"codes": ["A"]}, "1 codes for a quantity of 2"),
    ({"codes": "AB"}, "not a list of strings"),
    ({"batch_id": ""}, "batch_id"),
    ({"unit_cost_micros": -1}, "unit_cost_micros"),
    ({"unit_cost_micros": "lots"}, "unit_cost_micros"),
    ({"currency": "YUAN"}, "currency"),
    ({"valid_until_ms": True}, "valid_until_ms"),
])
def test_a_succeeded_purchase_that_does_not_add_up_is_unknown(change, why):
    _, purchase = http_answers(lambda request: signed({**PURCHASE, **change}))
    assert purchase.result is Result.UNKNOWN and why in purchase.message
    assert purchase.codes == ()


def test_a_slow_http_supplier_is_unknown_not_failed():
    async def slow(request):
        await asyncio.sleep(3)
        return signed(TOP_UP)
    outcome, _ = http_answers_with(slow)
    assert outcome.result is Result.UNKNOWN and "timeout" in outcome.message


def http_answers_with(handler):
    async def body():
        runner, url = await _serve_http(handler)
        try:
            connector = connector_for(Endpoint("fake", "http", url, 300, SECRET))
            return await connector.top_up("r-1", "p", "alice", 1, "CNY", ""), None
        finally:
            await close_all()
            await runner.cleanup()
    return asyncio.run(body())


def grpc_answers(handle):
    """What the gRPC connector makes of `handle(body, context) -> bytes` for TopUp."""
    async def top_up(body, context):
        return await handle(body, context)

    async def body():
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "kamicore.supplier.v1.SupplierGateway",
            {"TopUp": grpc.unary_unary_rpc_method_handler(top_up)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            connector = connector_for(Endpoint("fake", "grpc", f"127.0.0.1:{port}", 1000,
                                               SECRET))
            return await connector.top_up("r-1", "p", "alice", 1, "CNY", "")
        finally:
            await close_all()
            await server.stop(0)
    return asyncio.run(body())


def _response(**fields) -> bytes:
    values = {"request_id": "r-1", "result": supplier_pb2.SUPPLIER_RESULT_SUCCEEDED, **fields}
    return supplier_pb2.TopUpResponse(**values).SerializeToString()


async def _signed_in(where, data, context, secret=SECRET):
    headers = tuple(signed_headers(secret, data).items())
    if where == "initial":
        await context.send_initial_metadata(headers)
    elif where == "trailing":
        context.set_trailing_metadata(headers)
    return data


@pytest.mark.parametrize("where", ["initial", "trailing"])
def test_a_grpc_answer_signed_in_either_metadata_is_believed(where):
    async def handle(body, context):
        return await _signed_in(where, _response(), context)
    assert grpc_answers(handle).result is Result.SUCCEEDED


@pytest.mark.parametrize("handle,why", [
    (lambda body, context: _signed_in("none", _response(), context), "bad_signature"),
    (lambda body, context: _signed_in("trailing", _response(), context, b"x"), "bad_signature"),
    (lambda body, context: _signed_in("trailing", b"\xff\xff\xff", context), "not a"),
    (lambda body, context: _signed_in("trailing", _response(request_id="r-2"), context),
     "another request id"),
    (lambda body, context: _signed_in("trailing", _response(result=0), context),
     "result is not one of"),
    (lambda body, context: context.abort(grpc.StatusCode.INTERNAL, "boom"), "INTERNAL"),
    (lambda body, context: context.abort(grpc.StatusCode.UNAVAILABLE, "later"), "UNAVAILABLE"),
    (lambda body, context: asyncio.sleep(3), "DEADLINE_EXCEEDED"),
], ids=["unsigned", "wrong secret", "not protobuf", "other request", "unspecified result",
        "internal", "unavailable", "slow"])
def test_a_grpc_answer_that_cannot_be_trusted_is_unknown(handle, why):
    outcome = grpc_answers(handle)
    assert outcome.result is Result.UNKNOWN and why in outcome.message


def callbacks(send):
    """Runs the callback app with a recording handler; `send(session, url)` posts to it."""
    received = []

    async def handler(supplier_id, timestamp_ms, body, signature):
        received.append((supplier_id, timestamp_ms, body, signature))
        if body == b"crash":
            raise RuntimeError("a bug")
        return 409, "already_answered"

    async def body():
        runner = web.AppRunner(application(handler))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/callbacks/acme"
        try:
            async with ClientSession() as session:
                async with await send(session, url) as answer:
                    return answer.status, await answer.text()
        finally:
            await runner.cleanup()
    status, text = asyncio.run(body())
    return status, text, received


def test_the_callback_app_answers_the_handlers_status():
    document = b'{"request_id":"r-1","result":"SUCCEEDED"}'
    headers = signed_headers(SECRET, document, timestamp_ms=1234)
    status, text, received = callbacks(
        lambda session, url: session.post(url, data=document, headers=headers))
    assert (status, json.loads(text)) == (409, {"status": "already_answered"})
    assert received == [("acme", 1234, document, headers["x-kamicore-signature"])]


def test_a_callback_without_headers_still_reaches_the_handler_to_be_refused():
    status, _, received = callbacks(lambda session, url: session.post(
        url, data=b"{}", headers={"x-kamicore-timestamp": "yesterday"}))
    assert status == 409 and received == [("acme", 0, b"{}", "")]


def test_an_oversized_callback_is_refused_unread():
    status, _, received = callbacks(lambda session, url: session.post(
        url, data=b"x" * (limits.callback_bytes_max + 1)))
    assert status == 413 and received == []


def test_a_failing_handler_answers_500():
    status, text, _ = callbacks(lambda session, url: session.post(url, data=b"crash"))
    assert (status, json.loads(text)) == (500, {"status": "internal"})
