"""Supplier records without a server: registration is idempotent, an update replaces the whole
definition (keeping the secret when none is given), bad input is refused by field name and
changes nothing, and the signing secret is sealed at rest (absent in plain from the data file,
readable after a key rotation, bound to its supplier). A SKU's routing strategy is validated
and defaults to PRIORITY."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kamicore import limits
from kamicore.domain import suppliers as S
from kamicore.domain.catalog import Catalog, Sku
from kamicore.engine import Engine, InvalidArgument
from kamicore.keyring import DecryptionError
from kamicore.statuses import RegisterSupplierStatus, RoutingStrategy, UpdateSupplierStatus

from .suppliers_support import SECRET, SKU, register, route, supplier, topup_sku
from .support import FakeClock

REGISTERED = RegisterSupplierStatus.REGISTERED


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    with Engine(tmp_path / "data", clock=FakeClock()) as opened:
        yield opened


def _snapshot(engine) -> dict:
    return {table: engine.scan(table) for table in (S.TABLE, S.ROUTES_TABLE)}


def test_the_same_definition_again_is_registered_another_already_exists(engine):
    topup_sku(engine)
    alpha = supplier("alpha", route())
    assert S.Suppliers(engine).register(alpha)[0] == REGISTERED
    before = _snapshot(engine)
    assert S.Suppliers(engine).register(alpha)[0] == REGISTERED
    for other in (dataclasses.replace(alpha, timeout_ms=3_000),
                  dataclasses.replace(alpha, secret=b"another-secret-0123456789"),
                  dataclasses.replace(alpha, routes=(route(cost_micros=1),))):
        status, stored, _ = S.Suppliers(engine).register(other)
        assert status == RegisterSupplierStatus.ALREADY_EXISTS
        assert stored.timeout_ms == alpha.timeout_ms and stored.secret == b""
    assert _snapshot(engine) == before
    assert S.read(engine, "alpha").secret == SECRET


@pytest.mark.parametrize("routes, status", [
    ((route(sku_id="no-such-sku"),), "SKU_NOT_FOUND"),
    ((route(), route(sku_id="usd-sku", currency="CNY")), "CURRENCY_MISMATCH"),
])
def test_routes_must_name_an_existing_sku_in_its_currency(engine, routes, status):
    topup_sku(engine)
    topup_sku(engine, "usd-sku", currency="USD")
    register(engine, supplier("alpha", route()))
    before = _snapshot(engine)
    answer = S.Suppliers(engine).register(supplier("bravo", *routes))
    assert answer == (RegisterSupplierStatus[status], None, routes[-1].sku_id)
    answer = S.Suppliers(engine).update(supplier("alpha", *routes))
    assert answer == (UpdateSupplierStatus[status], None, routes[-1].sku_id)
    assert _snapshot(engine) == before


def test_an_update_replaces_the_routes_and_keeps_the_secret_when_none_is_given(engine):
    topup_sku(engine)
    topup_sku(engine, "other")
    register(engine, supplier("alpha", route(), route(sku_id="other")))
    assert [one.supplier_id for one in S.routes(engine, "other")] == ["alpha"]
    changed = dataclasses.replace(supplier("alpha", route(cost_micros=7)), secret=b"",
                                  address="http://10.0.0.9/v2")
    status, stored, _ = S.Suppliers(engine).update(changed)
    assert status == UpdateSupplierStatus.UPDATED and stored.secret == b""
    assert S.routes(engine, "other") == []
    assert [one.cost_micros for one in S.routes(engine, SKU)] == [7]
    read = S.read(engine, "alpha")
    assert read.secret == SECRET and read.address == "http://10.0.0.9/v2"
    assert read.created_ms and read.updated_ms
    renewed = dataclasses.replace(changed, secret=b"a-new-secret-0123456789")
    assert S.Suppliers(engine).update(renewed)[0] == UpdateSupplierStatus.UPDATED
    assert S.read(engine, "alpha").secret == b"a-new-secret-0123456789"
    assert S.Suppliers(engine).update(supplier("nobody"))[0] == UpdateSupplierStatus.NOT_FOUND


def _long(count: int) -> str:
    return "x" * count


BAD = [  # (change, field named)
    ({"supplier_id": ""}, "supplier.supplier_id"),
    ({"supplier_id": "a\nb"}, "supplier.supplier_id"),
    ({"name": _long(limits.display_name_bytes_max + 1)}, "supplier.name"),
    ({"protocol": ""}, "supplier.protocol"),
    ({"address": "ftp://x"}, "supplier.address"),
    ({"protocol": "grpc", "address": "no-port"}, "supplier.address"),
    ({"protocol": "grpc", "address": "host:70000"}, "supplier.address"),
    ({"address": "http://" + _long(limits.supplier_address_bytes_max)}, "supplier.address"),
    ({"timeout_ms": 0}, "supplier.timeout_ms"),
    ({"timeout_ms": limits.supplier_timeout_ms_max + 1}, "supplier.timeout_ms"),
    ({"secret": b"short"}, "supplier.signing_secret"),
    ({"secret": b"x" * (limits.supplier_secret_bytes_max + 1)}, "supplier.signing_secret"),
    ({"routes": (route(),) * 2}, "supplier.routes[1].sku_id"),
    ({"routes": (route(), route(sku_id=""))}, "supplier.routes[1].sku_id"),
    ({"routes": (route(product=""),)}, "supplier.routes[0].product"),
    ({"routes": (route(currency="cny"),)}, "supplier.routes[0].cost.currency"),
    ({"routes": (route(cost_micros=-1),)}, "supplier.routes[0].cost.amount_micros"),
    ({"routes": (route(priority=2**32),)}, "supplier.routes[0].priority"),
    ({"routes": tuple(route(sku_id=f"s{n}") for n in range(limits.routes_per_supplier_max + 1))},
     "supplier.routes"),
]


@pytest.mark.parametrize("change, field", BAD, ids=[field for _, field in BAD])
def test_bad_input_names_the_field_and_changes_nothing(engine, change, field):
    topup_sku(engine)
    register(engine, supplier("alpha", route()))
    before = _snapshot(engine)
    bad = dataclasses.replace(supplier("alpha", route()), **change)
    for write in (S.Suppliers(engine).register, S.Suppliers(engine).update):
        with pytest.raises(InvalidArgument) as refused:
            write(dataclasses.replace(bad, supplier_id=bad.supplier_id or ""))
        assert refused.value.field == field
    assert _snapshot(engine) == before


def test_an_update_without_a_secret_is_allowed_a_registration_is_not(engine):
    with pytest.raises(InvalidArgument, match="signing_secret"):
        S.Suppliers(engine).register(supplier("alpha", secret=b""))


# -- the signing secret at rest -----------------------------------------------------------------

def test_the_secret_is_never_in_the_data_file_in_plain(engine, tmp_path):
    topup_sku(engine)
    secrets = [b"plain-secret-%d-abcdefghijklmnop" % number for number in range(3)]
    for number, secret in enumerate(secrets):
        register(engine, supplier(f"s{number}", route(), secret=secret))
    S.Suppliers(engine).update(supplier("s0", route(), secret=b"renewed-secret-abcdefghijk"))
    engine.close()
    data = b"".join(path.read_bytes() for path in (tmp_path / "data").iterdir()
                    if path.is_file() and path.name != "master.key")
    for secret in [*secrets, b"renewed-secret-abcdefghijk"]:
        assert secret not in data and secret.hex().encode() not in data
    assert b"s1" in data  # the records are there


def test_the_secret_stays_readable_after_a_key_rotation(engine, tmp_path):
    topup_sku(engine)
    register(engine, supplier("alpha", route()))
    assert engine.rotate_keys() == 0
    engine.close()
    with Engine(tmp_path / "data", clock=FakeClock()) as reopened:
        assert S.read(reopened, "alpha").secret == SECRET


def test_a_sealed_secret_moved_to_another_supplier_does_not_open(engine):
    sealed = engine.seal_secret(b"supplier:alpha", SECRET)
    assert engine.open_secret(b"supplier:alpha", sealed) == SECRET
    with pytest.raises(DecryptionError):
        engine.open_secret(b"supplier:bravo", sealed)
    assert SECRET not in sealed


def test_the_secret_is_not_in_a_supplier_repr():
    assert SECRET.decode() not in repr(supplier("alpha")) and "secret" not in repr(
        supplier("alpha"))


# -- the routing strategy of a SKU ---------------------------------------------------------------

def test_a_sku_routes_by_priority_unless_told_and_refuses_an_unknown_strategy(engine):
    topup_sku(engine, "default-sku")
    assert Catalog(engine).get("default-sku").routing_strategy == RoutingStrategy.PRIORITY
    topup_sku(engine, "cheap", strategy=RoutingStrategy.CHEAPEST)
    assert Catalog(engine).get("cheap").routing_strategy == RoutingStrategy.CHEAPEST
    bad = dataclasses.replace(Catalog(engine).get("cheap"), sku_id="bad", routing_strategy=9)
    with pytest.raises(InvalidArgument) as refused:
        Catalog(engine).create(bad)
    assert refused.value.field == "sku.routing_strategy"
    stored = json.loads(Sku.encode(Catalog(engine).get("cheap")))
    del stored["routing_strategy"]  # as SKUs were stored before strategies
    assert Sku.decode(json.dumps(stored).encode()).routing_strategy == RoutingStrategy.PRIORITY
