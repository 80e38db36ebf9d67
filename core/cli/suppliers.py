"""`kamicore supplier register|update|list|stats`: the Suppliers service, called on a running
server with an admin key (like `kamicore call`). The signing secret is read from a file, never
from the command line (where `ps` would show it), and no reply ever carries it."""

from __future__ import annotations

import sys
from pathlib import Path

from . import remote

ROUTE_HELP = ("a route, repeatable: sku=ID,product=CODE,cost_micros=N,currency=CNY"
              "[,priority=N][,enabled=false]")
_ROUTE_FIELDS = {"sku", "product", "cost_micros", "currency", "priority", "enabled"}


def add_commands(commands, target_help: str) -> None:
    supplier = commands.add_parser("supplier", help="suppliers (on a running server, with an "
                                   "admin key)")
    actions = supplier.add_subparsers(dest="supplier_command", required=True)
    for name, help_text in (("register", "register a supplier with its routes"),
                            ("update", "replace a supplier's definition and routes (the "
                                       "secret is kept unless --secret-file is given)")):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("supplier_id")
        parser.add_argument("--name", default="")
        parser.add_argument("--protocol", choices=("grpc", "http"), required=True)
        parser.add_argument("--address", required=True,
                            help="grpc: host:port; http: the base URL")
        parser.add_argument("--timeout-ms", type=int, default=5_000)
        parser.add_argument("--secret-file", required=name == "register",
                            help="a file holding the signing secret (a trailing line break "
                            "is dropped)")
        parser.add_argument("--disabled", action="store_true", help="never choose it")
        parser.add_argument("--route", action="append", default=[], help=ROUTE_HELP)
        parser.set_defaults(run_without_engine=command_write, method=name)
    listing = actions.add_parser("list", help="every supplier as JSON lines (no secrets)")
    listing.set_defaults(run_without_engine=command_list)
    stats = actions.add_parser("stats", help="a supplier's breaker and figures per SKU")
    stats.add_argument("supplier_id")
    stats.add_argument("--sku", default="", help="only this SKU")
    stats.set_defaults(run_without_engine=command_stats)
    for parser in (*(actions.choices[name] for name in ("register", "update")), listing, stats):
        parser.add_argument("--target", help=target_help)
        parser.add_argument("--key", help="admin API key (or $KAMICORE_KEY, or --key-file)")
        parser.add_argument("--key-file")


def _route(text: str, index: int):
    from ..v1 import common_pb2, suppliers_pb2
    fields = {}
    for part in text.split(","):
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or name not in _ROUTE_FIELDS:
            raise ValueError(f"--route {index + 1}: {part.strip()!r} is not one of "
                             f"{', '.join(sorted(_ROUTE_FIELDS))} as name=value")
        fields[name] = value.strip()
    missing = {"sku", "product", "cost_micros", "currency"} - set(fields)
    if missing:
        raise ValueError(f"--route {index + 1}: needs {', '.join(sorted(missing))}")
    try:
        cost, priority = int(fields["cost_micros"]), int(fields.get("priority", "0"))
    except ValueError:
        raise ValueError(f"--route {index + 1}: cost_micros and priority are integers") from None
    if fields.get("enabled", "true") not in ("true", "false"):
        raise ValueError(f"--route {index + 1}: enabled is true or false")
    return suppliers_pb2.SupplierRoute(
        sku_id=fields["sku"], product=fields["product"], priority=priority,
        cost=common_pb2.Money(currency=fields["currency"], amount_micros=cost),
        enabled=fields.get("enabled", "true") == "true")


def call(args, method: str, request):
    """-> (reply, exit code): 0, or 1 with the refusal on stderr."""
    from ..v1 import suppliers_pb2_grpc
    return remote.unary(args, suppliers_pb2_grpc.SuppliersStub, method, request)


def print_reply(reply) -> None:
    """A reply as one line of JSON."""
    from google.protobuf import json_format
    print(json_format.MessageToJson(reply, always_print_fields_with_no_presence=True,
                                    indent=None))


def command_write(args) -> int:
    from ..v1 import suppliers_pb2
    try:
        routes = [_route(text, index) for index, text in enumerate(args.route)]
        secret = b""
        if args.secret_file:
            secret = Path(args.secret_file).read_bytes().rstrip(b"\r\n")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    protocol = {"grpc": suppliers_pb2.SUPPLIER_PROTOCOL_GRPC,
                "http": suppliers_pb2.SUPPLIER_PROTOCOL_HTTP_JSON}[args.protocol]
    supplier = suppliers_pb2.Supplier(
        supplier_id=args.supplier_id, name=args.name, protocol=protocol, address=args.address,
        timeout_ms=args.timeout_ms, signing_secret=secret, enabled=not args.disabled,
        routes=routes)
    if args.method == "register":
        reply, code = call(args, "RegisterSupplier",
                            suppliers_pb2.RegisterSupplierRequest(supplier=supplier))
        done = suppliers_pb2.REGISTER_SUPPLIER_STATUS_REGISTERED
    else:
        reply, code = call(args, "UpdateSupplier",
                            suppliers_pb2.UpdateSupplierRequest(supplier=supplier))
        done = suppliers_pb2.UPDATE_SUPPLIER_STATUS_UPDATED
    if reply is None:
        return code
    print_reply(reply)
    return 0 if reply.status == done else 1


def every_supplier(args) -> tuple[list | None, int]:
    """Every supplier, following the pages -> (suppliers, 0), or (None, exit code)."""
    from ..v1 import suppliers_pb2
    found, token = [], ""
    while True:
        reply, code = call(args, "ListSuppliers",
                            suppliers_pb2.ListSuppliersRequest(page_token=token))
        if reply is None:
            return None, code
        found += reply.suppliers
        token = reply.next_page_token
        if not token:
            return found, 0


def command_list(args) -> int:
    found, code = every_supplier(args)
    for supplier in found or ():
        print_reply(supplier)
    return code


def command_stats(args) -> int:
    from ..v1 import suppliers_pb2
    reply, code = call(args, "GetSupplierStats", suppliers_pb2.GetSupplierStatsRequest(
        supplier_id=args.supplier_id, sku_id=args.sku))
    if reply is None:
        return code
    print_reply(reply)
    return 0 if reply.status == suppliers_pb2.SUPPLIER_LOOKUP_STATUS_FOUND else 1


__all__ = ["add_commands", "every_supplier"]
