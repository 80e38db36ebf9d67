"""Running a real `kamicore serve` (supervisor + workers) for end-to-end tests, and talking to it
the way a client does: over a socket, with an API key, through the generated stubs.

Everything here is used by the end-to-end tests, tests/test_e2e_*.py (which share one server,
started in tests/conftest.py); nothing reaches into the server process.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kamicore.v1 import (
    catalog_pb2, catalog_pb2_grpc, common_pb2, inventory_pb2, inventory_pb2_grpc, orders_pb2,
    orders_pb2_grpc, redemption_pb2, redemption_pb2_grpc, reports_pb2_grpc, suppliers_pb2_grpc,
    webhooks_pb2_grpc,
)

HOST = "127.0.0.1"
start_timeout_seconds = 30.0
stop_timeout_seconds = 30.0
call_timeout_seconds = 30.0
workers = 2
# a fresh connection lands on one of the workers (SO_REUSEPORT hashes it); this many fresh
# connections answering SERVING in a row makes it very unlikely that one worker is not serving
health_fresh_channels = 8


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _clean_environment() -> dict:
    """The test's environment without anything that would change the server's settings."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("KAMICORE_") and name != "PROMETHEUS_MULTIPROC_DIR"}
    environment["PYTHONUNBUFFERED"] = "1"
    if "KAMICORE_EXT_DIR" in os.environ:  # where the interpreted engine's sources are
        environment["KAMICORE_EXT_DIR"] = os.environ["KAMICORE_EXT_DIR"]
    return environment


def cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`kamicore --data-dir DIR ...` as an operator runs it, next to a running server."""
    result = subprocess.run([sys.executable, "-m", "kamicore.cli", "--data-dir", str(data_dir),
                             *args], capture_output=True, text=True, env=_clean_environment(),
                            timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"kamicore {' '.join(args)} exited {result.returncode}: "
                             f"{result.stderr}")
    return result


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these plain values
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"


def risk_settings_file(path: Path, rule_set: dict) -> Path:
    """A settings file whose [risk] table is `rule_set` (kamicore.domain.risk_rules)."""
    lines = ["[risk]"] + [f"{name} = {_toml_value(value)}" for name, value in rule_set.items()
                          if name != "rules"]
    for rule in rule_set.get("rules", []):
        lines += ["", "[[risk.rules]]"] + [f"{name} = {_toml_value(value)}"
                                           for name, value in rule.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


class Client:
    """The kamicore.v1 stubs over one channel, each call carrying `key`."""

    def __init__(self, channel: grpc.Channel, key: str | None):
        self.channel = channel
        self.key = key
        self.metadata = bearer(key) if key is not None else []
        self.catalog = _Bound(catalog_pb2_grpc.CatalogStub(channel), self.metadata)
        self.inventory = _Bound(inventory_pb2_grpc.InventoryStub(channel), self.metadata)
        self.orders = _Bound(orders_pb2_grpc.OrdersStub(channel), self.metadata)
        self.redemption = _Bound(redemption_pb2_grpc.RedemptionStub(channel), self.metadata)
        self.suppliers = _Bound(suppliers_pb2_grpc.SuppliersStub(channel), self.metadata)
        self.webhooks = _Bound(webhooks_pb2_grpc.WebhooksStub(channel), self.metadata)
        self.reports = _Bound(reports_pb2_grpc.ReportsStub(channel), self.metadata)

    def stock(self, sku_id: str) -> inventory_pb2.GetStockResponse:
        return self.inventory.GetStock(inventory_pb2.GetStockRequest(sku_id=sku_id))


class _Bound:
    """A stub whose methods carry the key and a deadline unless told otherwise."""

    def __init__(self, stub, metadata):
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name):
        method = getattr(self._stub, name)

        def call(request, **options):
            options.setdefault("metadata", self._metadata)
            options.setdefault("timeout", call_timeout_seconds)
            return method(request, **options)
        return call


class Server:
    """One `kamicore serve` process tree on free ports of 127.0.0.1 over `data_dir`."""

    def __init__(self, data_dir: Path, log_dir: Path | None = None, name: str = "server",
                 settings: dict[str, str] | None = None, workers: int = workers):
        self.data_dir = Path(data_dir)
        self.settings = settings or {}  # config settings, passed as KAMICORE_<NAME> variables
        self.workers = workers
        self.log_dir = Path(log_dir or data_dir.parent)
        self.name = name
        self.process: subprocess.Popen | None = None
        self.port = self.metrics_port = 0
        self.channels: list[grpc.Channel] = []
        self.runs = 0
        self.log_paths: list[Path] = []

    # -- process -----------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> Server:
        assert self.process is None or self.process.poll() is not None
        self.port, self.metrics_port = free_port(), free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stdout = self.log_dir / f"{self.name}-{self.runs}.stdout.log"
        stderr = self.log_dir / f"{self.name}-{self.runs}.stderr.log"
        self.log_paths += [stdout, stderr]
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kamicore.cli", "--data-dir", str(self.data_dir),
                 "serve", "--workers", str(self.workers), "--listen", self.target,
                 "--metrics-listen", f"{HOST}:{self.metrics_port}"],
                stdout=out, stderr=err, cwd=self.log_dir, env={
                    **_clean_environment(),
                    **{f"KAMICORE_{name.upper()}": value for name, value in self.settings.items()}})
        try:
            self.wait_serving()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_serving(self, timeout: float = start_timeout_seconds) -> None:
        """Until the supervisor says every worker is up and fresh connections all answer
        SERVING (each may land on either worker)."""
        deadline = time.monotonic() + timeout
        in_a_row = 0
        while in_a_row < health_fresh_channels:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode} while "
                                     f"starting:\n{self.logs()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not serving after {timeout} s:\n"
                                     f"{self.logs()[-4000:]}")
            announced = "kamicore serving on" in self.log_paths[-2].read_text()
            if announced and self.health_once() == health_pb2.HealthCheckResponse.SERVING:
                in_a_row += 1
            else:
                in_a_row = 0
                time.sleep(0.1)

    def health_once(self, service: str = "", timeout: float = 2.0):
        """One health check over a fresh connection (not shared with other channels)."""
        with grpc.insecure_channel(self.target,
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                return health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout).status
            except grpc.RpcError:
                return None

    def stop(self, timeout: float = stop_timeout_seconds) -> int:
        """SIGTERM to the supervisor; its exit code."""
        self.close_channels()
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server did not exit {timeout} s after SIGTERM") from None

    def kill(self) -> None:
        """Last resort for a finalizer: the supervisor and its workers, by pid."""
        self.close_channels()
        if self.process is None or self.process.poll() is not None:
            return
        for pid in self._worker_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait(10)

    def _worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def worker_memory_bytes(self) -> int:
        """The anonymous resident memory (RssAnon: heap and stacks, not the mapped data file)
        of the supervisor's children, summed; read from /proc."""
        total = 0
        for pid in self._worker_pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        total += int(line.split()[1]) * 1024
        return total

    def logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.log_paths
                       if path.exists())

    # -- clients -----------------------------------------------------------------------------

    def channel(self, fresh: bool = False) -> grpc.Channel:
        options = [("grpc.use_local_subchannel_pool", 1)] if fresh else []
        channel = grpc.insecure_channel(self.target, options=options)
        self.channels.append(channel)
        return channel

    def client(self, key: str | None, fresh: bool = False) -> Client:
        return Client(self.channel(fresh), key)

    def aio_channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target)

    def close_channels(self) -> None:
        for channel in self.channels:
            channel.close()
        self.channels.clear()

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def create_key(self, role: str, binding: str = "") -> tuple[str, str]:
        """(key, key id) of a new key made with the CLI."""
        option = {"storefront": "--channel", "pos": "--terminal",
                  "supplier": "--supplier"}.get(role)
        args = ["keys", "create", "--role", role, *([option, binding] if option else [])]
        result = cli(self.data_dir, *args)
        key = result.stdout.strip()
        info = json.loads(result.stderr.strip().splitlines()[-1])
        assert key.startswith("kc_") and info["role"] == role
        return key, info["key_id"]

    def revoke_key(self, key_id: str) -> None:
        cli(self.data_dir, "keys", "revoke", key_id)

    def audit_events(self) -> int:
        report = json.loads(cli(self.data_dir, "audit", "verify").stdout)
        assert report["ok"], report
        return report["events"]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics",
                                    timeout=10) as reply:
            return reply.read().decode()


# -- catalog and inventory helpers ------------------------------------------------------------

CURRENCY = "CNY"
FACE_VALUE_MICROS = 50_000_000
PRICE_MICROS = {"web": 48_500_000, "partner": 47_000_000, "app": 49_000_000}


def sku_message(sku_id: str, *, channels=("web", "partner"), limit: int = 0,
                low_stock: int = 0, delivery=catalog_pb2.DELIVERY_KIND_CODE,
                name: str | None = None, suppliers=()) -> catalog_pb2.Sku:
    return catalog_pb2.Sku(
        sku_id=sku_id, name=name or f"Gift card {sku_id}",
        face_value=common_pb2.Money(currency=CURRENCY, amount_micros=FACE_VALUE_MICROS),
        delivery_kind=delivery,
        prices=[catalog_pb2.ChannelPrice(channel=channel, price_micros=PRICE_MICROS[channel])
                for channel in channels],
        purchase_limit_per_account=limit, low_stock_threshold=low_stock,
        supplier_ids=list(suppliers))


