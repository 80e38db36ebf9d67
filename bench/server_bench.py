"""Server benchmark: what a kamicore gRPC call costs end to end, against a server that does nothing.

One run, everything on 127.0.0.1, on a fresh data dir under bench/results/tmp (git-ignored,
removed at the end), with every process it starts stopped again (also on errors, Ctrl-C, SIGTERM
and the run's time limit):

- kamicore: `python -m kamicore.cli --data-dir D serve --workers 2` on free ports (gRPC and
  /metrics), waited for until fresh connections answer health SERVING; seeded through the CLI
  (`sku create` with prices for "web" and "partner", `keys create` for a pos key on terminal
  T-01 and a storefront key on channel web) and through its own RPCs (the admin key the first
  start writes imports codes over Inventory/ImportCodes; the storefront sells most of them with
  CreateOrder + ConfirmPayment of 10,000 codes each, whose replies deliver the plaintexts that
  the Redeem figures then use);
- do-nothing: a grpc.aio server with the same worker count (2 processes on SO_REUSEPORT) and a
  generic handler answering every method with empty bytes (one empty message per request on a
  stream). It is the ceiling of the transport, the Python gRPC stack and the client on this
  machine: kamicore can only approach it.

Figures, each against kamicore and then do-nothing, in R rounds after a warm-up round, every
round running every figure (the machine is shared: drift hits both servers of a pair alike, so
the kamicore / do-nothing ratio is taken round by round and its median reported); throughput is
the median over rounds, latency percentiles are over every call of every round:

- h2load (nghttp2-client, installed with apt when missing): unary Redeem and VerifyCode with the
  same settings against both servers, a fixed number of requests so that h2load waits for every
  answer (with -D it drops the calls in flight when time is up; cancelled calls are another
  load, and at the time of writing one left a kamicore worker's group-commit writer dead).
  h2load sends ONE body, so the Redeem repeats one request id on one SOLD code: the first call
  is made before h2load starts and every h2load call is an idempotent replay (the engine finds
  the request id and answers the first answer, REDEEMED, again). h2load counts HTTP status
  only, so kamicore's own /metrics (kamicore_rpcs_total delta: code="OK" of all codes) says how
  many calls succeeded. h2load reports a mean latency, not percentiles.
- a driver of P processes (multiprocessing, spawn), each with grpc.aio channels (one HTTP/2
  connection each) and requests serialised before timing starts, started together on a barrier:
  Redeem of distinct SOLD codes (unary; every call is a durable write), RedeemBatch of 1,000
  distinct codes per call, RedeemStream (long-lived streams, a window of requests in flight on
  each; latency from write to answer), and CreateOrder + ConfirmPayment pairs of distinct
  one-code orders (latency per order: both calls). Every kamicore reply is decoded after the
  timing ends and counted (REDEEMED, CREATED + PAID): a wrong answer ends the run. A job stops
  at its deadline and then reports what it finished.

Beside throughput and latency: the CPU time the server's processes used per call (from /proc),
which says what a call costs the server whatever else the shared machine is doing, and
kamicore's own view from its /metrics (its RPC latency histogram; group commits per second,
operations per commit, time per commit).

Then, open loop (server_open_loop.py): each unary figure (distinct Redeem, the replayed Redeem,
VerifyCode, CreateOrder + ConfirmPayment) offered at 50% and 80% of its kamicore peak from the
rounds, on a fixed schedule (latency from each call's scheduled time, so queueing behind a
stalled server counts), against kamicore and do-nothing: p50, p99, p99.9. Then worker scaling
(server_scaling.py): kamicore restarted on the same data dir with fewer workers (1 when the run
has 2), beside a do-nothing server with as many processes, one measured round of every
closed-loop figure each.

The machine has 2 cores shared by server, client and h2load: every figure is also bounded by
the client's CPU, which is what the do-nothing column shows. --workers and --clients rerun the
same benchmark on a bigger machine.

Parts: server_plan.py (how much work, how much in flight), server_seed.py (catalog, keys and
codes), servers.py and do_nothing.py (the two servers), processes.py (starting and stopping them,
their CPU time), driver.py (the load driver, closed and open loop), h2load_runs.py (h2load),
server_rounds.py (setup and the rounds), server_open_loop.py, server_scaling.py,
server_report.py (the tables), results_md.py (this benchmark's block of RESULTS.md).

Usage: make bench-server, or .venv/bin/python bench/server_bench.py [--quick] [--no-write]
       [--workers W] [--clients P]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import sys
import time

import results_md
import server_report
from common import REPO, RESULTS_FILE, git_commit, log, stop_on_signals, temp_dir
from do_nothing import serve_nothing
from h2load_runs import ensure_h2load
from server_plan import DRIVER_PROCESSES, PLAN_FULL, PLAN_QUICK, WORKERS, Plan
from server_rounds import Bench

__all__ = ["ensure_h2load", "main"]  # `make bench` calls server_bench.ensure_h2load()


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-nothing":  # as before do_nothing.py
        serve_nothing(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"measured rounds (default {PLAN_FULL.rounds})")
    parser.add_argument("--clients", type=int, default=DRIVER_PROCESSES,
                        help=f"driver processes (default {DRIVER_PROCESSES})")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"kamicore workers and do-nothing processes (default {WORKERS}); "
                        "scaling also measures the powers of two below it")
    options = parser.parse_args()
    if options.clients < 1 or options.workers < 1:
        parser.error("--clients and --workers take a positive number")
    plan = PLAN_QUICK if options.quick else PLAN_FULL
    if options.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": options.rounds})
    commit = git_commit()  # now: the tree may change while the run goes on

    # SIGTERM (make interrupted, CI timeout) and the run limit must still stop every process
    stop_on_signals(plan.run_limit_seconds)
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.UTC)
    load_before = os.getloadavg()
    root = temp_dir("server-bench-")
    bench = Bench(plan, root, options.clients, options.workers)
    try:
        bench.setup()
        bench.run()
    except BaseException:
        if bench.children.processes:
            log("kamicore log (tail):\n" + bench.children.log_tail("kamicore"))
        raise
    finally:
        signal.alarm(0)
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    date = started_at.strftime("%Y-%m-%d %H:%M UTC")
    report = server_report.report(bench, options.quick, commit, date,
                                  (load_before[0], load_after[0]), elapsed)
    if not options.no_write:
        results_md.write_block(
            results_md.SERVER, [*report, "", "`" + server_report.headline(bench) + "`"],
            server_report.history_line(bench, date, commit, options.quick))
        log(f"wrote {RESULTS_FILE.relative_to(REPO)}")
    print("\n".join(report))
    print(server_report.headline(bench))  # the last line: what scripts parse
    return 0


if __name__ == "__main__":
    sys.exit(main())
