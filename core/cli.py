"""`kamicore` command line: operator tools over a data dir (import, stock, orders, audit)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .engine import Engine, InvalidArgument, codes_per_import_max
from .statuses import ImportStatus, ImportCodeStatus

DATA_DIR_DEFAULT = "var"
DATA_DIR_ENV = "KAMICORE_DATA_DIR"
import_chunk_codes = 10_000  # codes per engine call while importing a file
assert import_chunk_codes <= codes_per_import_max


def parse_time_ms(text: str | None, field: str) -> int | None:
    """ISO 8601 (2027-01-31 or 2027-01-31T12:00:00+08:00) or unix milliseconds."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field, "must be ISO 8601 or unix milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def read_codes(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, code) from a file with one code per line, or a CSV whose first column is
    the code (a header row naming `code` is skipped). Blank lines are skipped."""
    with open(path, newline="", encoding="utf-8") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        first_line = sample.splitlines()[0] if sample else ""
        is_csv = path.suffix.lower() == ".csv" or "," in first_line
        if is_csv:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or not row[0].strip():
                    continue
                if number == 1 and row[0].strip().lower() == "code":
                    continue
                yield number, row[0].strip()
        else:
            for number, line in enumerate(handle, start=1):
                code = line.rstrip("\r\n")
                if code.strip():
                    yield number, code


def chunks(rows: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def command_import(engine: Engine, args) -> int:
    path = Path(args.file)
    total_bytes = path.stat().st_size
    imported = duplicates = 0
    rejected: list[tuple[int, str]] = []
    progress = _progress(total_bytes, f"importing {path.name}", args.quiet)
    done_bytes = 0
    with progress:
        for chunk in chunks(read_codes(path), import_chunk_codes):
            result = engine.import_codes(
                args.sku, args.batch, [code for _, code in chunk], supplier=args.supplier,
                unit_cost_micros=args.unit_cost_micros,
                valid_from_ms=parse_time_ms(args.valid_from, "--valid-from") or 0,
                valid_until_ms=parse_time_ms(args.valid_until, "--valid-until"),
                actor="cli:import")
            if result.status != ImportStatus.OK:
                print(f"error: batch {args.batch}: {result.status.name}", file=sys.stderr)
                return 1
            imported += result.imported
            duplicates += result.duplicates
            rejected.extend((chunk[row][0], status.name) for row, status in result.rejected)
            done_bytes += sum(len(code.encode()) + 1 for _, code in chunk)
            progress.update(min(done_bytes, total_bytes))
    summary = {"imported": imported, "duplicates": duplicates, "rejected": len(rejected)}
    print(json.dumps(summary))
    for line, reason in rejected[:100]:
        print(f"line {line}: {reason}", file=sys.stderr)
    if len(rejected) > 100:
        print(f"... and {len(rejected) - 100} more rejected lines", file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int, label: str, quiet: bool):
        self._bar = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import Progress
            self._bar = Progress(transient=True)
            self._task = self._bar.add_task(label, total=total)

    def __enter__(self):
        if self._bar:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.__exit__(*exc)

    def update(self, completed: int) -> None:
        if self._bar:
            self._bar.update(self._task, completed=completed)


def command_stock(engine: Engine, args) -> int:
    skus = [args.sku] if args.sku else engine.skus()
    report = {}
    for sku in skus:
        stock = engine.stock(sku)
        if stock is None:
            print(f"error: sku {sku!r} not found", file=sys.stderr)
            return 1
        report[sku] = {"counts": {state.name: count for state, count in stock.counts.items()},
                       "sellable": stock.sellable, "expired_available": stock.expired_available,
                       "soonest_valid_until_ms": stock.soonest_valid_until_ms}
    print(json.dumps(report, indent=2))
    return 0


def command_order_show(engine: Engine, args) -> int:
    order = engine.order(args.order_id)  # masked: the CLI never prints plaintext codes
    if order is None:
        print(f"error: order {args.order_id!r} not found", file=sys.stderr)
        return 1
    print(json.dumps({
        "order_id": order.order_id, "state": order.state, "hold_until_ms": order.hold_until_ms,
        "lines": order.lines,
        "codes": [{"code_id": code.code_id, "state": code.state.name, "code": code.masked,
                   "sku": code.sku} for code in order.codes]}, indent=2))
    return 0


def command_audit_verify(engine: Engine, args) -> int:
    report = engine.verify_audit()
    print(json.dumps({"ok": report.ok, "blocks": report.blocks, "events": report.events,
                      "head": report.head.hex(), "problem": report.problem}))
    return 0 if report.ok else 1


def command_check(engine: Engine, args) -> int:
    problems = engine.check()
    for problem in problems:
        print(problem)
    print(json.dumps({"ok": not problems, "problems": len(problems)}))
    return 0 if not problems else 1


def command_rotate_keys(engine: Engine, args) -> int:
    batches = engine.rotate_keys(actor="cli:rotate-keys")
    print(json.dumps({"rewrapped_batches": batches}))
    return 0


def command_serve(args) -> int:
    from . import config as config_module, server
    overrides = {"data_dir": args.data_dir, "listen": args.listen,
                 "metrics_listen": args.metrics_listen, "workers": args.workers}
    try:
        config = config_module.load(args.config, overrides)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return server.serve(config)


def command_keys_create(engine: Engine, args) -> int:
    from . import auth
    binding = args.channel or args.terminal or args.supplier or ""
    key, info = auth.create_key(engine, args.role, binding=binding, name=args.name)
    print(json.dumps({"key_id": info.key_id, "role": info.role, "binding": info.binding}),
          file=sys.stderr)
    print(key)  # shown once; only its hash is stored
    return 0


def command_keys_list(engine: Engine, args) -> int:
    from . import auth
    for info in auth.list_keys(engine):
        print(json.dumps(info.__dict__))
    return 0


def command_keys_revoke(engine: Engine, args) -> int:
    from . import auth
    if not auth.revoke_key(engine, args.key_id):
        print(f"error: no key {args.key_id!r}", file=sys.stderr)
        return 1
    print(json.dumps({"revoked": args.key_id}))
    return 0


def sku_message(sku_id: str, name: str, currency: str, face_value: str, prices: list[str],
                limit: int, low_stock: int, regions: list[str], delivery: str):
    from .v1 import catalog_pb2, common_pb2
    sku = catalog_pb2.Sku(
        sku_id=sku_id, name=name,
        face_value=common_pb2.Money(currency=currency,
                                    amount_micros=_micros(face_value, "--face-value")),
        delivery_kind=catalog_pb2.DeliveryKind.Value(f"DELIVERY_KIND_{delivery.upper()}"),
        purchase_limit_per_account=limit, low_stock_threshold=low_stock, regions=regions)
    for entry in prices:
        channel, _, amount = entry.partition("=")
        sku.prices.add(channel=channel, price_micros=_micros(amount, "--price"))
    return sku


def _micros(amount: str, field: str) -> int:
    """'49.90' -> 49,900,000 (exact: no floating point)."""
    whole, _, fraction = amount.strip().partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise InvalidArgument(field, "must be an amount like 49.90")
    return int(whole) * 1_000_000 + int(fraction.ljust(6, "0") or 0)


def command_sku_create(engine: Engine, args) -> int:
    from . import catalog
    from google.protobuf import json_format
    sku = sku_message(args.sku_id, args.name, args.currency, args.face_value, args.price,
                      args.limit, args.low_stock, args.region, args.delivery)
    status, stored = catalog.Catalog(engine).create(sku, actor="cli:sku")
    print(json.dumps({"status": catalog.catalog_pb2.CreateSkuStatus.Name(status),
                      "sku": json_format.MessageToDict(stored)}))
    return 0 if status == catalog.CREATED else 1


def command_sku_list(engine: Engine, args) -> int:
    from . import catalog
    from google.protobuf import json_format
    token = ""
    while True:
        skus, token = catalog.Catalog(engine).list(catalog.skus_per_page_max, token)
        for sku in skus:
            print(json.dumps(json_format.MessageToDict(sku)))
        if not token:
            return 0


def command_backup(engine: Engine, args) -> int:
    destination = Path(args.destination)
    destination.mkdir(parents=True, exist_ok=True)
    if (destination / "data.mdb").exists():
        print(f"error: {destination} already holds a data.mdb", file=sys.stderr)
        return 1
    # a consistent snapshot from one read transaction; writers carry on meanwhile
    engine.env.copy(str(destination), compact=True)
    print(json.dumps({"backup": str(destination / "data.mdb"),
                      "bytes": (destination / "data.mdb").stat().st_size,
                      "note": "the master key is not in the backup; keep it apart"}))
    return 0


def command_restore(args) -> int:
    import shutil
    source = Path(args.source)
    source_file = source / "data.mdb" if source.is_dir() else source
    target = Path(args.data_dir)
    if not source_file.exists():
        print(f"error: no data.mdb at {source}", file=sys.stderr)
        return 1
    if (target / "data.mdb").exists() and not args.force:
        print(f"error: {target} already has data; stop the server and pass --force",
              file=sys.stderr)
        return 1
    from .keyring import MASTER_KEY_ENV, MASTER_KEY_FILE_NAME
    if not os.environ.get(MASTER_KEY_ENV) and not (target / MASTER_KEY_FILE_NAME).exists():
        print(f"error: the backup's codes open only with its master key: put it in "
              f"{target / MASTER_KEY_FILE_NAME} (mode 0600) or set {MASTER_KEY_ENV} first",
              file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_file, target / "data.mdb.restoring")
    os.replace(target / "data.mdb.restoring", target / "data.mdb")
    (target / "lock.mdb").unlink(missing_ok=True)
    with Engine(target) as engine:  # opens with the master key; fails loudly if it is wrong
        problems = engine.check()
    print(json.dumps({"restored": str(target / "data.mdb"), "problems": problems}))
    return 0 if not problems else 1


def command_call(args) -> int:
    """Call a unary kamicore.v1 method with a JSON request; prints the JSON reply."""
    import grpc
    from google.protobuf import json_format, message_factory
    from google.protobuf.descriptor_pool import Default
    from .v1 import catalog_pb2, inventory_pb2, orders_pb2, redemption_pb2  # noqa: F401
    service_name, _, method_name = args.method.partition("/")
    try:
        service = Default().FindServiceByName(f"kamicore.v1.{service_name}")
        method = service.methods_by_name[method_name]
    except KeyError:
        print(f"error: no method kamicore.v1.{args.method}", file=sys.stderr)
        return 2
    if method.client_streaming or method.server_streaming:
        print("error: `call` takes unary methods only", file=sys.stderr)
        return 2
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(args.json, request_class())
    key = args.key or os.environ.get("KAMICORE_KEY", "")
    if not key and args.key_file:
        key = Path(args.key_file).read_text().strip()
    with grpc.insecure_channel(args.target) as channel:
        stub = channel.unary_unary(f"/kamicore.v1.{service_name}/{method_name}",
                                   request_serializer=request_class.SerializeToString,
                                   response_deserializer=response_class.FromString)
        try:
            reply = stub(request, metadata=[("authorization", f"Bearer {key}")], timeout=30)
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(reply, always_print_fields_with_no_presence=True))
    return 0


def command_demo(engine: Engine, args) -> int:
    """Seed a demo catalog, codes and keys, and print what to try next."""
    import secrets
    from . import auth, catalog
    skus = [("demo-steam-50", "Steam Wallet 50 CNY", "50.00", "48.50"),
            ("demo-netflix-1m", "Netflix 1 month", "68.00", "65.00")]
    for sku_id, name, face, price in skus:
        catalog.Catalog(engine).create(sku_message(
            sku_id, name, "CNY", face, [f"web={price}", f"partner={price}"], 5, 10, [],
            "code"), actor="cli:demo")
        codes = ["-".join(secrets.token_hex(2).upper() for _ in range(4)) for _ in range(100)]
        engine.import_codes(sku_id, f"{sku_id}-demo-batch", codes, supplier="demo-supplier",
                            unit_cost_micros=40_000_000, actor="cli:demo")
    keys = {role: auth.create_key(engine, role, binding=binding, name="demo")[0]
            for role, binding in (("storefront", "web"), ("pos", "T-01"), ("partner", ""),
                                  ("supplier", "demo-supplier"))}
    target = args.target
    call = f"{sys.argv[0]} call --target {target}"
    print(json.dumps({"keys": keys}, indent=2))
    print(f"""
