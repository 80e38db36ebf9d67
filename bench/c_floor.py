"""The C floor (bench/c_floor.c): what a redeem and an import cannot avoid, measured in C over
LMDB's C API and libcrypto on a store laid out like kamicore's. The engine benchmark compares the
engine with it round by round.

This module builds the program with the system's C compiler against the system's liblmdb and
libcrypto (installing gcc, liblmdb-dev and libssl-dev with apt-get when they are missing and the
run is root; otherwise saying exactly what to install), runs it over a store it builds itself,
and hands it one round of one figure at a time. By hand (make bench-floor), a run of its own:

    .venv/bin/python bench/c_floor.py [--codes N] [--rounds R]

a warm-up round and R measured rounds of every figure, then one JSON line per figure: codes/s
(the median over rounds) and p50/p99 ms per transaction.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from common import BENCH, expect, install_debian_packages, log, median, percentile_ms, temp_dir

SOURCE = BENCH / "c_floor.c"
COMPILE = ["-O2", "-o"]  # then the binary, the source and LIBRARIES
LIBRARIES = ["-llmdb", "-lcrypto"]
# header -> the Debian package that provides it
HEADERS = {"stdio.h": "libc6-dev", "lmdb.h": "liblmdb-dev", "openssl/evp.h": "libssl-dev"}
REDEEM_PER_TXN, LOOKUPS_PER_TXN, IMPORT_PER_TXN = 256, 256, 10_000  # as c_floor.c has them
# by hand: transactions per round of each figure
STANDALONE_TXNS = {"redeem sale": 240, "redeem random": 40, "lookups": 240, "import": 4}


def missing_packages() -> list[str]:
    """What the build lacks, as Debian packages."""
    compiler = shutil.which("cc")
    if compiler is None:
        return ["gcc", *HEADERS.values()]
    missing = []
    for header, package in HEADERS.items():
        probe = subprocess.run([compiler, "-E", "-x", "c", "-", "-o", "/dev/null"],
                               input=f"#include <{header}>\n", capture_output=True, text=True,
                               check=False)
        if probe.returncode != 0:
            missing.append(package)
    return missing


def build(directory: Path) -> Path:
    """cc -O2 c_floor.c -llmdb -lcrypto into `directory`; the binary's path."""
    missing = missing_packages()
    if missing:
        install_debian_packages(missing, "the C floor (bench/c_floor.c)")
        still = missing_packages()
        expect(not still, f"still missing after apt-get: {still}")
    binary = directory / "c_floor"
    result = subprocess.run([shutil.which("cc"), *COMPILE, str(binary), str(SOURCE), *LIBRARIES],
                            capture_output=True, text=True, check=False)
    expect(result.returncode == 0, f"compiling {SOURCE.name}:\n{result.stderr[-3000:]}")
    return binary


class CFloor:
    """The floor program over its own store of `codes` SOLD codes in `directory`, taking one
    round of one figure at a time."""

    def __init__(self, directory: Path, codes: int, record_bytes: int, map_size: int):
        directory.mkdir(parents=True, exist_ok=True)
        binary = build(directory)
        store = directory / "store"
        store.mkdir()
        self.process = subprocess.Popen(
            [str(binary), str(store), "--codes", str(codes), "--record-bytes", str(record_bytes),
             "--map-size", str(map_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = self._answer()  # after the store is built: setup_seconds, lmdb, openssl
        expect(self.info.get("ready"), f"c_floor: {self.info}")

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        expect(bool(line), f"c_floor exited {self.process.poll()} (its stderr is above)")
        return json.loads(line)

    def round(self, figure: str, transactions: int) -> tuple[int, float, list[float]]:
        """`figure`: 'redeem sale', 'redeem random', 'lookups' or 'import'; -> (codes, wall
        seconds, seconds per transaction)."""
        self.process.stdin.write(f"{figure} {transactions}\n")
        self.process.stdin.flush()
        answer = self._answer()
        return (answer["codes"], answer["seconds"],
                [milliseconds / 1000 for milliseconds in answer["txn_ms"]])

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="the C floor on its own")
    parser.add_argument("--codes", type=int, default=740_000, help="N, SOLD codes in the store")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument("--record-bytes", type=int, default=118)
    options = parser.parse_args()
    redeemed = max(options.rounds * txns + max(1, txns // 10) for figure, txns
                   in STANDALONE_TXNS.items() if figure.startswith("redeem")) * REDEEM_PER_TXN
    if options.codes < 2 * redeemed:  # each order redeems from its own half of the store
        parser.error(f"{options.rounds} rounds redeem up to {redeemed:,} codes in one order: "
                     f"--codes {2 * redeemed:,} at least")
    directory = temp_dir("c-floor-")
    floor = None
    try:
        log(f"c_floor: {options.codes:,} codes, {options.rounds} rounds ...")
        floor = CFloor(directory, options.codes, options.record_bytes, 64 * 2**30)
        print(json.dumps(floor.info))
        rates: dict[str, list] = {figure: [] for figure in STANDALONE_TXNS}
        latencies: dict[str, list] = {figure: [] for figure in STANDALONE_TXNS}
        for number in range(options.rounds + 1):  # round 0 warms up
            for figure, transactions in STANDALONE_TXNS.items():
                codes, seconds, per_txn = floor.round(
                    figure, transactions if number else max(1, transactions // 10))
                if number:
                    rates[figure].append(codes / seconds)
                    latencies[figure].extend(per_txn)
        for figure in STANDALONE_TXNS:
            ordered = sorted(latencies[figure])
            print(json.dumps({"figure": figure.replace(" ", "-"),
                              "codes_per_second": round(median(rates[figure])),
                              "rounds": options.rounds,
                              "p50_ms": round(percentile_ms(ordered, 0.5), 3),
                              "p99_ms": round(percentile_ms(ordered, 0.99), 3)}))
        return 0
    finally:
        if floor is not None:
            floor.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
