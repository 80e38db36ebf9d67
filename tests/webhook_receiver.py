"""A real webhook receiver for the tests: an aiohttp server on 127.0.0.1 (a free port, its own
thread and event loop) that checks each POST's signature the way a merchant would - its own
HMAC-SHA256, not kamicore's code - records the events it acknowledged in arrival order,
counts duplicates by event id, and can be told to fail for a while: answer 500, hang (hold
the request open until released), or close the connection without an answer.

Everything a test reads is guarded by one lock; `wait_for` polls (tests never assert on time).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time

from aiohttp import web

HOST = "127.0.0.1"
OK, FAIL, HANG, CLOSE = "ok", "fail", "hang", "close"


class Receiver:
    def __init__(self, secret: bytes, path: str = "/hooks"):
        self.secret = secret
        self.path = path
        self.port = 0
        self.lock = threading.Lock()
        self.accepted: list[dict] = []  # the events answered 2xx, in arrival order
        self.attempts = 0  # every POST, whatever the answer
        self.bad_signatures = 0
        self.header_mismatches = 0  # event id or type headers that disagree with the body
        self.headers: list[dict] = []  # of each accepted POST
        self.holding = threading.Event()  # set while a request is held open (HANG)
        self._mode = OK
        self._failures_left = 0  # the mode holds for this many more POSTs (0: until changed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- what a test does ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"

    def start(self) -> Receiver:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self._thread.start()
        assert started.wait(10), "the receiver did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self.release()
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def fail(self, mode: str, times: int = 0) -> None:
        """Answer the next `times` POSTs (0: every one until told otherwise) with `mode`."""
        with self.lock:
            self._mode, self._failures_left = mode, times

    def release(self, mode: str = OK, times: int = 0) -> None:
        """End every held request (it answers 503: not acknowledged), then answer the next
        `times` POSTs with `mode` (OK: normally from now on)."""
        self.fail(mode, times)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def ids(self) -> list[int]:
        with self.lock:
            return [event["id"] for event in self.accepted]

    def events(self) -> list[dict]:
        with self.lock:
            return list(self.accepted)

    def duplicates(self) -> int:
        ids = self.ids()
        return len(ids) - len(set(ids))

    def wait_for(self, predicate, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver waited {timeout} s for {what}; it has "
                                     f"{self.ids()} after {self.attempts} attempts")
            time.sleep(0.05)

    # -- the server ----------------------------------------------------------------------

    def _serve(self, started: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, HOST, 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()

    def _next_mode(self) -> str:
        with self.lock:
            self.attempts += 1
            mode = self._mode
            if self._failures_left:
                self._failures_left -= 1
                if not self._failures_left:
                    self._mode = OK
            return mode

    def _signed(self, request: web.Request, body: bytes) -> bool:
        timestamp = request.headers.get("x-kamicore-timestamp", "")
        expected = hmac.new(self.secret, timestamp.encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        return timestamp.isdigit() and hmac.compare_digest(
            expected, request.headers.get("x-kamicore-signature", ""))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        mode = self._next_mode()
        if mode == HANG:
            self._release.clear()
            self.holding.set()
            await self._release.wait()
            self.holding.clear()
            # not acknowledged: the sender (if still there) must send it again
            return web.Response(status=503)
        if mode == FAIL:
            return web.Response(status=500, text="down for maintenance")
        if mode == CLOSE:
            request.transport.close()
            return web.Response(status=500)
        if not self._signed(request, body):
            with self.lock:
                self.bad_signatures += 1
            return web.Response(status=401)
        event = json.loads(body)
        with self.lock:
            self.header_mismatches += (
                str(event["id"]) != request.headers.get("x-kamicore-event-id")
                or event["type"] != request.headers.get("x-kamicore-event-type"))
            self.accepted.append(event)
            self.headers.append(dict(request.headers))
        return web.Response(status=204)
