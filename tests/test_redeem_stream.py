"""RedeemStream's read-ahead when the call ends early: a client that sends faster than its
answers are read and then goes away (cancels, or is ended as idle) must leave nothing behind
in the worker. In process, with an engine that answers at once (over a real server the leftover
task cannot be seen from outside)."""

from __future__ import annotations

import asyncio
import types

from kamicore import auth, limits
from kamicore.engine.results import RedeemResult
from kamicore.grpc import gate
from kamicore.grpc.redemption import RedemptionService
from kamicore.statuses import RedeemStatus
from kamicore.v1 import redemption_pb2

settle_seconds = 0.05  # for the tasks on the loop to run as far as they can


async def _redeem(redemptions, terminal):
    return [RedeemResult((RedeemStatus.NOT_FOUND, 0, 0, b"")) for _ in redemptions]


def _service() -> RedemptionService:
    metrics = types.SimpleNamespace(redemption=lambda status, count: None)
    # every answer is a miss: the terminal's miss count says no slow-down yet
    engine = types.SimpleNamespace(
        terminal_state=lambda terminal: types.SimpleNamespace(misses=0))
    return RedemptionService(types.SimpleNamespace(
        api=types.SimpleNamespace(redeem=_redeem), metrics=metrics, engine=engine))


async def _requests(count: int):
    for index in range(count):
        yield redemption_pb2.RedeemRequest(code="KC-NONE", request_id=f"r-{index}")


def _readers() -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks()
            if "read_ahead" in task.get_coro().__qualname__ and not task.done()]


def test_a_stream_that_ends_early_leaves_no_reader_behind():
    async def scenario():
        gate._principal.set(auth.Principal("0123456789abcdef", "pos", "T-01", ""))
        answers = _service().RedeemStream(
            _requests(limits.stream_redemptions_in_flight_max + 10), None)
        first = await anext(answers)
        await asyncio.sleep(settle_seconds)  # the reader fills the queue: nobody reads answers
        assert first.request_id == "r-0" and _readers()
        await answers.aclose()  # the call is over
        await asyncio.sleep(settle_seconds)
        return _readers()

    assert asyncio.run(scenario()) == []
