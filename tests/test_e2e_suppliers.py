"""The Suppliers service over a real server: register (idempotent), update (the secret kept when
none is given), list and statistics; the signing secret never in a reply; bad input refused by
field name with nothing changed; invalid-code reports counted against the batch's supplier (in
GetSupplierStats and the metrics); and `kamicore supplier ...` as an operator runs it. Which
roles may call each RPC: tests/test_e2e_server.py's auth matrix."""

from __future__ import annotations

import json

import grpc

from kamicore import limits
from kamicore.v1 import catalog_pb2, common_pb2, orders_pb2, suppliers_pb2 as SP

from .e2e_support import metric_samples, metric_value, rpc_error, sized, uid, wait_until
from .server_harness import buy, cli, create_sku, import_codes, new_codes

SECRET = b"e2e-signing-secret-7f3a9c"


def _supplier(supplier_id: str, *routes: SP.SupplierRoute, secret: bytes = SECRET,
              timeout_ms: int = 2_000) -> SP.Supplier:
    return SP.Supplier(supplier_id=supplier_id, name=f"Supplier {supplier_id}",
                       protocol=SP.SUPPLIER_PROTOCOL_HTTP_JSON, address="http://127.0.0.1:9/api",
                       timeout_ms=timeout_ms, signing_secret=secret, enabled=True,
                       routes=list(routes))


def _route(sku_id: str, cost_micros: int = 45_000_000, currency: str = "CNY",
           priority: int = 0) -> SP.SupplierRoute:
    return SP.SupplierRoute(sku_id=sku_id, product=f"P-{sku_id}", priority=priority,
                            cost=common_pb2.Money(currency=currency, amount_micros=cost_micros),
                            enabled=True)


def _register(c, supplier: SP.Supplier) -> SP.RegisterSupplierResponse:
    return c.admin.suppliers.RegisterSupplier(SP.RegisterSupplierRequest(supplier=supplier))


def _listed(c) -> dict[str, SP.Supplier]:
    found, token = {}, ""
    while True:
        page = c.admin.suppliers.ListSuppliers(SP.ListSuppliersRequest(page_size=2,
                                                                       page_token=token))
        for one in page.suppliers:
            assert one.signing_secret == b""
            assert SECRET not in page.SerializeToString()
            found[one.supplier_id] = one
        token = page.next_page_token
        if not token:
            return found


