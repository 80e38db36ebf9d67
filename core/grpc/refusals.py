"""Refused requests, as an operator sees them: every one counted in
kamicore_bad_requests_total{method, reason}, and at most one log line per (method, reason) per
interval (limits.bad_request_log_interval_seconds) in each worker, so a client sending garbage
in a loop cannot fill the disk. A line names the method, the caller's role and key id when the
key is valid, the reason and what was wrong ("order_id: is required"); never the request's
bytes or a presented key, so never a code.

An unexpected error (a bug: the caller hears INTERNAL) keeps its traceback, under the same
bound per (method, error type).
"""

from __future__ import annotations

import logging
import time

from .. import auth, limits, metrics

log = logging.getLogger("kamicore")

# kamicore_bad_requests_total's reasons, a closed set
UNDECODABLE = "undecodable"  # the bytes are not a message of the request type
INVALID_ARGUMENT = "invalid_argument"  # a field is wrong
UNAUTHENTICATED = "unauthenticated"  # no key, or not a valid one
PERMISSION_DENIED = "permission_denied"  # a valid key of a role the method does not admit
REASONS = (UNDECODABLE, INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED)


class RateLimit:
    """Whether to write a line for `key` now: once per interval per key; the rest counted."""

    def __init__(self, interval_seconds: float, clock=time.monotonic):
        self.interval_seconds = interval_seconds
        self.clock = clock
        # key -> [when its last line was written, events left out since]; the keys are
        # (method, reason) or (method, error type): a bounded set
        self._last: dict[tuple, list] = {}

    def __call__(self, key: tuple) -> int | None:
        """None to stay quiet; else how many events were left out since the last line."""
        now = self.clock()
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self.interval_seconds:
            entry[1] += 1
            return None
        self._last[key] = [now, 0]
        return entry[1] if entry is not None else 0


def _who(caller: auth.Principal | None) -> str:
    return "a caller without a valid key" if caller is None else \
        f"{caller.role} key {caller.key_id}"


def _left_out(count: int) -> str:
    return f"; {count} more since the last such line" if count else ""


class Refusals:
    """Counts and logs one worker's refused requests and unexpected errors."""

    def __init__(self, worker_metrics: metrics.WorkerMetrics,
                 interval_seconds: float = limits.bad_request_log_interval_seconds,
                 clock=time.monotonic):
        self.metrics = worker_metrics
        self.rate_limit = RateLimit(interval_seconds, clock)

    def refused(self, method: str, reason: str, caller: auth.Principal | None,
                what: str) -> None:
        """`what`: the error the caller hears, which never quotes the request."""
        assert reason in REASONS, reason
        self.metrics.bad_request(method, reason)
        left_out = self.rate_limit((method, reason))
        if left_out is not None:
            log.warning("refused %s from %s: %s (%s)%s", method, _who(caller), reason, what,
                        _left_out(left_out))

    def failed(self, method: str, error: BaseException) -> None:
        left_out = self.rate_limit((method, "failed", type(error).__name__))
        if left_out is not None:
            log.error("%s failed%s", method, _left_out(left_out), exc_info=error)
