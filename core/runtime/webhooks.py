"""The webhook sender: the dispatcher's task that POSTs the outbox's events to the registered
endpoints (kamicore.domain.webhooks), and prunes the outbox.

Every enabled endpoint has its own delivery loop, so a slow or dead endpoint delays no other,
and nothing here runs in a worker: an order's commit only appends its events to the outbox.
A loop, per endpoint and in event-id order:
1. reads the events after its cursor (kamicore.domain.events.read), skipping those the
   endpoint's scope or event types leave out;
2. POSTs one event (its JSON, signed: x-kamicore-timestamp and x-kamicore-signature as
   kamicore.connectors.signing makes them, plus x-kamicore-event-id and -type) and waits for
   the answer: only a 2xx acknowledges it, and event n+1 is never sent before n is;
3. after the 2xx, commits the cursor at that event (at least once: a crash between the two
   sends it again, with the same event id for the receiver to de-duplicate) - while the next
   event is already on its way: one cursor commit is in flight per endpoint at most, and the
   2xx answered meanwhile are committed together by the next (so a crash repeats only what
   was acknowledged since the last committed cursor), which keeps the fsyncs off the delivery
   path and the dispatcher's commits few;
4. on a failure (an answer that is not 2xx, a redirect, a timeout, a broken connection),
   commits the failure and tries the same event again after a backoff that doubles from
   `webhook_backoff_seconds` with jitter, up to limits.webhook_backoff_seconds_max.

An endpoint failing for longer than its retry window is FAILING: it PARKS rather than
dead-letters - it keeps its events in order and is tried at the slowest pace until it answers
(an alert: a warning in the log, kamicore_webhook_failing{webhook} = 1), because skipping an
event would break the two promises a receiver builds on: every event at least once, in order.
What bounds it is the operator: disabling or deleting the endpoint releases its events to the
outbox's pruning (kamicore_webhook_backlog{webhook} shows what it holds).

The task itself lives as long as the dispatcher: each tick it starts, updates and stops
endpoint loops as the table says (and a loop reads its endpoint before each POST, so a new URL,
a rotated secret, a deletion or a disabling counts from the next POST on), and
every limits.webhook_prune_interval_seconds it prunes outbox records older than
`webhook_retention_seconds` that no enabled endpoint still needs. On SIGTERM the loops finish
the POST in flight (at most its timeout) and stop. Nothing of a secret, and no answer body,
reaches a log, a metric or the delivery state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from .. import limits
from ..connectors import signing
from ..domain import events, webhooks
from ..domain.webhooks import Webhook
from . import dispatcher as dispatcher_module

log = logging.getLogger("kamicore.webhooks")
ACTOR = "webhooks"
EVENT_ID_HEADER = "x-kamicore-event-id"
EVENT_TYPE_HEADER = "x-kamicore-event-type"
USER_AGENT = "kamicore-webhooks/1"
ACKNOWLEDGED = "acknowledged"


class WebhookMetrics:
    def __init__(self):
        from prometheus_client import Counter, Histogram

        from ..metrics import LATENCY_BUCKETS_SECONDS
        self.deliveries = Counter(
            "kamicore_webhook_deliveries_total", "Webhook POSTs by endpoint and outcome: "
            "acknowledged (2xx), http_<status>, timeout, cannot_connect, disconnected, "
            "bad_response", ["webhook", "outcome"])
        self.latency = Histogram("kamicore_webhook_delivery_seconds", "Time from sending a "
                                 "webhook POST to its answer, by endpoint", ["webhook"],
                                 buckets=LATENCY_BUCKETS_SECONDS)


_metrics: WebhookMetrics | None = None


def _webhook_metrics() -> WebhookMetrics:
    global _metrics
    if _metrics is None:  # created in the dispatcher process, after the metrics dir is set
        _metrics = WebhookMetrics()
    return _metrics


def backoff_seconds(failures: int, first_seconds: float, failing: bool) -> float:
    """How long to wait before the next attempt after `failures` failed ones in a row: doubling
    from `first_seconds` up to the maximum (at once when FAILING), with jitter (half to all of
    it, so endpoints that failed together do not retry together)."""
    delay = limits.webhook_backoff_seconds_max if failing else min(
        first_seconds * 2 ** min(failures - 1, 32), limits.webhook_backoff_seconds_max)
    return delay * random.uniform(0.5, 1.0)


def _failure(error: BaseException) -> str:
    """A short name for a failed POST: never the URL, an answer's body or a header."""
    import aiohttp
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "cannot_connect"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "disconnected"
    return "bad_response"


