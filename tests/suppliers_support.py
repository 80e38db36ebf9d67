"""What the supplier tests share: a SKU, suppliers with one route each, outcomes recorded."""

from __future__ import annotations

import dataclasses

from kamicore.domain import routing
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
from kamicore.domain.suppliers import Route, Supplier, Suppliers
from kamicore.statuses import DeliveryKind, RegisterSupplierStatus, RoutingStrategy

SKU = "topup-10"
SECRET = b"s3cret-signing-key-0123456789"


def topup_sku(engine, sku_id: str = SKU, strategy=RoutingStrategy.PRIORITY,
              currency: str = "CNY") -> Sku:
    sku = Sku(sku_id, "Phone credit 10", currency, 10_000_000, DeliveryKind.DIRECT_TOPUP,
              (ChannelPrice("web", 10_000_000),))
    if strategy != RoutingStrategy.PRIORITY:  # else the default
        sku = dataclasses.replace(sku, routing_strategy=strategy)
    Catalog(engine).create(sku)
    return sku


def supplier(supplier_id: str, *routes: Route, enabled: bool = True,
             secret: bytes = SECRET, protocol: str = "http") -> Supplier:
    address = "http://127.0.0.1:8080/api" if protocol == "http" else "127.0.0.1:50051"
    return Supplier(supplier_id, f"Supplier {supplier_id}", protocol, address, 2_000, enabled,
                    secret, tuple(routes))


def route(sku_id: str = SKU, cost_micros: int = 9_000_000, priority: int = 0,
          enabled: bool = True, currency: str = "CNY", product: str = "P-10") -> Route:
    return Route(sku_id, "", product, cost_micros, currency, priority, enabled)


def register(engine, *suppliers: Supplier) -> None:
    for one in suppliers:
        status, _, _ = Suppliers(engine).register(one)
        assert status == RegisterSupplierStatus.REGISTERED, (status, one)


def record(engine, supplier_id: str, result: str, latency_ms: int = 100, sku_id: str = SKU,
           cost_micros: int = 0, late: bool = False):
    """One outcome, committed -> the breaker's new state if it changed."""
    return engine.run(engine.plan(routing.record_outcome,
                                  (supplier_id, sku_id, result, latency_ms, cost_micros, late),
                                  "test", full=lambda: None))


def claim(engine, supplier_id: str) -> bool:
    return engine.run(engine.plan(routing.claim, (supplier_id,), "test", full=lambda: None))


def ranked_ids(engine, sku_id: str = SKU) -> list[str]:
    return [one.supplier_id for one in routing.ranked(engine, sku_id, engine.now_ms())]
