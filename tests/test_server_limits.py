"""Fair use of a worker, over a real server: calls beyond in_flight_rpcs_max get
RESOURCE_EXHAUSTED right away; one key may hold only its share of them and key_streams_max open
streams, so it cannot starve other keys; a stream whose client sends nothing for
stream_idle_seconds is ended with UNAVAILABLE and its slot freed; and under overload every
refusal is a RESOURCE_EXHAUSTED that /metrics counts, never a silent CANCELLED."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys

import grpc
import pytest

from kamicore.v1 import (
    catalog_pb2, catalog_pb2_grpc, inventory_pb2, inventory_pb2_grpc, redemption_pb2,
    redemption_pb2_grpc,
)

from .e2e_support import metric_samples, metric_value
from .server_harness import Server, bearer, create_sku, import_requests, new_codes
from .test_server_tls import start, stop, wait_serving

PUSHBACK = "grpc-retry-pushback-ms"
REDEEM = "/kamicore.v1.Redemption/Redeem"
REDEEM_STREAM = "/kamicore.v1.Redemption/RedeemStream"
IMPORT = "/kamicore.v1.Inventory/ImportCodes"
# the idle timeout of the `streams` server, and how long a test waits for what it causes
IDLE_SECONDS = 1.0
WAIT_SECONDS = 30.0
OVERLOAD_CALLS = 3000  # concurrent unary Redeem calls; grpc-core's own queue starts at 1,000


def test_calls_beyond_the_in_flight_limit_are_refused(tmp_path):
    process, port = start(tmp_path, {"KAMICORE_IN_FLIGHT_RPCS_MAX": "2",
                                     "KAMICORE_KEY_IN_FLIGHT_RPCS_MAX": "2"})
    try:
        wait_serving(lambda: grpc.insecure_channel(f"127.0.0.1:{port}"))
        demo = subprocess.run([sys.executable, "-m", "kamicore.cli", "--data-dir",
                               str(tmp_path / "data"), "demo"], capture_output=True, text=True,
                              check=True).stdout
        pos_key = json.loads(demo[:demo.index("\n}\n") + 3])["keys"]["pos"]
        asyncio.run(_three_streams(port, pos_key))
    finally:
        stop(process)


async def _three_streams(port: int, key: str) -> None:
    metadata = [("authorization", f"Bearer {key}")]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = redemption_pb2_grpc.RedemptionStub(channel)
        open_streams = []
        for number in range(2):  # two streams held open: two calls in flight
            stream = stub.RedeemStream(metadata=metadata)
            await stream.write(redemption_pb2.RedeemRequest(code="NOPE-0000-0000",
                                                            request_id=f"held-{number}"))
            reply = await stream.read()
            assert reply.status == redemption_pb2.REDEEM_STATUS_NOT_FOUND
            open_streams.append(stream)
        try:
            await stub.VerifyCode(redemption_pb2.VerifyCodeRequest(code="NOPE-1"),
                                  metadata=metadata, timeout=10)
            raise AssertionError("a third call in flight was admitted")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "in flight" in error.details()
        for stream in open_streams:
            await stream.done_writing()
            assert await stream.read() == grpc.aio.EOF
        # with the streams closed there is room again
        reply = await stub.VerifyCode(redemption_pb2.VerifyCodeRequest(code="NOPE-1"),
                                      metadata=metadata, timeout=10)
        assert reply.status == redemption_pb2.VERIFY_STATUS_NOT_FOUND


# -- servers with small limits, one worker each --------------------------------------------------

def _server(tmp_path_factory, name: str, settings: dict) -> Server:
    base = tmp_path_factory.mktemp(name)
    return Server(base / "data", base, name, settings=settings, workers=1).start()


@pytest.fixture(scope="module")
def shares(tmp_path_factory):
    """A worker of 8 slots, 4 of them at most for any one key."""
    running = _server(tmp_path_factory, "shares", {"in_flight_rpcs_max": "8",
                                                   "key_in_flight_rpcs_max": "4"})
    try:
        yield running
    finally:
        assert running.stop() == 0, running.logs()[-3000:]


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """Two open streams per key, ended after IDLE_SECONDS without a message; 16 slots that
    one key may fill (so overload meets the worker's limit)."""
    running = _server(tmp_path_factory, "streams", {
        "in_flight_rpcs_max": "16", "key_in_flight_rpcs_max": "16", "key_streams_max": "2",
        "stream_idle_seconds": str(IDLE_SECONDS)})
    try:
        yield running
    finally:
        assert running.stop() == 0, running.logs()[-3000:]


class Streams:
    """RedeemStream calls of one key over one channel (so over one connection: one worker)."""

    def __init__(self, channel, key: str):
        self.stub = redemption_pb2_grpc.RedemptionStub(channel)
        self.key = key

    async def open(self, request_id: str):
        """A stream that answered its first request, or the AioRpcError that refused it."""
        stream = self.stub.RedeemStream(metadata=bearer(self.key), timeout=WAIT_SECONDS)
        await stream.initial_metadata()  # sent at once, on admission or with the refusal
        if stream.done():
            return await _error_of(stream)
        try:
            await stream.write(redemption_pb2.RedeemRequest(code="NOPE-0000-0000",
                                                            request_id=request_id))
            reply = await stream.read()
        except grpc.aio.AioRpcError as error:
            return error
        assert reply.status == redemption_pb2.REDEEM_STATUS_NOT_FOUND, reply
        return stream


async def _error_of(call) -> grpc.aio.AioRpcError:
    code = await call.code()
    assert code != grpc.StatusCode.OK, "the call ended OK"
    return grpc.aio.AioRpcError(code, await call.initial_metadata(),
                                await call.trailing_metadata(), await call.details())


async def _close(stream) -> None:
    await stream.done_writing()
    assert await stream.read() is grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK


def _refused(outcome, limit_words: str) -> bool:
    if not isinstance(outcome, grpc.aio.AioRpcError):
        return False
    assert outcome.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    assert limit_words in outcome.details() and "retry" in outcome.details(), outcome.details()
    assert PUSHBACK in dict(outcome.trailing_metadata() or ()), outcome.trailing_metadata()
    return True


# -- one key cannot take a worker -------------------------------------------------------------

def test_a_key_holding_its_share_of_idle_streams_leaves_room_for_other_keys(shares):
    pos, _ = shares.create_key("pos", "T-HOG")
    shop, _ = shares.create_key("storefront", "web")
    asyncio.run(_hog_then_shop(shares, pos, shop))
    samples = metric_samples(shares.metrics())
    assert metric_value(samples, "kamicore_rpcs_limited_total", method=REDEEM_STREAM,
                        limit="key_in_flight_rpcs_max") == 4
    assert metric_value(samples, "kamicore_rpcs_total", method=REDEEM_STREAM,
                        code="RESOURCE_EXHAUSTED") == 4


async def _hog_then_shop(server: Server, pos: str, shop: str) -> None:
    # one channel: every call on one connection, so on the one worker the hog is filling
    async with server.aio_channel() as channel:
        hog = Streams(channel, pos)
        outcomes = [await hog.open(f"hog-{number}") for number in range(8)]  # the whole worker
        held = [outcome for outcome in outcomes if not _refused(outcome, "calls in flight")]
        assert len(held) == 4, outcomes
        catalog = catalog_pb2_grpc.CatalogStub(channel)
        for _ in range(10):
            reply = await catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id="no-such-sku"),
                                         metadata=bearer(shop), timeout=WAIT_SECONDS)
            assert reply.status == catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND
        for stream in held:
            await _close(stream)
        again = await hog.open("hog-again")  # its slots came back
        assert isinstance(again, grpc.aio.StreamStreamCall), again
        await _close(again)


