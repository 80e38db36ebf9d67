"""The server benchmark's report: how the run went, the table of figures against both servers
with the targets, kamicore's own view from its /metrics, the open-loop latencies, the worker
scaling, the headline line scripts parse and the RESULTS.md history line."""

from __future__ import annotations

import common
import server_open_loop
import server_scaling
import targets
from common import median, number, ratios_text, round_ratios
from driver import CHANNELS_PER_PROCESS, STREAM_WINDOW
from h2load_runs import H2LOAD_OPTIONS
from rpcs import BATCH_CODES
from server_plan import IN_FLIGHT, OPEN_LOOP_LEVELS, STREAMS_PER_PROCESS
from server_rounds import Bench, Figure

ROWS = ["h2load-redeem", "h2load-verify", "unary", "batch", "stream", "orders"]  # table order


def machine() -> str:
    import grpc
    return common.machine(f"grpcio {grpc.__version__}")


def per_round(figures: dict, key: str) -> list[float]:
    """kamicore / do-nothing round by round."""
    return round_ratios(figures[f"{key}-kamicore"].rates, figures[f"{key}-do-nothing"].rates)


def ratio(figures: dict, key: str) -> float:
    """The median of the per-round ratios."""
    return median(per_round(figures, key))


# figure -> kamicore / do-nothing target (issue 8)
RATIO_TARGETS = {"h2load-redeem": targets.server_unary_ratio, "unary": targets.server_unary_ratio,
                 "h2load-verify": targets.server_verify_ratio,
                 "stream": targets.server_stream_ratio, "orders": targets.server_orders_ratio}


def target_text(figures: dict, key: str) -> str:
    texts = []
    if key in RATIO_TARGETS:
        texts.append(f"≥ {RATIO_TARGETS[key]:.2f}× do-nothing: "
                     + targets.verdict(ratio(figures, key), RATIO_TARGETS[key]))
    if key == "batch":
        texts.append(f"≥ {number(targets.server_batch_codes_per_second)} codes/s: "
                     + targets.verdict(figures["batch-kamicore"].rate,
                                       targets.server_batch_codes_per_second))
    if key == "orders":
        texts.append(f"≥ {number(targets.server_orders_per_second)} orders/s: "
                     + targets.verdict(figures["orders-kamicore"].rate,
                                       targets.server_orders_per_second))
    return "; ".join(texts)


def succeeded_text(figure: Figure) -> str:
    if figure.server != "kamicore":
        return "(empty replies)"
    what = {"h2load": "OK of answered", "driver": "done"}[figure.tool]
    text = f"{number(figure.succeeded)}/{number(figure.items)} {what}"
    if figure.errors:
        text += " · " + ", ".join(f"{name} {count}" for name, count in figure.errors.items())
    return text


def cpu_per_call_ms(figure: Figure) -> float:
    return figure.server_cpu_seconds / figure.calls * 1000 if figure.calls else 0.0


def table(figures: dict) -> list[str]:
    lines = [("| figure | tool | server | items/call | throughput (median) | min–max over rounds "
              "| p50 ms | p99 ms | server CPU ms/call | succeeded | kamicore / do-nothing "
              "| target |"),
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]
    for key in ROWS:
        for server in ("kamicore", "do-nothing"):
            figure = figures[f"{key}-{server}"]
            if figure.tool == "h2load":  # h2load gives a mean per run, no percentiles
                p50 = f"mean {median(figure.latencies) * 1000:.2f}"
                p99 = "–"
            else:
                p50 = f"{figure.percentile_ms(0.50):.2f}"
                p99 = f"{figure.percentile_ms(0.99):.2f}"
            kamicore = server == "kamicore"
            lines.append(
                f"| {figure.label} | {figure.tool} | {server} | {figure.items_per_call} | "
                f"{number(figure.rate)} {figure.unit} | "
                f"{number(min(figure.rates))}–{number(max(figure.rates))} | {p50} | {p99} | "
                f"{cpu_per_call_ms(figure):.2f} | {succeeded_text(figure)} | "
                f"{f'{ratio(figures, key):.2f}' if kamicore else ''} | "
                f"{target_text(figures, key) if kamicore else ''} |")
    return lines


