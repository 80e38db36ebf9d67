"""The server benchmark's worker scaling: the closed-loop figures again with fewer workers.

After the open-loop runs, kamicore is stopped and started again on the same data dir with each
worker count of server_plan.scaling_worker_counts (1 when the run has 2 workers), beside a
do-nothing server with as many processes; a warm-up round and one measured round of every
closed-loop figure run against both. The run's own worker count is the rounds already measured.
Each worker count's kamicore / do-nothing ratio is taken in its own round; the speed-up from one
worker count to another compares rounds taken minutes apart, so read it with the load average.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common import log, measured_rounds, median, round_ratios
from server_plan import scaling_worker_counts
from servers import KamicoreServer, start_nothing

if TYPE_CHECKING:
    from server_rounds import Bench, Figure

ROWS = ["h2load-redeem", "h2load-verify", "unary", "batch", "stream", "orders"]  # table order


def run(bench: Bench, bodies: dict) -> dict[int, dict[str, Figure]]:
    """workers -> that worker count's figures (the run's own count: the rounds measured)."""
    results = {bench.workers: bench.figures}
    counts = scaling_worker_counts(bench.workers)
    if not counts:
        return results
    main = bench.kamicore, bench.nothing_target, bench.nothing_pids, bench.figures
    bench.kamicore.stop()  # the data dir is opened by one server at a time
    try:
        for workers in counts:
            log(f"worker scaling: kamicore with {workers} worker(s), do-nothing with "
                f"{workers} process(es) ...")
            bench.kamicore = KamicoreServer(bench.children, main[0].data_dir, workers,
                                            name=f"kamicore-w{workers}")
            bench.kamicore.start()
            bench.nothing_target, nothing = start_nothing(bench.children, workers,
                                                          name=f"do-nothing-w{workers}")
            bench.nothing_pids = [process.pid for process in nothing]
            bench.figures = {}
            for measured in measured_rounds(1):
                bench.closed_round(bodies, measured)
            results[workers] = bench.figures
            bench.kamicore.stop()
            for process in nothing:
                bench.children.stop(process)
    finally:
        bench.kamicore, bench.nothing_target, bench.nothing_pids, bench.figures = main
    return results


def ratio(figures: dict, key: str) -> float:
    return median(round_ratios(figures[f"{key}-kamicore"].rates,
                               figures[f"{key}-do-nothing"].rates))


def table(scaling: dict[int, dict[str, Figure]]) -> list[str]:
    """Throughput per worker count for both servers, the speed-up over the fewest workers and
    kamicore / do-nothing at each count."""
    counts = sorted(scaling)
    if len(counts) < 2:
        return ["(one worker count only: no scaling measured)"]
    fewest = counts[0]
    header = " | ".join(f"{count} worker{'s' * (count > 1)}" for count in counts)
    speedups = " | ".join(f"{count} / {fewest}" for count in counts[1:])
    ratios = " | ".join(f"kamicore / do-nothing at {count}" for count in counts)
    lines = [f"| figure | server | {header} | {speedups} | {ratios} |",
             "| --- | --- |" + " ---: |" * (2 * len(counts) + len(counts) - 1)]
    for key in ROWS:
        for server in ("kamicore", "do-nothing"):
            figures = [scaling[count][f"{key}-{server}"] for count in counts]
            rates = " | ".join(f"{figure.rate:,.0f} {figure.unit}" for figure in figures)
            ups = " | ".join(f"{figure.rate / figures[0].rate:.2f}×" if figures[0].rate else "–"
                             for figure in figures[1:])
            kamicore = server == "kamicore"
            against = " | ".join(f"{ratio(scaling[count], key):.2f}" if kamicore else ""
                                 for count in counts)
            lines.append(f"| {figures[0].label} | {server} | {rates} | {ups} | {against} |")
    return lines
