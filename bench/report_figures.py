"""The `make bench` report's inputs: one run dir's results read back (the engine and server
benchmarks' printed reports, the scaling and concurrency JSON, Locust's CSV), their headline
figures, and every target with its verdict."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import targets
from common import load_json, number
from targets import verdict, verdict_below


def collect(run_dir: Path) -> dict:
    data = {name: load_json(run_dir / f"{name}.json")
            for name in ("run", "engine", "server", "concurrency", "scaling")}
    data["run"] = data["run"] or {}
    data["locust"] = read_csv(run_dir / "locust_stats.csv")
    data["locust_failures"] = read_csv(run_dir / "locust_failures.csv")
    return data


def read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def headline_values(text: str) -> dict:
    """`a=1 b=2.5` (the last line the engine and server benchmarks print) -> {a: 1.0, b: 2.5}."""
    return {name: float(value) for name, value in re.findall(r"(\w+)=([\d.]+)", text or "")}


def markdown_rows(text: str) -> list[dict]:
    """The rows of the first markdown table in `text`, keyed by its header cells."""
    rows, header = [], None
    for line in (text or "").splitlines():
        if not line.startswith("|"):
            if header and rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif set("".join(cells)) <= set("-: "):
            continue
        else:
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


def number_in(text: str) -> float:
    match = re.search(r"[\d,]+(?:\.\d+)?", text or "")
    return float(match.group(0).replace(",", "")) if match else 0.0


def engine_figures(engine: dict | None) -> dict:
    if not engine or not engine.get("stdout"):
        return {}
    values = headline_values(engine["stdout"].strip().splitlines()[-1])
    figures = {"redeem": values.get("redeem_codes_per_second", 0.0),
               "floor": values.get("c_floor_codes_per_second", 0.0),
               "ratio": values.get("ratio", 0.0),
               "random_ratio": values.get("random_ratio", 0.0),
               "import_ratio": values.get("import_ratio", 0.0)}
    for row in markdown_rows(engine["stdout"]):
        if row.get("figure") == "import" and row.get("engine") == "compiled":
            figures[f"import-{row.get('codes/call')}"] = number_in(
                row.get("codes/s (median)", ""))
        elif row.get("figure", "").startswith("C floor: import"):
            figures["floor-import"] = number_in(row.get("codes/s (median)", ""))
    return figures


def server_figures(server: dict | None) -> dict:
    if not server or not server.get("stdout"):
        return {}
    values = headline_values(server["stdout"].strip().splitlines()[-1])
    figures = {name: values.get(name, 0.0) for name in (
        "redeem_unary_ratio", "redeem_replay_ratio", "verify_ratio", "stream_ratio",
        "orders_ratio", "redeem_batch_codes_per_second", "p99_ms_at_80")}
    prefixes = {"Redeem, one request id": "h2load_redeem_", "VerifyCode": "h2load_verify_",
                "Redeem, distinct": "unary_distinct_", "RedeemStream": "stream_",
                "CreateOrder": "orders_"}
    for row in markdown_rows(server["stdout"]):  # the first table: the closed-loop figures
        label, server_name = row.get("figure", ""), row.get("server", "")
        for prefix, name in prefixes.items():
            if label.startswith(prefix):
                figures[name + server_name] = number_in(row.get("throughput (median)", ""))
    return figures


def target_rows(data: dict) -> list[tuple[str, str, str, str, str]]:
    """(area, figure, measured, target, verdict) for every target of the engine and server
    issues, plus the other headline figures (target blank)."""
    engine, server = engine_figures(data["engine"]), server_figures(data["server"])
    scaling = data["scaling"] or {}
    redeem, of_floor = (targets.engine_redeem_codes_per_second,
                        targets.engine_redeem_fraction_of_floor)
    engine_import = targets.engine_import_codes_per_second
    import_of_floor = targets.engine_import_fraction_of_floor
    rows = []
    if engine:
        rows += [
            ("engine", "durable redeem, 256 codes per call", f"{number(engine['redeem'])} codes/s",
             f"≥ {number(redeem)} codes/s", verdict(engine["redeem"], redeem)),
            ("engine", "redeem-256 / C floor, sale order",
             f"{engine['ratio']:.2f} ({number(engine['redeem'])} / {number(engine['floor'])})",
             f"≥ {of_floor:.2f}", verdict(engine["ratio"], of_floor)),
            ("engine", "redeem-256 / C floor, random order", f"{engine['random_ratio']:.2f}",
             f"≥ {of_floor:.2f}", verdict(engine["random_ratio"], of_floor)),
            ("engine", "import-10000 / C floor",
             (f"{engine['import_ratio']:.2f} ({number(engine.get('import-10000', 0))} / "
              f"{number(engine.get('floor-import', 0))})"),
             f"≥ {import_of_floor:.1f}", verdict(engine["import_ratio"], import_of_floor)),
        ]
        if "import-256" in engine:
            rows.append(("engine", "import, 256 codes per call",
                         f"{number(engine['import-256'])} codes/s",
                         f"≥ {number(engine_import)} codes/s",
                         verdict(engine["import-256"], engine_import)))
    else:
        rows.append(("engine", "engine benchmark", "not run / failed", "", "–"))
    if scaling.get("import_codes_per_second"):
        rate = scaling["import_codes_per_second"]
        label = (f"import, {number(scaling.get('import_chunk_codes', 10000))} codes per call "
                 f"(scaling bench, to {number(scaling.get('codes_reached', 0))} codes)")
        rows.append(("engine", label, f"{number(rate)} codes/s",
                     f"≥ {number(engine_import)} codes/s", verdict(rate, engine_import)))
    if server:
        def against(ratio_name: str, key: str, label: str, target: float, unit: str) -> tuple:
            rates = (f" ({number(server.get(key + 'kamicore', 0))} / "
                     f"{number(server.get(key + 'do-nothing', 0))} {unit})")
            return ("server", f"{label} / do-nothing server",
                    f"{server[ratio_name]:.2f}{rates}", f"≥ {target:.2f}",
                    verdict(server[ratio_name], target))
        batch, orders = targets.server_batch_codes_per_second, targets.server_orders_per_second
        p99 = targets.server_p99_ms_at_80
        rows += [
            against("redeem_unary_ratio", "unary_distinct_", "unary Redeem, distinct codes",
                    targets.server_unary_ratio, "calls/s"),
            against("redeem_replay_ratio", "h2load_redeem_", "unary Redeem replayed (h2load)",
                    targets.server_unary_ratio, "calls/s"),
            against("verify_ratio", "h2load_verify_", "VerifyCode (h2load)",
                    targets.server_verify_ratio, "calls/s"),
            against("stream_ratio", "stream_", "RedeemStream", targets.server_stream_ratio,
                    "codes/s"),
            against("orders_ratio", "orders_", "CreateOrder + ConfirmPayment (1 code)",
                    targets.server_orders_ratio, "orders/s"),
            ("server", "RedeemBatch (1,000 codes per call)",
             f"{number(server['redeem_batch_codes_per_second'])} codes/s",
             f"≥ {number(batch)} codes/s", verdict(server["redeem_batch_codes_per_second"], batch)),
            ("server", "CreateOrder + ConfirmPayment (1 code)",
             f"{number(server.get('orders_kamicore', 0))} orders/s", f"≥ {number(orders)} orders/s",
             verdict(server.get("orders_kamicore", 0), orders)),
            ("server", "worst unary p99 at 80% of peak (open loop)",
             f"{server['p99_ms_at_80']:.1f} ms", f"< {p99:g} ms",
             verdict_below(server["p99_ms_at_80"], p99)),
        ]
    else:
        rows.append(("server", "server benchmark", "not run / failed", "", "–"))
    return rows
