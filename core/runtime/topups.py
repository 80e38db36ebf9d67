"""Making direct top-ups happen: the calls to suppliers, between the commits of
kamicore.domain.topups. Used by the workers (ConfirmPayment, SupplierCallback) and the
dispatcher (the HTTP callbacks, recovery and follow-ups).

Every call is made outside any write transaction: its attempt was committed before, its answer
is committed after (domain.topups.settle), and a next attempt that commit records (a failover)
is called at once. The calls are awaited on the event loop, never blocking it: a top-up waiting
for its supplier holds no worker. ConfirmPayment waits for the first answer up to the first
supplier's timeout, then answers PENDING while the attempt goes on in the background; a task
cut short (the process stops or dies) leaves its attempt in the index of unsettled attempts,
where the dispatcher finds it once due and asks the supplier (QueryTopUp).
"""

from __future__ import annotations

import asyncio
import json
import logging

from .. import limits, metrics
from ..connectors import Result
from ..domain import code_purchases, ledger, orders, suppliers, topups
from ..engine import Engine
from ..statuses import ConfirmPaymentStatus
from .code_purchases import call as purchase_call

log = logging.getLogger("kamicore.topups")
ACTOR = "topups"


def connector_of(supplier):
    """The cached connector (kamicore.connectors) of `supplier` (a
    kamicore.domain.suppliers.Supplier with its secret) in the running event loop."""
    from ..connectors import Endpoint, connector_for
    return connector_for(Endpoint(supplier.supplier_id, supplier.protocol, supplier.address,
                                  supplier.timeout_ms, supplier.secret))


class Driver:
    """The top-up calls of one process. connector(supplier) -> a kamicore.connectors
    Connector; callback_base: the URL suppliers call back at ("" when only gRPC callbacks or
    queries settle PENDING top-ups)."""

    def __init__(self, engine: Engine, connector, *, follow_up_seconds: float,
                 callback_base: str = ""):
        self.engine = engine
        self.connector = connector
        self.follow_up_ms = int(follow_up_seconds * 1000)
        self.callback_base = callback_base.rstrip("/")
        self.background: set[asyncio.Task] = set()
        self.limit = asyncio.Semaphore(limits.topup_calls_in_flight_max)

    # -- commits and calls --------------------------------------------------------------------

    async def _settle(self, request_id: str, result: str, supplier_reference: str = "",
                      message: str = "", latency_ms: int = 0, supplier_id: str = "",
                      signature: str = "") -> tuple[str | None, list[dict]]:
        outcome, calls = await self.engine.run_async(self.engine.plan(
            topups.settle, (request_id, result, supplier_reference, message, latency_ms,
                            supplier_id, self.follow_up_ms, signature),
            ACTOR, full=lambda: (None, [])))
        if outcome == topups.LATE:
            metrics.topup_metrics().reconciliation()
        return outcome, calls

    async def settle(self, request_id: str, result: str, supplier_reference: str = "",
                     message: str = "", latency_ms: int = -1, supplier_id: str = "",
                     signature: str = "") -> str | None:
        """Commit an answer that came by itself (a callback) and start the next attempt it
        recorded -> what it did (domain.topups' APPLIED, LATE, ...; None: the data file is
        full, and the attempt stays unsettled, to be asked about again)."""
        outcome, calls = await self._settle(request_id, result, supplier_reference, message,
                                            latency_ms, supplier_id, signature)
        for attempt in calls:
            self.spawn(self.chain(attempt, query=False))
        return outcome

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("a top-up call failed: %s", error, exc_info=error)

    async def chain(self, attempt: dict | None, query: bool) -> None:
        """Call about `attempt` (TopUp, or QueryTopUp when its outcome is not known), commit
        the answer, and call each next attempt that commit recorded (a failover)."""
        while attempt is not None:
            attempt = await self._call(attempt, query)
            query = False

    async def _call(self, attempt: dict, query: bool) -> dict | None:
        if attempt.get("kind") == code_purchases.KIND:  # codes bought at payment time
            return await purchase_call(self, attempt)
        rid = attempt["request_id"]
        async with self.limit:
            supplier = suppliers.read(self.engine, attempt["supplier_id"])
            if supplier is None:  # gone from the registry: nobody to ask; asked again later
                await self._settle(rid, topups.UNKNOWN)
                return None
            connector = self.connector(supplier)
            if query:
                outcome = await connector.query(rid)
            else:
                callback_url = (f"{self.callback_base}/v1/callbacks/{supplier.supplier_id}"
                                if self.callback_base else "")
                outcome = await connector.top_up(
                    rid, attempt["product"], attempt["recipient"], attempt["amount_micros"],
                    attempt["currency"], callback_url)
        result = outcome.result
        if result is Result.NOT_FOUND and not query:  # a TopUp cannot say that: not trusted
            result = Result.UNKNOWN
        metrics.topup_metrics().answer("query" if query else "topup", result.value)
        _, calls = await self._settle(rid, result.value, outcome.supplier_reference,
                                      outcome.message, outcome.latency_ms)
        return calls[0] if calls else None

    async def ask_due(self, states: tuple[str, ...]) -> int:
        """Ask the suppliers about the attempts in `states` that are due (each leased while
        it is asked), going on with each order -> how many were asked."""
        due = await self.engine.run_async(self.engine.plan(
            topups.take_due, (states, limits.topup_due_per_tick_max), ACTOR, full=list))
        await asyncio.gather(*(self.chain(attempt, query=True) for attempt in due))
        return len(due)

    # -- ConfirmPayment ------------------------------------------------------------------------

    async def confirm_payment(self, order_id: str, reference: str, currency: str,
                              amount_micros: int, actor: str,
                              provider: str = ledger.DEFAULT_PROVIDER):
        """-> (status, late) of ConfirmPayment for any order; a top-up order's first call is
        waited for up to its supplier's timeout (and the failovers it causes, within it).
        provider: the payment provider (the ledger's receivable account)."""
        status, late, calls = await self.engine.run_async(self.engine.plan(
            orders.confirm_payment,
            (order_id.encode(), reference, currency, amount_micros, provider),
            actor, full=lambda: (ConfirmPaymentStatus.STORAGE_FULL, False, [])))
        if not calls:
            return status, late
        [attempt] = calls
        task = self.spawn(self.chain(attempt, query=False))
        try:
            await asyncio.wait_for(asyncio.shield(task),
                                   attempt["timeout_ms"] / 1000 + limits.topup_wait_grace_seconds)
        except TimeoutError:
            pass  # PENDING: it goes on in the background
        meta = self.meta(order_id)
        if code_purchases.is_purchase(meta):
            return code_purchases.status_of(meta), False
        return topups.ORDER_STATUS[meta["topup"]["state"]], False

    def meta(self, order_id: str) -> dict | None:
        value = self.engine.get(orders.META_TABLE, order_id.encode())
        return json.loads(value) if value is not None else None

    async def close(self) -> None:
        """Stop the calls in flight: their attempts stay unsettled, asked about later."""
        for task in tuple(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        from ..connectors import close_all
        await close_all()


# -- the dispatcher's tasks -----------------------------------------------------------------------

async def recover_unknown(dispatcher) -> None:
    """Attempts whose outcome is not known (a call cut short by a crash, a timeout): ask the
    supplier, then go on with the order."""
    await dispatcher.topups.ask_due((topups.CALLING, topups.UNKNOWN))


async def follow_up_pending(dispatcher) -> None:
    """PENDING attempts no callback settled within topup_follow_up_seconds: ask the
    supplier."""
    await dispatcher.topups.ask_due((topups.PENDING,))


TASKS = [recover_unknown, follow_up_pending]
