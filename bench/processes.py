"""The server processes a benchmark starts, and stopping every one of them again (also on errors,
Ctrl-C, SIGTERM and time limits); the CPU time process trees use, from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from common import log

stop_timeout_seconds = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def clean_environment() -> dict:
    """This environment without anything that would change the server's settings."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("KAMICORE_") and name != "PROMETHEUS_MULTIPROC_DIR"}
    environment["PYTHONUNBUFFERED"] = "1"
    if "KAMICORE_EXT_DIR" in os.environ:
        environment["KAMICORE_EXT_DIR"] = os.environ["KAMICORE_EXT_DIR"]
    return environment


class Children:
    """Every server process tree this run starts, each in its own session (so a Ctrl-C on the
    terminal reaches only the benchmark, which then stops them in order)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], settings: dict | None = None
              ) -> subprocess.Popen:
        """`settings`: environment variables for this process only (KAMICORE_* settings)."""
        with open(self.log_dir / f"{name}.log", "wb") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL,
                                       env={**clean_environment(), **(settings or {})},
                                       cwd=self.log_dir, start_new_session=True)
        self.processes.append((name, process))
        return process

    def log_tail(self, name: str, characters: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-characters:] if path.exists() else ""

    def stop(self, process: subprocess.Popen | None) -> None:
        """One of them: SIGTERM, wait, then SIGKILL its process group; forget it."""
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                log(f"process {process.pid} did not stop in {stop_timeout_seconds:.0f} s; "
                    "killing it")
        self._kill_group(process)
        self.processes = [(name, child) for name, child in self.processes
                          if child is not process]

    def stop_all(self) -> None:
        """SIGTERM to each process (kamicore's supervisor drains and stops its workers), then
        SIGKILL to the process group of any that outlives the timeout."""
        for _, process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout_seconds
        for name, process in self.processes:
            try:
                code = process.wait(max(0.1, deadline - time.monotonic()))
                if code not in (0, -signal.SIGTERM):
                    log(f"{name} exited with {code}")
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in {stop_timeout_seconds:.0f} s; killing it")
            self._kill_group(process)
        self.processes.clear()

    @staticmethod
    def _kill_group(process: subprocess.Popen) -> None:
        # its whole group: kamicore's workers are in the supervisor's session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far: user + system, every thread)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(entry.name)] = (int(fields[1]),
                                          (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def descendants(roots: list[int], table: dict | None = None) -> list[int]:
    """`roots` and every process below them."""
    table = table if table is not None else _process_table()
    found, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return sorted(pid for pid in found if pid in table)


def cpu_seconds(roots: list[int]) -> float:
    """CPU time used so far by the process trees under `roots` (a server's processes)."""
    table = _process_table()
    return sum(table[pid][1] for pid in descendants(roots, table))
