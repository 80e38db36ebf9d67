"""What the servicers of one worker share."""

from __future__ import annotations

import enum

from .. import metrics
from ..config import Config
from ..domain.catalog import Catalog
from ..domain.orders import Orders
from ..domain.risk import RiskStore
from ..engine import AsyncEngine, Engine
from ..runtime.callbacks import CallbackHandler
from ..runtime.event_feed import EventFeed
from ..runtime.topups import Driver, connector_of
from ..statuses import wire_name


class Services:
    def __init__(self, engine: Engine, config: Config, worker_metrics: metrics.WorkerMetrics):
        self.engine = engine
        self.api = AsyncEngine(engine)
        self.catalog = Catalog(engine)
        self.orders = Orders(engine)
        self.risk = RiskStore(engine, self.orders.risk)
        self.config = config
        self.metrics = worker_metrics
        # direct top-ups: ConfirmPayment's calls to suppliers and gRPC callbacks (created in
        # the worker's event loop)
        self.topups = Driver(engine, connector_of,
                             follow_up_seconds=config.topup_follow_up_seconds,
                             callback_base=config.callback_base())
        self.callbacks = CallbackHandler(engine, self.topups)
        self.event_feed = EventFeed(engine)  # wakes WatchEvents streams (kamicore.grpc.events)

    def outcome(self, method: str, status: enum.IntEnum) -> None:
        """Count a business outcome by its proto value name."""
        self.metrics.outcome(method, wire_name(status))
