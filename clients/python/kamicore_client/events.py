"""Watching events with the cursor kept for you: EventStream (sync) and AsyncEventStream.

`client.watch_events(...)` opens a WatchEvents stream and returns once the server has fixed its
cursor (the `kamicore-after-id` response header): every event committed from then on will be
seen. Iterating yields each event once, in id order (the server sends them a page per reply).
When the stream breaks - the connection dropped (UNAVAILABLE), the server cut off a reader that
fell behind (RESOURCE_EXHAUSTED), the server shut down, or the stream's own deadline passed - it
reconnects with after_id = the last event it yielded (or the cursor of the headers, before the
first event), so nothing is lost or repeated. It gives up, raising the error, after
RECONNECTS_MAX failures in a row with no event and no headers in between; any other error (bad
filters, a pruned cursor: OUT_OF_RANGE) is raised at once."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable
from typing import Any, cast

import grpc

from kamicore_client import policy
from kamicore_client.v1 import events_pb2

CURSOR_HEADER = "kamicore-after-id"
RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             grpc.StatusCode.DEADLINE_EXCEEDED})
RECONNECTS_MAX = 8  # failures in a row (no event, no headers between them) before giving up
# each connection's deadline; the stream then reconnects from its cursor, so a watch runs on
STREAM_DEADLINE_SECONDS = policy.STREAM_DEADLINE_SECONDS

EventType = int | str  # an EventType value, or its name as kamicore names it ("order.paid")


def event_type(value: EventType) -> events_pb2.EventType.ValueType:
    """EventType of "order.paid" (or of EVENT_TYPE_ORDER_PAID itself)."""
    if isinstance(value, str):
        return events_pb2.EventType.Value("EVENT_TYPE_" + value.upper().replace(".", "_"))
    return cast(events_pb2.EventType.ValueType, value)


def type_name(value: events_pb2.EventType.ValueType) -> str:
    """"order.paid" for EVENT_TYPE_ORDER_PAID; the inverse of event_type."""
    return events_pb2.EventType.Name(value).removeprefix("EVENT_TYPE_").lower().replace(
        "_", ".", 1)


class _Resume:
    """Where a watch resumes and whether it goes on (the part sync and asyncio share)."""

    def __init__(self, after_id: int, types: Iterable[EventType], skus: Iterable[str],
                 channel: str, from_now: bool, timeout: float | None) -> None:
        self.after_id, self.from_now = after_id, from_now
        self.types = [event_type(value) for value in types]
        self.skus, self.channel = list(skus), channel
        self.timeout = STREAM_DEADLINE_SECONDS if timeout is None else timeout
        self.failures = 0

    def request(self) -> events_pb2.WatchEventsRequest:
        return events_pb2.WatchEventsRequest(
            after_id=0 if self.from_now else self.after_id, types=self.types, skus=self.skus,
            channel=self.channel, from_now=self.from_now)

    def started(self, metadata: Any) -> None:
        """The stream's headers: from here, its cursor is the server's."""
        for key, value in metadata or ():
            if key == CURSOR_HEADER:
                self.after_id, self.from_now, self.failures = int(value), False, 0

    def yielded(self, event: events_pb2.Event) -> events_pb2.Event:
        self.after_id, self.from_now, self.failures = event.id, False, 0
        return event

    def reconnect_after(self, error: grpc.RpcError) -> float:
        """How long to wait before reconnecting; raises `error` when the watch is over."""
        self.failures += 1
        if error.code() not in RECONNECT_CODES or self.failures > RECONNECTS_MAX:
            raise error
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and self.failures == 1:
            return 0.0  # the stream's own deadline: a fresh one at once
        return policy.backoff_seconds(self.failures)


class EventStream:
    """The caller's events, each once, reconnecting as the module says. Iterate it; close it
    (or use it as a context manager) to end the watch. `after_id` is the cursor to resume
    from: the id of the last event you processed (EventStream.after_id keeps it)."""

    def __init__(self, service: Any, resume: _Resume) -> None:
        self._service, self._resume = service, resume
        self._pending: collections.deque[events_pb2.Event] = collections.deque()
        self._call: Any = self._open()

    @property
    def after_id(self) -> int:
        """The id of the last event yielded (or the cursor the stream started after)."""
        return self._resume.after_id

    def _open(self) -> Any:
        call = self._service.watch_events(self._resume.request(), timeout=self._resume.timeout)
        self._resume.started(call.initial_metadata())  # waits for the headers (or the end)
        return call

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> events_pb2.Event:
        while not self._pending:  # a reply carries a page of events; a break comes between
            if self._call is None:
                self._call = self._open()
            try:
                self._pending.extend(next(self._call).events)
            except StopIteration:  # the server ended it without a status: resume
                self._call = None
            except grpc.RpcError as error:
                self._call = None
                time.sleep(self._resume.reconnect_after(error))
        return self._resume.yielded(self._pending.popleft())

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncEventStream:
    """EventStream for asyncio: `async for event in stream`; `await stream.close()`."""

    def __init__(self, service: Any, resume: _Resume) -> None:
        self._service, self._resume = service, resume
        self._pending: collections.deque[events_pb2.Event] = collections.deque()
        self._call: Any = None

    @property
    def after_id(self) -> int:
        return self._resume.after_id

    async def open(self) -> AsyncEventStream:
        """Open the stream and wait for its headers (AsyncClient.watch_events does)."""
        call = self._service.watch_events(self._resume.request(), timeout=self._resume.timeout)
        self._call = call
        self._resume.started(await call.initial_metadata())
        return self

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> events_pb2.Event:
        while not self._pending:
            if self._call is None:
                await self.open()
            try:
                reply = await self._call.read()
                if reply is grpc.aio.EOF:
                    self._call = None  # the server ended it without a status: resume
                else:
                    self._pending.extend(reply.events)
            except grpc.RpcError as error:
                self._call = None
                await asyncio.sleep(self._resume.reconnect_after(error))
        return self._resume.yielded(self._pending.popleft())

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
