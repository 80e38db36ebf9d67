"""The hold sweeper: orders whose hold lapsed unpaid give their codes back to stock, and their
units back to their buyers' purchase limits. The supervisor runs it every
`sweep_interval_seconds`; each commit expires at most `limits.holds_per_sweep_max` orders.
It also folds the ledger's new entries into its stored balances (kamicore.domain.ledger)."""

from __future__ import annotations

from ..domain import ledger
from ..domain.orders import Orders
from ..engine import Engine


class Sweeper:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.orders = Orders(engine)

    def sweep(self) -> int:
        """Expire every hold that is due; how many orders expired."""
        expired = self.orders.sweep()
        ledger.roll_up_all(self.engine)
        return expired
