"""The hold sweeper: orders whose hold lapsed unpaid give their codes back to stock, and their
units back to their buyers' purchase limits. The supervisor runs it every
`sweep_interval_seconds`; each commit expires at most `limits.holds_per_sweep_max` orders."""

from __future__ import annotations

from ..domain.orders import Orders
from ..engine import Engine


class Sweeper:
    def __init__(self, engine: Engine):
        self.orders = Orders(engine)

    def sweep(self) -> int:
        """Expire every hold that is due; how many orders expired."""
        return self.orders.sweep()
