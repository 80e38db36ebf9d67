"""The server benchmark's data: the catalog and keys through kamicore's command line before the
server opens the data dir, then codes through its own RPCs (the admin key the first start writes
imports them over Inventory/ImportCodes; the storefront sells most of them with CreateOrder +
ConfirmPayment of 10,000 codes each, whose replies deliver the plaintexts the Redeem figures
use)."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from pathlib import Path

from common import code_of, expect, log
from kamicore_access import CLI
from processes import clean_environment
from rpcs import (
    CHANNEL,
    CURRENCY,
    METHOD_CONFIRM,
    METHOD_CREATE,
    METHOD_IMPORT,
    PRICES,
    bearer,
    call_timeout_seconds,
)
from server_plan import FACE_VALUE_MICROS, SKU, TERMINAL

import_chunk_codes = 10_000  # the server's largest chunk
seed_order_codes = 10_000  # the largest order: 10 lines of 1,000
seed_parallel = 4  # concurrent seeding streams and orders (connections land on either worker)


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, "--data-dir", str(data_dir), *args], capture_output=True,
                            text=True, env=clean_environment(), timeout=120, check=False)
    expect(result.returncode == 0,
           f"kamicore {' '.join(args[:3])} exited {result.returncode}: {result.stderr}")
    return result


def prepare(data_dir: Path) -> dict[str, str]:
    """The catalog and the pos and storefront keys, with the CLI; the keys by role."""
    cli(data_dir, "sku", "create", SKU, "--name", "Bench gift card 50", "--currency", CURRENCY,
        "--face-value", f"{FACE_VALUE_MICROS / 1e6:.2f}",
        *[f"--price={channel}={micros / 1e6:.2f}" for channel, micros in PRICES.items()])
    keys = {
        "pos": cli(data_dir, "keys", "create", "--role", "pos", "--terminal", TERMINAL,
                   "--name", "server bench").stdout.strip(),
        "storefront": cli(data_dir, "keys", "create", "--role", "storefront", "--channel",
                          CHANNEL, "--name", "server bench").stdout.strip(),
    }
    expect(all(key.startswith("kc_") for key in keys.values()), "keys create")
    return keys


def admin_key(data_dir: Path) -> str:
    """The admin key the server's first start writes into the data dir."""
    return (data_dir / "admin.key").read_text().strip()


def seed(target: str, keys: dict[str, str], sold: int, available: int) -> list[str]:
    """Import sold + available codes over ImportCodes, then sell `sold` of them with
    CreateOrder + ConfirmPayment; the plaintexts of the SOLD codes, in sale order."""
    import grpc
    from kamicore.v1 import common_pb2, inventory_pb2, orders_pb2
    total = sold + available
    channels = [grpc.insecure_channel(target,
                                      options=[("grpc.use_local_subchannel_pool", 1),
                                               ("grpc.max_receive_message_length", 2**26)])
                for _ in range(seed_parallel)]
    plaintexts: list[str] = []
    try:
        def import_range(lane: int) -> int:
            def requests():
                yield inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(
                    sku_id=SKU, batch_id="bench-batch", supplier_id="bench-supplier",
                    unit_cost_micros=900_000))
                for start in range(lane * import_chunk_codes, total,
                                   seed_parallel * import_chunk_codes):
                    codes = [code_of("BNCH", number) for number in
                             range(start, min(total, start + import_chunk_codes))]
                    yield inventory_pb2.ImportCodesRequest(
                        chunk=inventory_pb2.CodeChunk(codes=codes))
            call = channels[lane].stream_unary(
                METHOD_IMPORT,
                request_serializer=inventory_pb2.ImportCodesRequest.SerializeToString,
                response_deserializer=inventory_pb2.ImportCodesResponse.FromString)
            reply = call(requests(), metadata=bearer(keys["admin"]),
                         timeout=call_timeout_seconds * 4)
            expect(reply.status == inventory_pb2.IMPORT_STATUS_OK and not reply.rejected,
                   f"import: {reply.status} {reply.rejected} rejected")
            return reply.imported

        def sell(number: int, quantity: int) -> list[str]:
            channel = channels[number % seed_parallel]
            metadata = bearer(keys["storefront"])
            create = channel.unary_unary(
                METHOD_CREATE,
                request_serializer=orders_pb2.CreateOrderRequest.SerializeToString,
                response_deserializer=orders_pb2.CreateOrderResponse.FromString)
            confirm = channel.unary_unary(
                METHOD_CONFIRM,
                request_serializer=orders_pb2.ConfirmPaymentRequest.SerializeToString,
                response_deserializer=orders_pb2.ConfirmPaymentResponse.FromString)
            lines = [orders_pb2.OrderLine(sku_id=SKU, quantity=min(1000, quantity - start))
                     for start in range(0, quantity, 1000)]
            created = create(orders_pb2.CreateOrderRequest(
                idempotency_key=f"seed-{number}", buyer=orders_pb2.Buyer(account_id="seed"),
                lines=lines, hold_seconds=3600), metadata=metadata,
                timeout=call_timeout_seconds)
            expect(created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED,
                   f"seed order: {created.status}")
            confirmed = confirm(orders_pb2.ConfirmPaymentRequest(
                order_id=created.order.order_id, payment_reference=f"seed-pay-{number}",
                amount=common_pb2.Money(currency=CURRENCY,
                                        amount_micros=quantity * PRICES[CHANNEL])),
                metadata=metadata, timeout=call_timeout_seconds)
            expect(confirmed.status == orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
                   and len(confirmed.order.codes) == quantity,
                   f"seed payment: {confirmed.status}")
            return [code.code for code in confirmed.order.codes]

        with concurrent.futures.ThreadPoolExecutor(seed_parallel) as pool:
            started = time.perf_counter()
            imported = sum(pool.map(import_range, range(seed_parallel)))
            expect(imported == total, f"seed: imported {imported} of {total}")
            imported_at = time.perf_counter()
            sizes = [min(seed_order_codes, sold - start)
                     for start in range(0, sold, seed_order_codes)]
            for codes in pool.map(sell, range(len(sizes)), sizes):
                plaintexts.extend(codes)
            log(f"setup: imported {total:,} codes in {imported_at - started:.1f} s, sold "
                f"{sold:,} in {time.perf_counter() - imported_at:.1f} s")
    finally:
        for channel in channels:
            channel.close()
    expect(len(set(plaintexts)) == sold, "seed: distinct SOLD codes")
    return plaintexts