def test_register_update_list_and_stats_never_return_the_secret(c):
    sku_id = uid("sup-topup")
    create_sku(c.admin, sku_id, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    supplier_id = uid("sup")
    definition = _supplier(supplier_id, _route(sku_id))
    first = _register(c, definition)
    assert first.status == SP.REGISTER_SUPPLIER_STATUS_REGISTERED
    assert first.supplier.routes[0].cost.amount_micros == 45_000_000
    assert first.supplier.signing_secret == b"" and SECRET not in first.SerializeToString()
    again = _register(c, definition)
    assert again.status == SP.REGISTER_SUPPLIER_STATUS_REGISTERED
    assert again.supplier.created_ms == first.supplier.created_ms
    other = _register(c, _supplier(supplier_id, _route(sku_id), secret=b"another-secret-0123"))
    assert other.status == SP.REGISTER_SUPPLIER_STATUS_ALREADY_EXISTS
    assert other.supplier.signing_secret == b""
    assert _listed(c)[supplier_id].routes[0].sku_id == sku_id

    updated = c.admin.suppliers.UpdateSupplier(SP.UpdateSupplierRequest(
        supplier=_supplier(supplier_id, _route(sku_id, 44_000_000), secret=b"",
                           timeout_ms=3_000)))
    assert updated.status == SP.UPDATE_SUPPLIER_STATUS_UPDATED
    assert updated.supplier.timeout_ms == 3_000 and updated.supplier.signing_secret == b""
    assert _listed(c)[supplier_id].routes[0].cost.amount_micros == 44_000_000
    # the stored secret was kept: the original definition now differs only in its timeout
    assert _register(c, _supplier(supplier_id, _route(sku_id, 44_000_000), timeout_ms=3_000)
                     ).status == SP.REGISTER_SUPPLIER_STATUS_REGISTERED
    missing = c.admin.suppliers.UpdateSupplier(SP.UpdateSupplierRequest(
        supplier=_supplier(uid("sup-none"))))
    assert missing.status == SP.UPDATE_SUPPLIER_STATUS_NOT_FOUND

    stats = c.admin.suppliers.GetSupplierStats(SP.GetSupplierStatsRequest(
        supplier_id=supplier_id))
    assert (stats.status, stats.circuit, len(stats.skus)) == (
        SP.SUPPLIER_LOOKUP_STATUS_FOUND, SP.CIRCUIT_STATE_CLOSED, 0)
    assert c.admin.suppliers.GetSupplierStats(SP.GetSupplierStatsRequest(
        supplier_id=uid("sup-none"))).status == SP.SUPPLIER_LOOKUP_STATUS_NOT_FOUND


def test_routes_to_a_missing_sku_or_in_another_currency_change_nothing(c):
    sku_id = uid("sup-cny")
    create_sku(c.admin, sku_id, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    supplier_id = uid("sup")
    missing = _register(c, _supplier(supplier_id, _route(sku_id), _route(uid("no-sku"))))
    assert missing.status == SP.REGISTER_SUPPLIER_STATUS_SKU_NOT_FOUND
    assert missing.sku_id.startswith("no-sku")
    mismatch = _register(c, _supplier(supplier_id, _route(sku_id, currency="USD")))
    assert (mismatch.status, mismatch.sku_id) == (
        SP.REGISTER_SUPPLIER_STATUS_CURRENCY_MISMATCH, sku_id)
    assert supplier_id not in _listed(c)


BAD = [  # (change to a valid supplier, field named)
    (lambda s: setattr(s, "supplier_id", ""), "supplier.supplier_id"),
    (lambda s: setattr(s, "protocol", 0), "supplier.protocol"),
    (lambda s: setattr(s, "protocol", 7), "supplier.protocol"),
    (lambda s: setattr(s, "address", "127.0.0.1:9"), "supplier.address"),
    (lambda s: setattr(s, "timeout_ms", 0), "supplier.timeout_ms"),
    (lambda s: setattr(s, "signing_secret", b"short"), "supplier.signing_secret"),
    (lambda s: setattr(s.routes[0].cost, "currency", "yuan"), "supplier.routes[0].cost.currency"),
    (lambda s: s.routes.append(s.routes[0]), "supplier.routes[1].sku_id"),
]


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(c):
    sku_id = uid("sup-bad")
    create_sku(c.admin, sku_id, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    supplier_id = uid("sup-bad")
    for change, field in BAD:
        bad = _supplier(supplier_id, _route(sku_id))
        change(bad)
        for call, request in ((c.admin.suppliers.RegisterSupplier, SP.RegisterSupplierRequest),
                              (c.admin.suppliers.UpdateSupplier, SP.UpdateSupplierRequest)):
            error = rpc_error(call, request(supplier=bad))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error)
            assert error.details().startswith(f"{field}:"), (field, error.details())
            assert SECRET.decode() not in error.details()
    assert supplier_id not in _listed(c)
    error = rpc_error(c.admin.suppliers.ListSuppliers, SP.ListSuppliersRequest(page_size=101))
    assert error.details().startswith("page_size:")
    error = rpc_error(c.admin.suppliers.GetSupplierStats, SP.GetSupplierStatsRequest())
    assert error.details().startswith("supplier_id:")


def test_only_admins_manage_suppliers_or_read_their_statistics(c):
    supplier_id = uid("sup-role")
    calls = [("RegisterSupplier", SP.RegisterSupplierRequest(supplier=_supplier(supplier_id))),
             ("UpdateSupplier", SP.UpdateSupplierRequest(supplier=_supplier(supplier_id))),
             ("ListSuppliers", SP.ListSuppliersRequest()),
             ("GetSupplierStats", SP.GetSupplierStatsRequest(supplier_id=supplier_id))]
    for client in (c.web, c.partner, c.pos, c.supplier):
        for method, request in calls:
            error = rpc_error(getattr(client.suppliers, method), request)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (method, error)
    assert supplier_id not in _listed(c)


def test_invalid_code_reports_count_against_the_batch_of_their_supplier(server, c):
    sku_id, supplier_id = uid("sup-codes"), uid("sup-codes")
    create_sku(c.admin, sku_id)
    assert _register(c, _supplier(supplier_id, _route(sku_id))).status == \
        SP.REGISTER_SUPPLIER_STATUS_REGISTERED
    batch = f"{sku_id}-from-supplier"
    import_codes(c.admin, sku_id, new_codes(5), batch_id=batch, supplier_id=supplier_id)
    paid = buy(c.web, sku_id, 2)
    report = orders_pb2.ReportInvalidCodeRequest(order_id=paid.order.order_id,
                                                 code_id=paid.order.codes[0].code_id)
    for _ in range(2):  # a retry answers as the first time and counts once
        answer = c.web.orders.ReportInvalidCode(report)
        assert answer.status == orders_pb2.REPORT_INVALID_STATUS_REISSUED
    stats = c.admin.suppliers.GetSupplierStats(SP.GetSupplierStatsRequest(
        supplier_id=supplier_id, sku_id=sku_id))
    [figures] = stats.skus
    [counted] = figures.batches
    assert (counted.batch_id, counted.invalid_codes, counted.delivered_codes) == (batch, 1, 3)
    assert abs(counted.invalid_rate - 1 / 3) < 1e-9

    def counted_in_metrics():
        return metric_value(metric_samples(server.metrics()),
                            "kamicore_supplier_invalid_codes_total", supplier=supplier_id,
                            sku=sku_id) == 1
    wait_until(counted_in_metrics, 10, "the invalid code in the metrics")


def test_the_supplier_commands(server, c, tmp_path):
    sku_id, supplier_id = uid("sup-cli"), uid("sup-cli")
    create_sku(c.admin, sku_id, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    where = ("--target", server.target, "--key", server.admin_key)
    registered = cli(server.data_dir, "supplier", "register", supplier_id, "--protocol", "grpc",
                     "--address", "127.0.0.1:7000", "--secret-file", str(secret_file),
                     "--route", f"sku={sku_id},product=P1,cost_micros=45000000,currency=CNY,"
                     "priority=2", *where)
    reply = json.loads(registered.stdout)
    assert reply["status"] == "REGISTER_SUPPLIER_STATUS_REGISTERED"
    assert reply["supplier"]["routes"][0]["priority"] == 2
    assert SECRET.decode() not in registered.stdout + registered.stderr
    updated = cli(server.data_dir, "supplier", "update", supplier_id, "--protocol", "grpc",
                  "--address", "127.0.0.1:7001", "--disabled", *where)
    assert json.loads(updated.stdout)["supplier"]["address"] == "127.0.0.1:7001"
    listed = [json.loads(line) for line in cli(server.data_dir, "supplier", "list",
                                               *where).stdout.splitlines()]
    [mine] = [one for one in listed if one["supplierId"] == supplier_id]
    assert mine["enabled"] is False and mine["routes"] == [] and mine["signingSecret"] == ""
    stats = json.loads(cli(server.data_dir, "supplier", "stats", supplier_id, *where).stdout)
    assert stats["circuit"] == "CIRCUIT_STATE_CLOSED"
    refused = cli(server.data_dir, "supplier", "register", supplier_id, "--protocol", "grpc",
                  "--address", "127.0.0.1:7000", "--secret-file", str(secret_file), *where,
                  check=False)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["status"] == "REGISTER_SUPPLIER_STATUS_ALREADY_EXISTS"
    created = cli(server.data_dir, "sku", "create", uid("sup-cheap"), "--name", "Cheap",
                  "--face-value", "10", "--delivery", "direct_topup", "--routing", "cheapest")
    assert json.loads(created.stdout)["sku"]["routingStrategy"] == "ROUTING_STRATEGY_CHEAPEST"
    bad = cli(server.data_dir, "supplier", "register", uid("x"), "--protocol", "grpc",
              "--address", "h:1", "--secret-file", str(secret_file), "--route", "sku=a",
              *where, check=False)
    assert bad.returncode == 2 and "--route 1: needs" in bad.stderr


def test_a_page_of_the_largest_suppliers_stays_within_its_bytes(c):
    """Suppliers at every limit (100 routes of 64-byte ids): a page of 100 would pass 1 MiB,
    so it ends early and its token continues; every supplier is listed once."""
    tag = uid("zz-big")
    sku_ids = [sized(f"{tag}-sku-{n:03}", limits.name_bytes_max)
               for n in range(limits.routes_per_supplier_max)]
    for sku_id in sku_ids:
        create_sku(c.admin, sku_id, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    per_page = limits.suppliers_per_page_max
    supplier_ids = [sized(f"{tag}-s-{n:03}", limits.name_bytes_max) for n in range(per_page)]
    for supplier_id in supplier_ids:
        big = _supplier(supplier_id, *(SP.SupplierRoute(
            sku_id=sku_id, product=sized("P", limits.name_bytes_max), priority=2**32 - 1,
            cost=common_pb2.Money(currency="CNY", amount_micros=limits.unit_cost_micros_max),
            enabled=True) for sku_id in sku_ids))
        big.name = sized("N", limits.display_name_bytes_max)
        big.address = sized("http://", limits.supplier_address_bytes_max)
        assert _register(c, big).status == SP.REGISTER_SUPPLIER_STATUS_REGISTERED
    listed, token, pages = [], tag, 0
    while token:
        page = c.admin.suppliers.ListSuppliers(SP.ListSuppliersRequest(
            page_size=per_page, page_token=token))
        assert page.ByteSize() <= limits.suppliers_page_bytes_max + 2 * limits.name_bytes_max
        listed += [one.supplier_id for one in page.suppliers if one.supplier_id.startswith(tag)]
        token, pages = page.next_page_token, pages + 1
    assert listed == supplier_ids and pages > 1