def test_a_key_may_open_only_key_streams_max_streams(streams):
    pos, _ = streams.create_key("pos", "T-STREAMS")
    asyncio.run(_three_streams_of_two(streams, pos))
    samples = metric_samples(streams.metrics())
    assert metric_value(samples, "kamicore_rpcs_limited_total", method=REDEEM_STREAM,
                        limit="key_streams_max") >= 1


async def _three_streams_of_two(server: Server, pos: str) -> None:
    async with server.aio_channel() as channel:
        pos_streams = Streams(channel, pos)
        first, second = await pos_streams.open("first"), await pos_streams.open("second")
        assert _refused(await pos_streams.open("third"), "streams open")
        await _close(first)
        third = await pos_streams.open("third-again")
        assert isinstance(third, grpc.aio.StreamStreamCall), third
        for stream in (second, third):
            await _close(stream)


# -- idle streams end -------------------------------------------------------------------------

def test_an_idle_stream_is_ended_unavailable_and_its_slot_freed(streams):
    pos, _ = streams.create_key("pos", "T-IDLE")
    before = metric_samples(streams.metrics())
    asyncio.run(_idle_stream(streams, pos))
    after = metric_samples(streams.metrics())
    for name, labels in (("kamicore_rpcs_limited_total", {"limit": "stream_idle_seconds"}),
                         ("kamicore_rpcs_total", {"code": "UNAVAILABLE"})):
        assert (metric_value(after, name, method=REDEEM_STREAM, **labels)
                - metric_value(before, name, method=REDEEM_STREAM, **labels)) == 1