def server_table(figures: dict) -> list[str]:
    """kamicore's own view of each figure, from its /metrics (deltas over each measured job)."""
    lines = [("| kamicore figure | RPC ms (server's mean) | group commits/s | operations/commit "
              "| ms/commit (mean) | writer time / wall time |"),
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key in ROWS:
        figure = figures[f"{key}-kamicore"]
        served = (f"{figure.server_seconds / figure.server_calls * 1000:.2f}"
                  if figure.server_calls else "–")
        if not figure.commits or not figure.wall_seconds:
            lines.append(f"| {figure.label} | {served} | 0 | – | – | – |")
            continue
        lines.append(
            f"| {figure.label} | {served} | {number(figure.commits / figure.wall_seconds)} | "
            f"{figure.commit_operations / figure.commits:,.1f} | "
            f"{figure.commit_seconds / figure.commits * 1000:.2f} | "
            f"{figure.commit_seconds / figure.wall_seconds:.0%} |")
    return lines


def report(bench: Bench, quick: bool, commit: str, date: str, load: tuple[float, float],
           elapsed: float) -> list[str]:
    """The Latest part of the server's RESULTS.md block (less the headline)."""
    plan, figures = bench.plan, bench.figures
    capped = [key for key, figure in figures.items() if figure.capped]
    lines = [
        f"- date: {date}" + (" (quick run)" if quick else ""),
        f"- commit: {commit}",
        f"- machine: {machine()}; load average {load[0]:.1f} before, {load[1]:.1f} after",
        (f"- {plan.rounds} measured rounds after a warm-up round; setup "
         f"{bench.setup_seconds:.0f} s (seeding {bench.seeded:,} codes over ImportCodes, "
         f"{len(bench.sold):,} of them sold with CreateOrder + ConfirmPayment), whole run "
         f"{elapsed:.0f} s"),
        (f"- h2load -n {plan.h2load_requests:,} {' '.join(H2LOAD_OPTIONS)} per run: the Redeem "
         "body repeats one request id on one code, so every h2load Redeem is an idempotent replay "
         "of a call made before; succeeded = kamicore_rpcs_total{code=\"OK\"} delta of all "
         "answered"),
        (f"- kamicore: {bench.workers} workers; do-nothing: {bench.workers} processes"),
        (f"- driver: {bench.clients} processes × {CHANNELS_PER_PROCESS} connections; in flight "
         f"per process: unary {IN_FLIGHT['unary']}, RedeemBatch {IN_FLIGHT['batch']} calls of "
         f"{BATCH_CODES:,} codes, RedeemStream {STREAMS_PER_PROCESS} streams × {STREAM_WINDOW}, "
         f"orders {IN_FLIGHT['orders']}; per round {plan.unary:,} Redeem, {plan.batch_calls} "
         f"RedeemBatch, {plan.stream:,} RedeemStream items, {plan.orders:,} orders; every write "
         "durable (fsync per group commit)"),
        ("- latencies in this table are under saturation (≈ calls in flight / throughput; the "
         "open-loop table below has them at 50% and 80% of the peak); server CPU ms/call: "
         "user + system time of the server's processes (kamicore: supervisor and workers) during "
         "the figure, per call (per 1,000-code call for RedeemBatch, per order for orders); "
         "kamicore / do-nothing: median of the per-round ratios"),
    ]
    if capped:
        lines.append(f"- capped at the job deadline ({plan.job_deadline_seconds:.0f} s): "
                     f"{', '.join(capped)}")
    return [
        *lines,
        "",
        *table(figures),
        "",
        "- kamicore / do-nothing per round: " + "; ".join(
            f"{key} {ratios_text(per_round(figures, key))}" for key in ROWS),
        "",
        ("kamicore's own view (its /metrics): RPC ms is kamicore_rpc_latency_seconds, "
         "interceptor to reply (orders: both calls averaged; a stream is timed once, as a "
         "whole, so not shown); an operation is one RPC's engine call (a RedeemBatch of 1,000 "
         "codes is one); ms/commit runs from opening the write transaction, waiting for the "
         "other worker's LMDB write lock included, to fsync; writer time adds both workers' "
         "writers:"),
        "",
        *server_table(figures),
        "",
        *open_loop_part(bench),
        "",
        *scaling_part(bench),
    ]


def open_loop_part(bench: Bench) -> list[str]:
    open_loop = bench.open_loop
    worst = server_open_loop.worst_p99_ms(open_loop)
    levels = " and ".join(f"{level:.0%}" for level in OPEN_LOOP_LEVELS)
    return [
        (f"Open loop (bench/server_open_loop.py): each unary figure offered at {levels} of "
         "kamicore's peak under the same driver (closed loop: the rounds' median above; for the "
         "replayed Redeem and VerifyCode, which h2load measures above, a probe just before), "
         f"{bench.plan.open_loop_seconds:g} s of schedule per run, by the "
         f"driver's {bench.clients} processes on a fixed schedule; latency from each call's "
         "scheduled time (orders: both calls), so calls queued behind a stall count; client "
         "late: scheduled to actual send (high means the client, not the server, fell behind); "
         "do-nothing at the same rates for reference:"),
        "",
        *server_open_loop.table(open_loop),
        "",
        (f"- worst kamicore p99 at 80% of peak: {worst:.2f} ms; target < "
         f"{targets.server_p99_ms_at_80:g} ms: "
         f"{targets.verdict_below(worst, targets.server_p99_ms_at_80)}"),
    ]


def scaling_part(bench: Bench) -> list[str]:
    counts = sorted(bench.scaling)
    return [
        (f"Worker scaling (bench/server_scaling.py): {bench.workers} workers are the rounds "
         f"above (median); {', '.join(str(count) for count in counts[:-1]) or 'none'} from a "
         "warm-up and one measured round each after the open-loop runs, kamicore restarted on "
         "the same data dir beside a do-nothing server with as many processes:"),
        "",
        *server_scaling.table(bench.scaling),
    ]


def headline(bench: Bench) -> str:
    figures = bench.figures
    return (f"redeem_unary_ratio={ratio(figures, 'unary'):.2f} "
            f"redeem_replay_ratio={ratio(figures, 'h2load-redeem'):.2f} "
            f"verify_ratio={ratio(figures, 'h2load-verify'):.2f} "
            f"stream_ratio={ratio(figures, 'stream'):.2f} "
            f"orders_ratio={ratio(figures, 'orders'):.2f} "
            f"redeem_batch_codes_per_second={figures['batch-kamicore'].rate:.0f} "
            f"p99_ms_at_80={server_open_loop.worst_p99_ms(bench.open_loop):.1f}")


def history_line(bench: Bench, date: str, commit: str, quick: bool) -> str:
    figures = bench.figures
    scaling = ""
    if len(bench.scaling) > 1:
        fewest, most = min(bench.scaling), max(bench.scaling)
        below = bench.scaling[fewest]["unary-kamicore"].rate
        scaling = (f" · distinct Redeem {most}/{fewest} workers "
                   f"{figures['unary-kamicore'].rate / below if below else 0:.2f}×")
    return (f"- {date} · {commit}{' · quick' if quick else ''} · kamicore / do-nothing: "
            f"distinct Redeem {ratio(figures, 'unary'):.2f} "
            f"({number(figures['unary-kamicore'].rate)}/s), replay "
            f"{ratio(figures, 'h2load-redeem'):.2f}, VerifyCode "
            f"{ratio(figures, 'h2load-verify'):.2f}, RedeemStream {ratio(figures, 'stream'):.2f}, "
            f"orders {ratio(figures, 'orders'):.2f} ({number(figures['orders-kamicore'].rate)}/s)"
            f" · RedeemBatch {number(figures['batch-kamicore'].rate)} codes/s · worst p99 at 80% "
            f"{server_open_loop.worst_p99_ms(bench.open_loop):.1f} ms{scaling}")
