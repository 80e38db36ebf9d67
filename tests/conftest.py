"""Shared fixtures. Engine tests run against both implementations of the per-item engine:
the compiled extension and the same source interpreted (uvloop's habit: one test body, two
implementations, held equal). The end-to-end tests (tests/test_e2e_*.py) share one real
`kamicore serve`, its keys and a client per key (the last two sections)."""

from __future__ import annotations

import concurrent.futures
import os
import types
from pathlib import Path

import pytest

from kamicore.domain.risk_rules import DEFAULT_RULES
from kamicore.engine import Engine
from kamicore.v1 import catalog_pb2

from .e2e_support import uid
from .server_harness import (
    Server, buy, import_codes, new_codes, order_request, risk_settings_file, sku_message,
    stocked_sku,
)
from .support import FakeClock

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("KAMICORE_EXT_DIR", str(REPO / "ext"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["compiled", "interpreted"])
def implementation(request) -> str:
    return request.param


@pytest.fixture
def engine(tmp_path, clock, implementation, monkeypatch):
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    with Engine(tmp_path / "data", clock=clock, implementation=implementation) as opened:
        yield opened


# -- the end-to-end tests' server, started once for all of tests/test_e2e_*.py --------------------

@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One `kamicore serve` (supervisor + 2 workers) for every end-to-end test: each test
    uses its own SKUs, idempotency keys and request ids, so tests stay independent."""
    base = tmp_path_factory.mktemp("e2e")
    # the default risk rules without velocity and quantity: these tests buy many times from one
    # account, IP and device in a minute (tests/test_e2e_risk.py tests those rules)
    rules = {**DEFAULT_RULES, "rules": [rule for rule in DEFAULT_RULES["rules"]
                                        if rule["kind"] not in ("velocity", "quantity")]}
    settings = {"config": str(risk_settings_file(base / "kamicore.toml", rules))}
    running = Server(base / "data", base, "main", settings=settings).start()
    try:
        yield running
    finally:
        exit_code = running.stop()
        assert exit_code == 0, running.logs()[-3000:]


KEY_SPECS = {  # client name -> (role, binding)
    "web": ("storefront", "web"),
    "web_again": ("storefront", "web"),
    "app": ("storefront", "app"),
    "partner": ("partner", ""),
    "partner2": ("partner", ""),
    "pos": ("pos", "T-01"),
    "pos2": ("pos", "T-02"),
    "supplier": ("supplier", "S-1"),
    "supplier2": ("supplier", "S-2"),
}


@pytest.fixture(scope="session")
def keys(server) -> dict[str, str]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = dict(zip(KEY_SPECS, pool.map(lambda spec: server.create_key(*spec)[0],
                                           KEY_SPECS.values()), strict=True))
    made["admin"] = server.admin_key
    return made


@pytest.fixture(scope="session")
def c(server, keys):
    """A client per key, each on its own connection (so calls spread over both workers)."""
    return types.SimpleNamespace(**{name: server.client(key, fresh=True)
                                    for name, key in keys.items()})


# -- fixtures of tests/test_e2e_server.py ---------------------------------------------------------

@pytest.fixture(scope="module")
def revoked_keys(server) -> dict[str, str]:
    """A key per role, created and then revoked with the CLI."""
    specs = {"admin": ("admin", ""), "storefront": ("storefront", "web"),
             "partner": ("partner", ""), "pos": ("pos", "T-01"),
             "supplier": ("supplier", "S-1")}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = dict(zip(specs, pool.map(lambda spec: server.create_key(*spec), specs.values()),
                        strict=True))
        list(pool.map(server.revoke_key, [key_id for _, key_id in made.values()]))
    return {role: key for role, (key, _) in made.items()}


@pytest.fixture(scope="module")
def matrix_channel(server):
    return server.channel()


@pytest.fixture(scope="module")
def sentinel(c):
    """A SKU with stock in every common state, watched by the bad-input table."""
    sku_id = uid("bad-input")
    codes = stocked_sku(c.admin, sku_id, 6)
    paid = buy(c.web, sku_id, 2)
    held = c.web.orders.CreateOrder(order_request(uid("bad-hold"), sku_id, 1)).order
    dollars = sku_message(uid("bad-usd"))
    dollars.face_value.currency = "USD"
    assert c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=dollars)).status == \
        catalog_pb2.CREATE_SKU_STATUS_CREATED
    import_codes(c.admin, dollars.sku_id, new_codes(1))
    return types.SimpleNamespace(sku_id=sku_id, codes=codes, paid=paid.order, held=held,
                                 usd_sku_id=dollars.sku_id)
