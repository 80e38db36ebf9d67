"""The C floor (bench/c_floor.c): what a redeem and an import cannot avoid, measured in C over
LMDB's C API and libcrypto on a store laid out like kamicore's. The engine benchmark compares the
engine with it round by round.

This module builds the program with the system's C compiler against the system's liblmdb and
libcrypto (installing gcc, liblmdb-dev and libssl-dev with apt-get when they are missing and the
run is root; otherwise saying exactly what to install), runs it over a store it builds itself,
and hands it one round of one figure at a time. By hand, a run of its own:

    .venv/bin/python bench/c_floor.py [--codes N] [--rounds R]

prints one JSON line per figure (codes/s, the median over rounds; p50/p99 ms per transaction).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BENCH, expect, install_debian_packages, log, temp_dir

SOURCE = BENCH / "c_floor.c"
COMPILE = ["-O2", "-o"]  # then the binary, the source and LIBRARIES
LIBRARIES = ["-llmdb", "-lcrypto"]
# header -> the Debian package that provides it
HEADERS = {"stdio.h": "libc6-dev", "lmdb.h": "liblmdb-dev", "openssl/evp.h": "libssl-dev"}
REDEEM_PER_TXN, LOOKUPS_PER_TXN, IMPORT_PER_TXN = 256, 256, 10_000  # as c_floor.c has them
ready_timeout_seconds = 600  # the store's setup: ~1 s per 100,000 codes here


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
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (at most 64)")
    parser.add_argument("--record-bytes", type=int, default=118)
    options = parser.parse_args()
    directory = temp_dir("c-floor-")
    try:
        binary = build(directory)
        with tempfile.TemporaryDirectory(dir=directory) as store:
            log(f"c_floor: {options.codes:,} codes, {options.rounds} rounds ...")
            result = subprocess.run(
                [str(binary), store, "--codes", str(options.codes), "--rounds",
                 str(options.rounds), "--record-bytes", str(options.record_bytes)],
                stdout=subprocess.PIPE, text=True, check=False)
            print(result.stdout, end="")
            return result.returncode
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
