"""What every benchmark script records about the run: which commit, which machine."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# changes here can move a figure; untracked files elsewhere cannot
MEASURED_PATHS = ("core/", "ext/", "proto/", "bench/")
RESULT_PATHS = ("bench/RESULTS.md", "bench/results/")  # written by the benchmarks themselves


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
