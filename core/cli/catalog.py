"""Commands for the catalog and its callers: SKUs, API keys, and a demo to try the API."""

from __future__ import annotations

import dataclasses
import json
import sys

from .. import auth, limits
from ..config import client_address
from ..domain.catalog import Catalog, ChannelPrice, Sku
from ..engine import Engine, InvalidArgument
from ..statuses import CreateSkuStatus, DeliveryKind, RoutingStrategy, wire_name


def command_keys_create(engine: Engine, args) -> int:
    binding = args.channel or args.terminal or args.supplier or ""
    key, info = auth.create_key(engine, args.role, binding=binding, name=args.name)
    print(json.dumps({"key_id": info.key_id, "role": info.role, "binding": info.binding}),
          file=sys.stderr)
    print(key)  # shown once; only its hash is stored
    return 0


def command_keys_list(engine: Engine, args) -> int:
    for info in auth.list_keys(engine):
        print(json.dumps(info.__dict__))
    return 0


def command_keys_revoke(engine: Engine, args) -> int:
    if not auth.revoke_key(engine, args.key_id):
        print(f"error: no key {args.key_id!r}", file=sys.stderr)
        return 1
    print(json.dumps({"revoked": args.key_id}))
    return 0


def make_sku(sku_id: str, name: str, currency: str, face_value: str, prices: list[str],
             limit: int, low_stock: int, regions: list[str], delivery: str,
             suppliers: list[str] = (), routing: str = "priority") -> Sku:
    """A SKU from the command line's words (amounts like 49.90)."""
    return Sku(sku_id=sku_id, name=name, currency=currency,
               face_value_micros=_micros(face_value, "--face-value"),
               delivery_kind=DeliveryKind[delivery.upper()],
               prices=tuple(ChannelPrice(channel, _micros(amount, "--price"))
                            for channel, _, amount in (entry.partition("=") for entry in prices)),
               purchase_limit_per_account=limit, low_stock_threshold=low_stock,
               regions=tuple(regions), supplier_ids=tuple(suppliers),
               routing_strategy=RoutingStrategy[routing.upper()])


def _micros(amount: str, field: str) -> int:
    """'49.90' -> 49,900,000 (exact: no floating point)."""
    whole, _, fraction = amount.strip().partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise InvalidArgument(field, "must be an amount like 49.90")
    return int(whole) * 1_000_000 + int(fraction.ljust(6, "0") or 0)


def _sku_json(sku: Sku | None) -> dict | None:
    """A SKU as JSON, shaped like kamicore.v1.Sku's JSON form."""
    from google.protobuf import json_format

    from ..grpc.wire import sku_to_wire
    return json_format.MessageToDict(sku_to_wire(sku)) if sku is not None else None


def command_sku_create(engine: Engine, args) -> int:
    sku = dataclasses.replace(
        make_sku(args.sku_id, args.name, args.currency, args.face_value, args.price,
                 args.limit, args.low_stock, args.region, args.delivery, args.supplier,
                 args.routing),
        replenish_quantity=args.replenish, buy_on_payment=args.buy_on_payment)
    status, stored = Catalog(engine).create(sku, actor="cli:sku")
    print(json.dumps({"status": wire_name(status), "sku": _sku_json(stored)}))
    return 0 if status == CreateSkuStatus.CREATED else 1


def command_sku_list(engine: Engine, args) -> int:
    token = ""
    while True:
        skus, token = Catalog(engine).list(limits.skus_per_page_max, token)
        for sku in skus:
            print(json.dumps(_sku_json(sku)))
        if not token:
            return 0