class Endpoint:
    """One endpoint's delivery loop (see the module docstring)."""

    def __init__(self, sender: Sender, webhook: Webhook):
        self.sender = sender
        self.webhook = webhook  # replaced by the sender when its definition changes
        self.retired = False
        self.wake = asyncio.Event()  # new events, a new definition, retirement
        self._acknowledged = 0  # the newest event id acknowledged (committed or not)
        self._saving: asyncio.Task | None = None  # the cursor commit in flight

    def _save(self, event_id: int) -> None:
        """Event `event_id` got its 2xx: commit the cursor at it, now or after the commit in
        flight."""
        self._acknowledged = event_id
        if self._saving is None or self._saving.done():
            self._saving = asyncio.ensure_future(self._save_acknowledged())

    async def _save_acknowledged(self) -> None:
        while True:
            event_id = self._acknowledged
            await self._commit(webhooks.acknowledged, event_id)
            if self._acknowledged == event_id:
                return

    async def _flush(self) -> None:
        """Until every acknowledgement is committed (before another delivery commit, so that
        commits land in the order things happened)."""
        if self._saving is not None:
            await self._saving

    def changed(self, webhook: Webhook | None) -> None:
        """A new definition (None: disabled, deleted or stopping): takes effect at once,
        ending a backoff early."""
        if webhook is None:
            self.retired = True
        else:
            self.webhook = webhook
        self.wake.set()

    def _current(self) -> bool:
        """Before each POST: the endpoint as committed now (a rotated secret or a new URL
        counts at once) -> True, and retired, when it was deleted or disabled since."""
        webhook = webhooks.read(self.sender.engine, self.webhook.webhook_id)
        if webhook is None or not webhook.enabled \
                or webhook.created_ms != self.webhook.created_ms:
            self.retired = True
        else:
            self.webhook = webhook
        return self.retired

    async def _wait(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()

    async def _commit(self, function, *args):
        engine = self.sender.engine
        return await engine.run_async(engine.plan(function, (self.webhook, *args), ACTOR,
                                                  full=lambda: None))

    async def run(self) -> None:
        try:
            await self._serve()
        finally:
            await self._flush()

    async def _serve(self) -> None:
        engine = self.sender.engine
        record = webhooks.delivery(engine, self.webhook.webhook_id)
        if record.created_ms != self.webhook.created_ms:
            return  # deleted and registered again since it was read: the next tick starts it
        cursor = saved = record.cursor
        saved_at = time.monotonic()
        failures = record.consecutive_failures
        if failures and record.next_try_ms > engine.now_ms():  # a backoff from before a restart
            await self._wait((record.next_try_ms - engine.now_ms()) / 1000)
        while not self.retired:
            self.wake.clear()  # before reading: a commit after the read wakes the wait below
            page, read_to = events.read(engine, cursor)
            for event in page:
                if self.webhook.wants(event):
                    failures = await self._deliver(event, failures)
                    if failures:
                        return  # retired while failing: a later loop starts from the cursor
                    saved, saved_at = event.id, time.monotonic()
                cursor = event.id
                if self.retired:
                    return
            if read_to > cursor:  # past entries that are no event for anyone: read on
                cursor = read_to
                continue
            if page:
                continue
            # nothing newer: save a cursor that only passed other endpoints' events, at most
            # every webhook_cursor_save_seconds (so that pruning may drop them)
            save_in = saved_at + limits.webhook_cursor_save_seconds - time.monotonic()
            if cursor > saved and save_in <= 0:
                await self._flush()
                await self._commit(webhooks.passed, cursor)
                saved, saved_at = cursor, time.monotonic()
            await self._wait(max(0.0, save_in) if cursor > saved else None)

    async def _deliver(self, event: events.Event, failures: int) -> int:
        """POST `event` until acknowledged (-> 0) or retired (-> the failures so far; the
        caller sees `retired`)."""
        engine = self.sender.engine
        alerted = False
        while not self._current():
            webhook = self.webhook
            outcome = await self.sender.post(webhook, event)
            if outcome == ACKNOWLEDGED:
                self._save(event.id)
                if failures:
                    log.info("webhook %s answers again after %d failed attempts",
                             webhook.webhook_id, failures)
                return 0
            failures += 1
            await self._flush()  # the state read next has every acknowledgement before it
            now_ms = engine.now_ms()
            since_ms = webhooks.delivery(engine, webhook.webhook_id).failing_since_ms or now_ms
            failing = now_ms - since_ms > webhook.retry_seconds * 1000
            delay = backoff_seconds(failures, self.sender.first_backoff_seconds, failing)
            await self._commit(webhooks.attempt_failed, outcome, now_ms + int(delay * 1000))
            if failing and not alerted:
                alerted = True
                log.warning("webhook %s is FAILING: no 2xx for over %d s (last: %s); its "
                            "events are held in order and it is tried every %d-%d s until "
                            "it answers or is disabled", webhook.webhook_id, webhook.retry_seconds,
                            outcome, limits.webhook_backoff_seconds_max // 2,
                            limits.webhook_backoff_seconds_max)
            await self._wait(delay)
        return failures


class Sender:
    """The delivery loops of every enabled endpoint, their HTTP session, and pruning."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.engine = dispatcher.engine
        config = dispatcher.config
        self.first_backoff_seconds = config.webhook_backoff_seconds
        self.timeout_seconds = config.webhook_timeout_seconds
        self.retention_ms = int(config.webhook_retention_seconds * 1000)
        self.loops: dict[str, tuple[Endpoint, asyncio.Task]] = {}
        self._session = None
        self._head = events.head(self.engine)
        self._next_prune = 0.0

    def session(self):
        if self._session is None:
            import aiohttp
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limits.webhook_connections_max),
                headers={"user-agent": USER_AGENT})
        return self._session

    async def post(self, webhook: Webhook, event: events.Event) -> str:
        """One signed POST of `event` -> ACKNOWLEDGED or why not."""
        import aiohttp
        body = event.to_json()
        headers = {"content-type": "application/json", EVENT_ID_HEADER: str(event.id),
                   EVENT_TYPE_HEADER: event.type, **signing.signed_headers(webhook.secret, body)}
        metrics = _webhook_metrics()
        started = time.perf_counter()
        try:
            async with self.session().post(
                    webhook.url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=self.timeout_seconds)) as answer:
                outcome = ACKNOWLEDGED if 200 <= answer.status < 300 else f"http_{answer.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            outcome = _failure(error)
        metrics.deliveries.labels(webhook.webhook_id, outcome).inc()
        metrics.latency.labels(webhook.webhook_id).observe(time.perf_counter() - started)
        return outcome

    def reconcile(self) -> None:
        """Start, update and stop delivery loops as the webhooks table says."""
        wanted = {webhook.webhook_id: webhook for webhook in webhooks.every(self.engine)
                  if webhook.enabled}
        for webhook_id, (endpoint, task) in list(self.loops.items()):
            webhook = wanted.get(webhook_id)
            if task.done():
                del self.loops[webhook_id]
                if not task.cancelled() and task.exception() is not None:
                    log.error("webhook %s: delivery loop failed; restarting it", webhook_id,
                              exc_info=task.exception())
            elif webhook is None or webhook.created_ms != endpoint.webhook.created_ms:
                endpoint.changed(None)  # gone, disabled, or another endpoint under its id
            elif webhook != endpoint.webhook:
                endpoint.changed(webhook)
        for webhook_id, webhook in wanted.items():
            if webhook_id not in self.loops:
                endpoint = Endpoint(self, webhook)
                self.loops[webhook_id] = (endpoint, asyncio.ensure_future(endpoint.run()))

    async def watch(self) -> None:
        """Wake the loops when the outbox's head moves (any process's commit)."""
        while True:
            head = events.head(self.engine)
            if head != self._head:
                self._head = head
                for endpoint, _ in self.loops.values():
                    endpoint.wake.set()
            await asyncio.sleep(limits.webhook_poll_seconds)

    async def prune(self) -> int:
        """Every webhook_prune_interval_seconds: outbox records past the retention time that
        no enabled endpoint needs, a commit at a time -> how many."""
        if time.monotonic() < self._next_prune:
            return 0
        self._next_prune = time.monotonic() + limits.webhook_prune_interval_seconds
        engine, total = self.engine, 0
        while True:
            pruned = await engine.run_async(engine.plan(
                webhooks.prune, (engine.now_ms() - self.retention_ms,), ACTOR,
                full=lambda: 0))
            total += pruned
            if pruned < limits.events_pruned_per_commit_max:
                return total

    async def close(self, grace_seconds: float) -> None:
        """Stop every loop (each finishes the POST in flight, bounded by grace_seconds)."""
        for endpoint, _ in self.loops.values():
            endpoint.changed(None)
        tasks = [task for _, task in self.loops.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.loops.clear()
        if self._session is not None:
            await self._session.close()


async def deliver_webhooks(dispatcher) -> None:
    """The dispatcher's task: unlike the others it returns only when the dispatcher stops
    (or fails: then the next tick starts it again), since it owns the endpoints' loops."""
    sender = Sender(dispatcher)
    watcher = asyncio.ensure_future(sender.watch())
    try:
        while True:
            sender.reconcile()
            await sender.prune()
            if await dispatcher.sleep(dispatcher.config.dispatcher_interval_seconds):
                return
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await sender.close(dispatcher.config.grace_seconds)


dispatcher_module.TASKS.append(deliver_webhooks)
