"""Turn one `make bench` run's results into bench/results/<YYYY-MM-DD>-<commit>.md with PNG plots,
and refresh the top of bench/RESULTS.md (the latest figures against their targets, and a history
line per run).

Inputs, all in one run dir (bench/run_all.py writes them; any may be missing, and the report says
so): run.json (date, commit, machine, steps and their times), engine.json and server.json (the
engine and server benchmarks' reports as printed, with their headline figures), concurrency.json
and scaling.json (bench/scaling_bench.py), locust_stats.csv (Locust's --csv).

Usage: .venv/bin/python bench/report.py RUN_DIR [--no-results-md]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
RESULTS_FILE = REPO / "bench" / "RESULTS.md"
TOP_HEADING = "# Benchmark results"
LATEST_HEADING = "## Latest `make bench`"
HISTORY_HEADING = "## `make bench` history"

# the targets of the engine and server issues
TARGETS = {
    "engine_redeem": 200_000,  # durable redeem, 256 per call, codes/s
    "engine_redeem_vs_raw": 0.8,  # of the raw py-lmdb loop
    "engine_import": 200_000,  # codes/s
    "server_unary_ratio": 0.8,  # h2load unary Redeem, kamicore / do-nothing
    "server_batch": 150_000,  # RedeemBatch codes/s
    "server_orders": 3_000,  # CreateOrder + ConfirmPayment orders/s
}


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
            rows.append(dict(zip(header, cells)))
    return rows


def number_in(text: str) -> float:
    match = re.search(r"[\d,]+(?:\.\d+)?", text or "")
    return float(match.group(0).replace(",", "")) if match else 0.0


def fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


# -- the figures and their targets -----------------------------------------------------------------

def collect(run_dir: Path) -> dict:
    data = {name: load_json(run_dir / f"{name}.json")
            for name in ("run", "engine", "server", "concurrency", "scaling")}
    data["run"] = data["run"] or {}
    data["locust"] = read_locust(run_dir / "locust_stats.csv")
    data["locust_failures"] = read_csv(run_dir / "locust_failures.csv")
    return data


def read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def read_locust(path: Path) -> list[dict]:
    return read_csv(path)


def engine_figures(engine: dict | None) -> dict:
    if not engine or not engine.get("stdout"):
        return {}
    values = headline_values(engine["stdout"].strip().splitlines()[-1])
    figures = {"redeem": values.get("redeem_codes_per_second", 0.0),
               "raw": values.get("raw_loop_codes_per_second", 0.0),
               "ratio": values.get("ratio", 0.0)}
    for row in markdown_rows(engine["stdout"]):
        if row.get("figure") == "import" and row.get("engine") == "compiled" and row.get(
                "codes/call") == "256":
            figures["import"] = number_in(row.get("codes/s (median)", ""))
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


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else "MISSED"


def target_rows(data: dict) -> list[tuple[str, str, str, str, str]]:
    """(area, figure, measured, target, verdict) for every target of the engine and server
    issues, plus the other headline figures (target blank)."""
    engine, server = engine_figures(data["engine"]), server_figures(data["server"])
    scaling = data["scaling"] or {}
    rows = []
    if engine:
        rows += [
            ("engine", "durable redeem, 256 codes per call", f"{fmt(engine['redeem'])} codes/s",
             f"≥ {fmt(TARGETS['engine_redeem'])} codes/s",
             verdict(engine["redeem"], TARGETS["engine_redeem"])),
            ("engine", "redeem-256 / raw py-lmdb loop",
             f"{engine['ratio']:.2f} ({fmt(engine['redeem'])} / {fmt(engine['raw'])})",
             f"≥ {TARGETS['engine_redeem_vs_raw']:.1f}",
             verdict(engine["ratio"], TARGETS["engine_redeem_vs_raw"])),
        ]
        if "import" in engine:
            rows.append(("engine", "import, 256 codes per call", f"{fmt(engine['import'])} codes/s",
                         f"≥ {fmt(TARGETS['engine_import'])} codes/s",
                         verdict(engine["import"], TARGETS["engine_import"])))
    else:
        rows.append(("engine", "engine benchmark", "not run / failed", "", "–"))
    if scaling.get("import_codes_per_second"):
        rate = scaling["import_codes_per_second"]
        rows.append(("engine", f"import, {fmt(scaling.get('import_chunk_codes', 10000))} codes "
                     f"per call (scaling bench, to {fmt(scaling.get('codes_reached', 0))} codes)",
                     f"{fmt(rate)} codes/s", f"≥ {fmt(TARGETS['engine_import'])} codes/s",
                     verdict(rate, TARGETS["engine_import"])))
    if server:
        rows += [
            ("server", "unary Redeem (h2load) / do-nothing server",
             f"{server['unary_ratio']:.2f} ({fmt(server.get('h2load_redeem_kamicore', 0))} / "
             f"{fmt(server.get('h2load_redeem_do-nothing', 0))} calls/s)",
             f"≥ {TARGETS['server_unary_ratio']:.1f}",
             verdict(server["unary_ratio"], TARGETS["server_unary_ratio"])),
            ("server", "RedeemBatch (1,000 codes per call)", f"{fmt(server['batch'])} codes/s",
             f"≥ {fmt(TARGETS['server_batch'])} codes/s",
             verdict(server["batch"], TARGETS["server_batch"])),
            ("server", "CreateOrder + ConfirmPayment (1 code)", f"{fmt(server['orders'])} orders/s",
             f"≥ {fmt(TARGETS['server_orders'])} orders/s",
             verdict(server["orders"], TARGETS["server_orders"])),
        ]
        for key, label, unit in (("h2load_verify_kamicore", "VerifyCode (h2load)", "calls/s"),
                                 ("unary_distinct_kamicore", "Redeem of distinct codes (driver)",
                                  "calls/s"),
                                 ("stream_kamicore", "RedeemStream (driver)", "codes/s")):
            if key in server:
                rows.append(("server", label, f"{fmt(server[key])} {unit}", "", ""))
    else:
        rows.append(("server", "server benchmark", "not run / failed", "", "–"))
    return rows


# -- plots -------------------------------------------------------------------------------------------

def plot_concurrency(concurrency: dict, path_rate: Path, path_latency: Path) -> None:
    points = concurrency["points"]
    series = list(dict.fromkeys(point["series"] for point in points))
    figure, axis = plt.subplots(figsize=(8, 5))
    for name in series:
        chosen = [point for point in points if point["series"] == name]
        axis.plot([point["in_flight"] for point in chosen], [point["rate"] for point in chosen],
                  marker="o", label=name)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("calls in flight (all driver processes)")
    axis.set_ylabel("calls/s")
    axis.set_title(f"Throughput against concurrency (kamicore: 2 workers, "
                   f"{fmt(concurrency.get('pool_codes', 0))} codes)")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path_rate, dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 4.4), sharey=True)
    for axis, name in zip(axes if len(series) > 1 else [axes], series):
        chosen = [point for point in points if point["series"] == name]
        for key, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^:")):
            axis.plot([point["in_flight"] for point in chosen],
                      [max(point[key], 0.01) for point in chosen], style, label=key[:3])
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("calls in flight")
        axis.grid(True, alpha=0.3, which="both")
        axis.legend()
    (axes[0] if len(series) > 1 else axes).set_ylabel("latency, ms")
    figure.suptitle("Latency percentiles against concurrency")
    figure.tight_layout()
    figure.savefig(path_latency, dpi=110)
    plt.close(figure)


FIGURE_LABELS = {"redeem": "Redeem (unary, calls/s)", "batch": "RedeemBatch (codes/s)",
                 "orders": "CreateOrder+ConfirmPayment (orders/s)"}


def plot_scaling(scaling: dict, path_pool: Path, path_workers: Path) -> None:
    points = scaling["points"]
    workers = sorted({point["workers"] for point in points})
    sizes = sorted({point["codes"] for point in points})
    figure, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for column, key in enumerate(FIGURE_LABELS):
        for worker_count in workers:
            chosen = sorted((point for point in points if point["workers"] == worker_count),
                            key=lambda point: point["codes"])
            xs = [point["codes"] for point in chosen]
            axes[0][column].plot(xs, [point["figures"][key]["rate"] for point in chosen], "o-",
                                 label=f"{worker_count} worker(s)")
            axes[1][column].plot(xs, [point["figures"][key]["p99_ms"] for point in chosen], "s--",
                                 label=f"{worker_count} worker(s)")
        axes[0][column].set_title(FIGURE_LABELS[key], fontsize=10)
        axes[1][column].set_title("p99 latency, ms", fontsize=10)
        for row in (0, 1):
            axes[row][column].set_xscale("log")
            axes[row][column].set_xlabel("codes in the store")
            axes[row][column].grid(True, alpha=0.3, which="both")
            axes[row][column].legend(fontsize=8)
            axes[row][column].set_ylim(bottom=0)
    figure.suptitle("Scaling with the pool size (every write durable)")
    figure.tight_layout()
    figure.savefig(path_pool, dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for column, key in enumerate(FIGURE_LABELS):
        for size in sizes:
            chosen = sorted((point for point in points if point["codes"] == size),
                            key=lambda point: point["workers"])
            axes[column].plot([point["workers"] for point in chosen],
                              [point["figures"][key]["rate"] for point in chosen], "o-",
                              label=f"{fmt(size)} codes")
        axes[column].set_title(FIGURE_LABELS[key], fontsize=10)
        axes[column].set_xlabel("server worker processes")
        axes[column].set_xticks(workers)
        axes[column].set_ylim(bottom=0)
        axes[column].grid(True, alpha=0.3)
        axes[column].legend(fontsize=8)
    figure.suptitle("Scaling with worker processes (2-core machine, shared with the client)")
    figure.tight_layout()
    figure.savefig(path_workers, dpi=100)
    plt.close(figure)


def plot_locust(rows: list[dict], path: Path) -> None:
    rows = [row for row in rows if row.get("Name") != "Aggregated" and row.get("Request Count")]
    names = [row["Name"] for row in rows]
    figure, axis = plt.subplots(figsize=(9, 0.55 * len(names) + 1.8))
    height = 0.26
    for offset, (column, label) in enumerate((("50%", "p50"), ("90%", "p90"), ("99%", "p99"))):
        values = [float(row.get(column) or 0) for row in rows]
        axis.barh([index + (offset - 1) * height for index in range(len(names))], values, height,
                  label=label)
    axis.set_yticks(range(len(names)))
    axis.set_yticklabels(names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("latency, ms (log)")
    axis.set_title("Locust mixed load: latency percentiles per call")
    axis.grid(True, axis="x", alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- the report ---------------------------------------------------------------------------------------

def locust_table(rows: list[dict]) -> list[str]:
    lines = ["| call | requests | failures | req/s | min ms | p50 ms | p90 ms | p99 ms | max ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row.get('Name')} | {row.get('Request Count')} | "
                     f"{row.get('Failure Count')} | {float(row.get('Requests/s') or 0):,.1f} | "
                     f"{float(row.get('Min Response Time') or 0):,.0f} | {row.get('50%')} | {row.get('90%')} | {row.get('99%')} | "
                     f"{float(row.get('Max Response Time') or 0):,.0f} |")
    return lines


def scaling_table(scaling: dict) -> list[str]:
    lines = ["| codes in store | workers | Redeem calls/s | p99 ms | RedeemBatch codes/s | p99 ms "
             "| orders/s | p99 ms | done / sent |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for point in scaling["points"]:
        figures = point["figures"]
        done = " · ".join(f"{name} {figure['succeeded']:,}/{figure['items']:,}"
                          + (f" {figure['errors']}" if figure["errors"] else "")
                          for name, figure in figures.items())
        lines.append(
            f"| {fmt(point['codes'])} | {point['workers']} | {fmt(figures['redeem']['rate'])} | "
            f"{figures['redeem']['p99_ms']:.1f} | {fmt(figures['batch']['rate'])} | "
            f"{figures['batch']['p99_ms']:.1f} | {fmt(figures['orders']['rate'])} | "
            f"{figures['orders']['p99_ms']:.1f} | {done} |")
    return lines


def concurrency_table(concurrency: dict) -> list[str]:
    lines = ["| series | in flight | calls/s | p50 ms | p90 ms | p99 ms | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for point in concurrency["points"]:
        lines.append(f"| {point['series']} | {point['in_flight']} | {fmt(point['rate'])} | "
                     f"{point['p50_ms']:.1f} | {point['p90_ms']:.1f} | {point['p99_ms']:.1f} | "
                     f"{point['errors'] or ''} |")
    return lines


def build(run_dir: Path, write_results_md: bool = True, out_dir: Path | None = None) -> Path:
    """The report (and its PNGs) in out_dir (default bench/results); its path."""
    data = collect(run_dir)
    results_dir = Path(out_dir) if out_dir else RESULTS_DIR
    run = data["run"]
    date = run.get("date", "unknown-date")
    commit = run.get("commit", "unknown")
    stem = f"{date[:10]}-{commit.replace('+', '-')}"
    results_dir.mkdir(parents=True, exist_ok=True)
    plots: list[tuple[str, str]] = []
    if data["concurrency"] and data["concurrency"].get("points"):
        rate, latency = f"{stem}-concurrency.png", f"{stem}-latency.png"
        plot_concurrency(data["concurrency"], results_dir / rate, results_dir / latency)
        plots += [("Throughput against concurrency", rate),
                  ("Latency percentiles against concurrency", latency)]
    if data["scaling"] and data["scaling"].get("points"):
        pool, workers = f"{stem}-scaling-pool.png", f"{stem}-scaling-workers.png"
        plot_scaling(data["scaling"], results_dir / pool, results_dir / workers)
        plots += [("Scaling with the pool size", pool), ("Scaling with workers", workers)]
    if data["locust"]:
        name = f"{stem}-locust-latency.png"
        plot_locust(data["locust"], results_dir / name)
        plots.append(("Locust: latency percentiles per call", name))

    rows = target_rows(data)
    lines = [f"# kamicore benchmarks — {date} — {commit}", "",
             f"- machine: {run.get('machine', 'unknown')}",
             f"- `make bench` run time: {run.get('seconds', 0) / 60:.1f} min"
             + (" (quick mode)" if run.get("quick") else ""),
             "- steps: " + "; ".join(f"{step['name']} {step['seconds']:.0f} s"
                                     + ("" if step.get("ok") else f" (FAILED: {step.get('error')})")
                                     for step in run.get("steps", [])),
             "- every write is durable (fsync per commit); server, clients and h2load share the "
             "2 cores; compare ratios from one run rather than absolutes across runs", "",
             "## Targets", "",
             "| area | figure | measured | target | verdict |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {area} | {label} | {value} | {target} | {mark} |"
              for area, label, value, target, mark in rows]
    lines += [""]
    for note in run.get("notes", []):
        lines.append(f"- {note}")
    lines += ["", "## Plots", ""]
    lines += [f"### {title}\n\n![{title}]({name})\n" for title, name in plots]
    if data["scaling"]:
        scaling = data["scaling"]
        lines += ["## Scaling: pool size and workers", "",
                  f"Codes imported straight into the data dir with the engine, "
                  f"{fmt(scaling.get('import_chunk_codes', 10000))} per call: "
                  + "; ".join(f"{fmt(step['from'])} → {fmt(step['to'])} at "
                              f"{fmt(step['codes_per_second'])} codes/s ({step['seconds']:.0f} s)"
                              for step in scaling["imports"])
                  + (". The pool was capped (import time limit or --max-codes "
                     f"{fmt(scaling.get('max_codes', 0))})." if scaling.get("capped")
                     or scaling.get("max_codes", 0) < 10_000_000 else "."), "",
                  *scaling_table(scaling), ""]
    if data["concurrency"]:
        lines += ["## Concurrency sweep", "", *concurrency_table(data["concurrency"]), ""]
    if data["locust"]:
        locust = run.get("locust", {})
        lines += ["## Locust (mixed load, headless)", "",
                  f"`{locust.get('command', 'locust --headless')}`", "",
                  "A paced mixed load (users wait between tasks), not a peak: it shows the "
                  "storefront, POS, partner and admin scenarios together, their latencies as "
                  "Locust's users see them, and their failures. Peak throughput comes from the "
                  "driver and h2load above.", "",
                  *locust_table(data["locust"]), ""]
        if data["locust_failures"]:
            lines += ["Failures:", "", "| call | error | occurrences |", "| --- | --- | ---: |"]
            lines += [f"| {row.get('Name')} | {row.get('Error')} | {row.get('Occurrences')} |"
                      for row in data["locust_failures"]]
            lines.append("")
    for key, title in (("engine", "Engine benchmark (bench/engine_bench.py)"),
                       ("server", "Server benchmark (bench/server_bench.py)")):
        if data[key] and data[key].get("stdout"):
            lines += [f"## {title}", "", data[key]["stdout"].strip(), ""]
    report_path = results_dir / f"{stem}.md"
    report_path.write_text("\n".join(lines) + "\n")
    if write_results_md:
        update_results_md(run, rows, report_path)
    return report_path


def update_results_md(run: dict, rows: list, report_path: Path) -> None:
    """The top of RESULTS.md: the latest figures against their targets, then one history line
    per run; everything below (the engine and server benchmarks' own sections) is kept."""
    text = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else ""
    lines = text.splitlines()
    history: list[str] = []
    rest = lines
    if lines and lines[0].strip() == TOP_HEADING:
        # ours runs up to the first heading that is not ours
        end = next((index for index, line in enumerate(lines[1:], 1)
                    if line.startswith("#") and line.strip() not in (LATEST_HEADING,
                                                                     HISTORY_HEADING)),
                   len(lines))
        in_history = False
        for line in lines[:end]:
            if line.startswith("## "):
                in_history = line.strip() == HISTORY_HEADING
            elif in_history and line.startswith("- "):
                history.append(line)
        rest = lines[end:]
    mark = {"met": "met", "MISSED": "MISSED"}
    summary = " · ".join(f"{label}: {value} ({mark.get(verdict_text, verdict_text)})"
                         for _, label, value, _, verdict_text in rows if verdict_text in mark)
    history.append(f"- {run.get('date', '')} · {run.get('commit', '')}"
                   + (" · quick" if run.get("quick") else "")
                   + f" · {run.get('seconds', 0) / 60:.0f} min · {summary} · "
                   f"[report]({report_path.relative_to(RESULTS_FILE.parent)})")
    top = [TOP_HEADING, "",
           "`make bench` runs everything below (engine, server, concurrency sweep, Locust, pool "
           "and worker scaling) and writes a report with plots to bench/results/. The machine is "
           "shared and noisy: compare ratios taken in one run rather than absolutes across runs.",
           "", LATEST_HEADING, "",
           f"- machine: {run.get('machine', 'unknown')}",
           f"- commit: {run.get('commit', '')} · date: {run.get('date', '')}"
           + (" (quick run)" if run.get("quick") else ""),
           f"- report: [{report_path.name}]({report_path.relative_to(RESULTS_FILE.parent)})", "",
           "| area | figure | measured (ratio) | target | verdict |",
           "| --- | --- | --- | --- | --- |",
           *[f"| {area} | {label} | {value} | {target} | {verdict_text} |"
             for area, label, value, target, verdict_text in rows],
           "", HISTORY_HEADING, "", *history, ""]
    RESULTS_FILE.write_text("\n".join(top + rest) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--no-results-md", action="store_true",
                        help="do not touch bench/RESULTS.md")
    options = parser.parse_args()
    path = build(Path(options.run_dir), not options.no_results_md)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
