"""When a worker's event watchers should look at the outbox again.

Each watcher reads the outbox itself, after its own cursor (kamicore.grpc.events); this only
tells them when new events may be there: at once after a commit of this worker (the writer's
on-commit hook, from its thread), and for other workers' commits by watching the outbox's head
every limits.events_poll_seconds - one read per worker, not per watcher, and only while a
watcher is open. Between wake-ups a caught-up watcher costs nothing.
"""

from __future__ import annotations

import asyncio

from .. import limits
from ..domain import events


class EventFeed:
    def __init__(self, engine, poll_seconds: float = limits.events_poll_seconds):
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.watchers = 0
        self.stopping = False  # the worker is shutting down: watchers end
        self._loop: asyncio.AbstractEventLoop | None = None
        self._change: asyncio.Future | None = None
        self._wake_queued = False
        self._head = 0
        self._poller: asyncio.Task | None = None

    def committed(self, operations: int, seconds: float) -> None:
        """The writer's on-commit hook (its thread): wake the watchers, once per loop turn."""
        if self.watchers and not self._wake_queued and self._loop is not None:
            self._wake_queued = True
            self._loop.call_soon_threadsafe(self._wake)

    def opened(self) -> None:
        """A watcher starts (in the worker's event loop)."""
        self._loop = asyncio.get_running_loop()
        self.watchers += 1
        if self._poller is None:
            self._head = events.head(self.engine)
            self._poller = asyncio.ensure_future(self._poll())

    def closed(self) -> None:
        self.watchers -= 1

    def next_change(self) -> asyncio.Future:
        """A future done at the next wake-up: take it BEFORE reading, so that a commit landing
        between the read and the wait is not missed. Await it shielded (it is shared)."""
        if self._change is None:
            self._change = asyncio.get_running_loop().create_future()
        return self._change

    def stop(self) -> None:
        """The worker stops: every watcher wakes and ends (the client resumes elsewhere)."""
        self.stopping = True
        self._wake()

    def _wake(self) -> None:
        self._wake_queued = False
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    async def _poll(self) -> None:
        try:
            while self.watchers and not self.stopping:
                await asyncio.sleep(self.poll_seconds)
                head = events.head(self.engine)
                if head != self._head:
                    self._head = head
                    self._wake()
        finally:
            self._poller = None
