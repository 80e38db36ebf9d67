"""The dispatcher: one asyncio process beside the workers (started, and restarted when it dies,
by the supervisor) that does what no caller waits for. It opens the engine, serves the HTTP
listener for supplier callbacks (setting `callback_listen`; off when empty) and runs the
periodic tasks of TASKS: finishing top-ups whose outcome kamicore does not know yet (after a
crash, or a timeout), asking suppliers about PENDING top-ups no callback settled, the
replenishment of code SKUs, and the webhook sender (kamicore.runtime.webhooks).

A task is `async def task(dispatcher) -> None`, awaited once per tick
(`dispatcher_interval_seconds`); each task runs in its own loop, so a slow one never delays
another, and never two runs of one task at once. An exception is logged (one line per task and
error type per minute) and counted in kamicore_dispatcher_task_failures_total{task}; the task
runs again at the next tick. A task that keeps a slower pace (a backoff) returns early until it
is due. Supplier calls are awaited, never blocking: the loop stays free for callbacks.

SIGTERM: the listener stops taking callbacks, the running task turns finish (each bounded by
its supplier calls' timeouts, cancelled after grace_seconds), the pending commit lands, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from .. import limits, metrics
from ..config import Config
from ..engine import Engine
from . import topups as topup_tasks
from .callbacks import CallbackHandler

log = logging.getLogger("kamicore.dispatcher")

Task = Callable[["Dispatcher"], Awaitable[None]]
# The periodic tasks, in the order they start: the top-ups' recovery and follow-ups of
# attempts (kamicore.runtime.topups), then any a module appends (the replenisher, webhooks).
TASKS: list[Task] = list(topup_tasks.TASKS)


class Dispatcher:
    """What a task gets: the engine, the settings, connectors to suppliers and the metrics."""

    def __init__(self, config: Config, engine: Engine,
                 dispatcher_metrics: metrics.DispatcherMetrics | None = None):
        self.config = config
        self.engine = engine
        self.metrics = dispatcher_metrics or metrics.DispatcherMetrics()
        self.stopping = asyncio.Event()
        self._logged: dict[tuple[str, str], float] = {}
        self.topups = topup_tasks.Driver(engine, self.connector,
                                         follow_up_seconds=config.topup_follow_up_seconds,
                                         callback_base=config.callback_base())
        self.callbacks = CallbackHandler(engine, self.topups)

    def connector(self, supplier):
        """The cached connector (kamicore.connectors) that talks to `supplier` (a
        kamicore.domain.suppliers.Supplier, its secret unsealed)."""
        return topup_tasks.connector_of(supplier)

    async def sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until stopping; True when stopping."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def _loop(self, task: Task) -> None:
        name = getattr(task, "__name__", repr(task))
        while not self.stopping.is_set():
            try:
                await task(self)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # logged and counted; the next tick runs it again
                self.metrics.task_failed(name)
                self._log_failure(name, error)
            if await self.sleep(self.config.dispatcher_interval_seconds):
                return

    def _log_failure(self, name: str, error: Exception) -> None:
        key = (name, type(error).__name__)
        now = time.monotonic()
        if now - self._logged.get(key, -limits.bad_request_log_interval_seconds) \
                >= limits.bad_request_log_interval_seconds:
            self._logged[key] = now
            log.error("task %s failed: %s", name, error, exc_info=error)

    async def run(self, ready=None) -> None:
        """Serve the callback listener and the tasks until SIGTERM."""
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, self.stopping.set)
        runner = await self._start_listener()
        loops = [asyncio.ensure_future(self._loop(task)) for task in TASKS]
        if ready is not None:
            ready.set()
        await self.stopping.wait()
        if runner is not None:
            await runner.cleanup()  # no new callbacks; those in flight finish
        done, pending = await asyncio.wait(loops, timeout=self.config.grace_seconds) \
            if loops else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.topups.close()

    async def _start_listener(self):
        if not self.config.callback_listen:
            return None
        from aiohttp import web

        from ..connectors import http_callbacks
        runner = web.AppRunner(http_callbacks.application(self.callbacks.http),
                               access_log=None, handle_signals=False)
        await runner.setup()
        host, _, port = self.config.callback_listen.rpartition(":")
        site = web.TCPSite(runner, host.strip("[]") or None, int(port),
                           backlog=limits.callback_backlog_max)
        await site.start()
        log.info("supplier callbacks on http://%s/v1/callbacks/<supplier id>",
                 self.config.callback_listen)
        return runner


async def run_dispatcher(config: Config, ready) -> None:
    dispatcher_metrics = metrics.DispatcherMetrics()
    engine = Engine(config.data_dir, map_size_bytes=config.map_size_bytes,
                    master_key_file=config.master_key_file or None)
    try:
        await Dispatcher(config, engine, dispatcher_metrics).run(ready)
    finally:
        engine.close()  # the pending group commit lands first


def dispatcher_main(config: Config, ready) -> None:
    """Entry of the dispatcher process (spawned: nothing of the parent's LMDB state)."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s dispatcher %(process)d %(message)s")
    asyncio.run(run_dispatcher(config, ready))


# the modules whose periodic tasks the dispatcher runs append them to TASKS when imported
from . import replenisher, webhooks  # noqa: E402,F401
