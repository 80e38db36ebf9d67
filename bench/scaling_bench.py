"""Scaling benchmark: kamicore's throughput and p99 as the code pool grows and as workers go 1 -> 2,
and (with --concurrency) throughput and latency against the number of calls in flight.

Pool scaling (the default): one data dir under bench/results/tmp (git-ignored, removed at the
end) grows 10k -> 1M -> 10M codes (capped by --max-codes). Codes are imported straight into the
data dir with the engine, in chunks of 10,000 (one durable commit each, what `kamicore import`
does), before the server starts; the import rate of every step is reported. At each pool size:
the engine sells (reserve + confirm) the codes the figures will redeem, then for workers = 1 and 2
kamicore is started (`kamicore serve --workers W` on free 127.0.0.1 ports) and a driver of 2
processes (grpc.aio, requests serialised before timing) measures
  - Redeem (unary) of distinct SOLD codes: calls/s, 64 in flight per process;
  - RedeemBatch of 1,000 distinct SOLD codes per call: codes/s, 2 in flight per process;
  - CreateOrder + ConfirmPayment of one-code orders: orders/s, 32 in flight per process;
every call a durable write; latency percentiles (p50/p90/p99) over every call of the figure.

Concurrency (--concurrency): one kamicore (2 workers, a 200k pool) and the do-nothing grpc.aio
server (bench/do_nothing.py, 2 processes) are driven at 1, 4, 16, 64 and 256 calls in flight
with unary Redeem of distinct codes and VerifyCode (kamicore) and the same Redeem requests
(do-nothing: empty replies), each point a few seconds.

Results go to a JSON file (--out) that bench/report.py turns into plots. Every process this
starts is stopped again, also on errors, Ctrl-C, SIGTERM and the run limit (--time-limit).

Parts: scaling_runs.py (the two runs), scaling_store.py (the data dir, filled with the engine),
servers.py and driver.py (shared with bench/server_bench.py).

Usage: .venv/bin/python bench/scaling_bench.py [--quick] [--max-codes N] [--out FILE]
       .venv/bin/python bench/scaling_bench.py --concurrency [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path

from common import log, stop_on_signals, temp_dir
from driver import DriverPool
from processes import Children
from scaling_runs import driver_processes, run_concurrency, run_pool_scaling


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", action="store_true",
                        help="the concurrency sweep instead of pool scaling")
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--max-codes", type=int, default=10_000_000,
                        help="the largest pool (default 10,000,000)")
    parser.add_argument("--import-seconds-max", type=float, default=600.0,
                        help="stop growing the pool when importing has taken this long")
    parser.add_argument("--time-limit", type=int, default=1500,
                        help="seconds; past it everything is stopped")
    parser.add_argument("--out", default=None, help="JSON results (default: print)")
    options = parser.parse_args()

    stop_on_signals(options.time_limit)
    root = temp_dir("scaling-bench-")
    children = Children(root)
    pool = None
    started = time.perf_counter()
    try:
        pool = DriverPool(driver_processes)
        run = run_concurrency if options.concurrency else run_pool_scaling
        result = run(options, root, children, pool)
    except BaseException:
        for name, _ in children.processes:
            log(f"{name} log (tail):\n{children.log_tail(name)}")
        raise
    finally:
        signal.alarm(0)
        if pool is not None:
            pool.close()
        children.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    result["seconds"] = time.perf_counter() - started
    text = json.dumps(result, indent=1)
    if options.out:
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out).write_text(text)
        log(f"wrote {options.out} ({result['seconds']:.0f} s)")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