def create_sku(admin: Client, sku_id: str, **options) -> catalog_pb2.Sku:
    reply = admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(
        sku=sku_message(sku_id, **options)))
    assert reply.status == catalog_pb2.CREATE_SKU_STATUS_CREATED, reply
    return reply.sku


def new_codes(count: int, prefix: str = "KC") -> list[str]:
    """Fresh codes as printed on cards; every one is remembered so tests can look for leaks."""
    codes = [f"{prefix}-{secrets.token_hex(4).upper()}-{secrets.token_hex(4).upper()}"
             for _ in range(count)]
    ISSUED_CODES.update(codes)
    return codes


ISSUED_CODES: set[str] = set()


def import_requests(header: inventory_pb2.ImportHeader | None, codes, chunk_codes: int = 1000):
    if header is not None:
        yield inventory_pb2.ImportCodesRequest(header=header)
    for start in range(0, len(codes), chunk_codes):
        yield inventory_pb2.ImportCodesRequest(
            chunk=inventory_pb2.CodeChunk(codes=codes[start:start + chunk_codes]))


def import_codes(client: Client, sku_id: str, codes, *, batch_id: str | None = None,
                 supplier_id: str = "", unit_cost_micros: int = 40_000_000,
                 valid_from_ms: int = 0, valid_until_ms: int = 0, chunk_codes: int = 1000,
                 expect_ok: bool = True) -> inventory_pb2.ImportCodesResponse:
    header = inventory_pb2.ImportHeader(
        sku_id=sku_id, batch_id=batch_id or f"{sku_id}-batch", supplier_id=supplier_id,
        unit_cost_micros=unit_cost_micros, valid_from_ms=valid_from_ms,
        valid_until_ms=valid_until_ms)
    reply = client.inventory.ImportCodes(import_requests(header, list(codes), chunk_codes))
    if expect_ok:
        assert reply.status == inventory_pb2.IMPORT_STATUS_OK, reply
    return reply


def stocked_sku(admin: Client, sku_id: str, count: int, **options) -> list[str]:
    """A SKU sold on web and partner with `count` fresh codes; the codes."""
    create_sku(admin, sku_id, **options)
    codes = new_codes(count)
    if codes:
        reply = import_codes(admin, sku_id, codes)
        assert reply.imported == count, reply
    return codes


def counts(stock: inventory_pb2.GetStockResponse) -> dict[str, int]:
    """{state name without prefix: count}, zeros included."""
    return {common_pb2.CodeState.Name(entry.state).removeprefix("CODE_STATE_"): entry.count
            for entry in stock.counts}


# -- orders ------------------------------------------------------------------------------------

def order_request(key: str, sku_id: str, quantity: int = 1, account: str = "alice",
                  hold_seconds: int = 0, lines=None) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        idempotency_key=key, buyer=orders_pb2.Buyer(account_id=account, ip="203.0.113.7",
                                                    device_id="device-1"),
        lines=lines if lines is not None else [orders_pb2.OrderLine(sku_id=sku_id,
                                                                    quantity=quantity)],
        hold_seconds=hold_seconds)


def pay_request(order: orders_pb2.Order, reference: str | None = None,
                amount_micros: int | None = None) -> orders_pb2.ConfirmPaymentRequest:
    return orders_pb2.ConfirmPaymentRequest(
        order_id=order.order_id, payment_reference=reference or f"pay-{order.order_id}",
        amount=common_pb2.Money(currency=order.total.currency,
                                amount_micros=order.total.amount_micros
                                if amount_micros is None else amount_micros))


def buy(shop: Client, sku_id: str, quantity: int = 1, key: str | None = None,
        account: str = "alice") -> orders_pb2.ConfirmPaymentResponse:
    """Create and pay an order; the PAID reply with plaintext codes."""
    created = shop.orders.CreateOrder(order_request(key or f"buy-{secrets.token_hex(6)}",
                                                    sku_id, quantity, account))
    assert created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED, created
    paid = shop.orders.ConfirmPayment(pay_request(created.order))
    assert paid.status == orders_pb2.CONFIRM_PAYMENT_STATUS_PAID, paid
    return paid


def status_name(enum_type, value: int) -> str:
    return enum_type.Name(value)


__all__ = [
    "Client", "Server", "cli", "bearer", "free_port", "sku_message", "create_sku", "new_codes",
    "import_codes", "import_requests", "stocked_sku", "counts", "order_request", "pay_request",
    "buy", "ISSUED_CODES", "catalog_pb2", "common_pb2", "inventory_pb2", "orders_pb2",
    "redemption_pb2", "health_pb2", "health_pb2_grpc",
]
