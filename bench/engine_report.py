"""The engine benchmark's report: its table with the targets, the ratios to the C floor (engine
/ floor round by round, the median reported) and compiled to interpreted, the headline line
scripts parse and the RESULTS.md history line."""

from __future__ import annotations


import common
import kamicore_access
import targets
from common import median, number, ratios_text, round_ratios
from engine_scenarios import Figure

TABLE_ORDER = ["floor-256", "redeem-1", "redeem-16", "redeem-256", "redeem-256-interpreted",
               "floor-256-random", "redeem-256-random", "floor-lookups-256", "verify-256",
               "order-1", "order-16", "order-256", "import-1", "import-16", "import-256",
               "import-256-interpreted", "floor-import-10000", "import-10000"]
# engine figure -> (its C floor, the target fraction of it or None, what the ratio is called)
FLOOR_OF = {
    "redeem-256": ("floor-256", targets.engine_redeem_fraction_of_floor, "ratio"),
    "redeem-256-random": ("floor-256-random", targets.engine_redeem_fraction_of_floor,
                          "random_ratio"),
    "import-10000": ("floor-import-10000", targets.engine_import_fraction_of_floor,
                     "import_ratio"),
    "verify-256": ("floor-lookups-256", None, "verify_ratio"),
}


def machine(floor_info: dict) -> str:
    parts = []
    parts.append(f"engine: system liblmdb {kamicore_access.lmdb_version()}")
    parts.append(f"C floor: liblmdb {floor_info.get('lmdb', '?')}, "
                 f"{floor_info.get('openssl', 'OpenSSL ?')}, cc -O2")
    return common.machine(*parts)


def floor_ratio(figures: dict, key: str) -> float:
    """Engine / C floor: the median of the round-by-round ratios."""
    return median(round_ratios(figures[key].rates, figures[FLOOR_OF[key][0]].rates))


def target_text(figure: Figure, figures: dict) -> str:
    texts = []
    if figure.key == "redeem-256":
        texts.append(f"≥ {number(targets.engine_redeem_codes_per_second)}: "
                     + targets.verdict(figure.rate, targets.engine_redeem_codes_per_second))
    if figure.key == "import-256":
        texts.append(f"≥ {number(targets.engine_import_codes_per_second)}: "
                     + targets.verdict(figure.rate, targets.engine_import_codes_per_second))
    if figure.key in FLOOR_OF:
        fraction, measured = FLOOR_OF[figure.key][1], floor_ratio(figures, figure.key)
        texts.append(f"{measured:.2f}× C floor" if fraction is None else
                     f"≥ {fraction:.2f}× C floor: {targets.verdict(measured, fraction)} "
                     f"({measured:.2f}×)")
    if figure.items_per_call == 1 and figure.implementation == "compiled":
        texts.append("reported (fsync-bound)")
    return "; ".join(texts)


def table(figures: dict) -> list[str]:
    lines = [("| figure | engine | codes/call | codes/s (median) | min–max over rounds "
              "| calls/s (median) | p50 ms | p99 ms | target |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for key in TABLE_ORDER:
        figure = figures[key]
        calls = f"{number(figure.call_rate)} {figure.calls_unit}"
        lines.append(
            f"| {figure.label} | {figure.implementation} | {figure.items_per_call} | "
            f"{number(figure.rate)} | {number(min(figure.rates))}–{number(max(figure.rates))} | "
            f"{calls} | {figure.percentile_ms(0.50):.2f} | {figure.percentile_ms(0.99):.2f} | "
            f"{target_text(figure, figures)} |")
    return lines


def ratios(figures: dict) -> dict:
    """Every engine / C floor ratio by its name, and compiled / interpreted."""
    def ratio(top: str, bottom: str) -> float:
        below = figures[bottom].rate
        return figures[top].rate / below if below else 0.0
    measured = {name: floor_ratio(figures, key) for key, (_, _, name) in FLOOR_OF.items()}
    measured["redeem_compiled_vs_interpreted"] = ratio("redeem-256", "redeem-256-interpreted")
    measured["import_compiled_vs_interpreted"] = ratio("import-256", "import-256-interpreted")
    return measured


def summary(figures: dict) -> list[str]:
    """The table and the ratios below it."""
    measured = ratios(figures)
    lines = [*table(figures), ""]
    for key, (floor, fraction, name) in FLOOR_OF.items():
        target = "" if fraction is None else (
            f"; target ≥ {fraction:.2f}: {targets.verdict(measured[name], fraction)}")
        lines.append(
            f"- {key} / C floor ({floor}): {measured[name]:.2f}{target} (per round: "
            f"{ratios_text(round_ratios(figures[key].rates, figures[floor].rates))})")
    lines.append(
        f"- compiled / interpreted: redeem-256 {measured['redeem_compiled_vs_interpreted']:.2f}×, "
        f"import-256 {measured['import_compiled_vs_interpreted']:.2f}×")
    return lines


def headline(figures: dict) -> str:
    measured = ratios(figures)
    return (f"redeem_codes_per_second={figures['redeem-256'].rate:.0f} "
            f"c_floor_codes_per_second={figures['floor-256'].rate:.0f} "
            f"ratio={measured['ratio']:.2f} random_ratio={measured['random_ratio']:.2f} "
            f"import_ratio={measured['import_ratio']:.2f}")


def history_line(figures: dict, date: str, commit: str, quick: bool, stored_codes: int) -> str:
    measured = ratios(figures)
    return (
        f"- {date} · {commit}{' · quick' if quick else ''} · N={stored_codes:,}"
        f" · redeem-256 {number(figures['redeem-256'].rate)} codes/s = "
        f"{measured['ratio']:.2f}× C floor ({number(figures['floor-256'].rate)}) · random "
        f"{number(figures['redeem-256-random'].rate)} = {measured['random_ratio']:.2f}× "
        f"({number(figures['floor-256-random'].rate)}) · import-10000 "
        f"{number(figures['import-10000'].rate)} = {measured['import_ratio']:.2f}× "
        f"({number(figures['floor-import-10000'].rate)}) · verify-256 "
        f"{number(figures['verify-256'].rate)} = {measured['verify_ratio']:.2f}× lookups "
        f"({number(figures['floor-lookups-256'].rate)}) · redeem-1 "
        f"{number(figures['redeem-1'].rate)}/s · order-256 "
        f"{number(figures['order-256'].rate)} codes/s · import-256 "
        f"{number(figures['import-256'].rate)} codes/s · compiled/interpreted "
        f"{measured['redeem_compiled_vs_interpreted']:.2f}× redeem, "
        f"{measured['import_compiled_vs_interpreted']:.2f}× import")
