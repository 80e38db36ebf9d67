"""kamicore.v1.Redemption: redeem at the till (unary, batch, stream) and verify codes."""

from __future__ import annotations

import asyncio
import collections

from .. import limits
from ..engine import InvalidArgument
from ..engine.validate import text
from ..statuses import RedeemStatus, wire_name
from ..v1 import redemption_pb2, redemption_pb2_grpc
from .gate import principal
from .services import Services
from .wire import never_as_zero


class RedemptionService(redemption_pb2_grpc.RedemptionServicer):
    def __init__(self, services: Services):
        self.s = services
        self._status_names = {member: wire_name(member) for member in RedeemStatus}

    def _count(self, results) -> None:
        """One metric update per status in the call, not one per code."""
        for status, count in collections.Counter(result.status for result in results).items():
            self.s.metrics.redemption(self._status_names[status], count)

    @staticmethod
    def _response(result, request_id: str) -> redemption_pb2.RedeemResponse:
        return redemption_pb2.RedeemResponse(
            status=result.status, code_id=result.code_id, redeemed_at_ms=result.redeemed_at_ms,
            redeemed_by_terminal=result.redeemed_by, request_id=request_id)

    async def Redeem(self, request, context):
        text(request.request_id, "request_id", limits.request_id_bytes_max)
        results = await self.s.api.redeem([(request.code, request.request_id)],
                                          principal().binding)
        self._count(results)
        return self._response(results[0], request.request_id)

    async def RedeemBatch(self, request, context):
        if len(request.items) > limits.codes_per_batch_max:
            raise InvalidArgument("items", f"has more than {limits.codes_per_batch_max} items")
        if not request.items:
            raise InvalidArgument("items", "must not be empty")
        results = await self.s.api.redeem(
            [(item.code, item.request_id) for item in request.items], principal().binding)
        self._count(results)
        return redemption_pb2.RedeemBatchResponse(results=[
            self._response(result, item.request_id)
            for result, item in zip(results, request.items, strict=True)])

    async def RedeemStream(self, request_iterator, context):
        """Requests are handed to the engine as they arrive (so they share group commits with
        everyone else's) and answered in order."""
        terminal = principal().binding
        pending: asyncio.Queue = asyncio.Queue(maxsize=limits.stream_redemptions_in_flight_max)

        async def read_ahead():
            try:
                async for request in request_iterator:
                    text(request.request_id, "request_id", limits.request_id_bytes_max)
                    future = asyncio.ensure_future(
                        self.s.api.redeem([(request.code, request.request_id)], terminal))
                    await pending.put((request.request_id, future))
            finally:
                # the end mark, unless the call is over: then nobody takes it, and waiting for
                # room in a full queue would keep this task (and the queue) forever
                if not asyncio.current_task().cancelling():
                    await pending.put(None)

        reader = asyncio.ensure_future(read_ahead())
        try:
            while (item := await pending.get()) is not None:
                request_id, future = item
                results = await future
                self._count(results)
                yield self._response(results[0], request_id)
            await reader  # surfaces a read error
        finally:
            reader.cancel()

    async def VerifyCode(self, request, context):
        [result] = self.s.engine.verify([request.code])
        response = redemption_pb2.VerifyCodeResponse(status=result.status)
        if result.code is not None:
            code = result.code
            response.MergeFrom(redemption_pb2.VerifyCodeResponse(
                state=code.state, sku_id=code.sku, valid_from_ms=code.valid_from_ms,
                valid_until_ms=never_as_zero(code.valid_until_ms),
                redeemed_at_ms=code.redeemed_at_ms, redeemed_by_terminal=code.redeemed_by,
                masked_code=code.masked, code_id=code.code_id))
        return response
