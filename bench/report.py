"""Turn one `make bench` run's results into bench/results/<YYYY-MM-DD>-<commit>.md with PNG plots,
and refresh the top of bench/RESULTS.md (the latest figures against their targets, and a history
line per run).

Inputs, all in one run dir (bench/run_all.py writes them; any may be missing, and the report says
so): run.json (date, commit, machine, steps and their times), engine.json and server.json (the
engine and server benchmarks' reports as printed, with their headline figures), concurrency.json
and scaling.json (bench/scaling_bench.py), locust_stats.csv (Locust's --csv).

Parts: report_figures.py (the run dir read back, the targets' verdicts), report_plots.py (the
PNGs), results_md.py (the top of RESULTS.md).

Usage: .venv/bin/python bench/report.py RUN_DIR [--no-results-md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import results_md
from common import RESULTS_FILE, number
from report_figures import collect, target_rows
from report_plots import plot_concurrency, plot_locust, plot_scaling

RESULTS_DIR = RESULTS_FILE.parent / "results"


def locust_table(rows: list[dict]) -> list[str]:
    lines = ["| call | requests | failures | req/s | min ms | p50 ms | p90 ms | p99 ms | max ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row.get('Name')} | {row.get('Request Count')} | "
                     f"{row.get('Failure Count')} | {float(row.get('Requests/s') or 0):,.1f} | "
                     f"{float(row.get('Min Response Time') or 0):,.0f} | {row.get('50%')} | "
                     f"{row.get('90%')} | {row.get('99%')} | "
                     f"{float(row.get('Max Response Time') or 0):,.0f} |")
    return lines


def scaling_table(scaling: dict) -> list[str]:
    lines = [("| codes in store | workers | Redeem calls/s | p99 ms | RedeemBatch codes/s | p99 ms "
              "| orders/s | p99 ms | done / sent |"),
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for point in scaling["points"]:
        figures = point["figures"]
        done = " · ".join(f"{name} {figure['succeeded']:,}/{figure['items']:,}"
                          + (f" {figure['errors']}" if figure["errors"] else "")
                          for name, figure in figures.items())
        lines.append(
            f"| {number(point['codes'])} | {point['workers']} | "
            f"{number(figures['redeem']['rate'])} | "
            f"{figures['redeem']['p99_ms']:.1f} | {number(figures['batch']['rate'])} | "
            f"{figures['batch']['p99_ms']:.1f} | {number(figures['orders']['rate'])} | "
            f"{figures['orders']['p99_ms']:.1f} | {done} |")
    return lines


def concurrency_table(concurrency: dict) -> list[str]:
    lines = ["| series | in flight | calls/s | p50 ms | p90 ms | p99 ms | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for point in concurrency["points"]:
        lines.append(f"| {point['series']} | {point['in_flight']} | {number(point['rate'])} | "
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
             ("- every write is durable (fsync per commit); server, clients and h2load share the "
              "2 cores; compare ratios from one run rather than absolutes across runs"), "",
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
                  f"{number(scaling.get('import_chunk_codes', 10000))} per call: "
                  + "; ".join(f"{number(step['from'])} → {number(step['to'])} at "
                              f"{number(step['codes_per_second'])} codes/s "
                              f"({step['seconds']:.0f} s)"
                              for step in scaling["imports"])
                  + (". The pool was capped (import time limit or --max-codes "
                     f"{number(scaling.get('max_codes', 0))})." if scaling.get("capped")
                     or scaling.get("max_codes", 0) < 10_000_000 else "."), "",
                  *scaling_table(scaling), ""]
    if data["concurrency"]:
        lines += ["## Concurrency sweep", "", *concurrency_table(data["concurrency"]), ""]
    if data["locust"]:
        locust = run.get("locust", {})
        lines += ["## Locust (mixed load, headless)", "",
                  f"`{locust.get('command', 'locust --headless')}`", "",
                  ("A paced mixed load (users wait between tasks), not a peak: it shows the "
                   "storefront, POS, partner and admin scenarios together, their latencies as "
                   "Locust's users see them, and their failures. Peak throughput comes from the "
                   "driver and h2load above."), "",
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
    per run; everything below (the engine and server benchmarks' own blocks) is kept."""
    link = report_path.relative_to(RESULTS_FILE.parent)
    mark = {"met": "met", "MISSED": "MISSED"}
    summary = " · ".join(f"{label}: {value} ({mark.get(verdict_text, verdict_text)})"
                         for _, label, value, _, verdict_text in rows if verdict_text in mark)
    history_line = (f"- {run.get('date', '')} · {run.get('commit', '')}"
                    + (" · quick" if run.get("quick") else "")
                    + f" · {run.get('seconds', 0) / 60:.0f} min · {summary} · [report]({link})")
    latest = [f"- machine: {run.get('machine', 'unknown')}",
              f"- commit: {run.get('commit', '')} · date: {run.get('date', '')}"
              + (" (quick run)" if run.get("quick") else ""),
              f"- report: [{report_path.name}]({link})", "",
              "| area | figure | measured (ratio) | target | verdict |",
              "| --- | --- | --- | --- | --- |",
              *[f"| {area} | {label} | {value} | {target} | {verdict_text} |"
                for area, label, value, target, verdict_text in rows]]
    results_md.write_block(results_md.MAKE_BENCH, latest, history_line)


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
