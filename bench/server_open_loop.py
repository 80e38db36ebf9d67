"""The server benchmark's open-loop runs: latency at a fixed offered load below saturation.

Latency at saturation mostly measures queueing (calls in flight / throughput). So, after the
closed-loop rounds, each unary figure is offered at 50% and 80% of its kamicore peak measured in
the same run, on a fixed schedule by the driver's processes (driver.py, open loop: latency from
each call's scheduled time, so calls queued behind a stalled server count), against kamicore and
then, at the same rate, do-nothing (what the transport, the Python gRPC stack and the client cost
at that rate on this machine). Reported: p50, p99, p99.9, the rate achieved, and how late the
client sent (if it fell behind, part of the figure is the client's).

The peak is the same client's: the driver's median over the rounds for distinct Redeem and
orders; for the replayed Redeem and VerifyCode, which the rounds measure with h2load, a closed-loop
driver run just before (kamicore only). The driver is Python on the same 2 cores as the server,
so kamicore's peak under it is lower than under h2load (C): 80% of h2load's peak would be past
saturation for this client, and its latency would only say how long the run lasted.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common import expect, log, percentile_ms
from server_plan import IN_FLIGHT, OPEN_LOOP_LEVELS

if TYPE_CHECKING:
    from server_rounds import Bench

# (key, the closed-loop driver figure whose kamicore median is the peak, or None: probe it here;
# driver kind, label)
FIGURES = [
    ("unary", "unary", "redeem", "Redeem, distinct codes"),
    ("replay", None, "redeem", "Redeem, one request id replayed"),
    ("verify", None, "verify", "VerifyCode, one code"),
    ("orders", "orders", "orders", "CreateOrder + ConfirmPayment, 1 code"),
]


@dataclass
class OpenFigure:
    """One open-loop run: a figure at one offered rate against one server."""

    key: str
    label: str
    server: str
    level: float  # fraction of the peak
    peak: float  # kamicore's closed-loop throughput under the driver, calls (orders)/s
    probed: bool  # the peak was measured just before (else: the rounds' median)
    offered: float  # calls (orders)/s
    seconds: float  # of schedule
    calls: int = 0  # answered (errors included)
    wall_seconds: float = 0.0
    latencies: list = field(default_factory=list)  # seconds from scheduled time, sorted
    lags: list = field(default_factory=list)  # seconds from scheduled time to sending, sorted
    succeeded: int = 0
    errors: collections.Counter = field(default_factory=collections.Counter)

    @property
    def achieved(self) -> float:
        return self.calls / self.wall_seconds if self.wall_seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        return percentile_ms(self.latencies, fraction)

    def lag_ms(self, fraction: float) -> float:
        return percentile_ms(self.lags, fraction)


class Inputs:
    """Requests for one open-loop run at `rate`: the distinct ones come out of the plan's
    open-loop budgets, and a run whose schedule would overdraw them is shortened."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self.codes_left = bench.plan.open_loop_codes
        self.orders_left = bench.plan.open_loop_orders

    def take(self, key: str, rate: float, seconds: float) -> tuple[list, bool, float]:
        """(requests, repeat them, seconds of schedule)."""
        bench = self.bench
        if key in ("replay", "verify"):
            return [bench.messages["redeem" if key == "replay" else "verify"]], True, seconds
        wanted = math.ceil(rate * seconds) + bench.clients
        left = self.codes_left if key == "unary" else self.orders_left
        count = min(wanted, left)
        expect(count > bench.clients, f"open loop {key}: its budget is spent")
        if count < wanted:
            seconds = (count - bench.clients) / rate
            log(f"open loop {key}: budget left for {seconds:.1f} s at {rate:,.0f}/s")
        if key == "unary":
            self.codes_left -= count
            return bench.requests.redeem(bench.next_sold(count)), False, seconds
        self.orders_left -= count
        return bench.requests.orders(count), False, seconds


def run(bench: Bench) -> dict[str, OpenFigure]:
    """Every figure at every level against both servers; keyed `<key>-<percent>-<server>`."""
    figures: dict[str, OpenFigure] = {}
    inputs = Inputs(bench)
    for key, peak_key, kind, label in FIGURES:
        token = bench.keys["storefront" if kind == "orders" else "pos"]
        if peak_key:
            peak = bench.figures[f"{peak_key}-kamicore"].rate
        else:
            requests, repeat, seconds = inputs.take(key, 0.0, bench.plan.open_loop_seconds)
            probe = bench.pool.drive(bench.kamicore.target, kind, requests, token,
                                     IN_FLIGHT["unary"], seconds, decode=False, repeat=True)
            expect(not probe.errors, f"open loop {key}: probe errors {dict(probe.errors)}")
            peak = probe.calls / probe.seconds
        for level in OPEN_LOOP_LEVELS:
            rate = peak * level
            requests, repeat, seconds = inputs.take(key, rate, bench.plan.open_loop_seconds)
            log(f"open loop: {label} at {level:.0%} of {peak:,.0f}/s = {rate:,.0f}/s for "
                f"{seconds:.1f} s")
            for server, target in bench.targets().items():
                kamicore = server == "kamicore"
                outcome = bench.pool.drive(target, kind, requests, token, 0, seconds,
                                           decode=kamicore, repeat=repeat, rate=rate)
                failed = sum(outcome.errors.values())
                if kamicore and failed:
                    log(f"open loop {key}: errors {dict(outcome.errors)}; kamicore log (tail):\n"
                        + bench.children.log_tail(bench.kamicore.name))
                if kamicore:
                    expect(outcome.succeeded + failed == outcome.calls,
                           f"open loop {key}: {outcome.succeeded:,} of {outcome.calls:,} "
                           f"succeeded, errors {dict(outcome.errors)}")
                figures[f"{key}-{round(level * 100)}-{server}"] = OpenFigure(
                    key, label, server, level, peak, not peak_key, rate, seconds, outcome.calls,
                    outcome.seconds, sorted(outcome.latencies), sorted(outcome.lags),
                    outcome.succeeded, outcome.errors)
    return figures


def worst_p99_ms(figures: dict[str, OpenFigure], level: float = 0.8) -> float:
    """The worst kamicore p99 over the unary figures at `level`: what issue 8 bounds."""
    return max((figure.percentile_ms(0.99) for figure in figures.values()
                if figure.server == "kamicore" and figure.level == level), default=0.0)


def table(figures: dict[str, OpenFigure]) -> list[str]:
    lines = [("| figure | server | kamicore peak /s (driver, closed loop) | offered | offered /s "
              "| achieved /s | p50 ms | p99 ms | p99.9 ms | client late p99 ms | answered |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for figure in figures.values():
        answered = f"{figure.calls:,}"
        if figure.server == "kamicore":
            answered += f" ({figure.succeeded:,} succeeded)"
        if figure.errors:
            answered += " · " + ", ".join(f"{name} {count}"
                                          for name, count in figure.errors.items())
        # answers fell behind the schedule: past saturation, latency grows with the run's length
        behind = " (behind)" if figure.achieved < 0.97 * figure.offered else ""
        lines.append(
            f"| {figure.label} | {figure.server} | {figure.peak:,.0f}"
            f"{' (probe)' if figure.probed else ''} | {figure.level:.0%} | "
            f"{figure.offered:,.0f} | {figure.achieved:,.0f}{behind} | "
            f"{figure.percentile_ms(0.5):.2f} | "
            f"{figure.percentile_ms(0.99):.2f} | {figure.percentile_ms(0.999):.2f} | "
            f"{figure.lag_ms(0.99):.2f} | {answered} |")
    return lines
