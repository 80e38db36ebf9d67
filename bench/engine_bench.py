"""Engine microbenchmark: what one durable write path costs, against the floor py-lmdb sets.

One run measures, on fresh data dirs under bench/results/tmp (same disk as the repo, removed at
the end):

- raw: the floor of a redeem in plain Python over py-lmdb - HMAC-SHA256 of the code through
  kamicore.keyring.LookupHasher, lookup get, record get, record put, request-id put - 256 codes
  per durable (sync) write transaction, over a store of N codes laid out like the engine's;
- the compiled engine (kamicore._engine) through the blocking Engine API, durable, everything
  included (validation, state checks, counters, audit chain, idempotency, group-commit handoff):
  redeem (1, 16, 256 distinct SOLD codes per call), reserve+confirm (orders of 1, 16, 256 codes:
  one reserve call then one confirm call per order) and import_codes (1, 16, 256 codes per call);
- the same per-item engine interpreted (ext/ run by CPython): redeem-256 and import-256.

The engine's store holds N SOLD codes (imported, reserved and confirmed during setup) before any
timing starts; the raw store holds the same N codes with records of the same size. Redeems take
codes in sale order (ascending code id: what was sold first is redeemed first), and again, for
the raw floor and the compiled redeem-256, in a seeded random order over the other half of the
store: scattered codes dirty a page each, so a commit writes ~256 pages instead of a dozen or two,
disk time no engine avoids. Request ids are per-terminal sequence numbers (fixed width, so they
append). Every figure runs in R rounds that interleave all scenarios (the machine is shared, so
drift hits every figure alike); a round's throughput is items / wall time of its calls, reported
as the median over rounds, with per-call latency p50/p99 over all calls of all rounds.

Parts: engine_plan.py (how much work), engine_scenarios.py (setup and the rounds), raw_floor.py
(the py-lmdb floor), engine_report.py (the table and the ratios), results_md.py (this benchmark's
block of RESULTS.md); kamicore_access.py holds every use of kamicore's internals.

Usage: make bench-engine, or .venv/bin/python bench/engine_bench.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import time

import engine_report
import kamicore_access
import results_md
from common import REPO, RESULTS_FILE, git_commit, log, stop_on_signals, temp_dir
from engine_plan import CALLS_FULL, CALLS_QUICK, ROUNDS_FULL, ROUNDS_QUICK, Plan
from engine_scenarios import Bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run with a small N")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"measured rounds (default {ROUNDS_FULL})")
    parser.add_argument("--codes", type=int, default=None,
                        help="N, the SOLD codes in each store (default: what the plan needs)")
    options = parser.parse_args()
    plan = Plan(CALLS_QUICK if options.quick else CALLS_FULL,
                options.rounds or (ROUNDS_QUICK if options.quick else ROUNDS_FULL)
                ).with_stored_codes(options.codes)
    commit = git_commit()  # now: the tree may change while the run goes on
    warning = kamicore_access.engine_build_warning()
    if warning:
        log(f"WARNING: {warning}")

    stop_on_signals()  # engines are closed and the temp dir removed on SIGTERM too
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    root = temp_dir("engine-bench-")
    bench = Bench(plan, root)
    try:
        bench.setup()
        bench.run()
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    figures = bench.figures
    date = started_at.strftime("%Y-%m-%d %H:%M UTC")
    report = [
        f"- date: {date}" + (" (quick run)" if options.quick else ""),
        f"- commit: {commit}",
        (f"- machine: {engine_report.machine()}; load average {load_before[0]:.1f} before, "
         f"{load_after[0]:.1f} after"),
        (f"- N = {plan.stored_codes:,} SOLD codes in each store (records of {bench.record_bytes} "
         f"bytes; engine data file {bench.data_file_mb:,.0f} MB after setup), {plan.rounds} "
         f"measured rounds after a warm-up; setup "
         f"{bench.setup_seconds:.0f} s, whole run {elapsed:.0f} s"),
        ("- every write is durable (sync=True: fsync per commit); one caller, so every call is "
         "its own commit; latency is per call (reserve+confirm: per order, both calls)"),
    ]
    if warning:
        report.append(f"- WARNING: {warning}")
    report += ["", *engine_report.summary(figures)]
    if not options.no_write:
        results_md.write_block(
            results_md.ENGINE, [*report, "", "`" + engine_report.headline(figures) + "`"],
            engine_report.history_line(figures, date, commit, options.quick, plan.stored_codes))
        log(f"wrote {RESULTS_FILE.relative_to(REPO)}")
    print("\n".join(report))
    print(engine_report.headline(figures))  # the last line: what scripts parse
    return 0


if __name__ == "__main__":
    sys.exit(main())
