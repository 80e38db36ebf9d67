"""PNG charts of the reports (`kamicore report ... --chart F.png`), drawn with matplotlib's
Agg backend (no display needed). Each takes the rows the report printed; amounts are shown in
major units, one panel per currency (currencies are never added together)."""

from __future__ import annotations

from ..domain.reports import day

MICROS = 1_000_000


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    return pyplot


def _save(figure, path: str) -> None:
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    _pyplot().close(figure)


def sales(rows: list[dict], path: str) -> None:
    """Daily sales and margin, per currency."""
    pyplot = _pyplot()
    currencies = sorted({row["currency"] for row in rows}) or [""]
    figure, axes = pyplot.subplots(len(currencies), 1, squeeze=False,
                                   figsize=(9, 3.5 * len(currencies)))
    for axis, currency in zip(axes[:, 0], currencies, strict=True):
        days: dict[str, list[int]] = {}
        for row in rows:
            if row["currency"] == currency:
                totals = days.setdefault(row["day"], [0, 0])
                totals[0] += row["price_micros"]
                totals[1] += row["margin_micros"]
        labels = sorted(days)
        positions = range(len(labels))
        axis.bar([x - 0.2 for x in positions], [days[d][0] / MICROS for d in labels], 0.4,
                 label="sales")
        axis.bar([x + 0.2 for x in positions], [days[d][1] / MICROS for d in labels], 0.4,
                 label="margin")
        axis.set_xticks(list(positions), labels, rotation=45, ha="right")
        axis.set_ylabel(currency)
        axis.set_title(f"Daily sales and margin ({currency or 'no sales'})")
        axis.legend()
    _save(figure, path)


def expiring(rows: list[dict], path: str) -> None:
    """Sellable codes per batch, soonest expiry first."""
    pyplot = _pyplot()
    ordered = sorted(rows, key=lambda row: row["valid_until_ms"])
    labels = [f"{row['sku_id']}/{row['batch_id']} {day(row['valid_until_ms'])}"
              for row in ordered]
    figure, axis = pyplot.subplots(figsize=(9, 1.5 + 0.4 * max(len(rows), 1)))
    axis.barh(labels, [row["sellable"] for row in ordered], color="tab:orange")
    axis.invert_yaxis()
    axis.set_xlabel("sellable codes")
    axis.set_title("Stock expiring (batch, expiry day)")
    _save(figure, path)


def supplier_success(rates: list[tuple[str, float, int]], path: str) -> None:
    """Success rate per supplier and SKU: (label, rate 0-1, attempts)."""
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(9, 1.5 + 0.4 * max(len(rates), 1)))
    axis.barh([label for label, _, _ in rates], [rate * 100 for _, rate, _ in rates],
              color="tab:green")
    for index, (_, rate, attempts) in enumerate(rates):
        axis.text(rate * 100, index, f" {rate:.0%} of {attempts}", va="center")
    axis.set_xlim(0, 115)
    axis.invert_yaxis()
    axis.set_xlabel("success rate (%)")
    axis.set_title("Supplier success rates")
    _save(figure, path)
