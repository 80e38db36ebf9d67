"""`make bench`: every benchmark in order, each bounded in time, then the report.

1. engine microbenchmark (bench/engine_bench.py)
2. server peak benchmark: h2load and the driver against kamicore and a do-nothing server
   (bench/server_bench.py)
3. concurrency sweep (bench/scaling_bench.py --concurrency)
4. Locust, headless, ~60 s of mixed load (bench/locustfile.py) against kamicore (2 workers) on a
   fresh data dir seeded here: a SKU, 300k codes, 30k of them sold into a pool file for the POS
   users, one key per role
5. pool and worker scaling (bench/scaling_bench.py, up to --max-codes, default 10M)
6. the report (bench/report.py): bench/results/<date>-<commit>.md with PNG plots, and the top of
   bench/RESULTS.md

A step that fails or overruns its time limit is stopped (its whole process group) and recorded;
the run goes on and the report says what is missing. Every process started here is stopped again,
also on Ctrl-C and SIGTERM. Intermediate results live in bench/results/tmp/run-<time>/ (git-
ignored) and are removed at the end unless --keep.

Usage: .venv/bin/python bench/run_all.py [--quick] [--max-codes N] [--only STEP,...] [--keep]
--quick: a ~5 minute smoke run of every step, its report in the run dir; RESULTS.md untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import BENCH, REPO, TEMP_PARENT, git_commit, load_json, machine, stop_on_signals

PYTHON = sys.executable
STEPS = ("engine", "server", "concurrency", "locust", "scaling", "report")
locust_users, locust_spawn_rate, locust_seconds = 24, 8, 60
locust_pool_codes, locust_sold_codes = 300_000, 30_000
total_budget_seconds = 22 * 60  # `make bench` aims at 15-25 minutes on this machine


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def environment() -> dict:
    env = dict(os.environ)
    env.setdefault("KAMICORE_EXT_DIR", str(REPO / "ext"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Step:
    """One subprocess in its own process group, bounded in time; stdout kept, stderr shown."""

    current: subprocess.Popen | None = None

    @classmethod
    def run(cls, name: str, argv: list[str], limit_seconds: float, env: dict | None = None,
            log_dir: Path | None = None) -> tuple[bool, str, str]:
        log(f"{name}: {' '.join(str(part) for part in argv)} (limit {limit_seconds:.0f} s)")
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, text=True,
                                   cwd=REPO, env=env or environment(), start_new_session=True)
        cls.current = process
        try:
            stdout, _ = process.communicate(timeout=limit_seconds)
            ok = process.returncode == 0
            error = "" if ok else f"exit {process.returncode}"
        except subprocess.TimeoutExpired:
            log(f"{name}: over its {limit_seconds:.0f} s limit; stopping it")
            stop_group(process)
            stdout, _ = process.communicate()
            ok, error = False, f"stopped after {limit_seconds:.0f} s"
        finally:
            cls.current = None
        if log_dir is not None:
            (log_dir / f"{name}.stdout").write_text(stdout or "")
        return ok, stdout or "", error


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (the benchmarks then stop what they started), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(45)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def seed_locust(run_dir: Path) -> tuple[Path, dict, str]:
    """A fresh data dir for the Locust run: returns it, the keys and the pool file."""
    from scaling_store import SKU, Store
    store = Store(run_dir / "locust-data")
    store.prepare({SKU: 0})
    store.import_to(locust_pool_codes, prefix="LCPL")
    store.sell(locust_sold_codes)
    pool_file = run_dir / "locust-pool.txt"
    pool_file.write_text("\n".join(store.sold) + "\n")
    return store.data_dir, store.keys, str(pool_file)


def run_locust(run_dir: Path, quick: bool) -> dict:
    """Seed, serve (2 workers), run Locust headless, stop the server."""
    from processes import Children
    from scaling_store import SKU
    from servers import KamicoreServer
    seconds = 20 if quick else locust_seconds
    data_dir, keys, pool_file = seed_locust(run_dir)
    children = Children(run_dir)
    try:
        with KamicoreServer(children, data_dir, 2, name="kamicore-locust") as server:
            env = environment()
            env.update({"KAMICORE_TARGET": server.target, "KAMICORE_SKU": SKU,
                        "KAMICORE_POOL_FILE": pool_file,
                        "KAMICORE_STOREFRONT_KEY": keys["storefront"],
                        "KAMICORE_POS_KEY": keys["pos"], "KAMICORE_PARTNER_KEY": keys["partner"],
                        "KAMICORE_ADMIN_KEY": keys["admin"]})
            argv = [str(Path(PYTHON).parent / "locust"), "-f", str(BENCH / "locustfile.py"),
                    "--headless", "-u", str(locust_users), "-r", str(locust_spawn_rate),
                    "-t", f"{seconds}s", "--stop-timeout", "5", "--csv", str(run_dir / "locust"),
                    "--only-summary", "--loglevel", "WARNING"]
            ok, _, error = Step.run("locust-headless", argv, seconds + 60, env=env)
            # Locust exits 1 when any request failed; the CSV is what counts
            ok = (run_dir / "locust_stats.csv").exists()
    finally:
        children.stop_all()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"ok": ok, "error": error if not ok else "",
            "command": f"locust -f bench/locustfile.py --headless -u {locust_users} -r "
                       f"{locust_spawn_rate} -t {seconds}s --csv PREFIX (weights and waits: "
                       f"defaults; kamicore 2 workers, {locust_pool_codes:,} codes, "
                       f"{locust_sold_codes:,} sold ones in the POS pool file)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every step")
    parser.add_argument("--max-codes", type=int, default=10_000_000,
                        help="the largest pool of the scaling bench (default 10,000,000)")
    parser.add_argument("--only", default=",".join(STEPS), help="steps to run, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the run dir")
    parser.add_argument("--run-dir", help="reuse a run dir (e.g. to redo the report)")
    options = parser.parse_args()
    steps = [step for step in options.only.split(",") if step]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    quick = ["--quick"] if options.quick else []
    no_write = ["--no-write"] if options.quick else []

    stop_on_signals()
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.UTC)
    TEMP_PARENT.mkdir(parents=True, exist_ok=True)
    run_dir = Path(options.run_dir).resolve() if options.run_dir else (
        TEMP_PARENT / f"run-{started_at:%Y%m%d-%H%M%S}")
    run_dir.mkdir(parents=True, exist_ok=True)
    run = load_run(run_dir) or {
        "date": started_at.strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit(),
        "machine": machine(), "quick": options.quick, "steps": [], "notes": []}
    run["steps"] = [step for step in run["steps"] if step["name"] not in steps]

    def record(name: str, step_started: float, ok: bool, error: str = "") -> None:
        run["steps"].append({"name": name, "seconds": time.perf_counter() - step_started,
                             "ok": ok, "error": error})
        run["seconds"] = sum(step["seconds"] for step in run["steps"])
        (run_dir / "run.json").write_text(json.dumps(run, indent=1))
        log(f"{name}: {'done' if ok else 'FAILED: ' + error} in "
            f"{time.perf_counter() - step_started:.0f} s")

    try:
        if "engine" in steps:
            began = time.perf_counter()
            ok, stdout, error = Step.run(
                "engine", [PYTHON, str(BENCH / "engine_bench.py"), *quick, *no_write],
                120 if options.quick else 420, log_dir=run_dir)
            (run_dir / "engine.json").write_text(json.dumps({"stdout": stdout if ok else ""}))
            record("engine", began, ok, error)
        if "server" in steps:
            began = time.perf_counter()
            ok, stdout, error = Step.run(
                "server", [PYTHON, str(BENCH / "server_bench.py"), *quick, *no_write],
                300 if options.quick else 960, log_dir=run_dir)
            (run_dir / "server.json").write_text(json.dumps({"stdout": stdout if ok else ""}))
            record("server", began, ok, error)
        if "concurrency" in steps:
            began = time.perf_counter()
            ok, _, error = Step.run(
                "concurrency", [PYTHON, str(BENCH / "scaling_bench.py"), "--concurrency", *quick,
                                "--out", str(run_dir / "concurrency.json"), "--time-limit",
                                "240" if options.quick else "360"],
                270 if options.quick else 400)
            record("concurrency", began, ok, error)
        if "locust" in steps:
            began = time.perf_counter()
            try:
                outcome = run_locust(run_dir, options.quick)
                run["locust"] = outcome
                record("locust", began, outcome["ok"], outcome["error"])
            except Exception as error:  # noqa: BLE001 - the report says it is missing; go on
                record("locust", began, False, f"{type(error).__name__}: {error}")
        if "scaling" in steps:
            began = time.perf_counter()
            # what is left of the budget, less the report's minute, bounds the import
            spent = time.perf_counter() - started
            left = max(300.0, total_budget_seconds - spent - 60)
            import_seconds = 60 if options.quick else max(120.0, left - 420)
            max_codes = min(options.max_codes, 200_000) if options.quick else options.max_codes
            ok, _, error = Step.run(
                "scaling", [PYTHON, str(BENCH / "scaling_bench.py"), *quick,
                            "--max-codes", str(max_codes), "--import-seconds-max",
                            f"{import_seconds:.0f}", "--out", str(run_dir / "scaling.json"),
                            "--time-limit", f"{left + 120:.0f}"], left + 180)
            record("scaling", began, ok, error)
            scaling = load_json(run_dir / "scaling.json") or {}
            if scaling.get("capped") or max_codes < 10_000_000:
                run["notes"].append(
                    f"pool scaling reached {scaling.get('codes_reached', 0):,} codes (asked "
                    f"{max_codes:,}; import limited to {import_seconds:.0f} s to keep `make "
                    "bench` within its time budget)")
        if "report" in steps:
            began = time.perf_counter()
            run["seconds"] = time.perf_counter() - started + sum(
                step["seconds"] for step in run["steps"] if step["name"] not in steps)
            (run_dir / "run.json").write_text(json.dumps(run, indent=1))
            import report
            out_dir = run_dir if options.quick else None
            path = report.build(run_dir, write_results_md=not options.quick, out_dir=out_dir)
            record("report", began, True)
            log(f"report: {path}")
            print(path)
    finally:
        if Step.current is not None:
            stop_group(Step.current)
        if not options.keep and not options.run_dir and not options.quick:
            shutil.rmtree(run_dir, ignore_errors=True)
        log(f"whole run {(time.perf_counter() - started) / 60:.1f} min")
    return 0 if all(step["ok"] for step in run["steps"]) else 1


def load_run(run_dir: Path) -> dict | None:
    return load_json(run_dir / "run.json")


if __name__ == "__main__":
    sys.exit(main())
