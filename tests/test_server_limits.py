"""Per-worker limits: calls beyond in_flight_rpcs_max get RESOURCE_EXHAUSTED right away."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import grpc

from kamicore.v1 import redemption_pb2, redemption_pb2_grpc

from .test_server_tls import start, stop, wait_serving


def test_calls_beyond_the_in_flight_limit_are_refused(tmp_path):
    process, port = start(tmp_path, {"KAMICORE_IN_FLIGHT_RPCS_MAX": "2"})
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