def command_demo(engine: Engine, args) -> int:
    """Seed a demo catalog, codes and keys, and print what to try next. A second run adds no
    codes: it prints new keys and a tour with fresh idempotency keys and request ids."""
    import secrets

    from .remote import target
    server = target(args, args.settings)
    metrics_address = args.metrics or _client_address(args.settings.metrics_listen)
    skus = [("demo-steam-50", "Steam Wallet 50 CNY", "50.00", "48.50"),
            ("demo-netflix-1m", "Netflix 1 month", "68.00", "65.00")]
    seeded = []
    for sku_id, name, face, price in skus:
        Catalog(engine).create(make_sku(
            sku_id, name, "CNY", face, [f"web={price}", f"partner={price}"], 5, 10, [],
            "code", ["demo-supplier"]), actor="cli:demo")
        if engine.batch_stock(sku_id):
            continue  # seeded by an earlier run
        codes = ["-".join(secrets.token_hex(2).upper() for _ in range(4)) for _ in range(100)]
        engine.import_codes(sku_id, f"{sku_id}-demo-batch", codes, supplier="demo-supplier",
                            unit_cost_micros=40_000_000, actor="cli:demo")
        seeded.append(sku_id)
    simulator = _demo_topup_supplier(engine)
    keys = {role: auth.create_key(engine, role, binding=binding, name="demo")[0]
            for role, binding in (("storefront", "web"), ("pos", "T-01"), ("partner", ""),
                                  ("supplier", "demo-supplier"))}
    run = secrets.token_hex(3)  # a tour of its own on every run: nothing collides with the last
    program = sys.argv[0]
    if program.endswith("__main__.py"):  # python -m kamicore.cli
        program = f"{sys.executable} -m kamicore.cli"
    call = f"{program} call --target {server}"
    create = json.dumps({"idempotencyKey": f"demo-{run}", "buyer": {"accountId": "alice"},
                         "lines": [{"skuId": "demo-steam-50", "quantity": 1}]})
    pay = json.dumps({"orderId": f"storefront:web/demo-{run}", "paymentReference": f"pay-{run}",
                      "amount": {"currency": "CNY", "amountMicros": "48500000"}})
    print(json.dumps({"keys": keys}, indent=2))
    stocked = (f"100 codes each in {', '.join(seeded)}" if seeded
               else "the demo SKUs and codes were already there; new keys only")
    print(f"""
Seeded {args.settings.data_dir}: {stocked}.
Server: {server} ({_server_state(server)}).
Next:
  {call} --key {keys['storefront']} Orders/CreateOrder \\
    '{create}'
  {call} --key {keys['storefront']} Orders/ConfirmPayment \\
    '{pay}'
  {call} --key {keys['pos']} Redemption/Redeem \\
    '{{"code": "<code from the reply>", "requestId": "r-{run}-1"}}'
  {call} --key {keys['pos']} Redemption/Redeem \\
    '{{"code": "<the same code>", "requestId": "r-{run}-2"}}'
  {program}{f" --data-dir {args.data_dir}" if args.data_dir else ""} stock demo-steam-50
  curl -s http://{metrics_address}/metrics | grep kamicore_
A direct top-up: start the simulated supplier the demo registered, then order and pay:
  {simulator} &
  {call} --key {keys['storefront']} Orders/CreateOrder \\
    '{json.dumps({"idempotencyKey": f"demo-topup-{run}", "buyer": {"accountId": "alice"},
                  "recipient": "13800138000",
                  "lines": [{"skuId": DEMO_TOPUP_SKU, "quantity": 1}]})}'
  {call} --key {keys['storefront']} Orders/ConfirmPayment \\
    '{json.dumps({"orderId": f"storefront:web/demo-topup-{run}",
                  "paymentReference": f"pay-topup-{run}",
                  "amount": {"currency": "CNY", "amountMicros": "29500000"}})}'
""")
    return 0


DEMO_TOPUP_SKU = "demo-phone-30"
DEMO_SUPPLIER = "demo-topup"
DEMO_SIMULATOR_LISTEN = "127.0.0.1:50071"


def _demo_topup_supplier(engine: Engine) -> str:
    """A DIRECT_TOPUP SKU routed to a simulated supplier (kamicore.connectors.simulator) on
    DEMO_SIMULATOR_LISTEN -> the command that starts that simulator. Its signing secret is
    made on the first run and kept: a second run prints the same command."""
    import secrets

    from ..domain import suppliers
    Catalog(engine).create(make_sku(
        DEMO_TOPUP_SKU, "Phone credit 30 CNY", "CNY", "30.00", ["web=29.50", "partner=29.50"],
        5, 0, [], "direct_topup"), actor="cli:demo")
    supplier = suppliers.read(engine, DEMO_SUPPLIER)
    if supplier is None:
        supplier = suppliers.Supplier(
            DEMO_SUPPLIER, "Demo top-up supplier (simulated)", "http",
            f"http://{DEMO_SIMULATOR_LISTEN}", 5_000, True, secrets.token_bytes(32),
            (suppliers.Route(DEMO_TOPUP_SKU, DEMO_SUPPLIER, "phone-30", 28_000_000, "CNY"),))
        suppliers.Suppliers(engine).register(supplier, actor="cli:demo")
    return (f"{sys.executable} -m kamicore.connectors.simulator --http-listen "
            f"{DEMO_SIMULATOR_LISTEN} --secret-hex {supplier.secret.hex()}")


def _client_address(listen: str) -> str:
    return client_address(listen) if listen else "(metrics are off)"


def _server_state(address: str) -> str:
    """Whether a kamicore server answers at `address` right now."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(address) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=limits.cli_probe_timeout_seconds)
        except grpc.RpcError:
            return "nothing answers there yet: start it with `kamicore serve`"
    return "serving"
