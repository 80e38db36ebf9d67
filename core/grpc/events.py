"""kamicore.v1.Events: WatchEvents, a resumable stream of the caller's business events.

A watcher reads the outbox itself, a page at a time after its own cursor, and writes what its
caller may see (kamicore.domain.watching) in one reply per page; caught up, it waits for the
worker's EventFeed to say that something may have been committed, here or by another worker. So
a watcher holds at most one page (limits.watch_buffered_events_max) whatever it lags, and the
outbox is the queue.

A watcher that stops reading fills gRPC's flow-control window and its write stops progressing:
after watch_write_timeout_seconds the stream ends RESOURCE_EXHAUSTED naming the last event sent
(gRPC delivers it, and every event before it, ahead of the status), so the client knows where to
resume, and nothing of the server waited for it meanwhile. The gate counts a watcher as an open
stream of its key (key_streams_max); it sends nothing after its request, and the gate's idle
timeout applies only to streams whose client sends (client streaming), so it is never ended
for being quiet.
"""

from __future__ import annotations

import asyncio

import grpc

from .. import limits
from ..domain import events, watching
from ..v1 import events_pb2, events_pb2_grpc
from .gate import principal
from .services import Services

METHOD = "/kamicore.v1.Events/WatchEvents"
CURSOR_HEADER = "kamicore-after-id"  # response header: the id the stream starts after
SLOW_READER = "watch_write_timeout_seconds"  # the limit a cut-off watcher is counted under


_WIRE_TYPES = {name: number for number, name in enumerate(events.TYPES, 1)}  # EventType order


def _type_names(values) -> list[str]:
    """EventType numbers -> events.TYPES names (the enum lists them in that order)."""
    names = []
    for value in values:
        # an unknown number stays unknown: watching.watch refuses it, naming its index
        names.append(events.TYPES[value - 1] if 1 <= value <= len(events.TYPES) else "")
    return names


def event_to_wire(event: events.Event) -> events_pb2.Event:
    return events_pb2.Event(
        id=event.id, type=_WIRE_TYPES[event.type], at_ms=event.at_ms,
        sku_id=event.sku, channel=event.channel, owner=event.owner, order_id=event.order_id,
        code_id=event.code_id, terminal=event.terminal, supplier_id=event.supplier_id,
        request_id=event.request_id, quantity=event.quantity, detail=event.detail)


class EventsService(events_pb2_grpc.EventsServicer):
    def __init__(self, services: Services):
        self.s = services
        self.feed = services.event_feed
        self.write_timeout_seconds = services.config.watch_write_timeout_seconds

    async def WatchEvents(self, request, context):
        """Writes its own replies (each write has a deadline), so it is a coroutine that the
        gate awaits rather than an iterator of replies."""
        caller = principal()
        watch = watching.watch(caller.role, caller.binding, caller.owner,
                               types=_type_names(request.types), skus=request.skus,
                               channel=request.channel)
        engine = self.s.engine
        try:
            cursor = watching.start(engine, request.after_id, request.from_now)
        except watching.OutOfRange as error:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(error))
        # headers now, naming the cursor: a client that has them knows every event committed
        # from then on is in the stream, and where to resume should it drop before one came
        await context.send_initial_metadata(((CURSOR_HEADER, str(cursor)),))
        self.feed.opened()
        self.s.metrics.watcher_opened()
        try:
            await self._follow(context, watch, cursor)
        finally:
            self.feed.closed()
            self.s.metrics.watcher_closed()

    async def _follow(self, context, watch: watching.Watch, cursor: int) -> None:
        engine, feed, metrics = self.s.engine, self.feed, self.s.metrics
        last_sent = 0
        while True:
            if feed.stopping:
                await context.abort(grpc.StatusCode.UNAVAILABLE, self._ended(
                    "the server is shutting down", last_sent, cursor))
            change = feed.next_change()
            page, after = events.read(engine, cursor, limits.watch_buffered_events_max)
            if after == cursor:  # nothing newer: wait for a commit, here or elsewhere
                await asyncio.shield(change)
                continue
            try:
                watching.check_kept(engine, cursor)
            except watching.OutOfRange as error:
                metrics.watcher_cut_off("pruned")
                await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(error))
            admitted = [event_to_wire(event) for event in page if watch.admits(event)]
            if admitted:  # the page in one write: a write costs far more than an event
                try:
                    async with asyncio.timeout(self.write_timeout_seconds):
                        await context.write(events_pb2.WatchEventsResponse(events=admitted))
                except TimeoutError:
                    metrics.watcher_cut_off("slow_reader")
                    metrics.limit(METHOD, SLOW_READER)
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._ended(
                        f"events were not read for {self.write_timeout_seconds:g} s "
                        f"({SLOW_READER})", admitted[-1].id, cursor))
                metrics.events_sent(len(admitted))
                last_sent = admitted[-1].id
            cursor = after

    @staticmethod
    def _ended(why: str, last_sent: int, cursor: int) -> str:
        """The message of a stream the server ends: where the client resumes."""
        if last_sent:
            return (f"{why}: the last event sent on this stream is {last_sent} (it arrives "
                    "before this status); resume with after_id = the last event you processed")
        return (f"{why}: no event was sent on this stream; resume with the same after_id "
                f"(events up to {cursor} were looked at)")
