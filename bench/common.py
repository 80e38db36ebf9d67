"""What every benchmark script shares: where things are, which commit and machine a run was on,
logging and checks, run-time limits, and the small arithmetic of figures (medians over rounds,
nearest-rank percentiles, ratios round by round)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS_FILE = BENCH / "RESULTS.md"
TEMP_PARENT = BENCH / "results" / "tmp"  # git-ignored
# changes here can move a figure; untracked files elsewhere cannot
MEASURED_PATHS = ("core/", "ext/", "proto/", "bench/")
RESULT_PATHS = ("bench/RESULTS.md", "bench/results/")  # written by the benchmarks themselves


# -- the run -----------------------------------------------------------------------------------

def git_commit() -> str:
    """The short commit, '+dirty' when the working tree differs where it could matter."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout
    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        dirty = False
        for line in git("status", "--porcelain", "-uall").splitlines():
            path = line[3:]
            if path.startswith(RESULT_PATHS):
                continue
            if not line.startswith("??") or path.startswith(MEASURED_PATHS):
                dirty = True
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(*parts: str) -> str:
    """'2 CPUs (model), 24 GB RAM, Python x.y, <parts>, Linux ...'"""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kilobytes = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kilobytes / 2**20:.0f} GB RAM"
    return ", ".join([f"{os.cpu_count()} CPUs ({model}){memory}",
                      f"Python {platform.python_version()}", *parts,
                      f"{platform.system()} {platform.release()}"])


def temp_dir(prefix: str) -> Path:
    """A fresh directory under bench/results/tmp (same disk as the repo, git-ignored)."""
    TEMP_PARENT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=TEMP_PARENT))


def stop_on_signals(limit_seconds: float | None = None) -> None:
    """SIGTERM (make interrupted, CI timeout) and, given a limit, the run's time limit raise
    SystemExit, so that `finally` blocks still stop every process and remove temp dirs."""
    def stop(signal_number, frame):
        raise SystemExit(143 if signal_number == signal.SIGTERM else 124)

    signal.signal(signal.SIGTERM, stop)
    if limit_seconds is not None:
        signal.signal(signal.SIGALRM, stop)
        signal.alarm(int(limit_seconds))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expect(condition: bool, message: str) -> None:
    """A wrong answer ends the run (not an assert: python -O drops those)."""
    if not condition:
        raise RuntimeError(message)


def write_result(result: dict, out: str | None) -> None:
    """A benchmark's JSON result into the file `out`, or on stdout."""
    text = json.dumps(result, indent=2)
    if out:
        Path(out).write_text(text + "\n")
    else:
        print(text)


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def measured_rounds(rounds: int):
    """Round 0 warms up every path; rounds 1..`rounds` are measured. Yields `measured`."""
    for number in range(rounds + 1):
        measured = number > 0
        log(f"round {number}/{rounds}" + ("" if measured else " (warm-up)"))
        yield measured


def install_debian_packages(packages: list[str], why: str) -> None:
    """`apt-get update` then `apt-get install -y packages` when running as root on a machine with
    apt-get; otherwise end the run saying exactly what to install."""
    command = "apt-get install -y " + " ".join(packages)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(
            f"{why} needs the Debian/Ubuntu packages {', '.join(packages)}: run\n"
            f"    sudo apt-get update && sudo {command}\n"
            "(elsewhere: their equivalents from the system's package manager), then rerun.")
    log(f"{why}: installing {', '.join(packages)} (apt-get update, {command}) ...")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], command.split() + ["-q"]):
        result = subprocess.run(argv, capture_output=True, text=True, env=environment,
                                check=False)
        expect(result.returncode == 0,
               f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-2000:]}")


# -- inputs ------------------------------------------------------------------------------------

def code_of(prefix, number: int):
    """A code in the usual dashed groups, 19-20 characters (normalisation has dashes to remove):
    bytes for a bytes prefix, str for a str one."""
    template = b"%s-%04X-%04X-%04X" if isinstance(prefix, bytes) else "%s-%04X-%04X-%04X"
    return template % (prefix, number >> 32 & 0xFFFF, number >> 16 & 0xFFFF, number & 0xFFFF)


# -- figures -----------------------------------------------------------------------------------

def number(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def percentile_ms(ordered: list, fraction: float) -> float:
    """Nearest rank of an ascending list of seconds, in ms."""
    if not ordered:
        return 0.0
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1] * 1000


def median(values: list) -> float:
    return statistics.median(values) if values else 0.0


def round_ratios(tops: list, bottoms: list) -> list[float]:
    """Round by round: both ran back to back, so each pair saw the same machine."""
    return [top / bottom if bottom else 0.0 for top, bottom in zip(tops, bottoms, strict=True)]


def ratios_text(ratios: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in ratios)


class Rounds:
    """A figure measured in rounds: `rates` (items/s, one per measured round) and `latencies`
    (seconds, every measured call); throughput is the median over rounds."""

    rates: list
    latencies: list

    @property
    def rate(self) -> float:
        return median(self.rates)

    def percentile_ms(self, fraction: float) -> float:
        return percentile_ms(sorted(self.latencies), fraction)