Next (with `make serve` running):
  {call} --key {keys['storefront']} Orders/CreateOrder \
    '{{"idempotencyKey": "demo-1", "buyer": {{"accountId": "alice"}}, "lines": [{{"skuId": "demo-steam-50", "quantity": 1}}]}}'
  {call} --key {keys['storefront']} Orders/ConfirmPayment \
    '{{"orderId": "storefront:web/demo-1", "paymentReference": "pay-1", "amount": {{"currency": "CNY", "amountMicros": "48500000"}}}}'
  {call} --key {keys['pos']} Redemption/Redeem '{{"code": "<code from the reply>", "requestId": "r-1"}}'
  {call} --key {keys['pos']} Redemption/Redeem '{{"code": "<the same code>", "requestId": "r-2"}}'
  {sys.argv[0]} stock demo-steam-50
  curl -s http://{args.metrics}/metrics | grep kamicore_
""")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kamicore", description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV, DATA_DIR_DEFAULT),
                        help=f"LMDB data dir (default ${DATA_DIR_ENV} or ./{DATA_DIR_DEFAULT})")
    commands = parser.add_subparsers(dest="command", required=True)

    importing = commands.add_parser("import", help="import codes from a file (one per line, "
                                    "or CSV with the code first); re-running skips duplicates")
    importing.add_argument("file")
    importing.add_argument("--sku", required=True)
    importing.add_argument("--batch", required=True)
    importing.add_argument("--supplier", default="")
    importing.add_argument("--unit-cost-micros", type=int, default=0)
    importing.add_argument("--valid-from", help="ISO 8601 or unix ms")
    importing.add_argument("--valid-until", help="ISO 8601 or unix ms (default: never)")
    importing.add_argument("--quiet", action="store_true", help="no progress bar")
    importing.set_defaults(run=command_import)

    stock = commands.add_parser("stock", help="counts by state for one or every sku")
    stock.add_argument("sku", nargs="?")
    stock.set_defaults(run=command_stock)

    order = commands.add_parser("order", help="orders")
    order_commands = order.add_subparsers(dest="order_command", required=True)
    show = order_commands.add_parser("show", help="an order with its codes masked")
    show.add_argument("order_id")
    show.set_defaults(run=command_order_show)

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="recompute the audit hash chain")
    verify.set_defaults(run=command_audit_verify)

    check = commands.add_parser("check", help="verify every stored invariant (counters, "
                                "indexes, orders, decryption, audit chain)")
    check.set_defaults(run=command_check)

    rotate = commands.add_parser("rotate-keys", help="re-wrap data keys under a new master key")
    rotate.set_defaults(run=command_rotate_keys)

    serve = commands.add_parser("serve", help="run the gRPC server (supervisor + workers)")
    serve.add_argument("--config", help="TOML file (default $KAMICORE_CONFIG)")
    serve.add_argument("--listen", help="host:port (default 127.0.0.1:50051)")
    serve.add_argument("--metrics-listen", help="host:port of /metrics (default 127.0.0.1:9464)")
    serve.add_argument("--workers", type=int, help="worker processes (default: CPU count)")
    serve.set_defaults(run_without_engine=command_serve)

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key (printed once)")
    create.add_argument("--role", required=True, choices=["admin", "storefront", "partner",
                                                          "pos", "supplier"])
    create.add_argument("--channel", help="storefront keys: the sales channel")
    create.add_argument("--terminal", help="pos keys: the terminal id")
    create.add_argument("--supplier", help="supplier keys: the supplier id")
    create.add_argument("--name", default="", help="a note for humans")
    create.set_defaults(run=command_keys_create)
    listing = key_commands.add_parser("list", help="keys (never their secrets)")
    listing.set_defaults(run=command_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=command_keys_revoke)

    sku = commands.add_parser("sku", help="the catalog")
    sku_commands = sku.add_subparsers(dest="sku_command", required=True)
    sku_create = sku_commands.add_parser("create", help="create a SKU")
    sku_create.add_argument("sku_id")
    sku_create.add_argument("--name", required=True)
    sku_create.add_argument("--currency", default="CNY")
    sku_create.add_argument("--face-value", required=True, help="e.g. 50.00")
    sku_create.add_argument("--price", action="append", default=[],
                            help="CHANNEL=AMOUNT, e.g. web=48.50 (repeat per channel)")
    sku_create.add_argument("--limit", type=int, default=0, help="units per buyer account")
    sku_create.add_argument("--low-stock", type=int, default=0)
    sku_create.add_argument("--region", action="append", default=[])
    sku_create.add_argument("--delivery", default="code", choices=["code", "direct_topup"])
    sku_create.set_defaults(run=command_sku_create)
    sku_list = sku_commands.add_parser("list", help="every SKU as JSON lines")
    sku_list.set_defaults(run=command_sku_list)

    backup = commands.add_parser("backup", help="a consistent copy of the data file, taken "
                                 "while serving")
    backup.add_argument("destination", help="an empty directory")
    backup.set_defaults(run=command_backup)
    restore = commands.add_parser("restore", help="put a backup in place (server stopped)")
    restore.add_argument("source", help="a backup directory or data.mdb")
    restore.add_argument("--force", action="store_true", help="replace existing data")
    restore.set_defaults(run_without_engine=command_restore)

    demo = commands.add_parser("demo", help="seed demo SKUs, codes and keys; print a tour")
    demo.add_argument("--target", default="127.0.0.1:50051")
    demo.add_argument("--metrics", default="127.0.0.1:9464")
    demo.set_defaults(run=command_demo)

    call = commands.add_parser("call", help="call a unary method with JSON, e.g. "
                               "Orders/GetOrder '{\"orderId\": \"...\"}'")
    call.add_argument("method", help="Service/Method, e.g. Redemption/VerifyCode")
    call.add_argument("json", help="the request as JSON")
    call.add_argument("--target", default="127.0.0.1:50051")
    call.add_argument("--key", help="API key (or $KAMICORE_KEY, or --key-file)")
    call.add_argument("--key-file")
    call.set_defaults(run_without_engine=command_call)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "run_without_engine"):
            return args.run_without_engine(args)
        with Engine(args.data_dir) as engine:
            return args.run(engine, args)
    except InvalidArgument as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
