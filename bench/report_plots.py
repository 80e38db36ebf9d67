"""The `make bench` report's PNG plots: throughput and latency against concurrency, scaling with
the pool size and with workers, and Locust's latency percentiles per call."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from common import number

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after matplotlib.use


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
                   f"{number(concurrency.get('pool_codes', 0))} codes)")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path_rate, dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(series), figsize=(4.6 * len(series), 4.4), sharey=True)
    for axis, name in zip(axes if len(series) > 1 else [axes], series, strict=True):
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
                              label=f"{number(size)} codes")
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
