"""The `make bench` report's inputs: one run dir's results read back (the engine and server
benchmarks' printed reports, the scaling and concurrency JSON, Locust's CSV), their headline
figures, and every target with its verdict."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import targets
from common import load_json, number
from targets import verdict


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
    figures = {"unary_ratio": values.get("redeem_unary_ratio", 0.0),
               "batch": values.get("redeem_batch_codes_per_second", 0.0),
               "orders": values.get("orders_per_second", 0.0)}
    for row in markdown_rows(server["stdout"]):
        label, server_name = row.get("figure", ""), row.get("server", "")
        rate = number_in(row.get("throughput (median)", ""))
        if label.startswith("Redeem, one request id") and row.get("tool") == "h2load":
            figures["h2load_redeem_" + server_name] = rate
        elif label.startswith("VerifyCode") and row.get("tool") == "h2load":
            figures["h2load_verify_" + server_name] = rate
        elif label.startswith("Redeem, distinct"):
            figures["unary_distinct_" + server_name] = rate
        elif label.startswith("RedeemStream"):
            figures["stream_" + server_name] = rate
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
        unary, batch, orders = (targets.server_unary_ratio, targets.server_batch_codes_per_second,
                                targets.server_orders_per_second)
        rows += [
            ("server", "unary Redeem (h2load) / do-nothing server",
             (f"{server['unary_ratio']:.2f} ({number(server.get('h2load_redeem_kamicore', 0))} / "
              f"{number(server.get('h2load_redeem_do-nothing', 0))} calls/s)"),
             f"≥ {unary:.1f}", verdict(server["unary_ratio"], unary)),
            ("server", "RedeemBatch (1,000 codes per call)", f"{number(server['batch'])} codes/s",
             f"≥ {number(batch)} codes/s", verdict(server["batch"], batch)),
            ("server", "CreateOrder + ConfirmPayment (1 code)",
             f"{number(server['orders'])} orders/s", f"≥ {number(orders)} orders/s",
             verdict(server["orders"], orders)),
        ]
        for key, label, unit in (("h2load_verify_kamicore", "VerifyCode (h2load)", "calls/s"),
                                 ("unary_distinct_kamicore", "Redeem of distinct codes (driver)",
                                  "calls/s"),
                                 ("stream_kamicore", "RedeemStream (driver)", "codes/s")):
            if key in server:
                rows.append(("server", label, f"{number(server[key])} {unit}", "", ""))
    else:
        rows.append(("server", "server benchmark", "not run / failed", "", "–"))
    return rows