async def _idle_stream(server: Server, pos: str) -> None:
    async with server.aio_channel() as channel:
        pos_streams = Streams(channel, pos)
        idle = await pos_streams.open("then-silent")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await idle.read()  # nothing more comes: the server ends it
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"no message on this stream for {IDLE_SECONDS:g} s" in ended.value.details()
        # its slot is free: the key opens its two streams again
        both = [await pos_streams.open("after-1"), await pos_streams.open("after-2")]
        assert all(isinstance(stream, grpc.aio.StreamStreamCall) for stream in both), both
        for stream in both:
            await _close(stream)


def test_an_idle_import_stream_is_ended_and_a_new_one_imports(streams):
    create_sku(streams.client(streams.admin_key), "idle-import")
    asyncio.run(_idle_import(streams))


async def _idle_import(server: Server) -> None:
    header = inventory_pb2.ImportHeader(sku_id="idle-import", batch_id="idle-batch")
    codes = new_codes(3)
    async with server.aio_channel() as channel:
        inventory = inventory_pb2_grpc.InventoryStub(channel)
        call = inventory.ImportCodes(metadata=bearer(server.admin_key), timeout=WAIT_SECONDS)
        await call.write(inventory_pb2.ImportCodesRequest(header=header))
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call  # the client never sends a chunk nor closes
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
        assert "open a new stream" in ended.value.details()
        reply = await inventory.ImportCodes(import_requests(header, codes),
                                            metadata=bearer(server.admin_key),
                                            timeout=WAIT_SECONDS)
        assert (reply.status, reply.imported) == (inventory_pb2.IMPORT_STATUS_OK, 3), reply


def test_a_stream_that_keeps_sending_outlives_the_idle_timeout(streams):
    pos, _ = streams.create_key("pos", "T-BUSY")
    asyncio.run(_busy_stream(streams, pos))


async def _busy_stream(server: Server, pos: str) -> None:
    async with server.aio_channel() as channel:
        stream = await Streams(channel, pos).open("busy-0")
        for number in range(1, 11):  # 2 idle timeouts, a message every fifth of one
            await asyncio.sleep(IDLE_SECONDS / 5)
            # a malformed code is never looked up: no miss, so no slow-down of the answers
            await stream.write(redemption_pb2.RedeemRequest(code="",
                                                            request_id=f"busy-{number}"))
            reply = await stream.read()
            assert reply.request_id == f"busy-{number}", reply
        await _close(stream)


# -- overload is refused and counted ----------------------------------------------------------

def test_overload_is_refused_with_resource_exhausted_and_every_refusal_counted(streams):
    pos, _ = streams.create_key("pos", "T-FLOOD")
    before = metric_samples(streams.metrics())
    codes, pushbacks = asyncio.run(_flood(streams, pos))
    after = metric_samples(streams.metrics())

    def counted(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes  # never CANCELLED
    assert codes["RESOURCE_EXHAUSTED"] > 0, codes
    assert pushbacks == codes["RESOURCE_EXHAUSTED"], "every refusal carries a retry hint"
    for code, count in codes.items():
        assert counted("kamicore_rpcs_total", method=REDEEM, code=code) == count, code
    assert sum(counted("kamicore_rpcs_limited_total", method=REDEEM, limit=limit)
               for limit in ("in_flight_rpcs_max", "key_in_flight_rpcs_max")) == (
        codes["RESOURCE_EXHAUSTED"])


async def _flood(server: Server, pos: str) -> tuple[collections.Counter, int]:
    codes, pushbacks = collections.Counter(), 0
    async with server.aio_channel() as channel:
        redeem = redemption_pb2_grpc.RedemptionStub(channel).Redeem

        async def one(number: int) -> None:
            nonlocal pushbacks
            try:
                await redeem(redemption_pb2.RedeemRequest(code=f"NOPE-{number:08d}",
                                                          request_id=f"flood-{number}"),
                             metadata=bearer(pos), timeout=WAIT_SECONDS)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] += 1
                pushbacks += PUSHBACK in dict(error.trailing_metadata() or ())

        await asyncio.gather(*(one(number) for number in range(OVERLOAD_CALLS)))
    return codes, pushbacks
