"""The engine benchmark's report: its table with the targets, the ratios to the raw floor and
compiled to interpreted, the headline line scripts parse and the RESULTS.md history line."""

from __future__ import annotations

import common
import lmdb
import targets
from common import number, ratios_text, round_ratios
from engine_scenarios import Figure

TABLE_ORDER = ["raw-256", "redeem-1", "redeem-16", "redeem-256", "redeem-256-interpreted",
               "raw-256-random", "redeem-256-random", "order-1", "order-16", "order-256",
               "import-1", "import-16", "import-256", "import-256-interpreted"]


def machine() -> str:
    return common.machine(
        f"py-lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})")


def target_text(figure: Figure, raw: Figure) -> str:
    if figure.key == "redeem-256":
        fraction = figure.rate / raw.rate if raw.rate else 0.0
        met = (figure.rate >= targets.engine_redeem_codes_per_second
               and fraction >= targets.engine_redeem_fraction_of_raw)
        return (f"≥ {number(targets.engine_redeem_codes_per_second)} and ≥ "
                f"{targets.engine_redeem_fraction_of_raw:.1f}× raw: "
                f"{'met' if met else 'MISSED'} ({fraction:.2f}× raw)")
    if figure.key == "import-256":
        return (f"≥ {number(targets.engine_import_codes_per_second)}: "
                + targets.verdict(figure.rate, targets.engine_import_codes_per_second))
    if figure.items_per_call == 1 and figure.implementation == "compiled":
        return "reported (fsync-bound)"
    return ""


def table(figures: dict) -> list[str]:
    raw = figures["raw-256"]
    lines = [("| figure | engine | codes/call | codes/s (median) | min–max over rounds "
              "| calls/s (median) | p50 ms | p99 ms | target (codes/s) |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for key in TABLE_ORDER:
        figure = figures[key]
        calls = f"{number(figure.call_rate)} {figure.calls_unit}"
        lines.append(
            f"| {figure.label} | {figure.implementation} | {figure.items_per_call} | "
            f"{number(figure.rate)} | {number(min(figure.rates))}–{number(max(figure.rates))} | "
            f"{calls} | {figure.percentile_ms(0.50):.2f} | {figure.percentile_ms(0.99):.2f} | "
            f"{target_text(figure, raw)} |")
    return lines


def ratios(figures: dict) -> dict:
    def ratio(top: str, bottom: str) -> float:
        below = figures[bottom].rate
        return figures[top].rate / below if below else 0.0
    return {
        "redeem_vs_raw": ratio("redeem-256", "raw-256"),
        "random_redeem_vs_raw": ratio("redeem-256-random", "raw-256-random"),
        "redeem_compiled_vs_interpreted": ratio("redeem-256", "redeem-256-interpreted"),
        "import_compiled_vs_interpreted": ratio("import-256", "import-256-interpreted"),
    }


def paired_ratios(figures: dict, top: str, bottom: str) -> str:
    return ratios_text(round_ratios(figures[top].rates, figures[bottom].rates))


def summary(figures: dict) -> list[str]:
    """The table and the ratios below it."""
    measured = ratios(figures)
    return [
        *table(figures),
        "",
        (f"- engine redeem-256 / raw floor: {measured['redeem_vs_raw']:.2f} "
         f"(per round: {paired_ratios(figures, 'redeem-256', 'raw-256')})"),
        (f"- in random order: engine / raw floor {measured['random_redeem_vs_raw']:.2f} (per "
         f"round: {paired_ratios(figures, 'redeem-256-random', 'raw-256-random')})"),
        (f"- compiled / interpreted: redeem-256 {measured['redeem_compiled_vs_interpreted']:.2f}×, "
         f"import-256 {measured['import_compiled_vs_interpreted']:.2f}×"),
    ]


def headline(figures: dict) -> str:
    return (f"redeem_codes_per_second={figures['redeem-256'].rate:.0f} "
            f"raw_loop_codes_per_second={figures['raw-256'].rate:.0f} "
            f"ratio={ratios(figures)['redeem_vs_raw']:.2f}")


def history_line(figures: dict, date: str, commit: str, quick: bool, stored_codes: int) -> str:
    measured = ratios(figures)
    return (
        f"- {date} · {commit}{' · quick' if quick else ''} · N={stored_codes:,}"
        f" · redeem-256 {number(figures['redeem-256'].rate)} codes/s = "
        f"{measured['redeem_vs_raw']:.2f}× raw ({number(figures['raw-256'].rate)}) · "
        f"redeem-1 {number(figures['redeem-1'].rate)}/s · "
        f"order-256 {number(figures['order-256'].rate)} codes/s · "
        f"import-256 {number(figures['import-256'].rate)} codes/s · compiled/interpreted "
        f"{measured['redeem_compiled_vs_interpreted']:.2f}× redeem, "
        f"{measured['import_compiled_vs_interpreted']:.2f}× import")
