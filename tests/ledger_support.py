"""Helpers of the ledger tests: a shop over a real data file, and the check that the books are
whole (every entry balances in one currency, ids without gaps, the stored balances equal the
entries summed, every currency sums to zero)."""

from __future__ import annotations

from kamicore import limits
from kamicore.domain import ledger, order_requests, orders, refunds
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
from kamicore.engine import Engine
from kamicore.statuses import CodeState, DeliveryKind

from .support import DAY_MS, T0_MS, FakeClock

PRICE = 9_000_000  # "gift" on channel web, USD
HOLD_SECONDS = 900
# batch -> (supplier, unit cost, codes); FEFO sells "early" first
BATCHES = {"early": ("acme", 3_000_000, 4), "late": ("", 5_000_000, 4)}
BATCH_VALID_UNTIL = {"early": T0_MS + 30 * DAY_MS, "late": T0_MS + 60 * DAY_MS}
STOCK = sum(count for _, _, count in BATCHES.values())


def whole_books(view) -> dict[tuple[str, str], int]:
    """Assert the books are whole (module docstring) -> the balances."""
    found, after = [], 0
    while True:
        page = ledger.entries(view, after_id=after, limit=limits.ledger_entries_per_page_max)
        found += page
        if len(page) < limits.ledger_entries_per_page_max:
            break
        after = page[-1]["id"]
    totals: dict[tuple[str, str], int] = {}
    for number, entry in enumerate(found, start=1):
        assert entry["id"] == number, "entry ids have a gap"
        assert entry["kind"] in ledger.KINDS and entry["currency"]
        amounts = [amount for _, amount in entry["postings"]]
        assert all(type(amount) is int and amount for amount in amounts), entry
        assert sum(amounts) == 0, f"unbalanced: {entry}"
        for name, amount in entry["postings"]:
            key = (name, entry["currency"])
            totals[key] = totals.get(key, 0) + amount
    totals = {key: amount for key, amount in totals.items() if amount}
    assert totals == ledger.balances(view)
    for currency in {currency for _, currency in totals}:
        assert sum(amount for (_, money), amount in totals.items() if money == currency) == 0
    return totals


class Shop:
    """A data file with SKU "gift" (USD, PRICE on web) and the codes of BATCHES."""

    def __init__(self, path, clock: FakeClock | None = None):
        self.clock = clock or FakeClock()
        self.engine = Engine(path, clock=self.clock)
        status, _ = Catalog(self.engine).create(Sku("gift", "gift", "USD", 10_000_000,
                                                    DeliveryKind.CODE,
                                                    (ChannelPrice("web", PRICE),)))
        for batch, (supplier, cost, count) in BATCHES.items():
            result = self.engine.import_codes(
                "gift", batch, [f"{batch}-{n:03d}" for n in range(count)], supplier=supplier,
                unit_cost_micros=cost, valid_until_ms=BATCH_VALID_UNTIL[batch])
            assert result.imported == count
        self.orders = orders.Orders(self.engine)

    def close(self) -> None:
        self.engine.close()

    def run(self, function, *args, full=None):
        return self.engine.run(self.engine.plan(function, args, "storefront:web",
                                                full=full or (lambda: None)))

    def create(self, key: str, quantity: int):
        request = order_requests.validate_create(order_requests.OrderRequest(
            key, "alice", "", "", [("gift", quantity)], HOLD_SECONDS), HOLD_SECONDS)
        return self.run(orders.create_order, f"shop/{key}".encode(), "storefront:web", "web",
                        request, self.orders.risk)[0]

    def pay(self, key: str, quantity: int, reference: str | None = None,
            provider: str = ledger.DEFAULT_PROVIDER):
        return self.run(orders.confirm_payment, f"shop/{key}".encode(),
                        reference or f"pay-{key}", "USD", PRICE * quantity, provider)[0]

    def cancel(self, key: str):
        return self.run(orders.cancel, f"shop/{key}".encode())

    def report(self, key: str, code_id: int):
        return self.run(refunds.report_invalid, f"shop/{key}".encode(), code_id)

    def reveal(self, key: str) -> None:
        assert self.run(orders._reveal, f"shop/{key}".encode())

    def codes(self, key: str):
        order = self.engine.order(f"shop/{key}")
        return order.codes if order is not None else []

    def meta(self, key: str) -> dict:
        return self.orders.meta(f"shop/{key}")


def unit_cost(batch: str) -> int:
    return BATCHES[batch][1]


def supplier_of(batch: str) -> str:
    return BATCHES[batch][0] or ledger.UNASSIGNED


def costs_by_state(codes) -> dict[tuple[str, str], int]:
    """(cogs or supplier_claims account, "USD") -> the unit costs of `codes` it should hold:
    delivered codes (SOLD, REDEEMED) in cogs, invalid ones charged to their supplier."""
    expected: dict[tuple[str, str], int] = {}
    for code in codes:
        prefix = {CodeState.SOLD: "cogs", CodeState.REDEEMED: "cogs",
                  CodeState.INVALID: "supplier_claims"}.get(code.state)
        if prefix is not None:
            key = (f"{prefix}:{supplier_of(code.batch)}", "USD")
            expected[key] = expected.get(key, 0) + unit_cost(code.batch)
    return expected
