"""`kamicore` command line: operator tools over a data dir (import, stock, orders, audit),
the server, and calls to it.

Every mistake of its user ends in one line on stderr naming what is wrong, never a traceback:
exit 2 when the command line itself is wrong (an unknown option, a bad value, malformed JSON),
1 when a well-formed command cannot be done (a missing file, an address in use, a folder
without kamicore data, a call the server refused)."""

from __future__ import annotations

import argparse
import os
import sys

from .. import config as config_module
from ..auth import StorageFull
from ..engine import InvalidArgument
from ..keyring import DecryptionError
from ..runtime.startup import StartupError, open_engine
from . import catalog, data, ledger, remote, reports, suppliers, webhooks

DATA_DIR_ENV = "KAMICORE_DATA_DIR"
DEBUG_ENV = "KAMICORE_DEBUG"  # set: an unexpected error shows its traceback


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("kamicore")
    except PackageNotFoundError:
        return "unknown"


TARGET_HELP = ("host:port of the server (default $KAMICORE_TARGET, else the configured listen "
               "address, 127.0.0.1:50051 unless set)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kamicore", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kamicore {_version()}")
    parser.add_argument("--config", help="TOML settings file (default $KAMICORE_CONFIG); "
                        "the settings are in kamicore/config.py")
    parser.add_argument("--data-dir", help=f"the data dir (default ${DATA_DIR_ENV}, the "
                        "config's data_dir, or ./var)")
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
    importing.set_defaults(run=data.command_import)

    stock = commands.add_parser("stock", help="counts by state for one or every sku")
    stock.add_argument("sku", nargs="?")
    stock.set_defaults(run=data.command_stock)

    order = commands.add_parser("order", help="orders")
    order_commands = order.add_subparsers(dest="order_command", required=True)
    show = order_commands.add_parser("show", help="an order with its codes masked")
    show.add_argument("order_id")
    show.set_defaults(run=data.command_order_show)

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="recompute the audit hash chain")
    verify.set_defaults(run=data.command_audit_verify)

    terminal = commands.add_parser("terminal", help="POS terminals locked for guessing")
    terminal_commands = terminal.add_subparsers(dest="terminal_command", required=True)
    terminal_show = terminal_commands.add_parser("show", help="a terminal's consecutive misses "
                                                 "and lock")
    terminal_show.add_argument("terminal")
    terminal_show.set_defaults(run=data.command_terminal_show)
    unlock = terminal_commands.add_parser("unlock", help="unlock a terminal and clear its "
                                          "misses (works while the server runs)")
    unlock.add_argument("terminal")
    unlock.set_defaults(run=data.command_terminal_unlock)

    check = commands.add_parser("check", help="verify every stored invariant (counters, "
                                "indexes, orders, decryption, audit chain)")
    check.set_defaults(run=data.command_check)

    rotate = commands.add_parser("rotate-keys", help="re-wrap data keys under a new master key")
    rotate.set_defaults(run=data.command_rotate_keys)

    serve = commands.add_parser("serve", help="run the gRPC server (supervisor + workers)")
    serve.add_argument("--config", default=argparse.SUPPRESS,
                       help="TOML file (default $KAMICORE_CONFIG)")
    serve.add_argument("--listen", help="host:port (default 127.0.0.1:50051)")
    serve.add_argument("--metrics-listen", help="host:port of /metrics (default 127.0.0.1:9464)")
    serve.add_argument("--callback-listen", help="host:port of the HTTP listener for supplier "
                       "callbacks (default: off)")
    serve.add_argument("--workers", type=int, help="worker processes (default: CPU count)")
    serve.set_defaults(run_without_engine=remote.command_serve)

    keys = commands.add_parser("keys", help="API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key (printed once)")
    create.add_argument("--role", required=True, choices=["admin", "storefront", "partner",
                                                          "pos", "supplier"])
    create.add_argument("--channel", help="storefront keys: the sales channel")
    create.add_argument("--terminal", help="pos keys: the terminal id")
    create.add_argument("--supplier", help="supplier keys: the supplier id")
    create.add_argument("--name", default="", help="a note for humans")
    create.set_defaults(run=catalog.command_keys_create, creates=True)
    listing = key_commands.add_parser("list", help="keys (never their secrets)")
    listing.set_defaults(run=catalog.command_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=catalog.command_keys_revoke)

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
    sku_create.add_argument("--supplier", action="append", default=[],
                            help="a supplier id whose supplier keys may import into this SKU "
                                 "(repeat per supplier)")
    sku_create.add_argument("--routing", default="priority",
                            choices=["priority", "cheapest", "highest_success_rate", "fastest"],
                            help="how orders pick among supplier routes (README: Suppliers)")
    sku_create.add_argument("--replenish", type=int, default=0, metavar="QUANTITY",
                            help="buy this many codes from the preferred supplier whenever "
                                 "sellable stock falls below --low-stock (README: Replenishment)")
    sku_create.add_argument("--buy-on-payment", action="store_true",
                            help="no pool: each paid order's codes are bought from a supplier")
    sku_create.set_defaults(run=catalog.command_sku_create, creates=True)
    sku_list = sku_commands.add_parser("list", help="every SKU as JSON lines")
    sku_list.set_defaults(run=catalog.command_sku_list)

    backup = commands.add_parser("backup", help="a consistent copy of the data file, taken "
                                 "while serving")
    backup.add_argument("destination", help="an empty directory")
    backup.set_defaults(run=data.command_backup)
    restore = commands.add_parser("restore", help="put a backup in place (server stopped)")
    restore.add_argument("source", help="a backup directory or data.mdb")
    restore.add_argument("--force", action="store_true", help="replace existing data")
    restore.set_defaults(run_without_engine=data.command_restore)

    demo = commands.add_parser("demo", help="seed demo SKUs, codes and keys; print a tour")
    demo.add_argument("--target", help=TARGET_HELP)
    demo.add_argument("--metrics", help="host:port of /metrics (default: the configured "
                      "metrics_listen)")
    demo.set_defaults(run=catalog.command_demo, creates=True)

    call = commands.add_parser("call", help="call a unary method with JSON, e.g. "
                               "Orders/GetOrder '{\"orderId\": \"...\"}'")
    call.add_argument("method", help="Service/Method, e.g. Redemption/VerifyCode")
    call.add_argument("json", help="the request as JSON")
    call.add_argument("--target", help=TARGET_HELP)
    call.add_argument("--key", help="API key (or $KAMICORE_KEY, or --key-file)")
    call.add_argument("--key-file")
    call.set_defaults(run_without_engine=remote.command_call)
    suppliers.add_commands(commands, TARGET_HELP)
    webhooks.add_commands(commands, TARGET_HELP)
    ledger.add_commands(commands)
    reports.add_commands(commands, TARGET_HELP)
    return parser


