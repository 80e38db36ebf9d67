"""kamicore.v1.Redemption: redeem at the till (unary, batch, stream) and verify codes.

Guessing: the engine counts a terminal's consecutive misses and locks it (see
ext/kamicore/_redemption.py); here a terminal past limits.terminal_misses_slow_min misses is
answered only after a delay that grows with them, a code never sold is answered as one that
does not exist (NOT_FOUND, code id 0: the metrics keep NOT_SOLD for operators, and count it
as a leak: the engine froze the code), and VerifyCode by a terminal counts its misses too.
"""

from __future__ import annotations

import asyncio
import collections

from .. import limits
from ..engine import InvalidArgument
from ..engine.validate import text
from ..statuses import CodeState, RedeemStatus, VerifyStatus, wire_name
from ..v1 import redemption_pb2, redemption_pb2_grpc
from .gate import actor, principal
from .services import Services
from .wire import never_as_zero


_MISSES = (RedeemStatus.NOT_FOUND, RedeemStatus.NOT_SOLD)
_UNSOLD = (CodeState.AVAILABLE, CodeState.RESERVED)


def miss_delay_seconds(misses: int) -> float:
    """How long a terminal with this many consecutive misses waits for each answer."""
    if misses < limits.terminal_misses_slow_min:
        return 0.0
    return min(limits.terminal_miss_delay_seconds_max, limits.terminal_miss_delay_seconds
               * (misses - limits.terminal_misses_slow_min + 1))


def _never_sold(code) -> bool:
    """In stock, held, or frozen before its sale (a leak): what a terminal sees as unknown."""
    return code is not None and (code.state in _UNSOLD or (
        code.state == CodeState.FROZEN and code.sold_at_ms == 0))


class RedemptionService(redemption_pb2_grpc.RedemptionServicer):
    def __init__(self, services: Services):
        self.s = services
        self._status_names = {member: wire_name(member) for member in RedeemStatus}

    def _count(self, results) -> None:
        """One metric update per status in the call, not one per code."""
        for status, count in collections.Counter(result.status for result in results).items():
            self.s.metrics.redemption(self._status_names[status], count)
            if status == RedeemStatus.NOT_SOLD:  # leaked: the engine froze them
                self.s.metrics.leak(count)

    @staticmethod
    def _response(result, request_id: str) -> redemption_pb2.RedeemResponse:
        if result.status == RedeemStatus.NOT_SOLD:  # to a terminal, as if it did not exist
            return redemption_pb2.RedeemResponse(status=RedeemStatus.NOT_FOUND,
                                                 request_id=request_id)
        return redemption_pb2.RedeemResponse(
            status=result.status, code_id=result.code_id, redeemed_at_ms=result.redeemed_at_ms,
            redeemed_by_terminal=result.redeemed_by, request_id=request_id)

    async def _slow_down(self, results, terminal: str) -> None:
        """A call with a miss waits as long as the terminal's misses say."""
        if any(result.status in _MISSES for result in results):
            delay = miss_delay_seconds(self.s.engine.terminal_state(terminal).misses)
            if delay:
                await asyncio.sleep(delay)

    async def _redeem(self, items, terminal: str):
        results = await self.s.api.redeem(items, terminal)
        self._count(results)
        await self._slow_down(results, terminal)
        return results

    async def Redeem(self, request, context):
        text(request.request_id, "request_id", limits.request_id_bytes_max)
        results = await self._redeem([(request.code, request.request_id)], principal().binding)
        return self._response(results[0], request.request_id)

    async def RedeemBatch(self, request, context):
        if len(request.items) > limits.codes_per_batch_max:
            raise InvalidArgument("items", f"has more than {limits.codes_per_batch_max} items")
        if not request.items:
            raise InvalidArgument("items", "must not be empty")
        results = await self._redeem(
            [(item.code, item.request_id) for item in request.items], principal().binding)
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
                        self._redeem([(request.code, request.request_id)], terminal))
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
                yield self._response(results[0], request_id)
            await reader  # surfaces a read error
        finally:
            reader.cancel()

    async def VerifyCode(self, request, context):
        caller = principal()
        terminal = caller.binding if caller.role == "pos" else None
        if terminal is not None and self.s.engine.terminal_state(terminal).locked:
            return redemption_pb2.VerifyCodeResponse(status=VerifyStatus.TERMINAL_LOCKED)
        [result] = self.s.engine.verify([request.code])
        if terminal is not None and (result.status == VerifyStatus.NOT_FOUND
                                     or _never_sold(result.code)):
            # a miss, counted through the writer; a code never sold is not found, to a terminal
            miss = await self.s.api.count_misses(terminal)
            if miss is not None and miss.was_locked:
                return redemption_pb2.VerifyCodeResponse(status=VerifyStatus.TERMINAL_LOCKED)
            if miss is not None and miss_delay_seconds(miss.terminal.misses):
                await asyncio.sleep(miss_delay_seconds(miss.terminal.misses))
            return redemption_pb2.VerifyCodeResponse(status=VerifyStatus.NOT_FOUND)
        response = redemption_pb2.VerifyCodeResponse(status=result.status)
        if result.code is not None:
            code = result.code
            response.MergeFrom(redemption_pb2.VerifyCodeResponse(
                state=code.state, sku_id=code.sku, valid_from_ms=code.valid_from_ms,
                valid_until_ms=never_as_zero(code.valid_until_ms),
                redeemed_at_ms=code.redeemed_at_ms, redeemed_by_terminal=code.redeemed_by,
                masked_code=code.masked, code_id=code.code_id))
        return response

    async def UnlockTerminal(self, request, context):
        result = await self.s.api.unlock_terminal(request.terminal, actor=actor())
        return redemption_pb2.UnlockTerminalResponse(
            status=result.status, misses=result.before.misses,
            locked_until_ms=result.before.locked_until_ms)
