"""Client.watch_events and AsyncClient.watch_events against the shared real server: each event
once, across a connection that drops mid-stream (tests/drop_proxy.py closes it at an event the
client never gets: the client reconnects after the last event it yielded and gets it again).
(A watcher the server cuts off for reading too slowly: tests/test_e2e_events_workers.py.)"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from kamicore_client import AsyncClient, Client
from kamicore_client.events import type_name

from .drop_proxy import DropReplyProxy
from .e2e_support import uid
from .server_harness import buy, stocked_sku

KINDS = ("order.created", "order.paid", "order.delivered")


@pytest.fixture
def proxy(server):
    with DropReplyProxy(server.port) as running:
        yield running


def _expected(orders: list[str], sku: str) -> list[tuple]:
    return [(kind, order, sku) for order in orders for kind in KINDS]


def _seen(got) -> list[tuple]:
    return [(type_name(event.type), event.order_id, event.sku_id) for event in got]


def test_a_watch_goes_on_across_a_dropped_connection_with_every_event_once(proxy, keys, c):
    sku = uid("py-watch")
    stocked_sku(c.admin, sku, 4)
    with Client(proxy.address, keys["partner"]) as client, \
            client.watch_events(skus=[sku], types=KINDS, from_now=True) as stream:
        orders = [buy(c.partner, sku).order.order_id for _ in range(2)]
        got = [next(stream) for _ in range(4)]
        proxy.arm("close")  # the next event's frame closes the connection
        orders += [buy(c.partner, sku).order.order_id for _ in range(2)]
        got += [next(stream) for _ in range(8)]
        assert proxy.dropped == 1
        assert stream.after_id == got[-1].id
    assert _seen(got) == _expected(orders, sku)
    assert len({event.id for event in got}) == len(got)


def test_an_async_watch_resumes_from_its_cursor_with_every_event_once(proxy, keys, c):
    sku = uid("py-watch-aio")
    stocked_sku(c.admin, sku, 4)

    async def watch() -> tuple[list, list]:
        async with AsyncClient(proxy.address, keys["partner"]) as client:
            stream = await client.watch_events(skus=[sku], from_now=True)
            orders = [buy(c.partner, sku).order.order_id for _ in range(2)]
            got = [await anext(stream) for _ in range(4)]
            proxy.arm("close")
            orders += [buy(c.partner, sku).order.order_id for _ in range(2)]
            got += [await anext(stream) for _ in range(8)]
            await stream.close()
            assert proxy.dropped == 1
            return orders, got

    orders, got = asyncio.run(watch())
    assert _seen(got) == _expected(orders, sku)
    assert len({event.id for event in got}) == len(got)


def test_a_watch_that_cannot_go_on_raises_its_error(server, keys):
    with Client(server.target, keys["web"]) as client, pytest.raises(grpc.RpcError) as refused:
        next(client.watch_events(channel="app"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("channel:")
