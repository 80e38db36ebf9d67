"""A worker process: opens the data dir, binds the shared port (SO_REUSEPORT) and serves the
kamicore.v1 services plus health and reflection (v1 and v1alpha) until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from pathlib import Path

import grpc

from .. import limits, metrics
from ..config import Config
from ..engine import Engine
from ..v1 import (
    catalog_pb2, common_pb2, events_pb2, inventory_pb2, orders_pb2, redemption_pb2, reports_pb2,
    risk_pb2, suppliers_pb2, webhooks_pb2,
)
from . import reflection
from .catalog import CatalogService
from .events import EventsService
from .gate import Gate
from .inventory import InventoryService
from .orders import OrdersService
from .redemption import RedemptionService
from .reports import ReportsService
from .risk import RiskService
from .services import Services
from .suppliers import SuppliersService
from .webhooks import WebhooksService

WIRE_MODULES = (catalog_pb2, common_pb2, events_pb2, inventory_pb2, orders_pb2,
                redemption_pb2, reports_pb2, risk_pb2, suppliers_pb2, webhooks_pb2)
# each kamicore.v1 service: the module that declares it, and the servicer that serves it
SERVICERS = {"Catalog": (catalog_pb2, CatalogService),
             "Inventory": (inventory_pb2, InventoryService),
             "Orders": (orders_pb2, OrdersService),
             "Redemption": (redemption_pb2, RedemptionService),
             "Reports": (reports_pb2, ReportsService),
             "Risk": (risk_pb2, RiskService),
             "Suppliers": (suppliers_pb2, SuppliersService),
             "Events": (events_pb2, EventsService),
             "Webhooks": (webhooks_pb2, WebhooksService)}
SERVICE_NAMES = tuple(f"kamicore.v1.{name}" for name in SERVICERS)
# Calls grpc-core holds until the event loop takes them (one per turn): one bound for its random
# early drop and its hard limit, far above in_flight_rpcs_max, so that overload reaches the gate
# and is answered RESOURCE_EXHAUSTED and counted, not CANCELLED by grpc-core unseen (limits.py)
QUEUE_OPTIONS = (("grpc.server.max_pending_requests", limits.calls_queued_in_grpc_max),
                 ("grpc.server.max_pending_requests_hard_limit", limits.calls_queued_in_grpc_max),
                 ("grpc.server_max_unrequested_time_in_server",
                  limits.call_queued_in_grpc_seconds_max))


def _message_classes() -> dict:
    """Every generated message class by its full name."""
    return {message.full_name: getattr(module, name) for module in WIRE_MODULES
            for name, message in module.DESCRIPTOR.message_types_by_name.items()}


def _services(gate: Gate, services: Services) -> list:
    """One generic handler per kamicore service, every method resolved once (see gate.py)."""
    classes = _message_classes()
    return [gate.service(module.DESCRIPTOR.services_by_name[name], servicer(services), classes)
            for name, (module, servicer) in SERVICERS.items()]


def _credentials(config: Config):
    if not config.tls_cert:
        return None
    key = Path(config.tls_key).read_bytes() if config.tls_key else None
    chain = Path(config.tls_cert).read_bytes()
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


async def run_worker(config: Config, ready: multiprocessing.synchronize.Event | None) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    worker_metrics = metrics.WorkerMetrics()
    engine = Engine(config.data_dir, map_size_bytes=config.map_size_bytes,
                    master_key_file=config.master_key_file or None)
    services = Services(engine, config, worker_metrics)
    feed = services.event_feed

    def committed(operations: int, seconds: float) -> None:  # the writer's thread
        worker_metrics.on_commit(operations, seconds)
        feed.committed(operations, seconds)

    engine.on_commit = committed
    server = grpc.aio.server(
        options=[("grpc.so_reuseport", 1),
                 ("grpc.max_receive_message_length", config.message_bytes_max),
                 ("grpc.max_send_message_length", config.message_bytes_max),
                 *QUEUE_OPTIONS])
    server.add_generic_rpc_handlers(_services(Gate(engine, config, worker_metrics), services))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(server, (*SERVICE_NAMES, health.SERVICE_NAME))
    credentials = _credentials(config)
    if credentials is None:
        server.add_insecure_port(config.listen)
    else:
        server.add_secure_port(config.listen, credentials)
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    if ready is not None:
        ready.set()
    await stopping.wait()
    await health_servicer.enter_graceful_shutdown()  # every service NOT_SERVING
    feed.stop()  # watchers end UNAVAILABLE at once (they would hold the grace period)
    await server.stop(config.grace_seconds)  # refuse new calls, let in-flight ones finish
    await services.topups.close()  # top-ups still calling are left to the dispatcher
    engine.close()  # the pending group commit lands first


def worker_main(config: Config, ready) -> None:
    """Entry of a worker process (spawned: nothing of the parent's LMDB state comes along)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    asyncio.run(run_worker(config, ready))
