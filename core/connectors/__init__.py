"""Talking to suppliers: the adapter interface (base.py), one connector per wire (gRPC
SupplierGateway, HTTP+JSON), signing (signing.py), the HTTP callback listener
(http_callbacks.py) and a simulated supplier (simulator.py) for tests, benchmarks and demos.

A wire layer beside kamicore.grpc: it may use the generated kamicore.supplier.v1 modules, and
knows nothing of the engine. Calls are made outside any write transaction (the dispatcher
records an attempt first, calls, then commits the outcome).
"""

from __future__ import annotations

import asyncio
import weakref

from kamicore.connectors.base import Connector, Endpoint, Outcome, Purchase, Result

__all__ = ["Connector", "Endpoint", "Outcome", "Purchase", "Result", "close_all",
           "connector_for"]

# per event loop (channels and sessions belong to one), per supplier: the connector and the
# endpoint it was made for
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CLOSING: set = set()  # tasks closing replaced connectors (kept so they are not collected)
close_grace_seconds = 1.0  # a replaced connector closes this long after its calls' deadline


def _make(endpoint: Endpoint) -> Connector:
    if endpoint.protocol == "grpc":
        from kamicore.connectors.grpc_connector import GrpcConnector
        return GrpcConnector(endpoint)
    from kamicore.connectors.http_connector import HttpConnector
    return HttpConnector(endpoint)


def connector_for(endpoint: Endpoint) -> Connector:
    """The connector of `endpoint` in the running event loop: one per supplier, reused while
    its endpoint (address, protocol, timeout, secret) stays the same. A changed endpoint gets a
    new connector; the old one closes once calls it has in flight have passed their deadline."""
    loop = asyncio.get_running_loop()
    connectors = _CACHE.setdefault(loop, {})
    cached = connectors.get(endpoint.supplier_id)
    if cached is not None and cached.endpoint == endpoint:
        return cached
    connector = connectors[endpoint.supplier_id] = _make(endpoint)
    if cached is not None:
        loop.call_later(cached.endpoint.timeout_ms / 1000 + close_grace_seconds,
                        _close_later, cached)
    return connector


def _close_later(connector: Connector) -> None:
    task = asyncio.ensure_future(connector.close())
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


async def close_all() -> None:
    """Close every connector of the running loop (at shutdown)."""
    connectors = _CACHE.pop(asyncio.get_running_loop(), {})
    for connector in connectors.values():
        await connector.close()
