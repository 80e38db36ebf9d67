"""Helpers of the WatchEvents tests: open a watcher, read what it got."""

from __future__ import annotations

import grpc
from kamicore.domain import events
from kamicore.v1 import events_pb2, events_pb2_grpc

from .server_harness import bearer

WATCH_TIMEOUT_SECONDS = 60.0  # a safety net: a watcher that misses an event fails, never hangs
METHOD = "/kamicore.v1.Events/WatchEvents"
CURSOR_HEADER = "kamicore-after-id"  # the headers of a watch the server took


def taken(stream) -> bool:
    """Whether the server took a WatchEvents call (its headers came); then it is cancelled:
    a watch streams until its caller ends it. False: refused (iterating raises its status)."""
    if any(name == CURSOR_HEADER for name, _ in stream.initial_metadata()):
        stream.cancel()
        return True
    return False


def type_name(value: int) -> str:
    return events.TYPES[value - 1]


def wire_type(name: str) -> int:
    return events.TYPES.index(name) + 1


def watch(over: grpc.Channel, key: str, **fields):
    """A WatchEvents call, once its headers arrived: its cursor is fixed, so every event
    committed from now on is in it. fields: of WatchEventsRequest (types by name)."""
    if "types" in fields:
        fields["types"] = [wire_type(name) for name in fields["types"]]
    call = events_pb2_grpc.EventsStub(over).WatchEvents(
        events_pb2.WatchEventsRequest(**fields), metadata=bearer(key),
        timeout=WATCH_TIMEOUT_SECONDS)
    call.initial_metadata()
    return call


def flat(call):
    """The events of a WatchEvents call, one at a time (each reply carries a page of them)."""
    for reply in call:
        assert reply.events, "a reply without events"
        yield from reply.events


def take(call, count: int) -> list[events_pb2.Event]:
    """Whole replies until they hold at least `count` events: those events."""
    got: list[events_pb2.Event] = []
    while len(got) < count:
        reply = next(call)
        assert reply.events, "a reply without events"
        got += reply.events
    return got


def until(call, last) -> list[events_pb2.Event]:
    """Events up to and including the first for which `last(event)` holds."""
    got = []
    for event in flat(call):
        got.append(event)
        if last(event):
            return got
    raise AssertionError(f"the stream ended before the awaited event: {got}")


def key_of(event: events_pb2.Event) -> tuple:
    """What an event is about: one per (type, order, SKU, code)."""
    return (type_name(event.type), event.order_id, event.sku_id, event.code_id)