def _unprintable(argv: list[str]) -> str | None:
    """The first argument holding a control character or bytes that are not UTF-8, named by
    its option (or position); tabs and line breaks pass (JSON may hold them)."""
    for index, argument in enumerate(argv):
        for character in argument:
            point = ord(character)
            if 0xD800 <= point <= 0xDFFF:
                problem = "is not valid UTF-8"
            elif point < 32 and character not in "\t\n\r" or 127 <= point < 160:
                problem = f"contains a control character (U+{point:04X})"
            else:
                continue
            if argument.startswith("--") and "=" in argument:
                name = argument.partition("=")[0]
            elif index and argv[index - 1].startswith("-") and not argument.startswith("-"):
                name = argv[index - 1]
            else:
                name = f"argument {index + 1}"
            return f"{name}: {problem}"
    return None


def _settings(args) -> config_module.Config:
    """The settings file and KAMICORE_* variables, then the options given."""
    overrides = {"data_dir": args.data_dir}
    for name in ("listen", "metrics_listen", "callback_listen", "workers"):
        overrides[name] = getattr(args, name, None)
    return config_module.load(args.config, overrides)


def _run(args) -> int:
    try:
        args.settings = _settings(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if hasattr(args, "run_without_engine"):
        return args.run_without_engine(args)
    engine, notice = open_engine(args.settings, create=getattr(args, "creates", False))
    with engine:
        if notice:
            print(f"note: {notice}", file=sys.stderr)
        return args.run(engine, args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    problem = _unprintable(argv)
    if problem:
        parser.error(problem)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except InvalidArgument as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (StartupError, StorageFull) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except DecryptionError as error:
        print(f"error: the master key does not open this data (DecryptionError: {error})",
              file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, unless asked for the traceback
        if os.environ.get(DEBUG_ENV):
            raise
        message = " ".join(str(error).split())
        print(f"error: unexpected {type(error).__name__}: {message} (a bug: please report it; "
              f"{DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
        return 1
