"""Engine microbenchmark: what one durable write path costs, against the C floor of the same work.

One run measures, on fresh data dirs under bench/results/tmp (same disk as the repo, removed at
the end):

- the C floor (bench/c_floor.c, compiled at run time with cc -O2 against the system's liblmdb and
  libcrypto; bench/c_floor.py installs what is missing): only the work no engine can avoid, over
  its own store of N codes laid out like the engine's (records of the engine's size keyed by
  8-byte big-endian ids, a lookup sub-database keyed by HMAC-SHA256 of the normalised code, a
  redemptions sub-database keyed by terminal + request id):
  - redeem: normalise, HMAC-SHA256 (precomputed key), lookup get, record get, record put (state
    byte changed), request-id put; 256 codes per durable (fsync'd) write transaction;
  - lookups only: normalise, HMAC, the two gets; 256 codes per read transaction;
  - import: AES-256-GCM seal (random 12-byte nonce, the code's id as associated data), HMAC,
    record append, lookup put, availability-index put; 10,000 codes per durable transaction;
- the compiled engine (kamicore._engine) through the blocking Engine API, durable, everything
  included (validation, state checks, counters, audit chain, idempotency, group-commit handoff):
  redeem (1, 16, 256 distinct SOLD codes per call), verify (256 codes per call), reserve+confirm
  (orders of 1, 16, 256 codes: one reserve call then one confirm call per order) and
  import_codes (1, 16, 256 and 10,000 codes per call);
- the same per-item engine interpreted (ext/ run by CPython): redeem-256 and import-256.

The C floor, not a Python loop over py-lmdb, is what the engine is held to (issue 8): the engine
is compiled and is to reach LMDB and libcrypto from C without the GIL, so the only cost it cannot
shed is LMDB's and libcrypto's own; engine / floor says how much of the rest is left.

The engine's store holds N SOLD codes (imported, reserved and confirmed during setup) before any
timing starts; the C floor's store holds the same N codes with records of the same size. Redeems
take codes in sale order (ascending code id: what was sold first is redeemed first), and again,
for the C floor and the compiled redeem-256, in a seeded random order over the other half of the
store: scattered codes dirty a page each, so a commit writes ~256 pages instead of a dozen or two,
disk time no engine avoids. Request ids are per-terminal sequence numbers (fixed width, so they
append). Every figure runs in R rounds that interleave all scenarios, each C floor next to the
engine figure it bounds (the machine is shared, so drift hits every figure alike); a round's
throughput is items / wall time of its calls (the C floor times its own transactions), reported
as the median over rounds, with per-call latency p50/p99 over all calls of all rounds; an engine /
C floor ratio is taken round by round and its median reported.

Parts: engine_plan.py (how much work), engine_scenarios.py (setup and the rounds), c_floor.py and
c_floor.c (the C floor), engine_report.py (the table and the ratios), results_md.py (this
benchmark's block of RESULTS.md); kamicore_access.py holds every use of kamicore's internals.

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
    parser.add_argument("--quick", action="store_true", help="a ~40 s smoke run with a small N")
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
        (f"- machine: {engine_report.machine(bench.floor_info)}; load average "
         f"{load_before[0]:.1f} before, "
         f"{load_after[0]:.1f} after"),
        (f"- N = {plan.stored_codes:,} SOLD codes in each store, the engine's and the C "
         f"floor's (records of {bench.record_bytes} bytes; engine data file "
         f"{bench.data_file_mb:,.0f} MB after setup), {plan.rounds} "
         f"measured rounds after a warm-up; setup "
         f"{bench.setup_seconds:.0f} s, whole run {elapsed:.0f} s"),
        ("- every write is durable (fsync per commit); one caller, so every call is its own "
         "commit; latency is per call (reserve+confirm: per order, both calls; C floor: per "
         "transaction)"),
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
