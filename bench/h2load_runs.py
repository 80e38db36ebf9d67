"""h2load (nghttp2-client) as a gRPC load generator: installing it when missing, the body it
repeats, one run and what it printed.

h2load sends ONE body for every request and counts HTTP status only; it reports a mean latency,
not percentiles. A fixed number of requests (-n) makes it wait for every answer (with -D it
drops the calls in flight when time is up: cancelled calls are another load).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common import expect, install_debian_packages

# the same settings against every server: 128 calls in flight over 16 connections (see
# driver.CHANNELS_PER_PROCESS for why not 4)
H2LOAD_OPTIONS = ["-c", "16", "-m", "8", "-t", "1"]


def ensure_h2load() -> str:
    found = shutil.which("h2load")
    if found:
        return found
    install_debian_packages(["nghttp2-client"], "h2load")
    found = shutil.which("h2load")
    expect(found is not None, "h2load not found after installing nghttp2-client")
    return found


def grpc_frame(message: bytes) -> bytes:
    """A gRPC message on the wire: not compressed, big-endian length, the message."""
    return b"\0" + len(message).to_bytes(4, "big") + message


@dataclass
class H2loadRun:
    seconds: float
    requests_per_second: float
    done: int
    succeeded: int  # HTTP 2xx
    failed: int
    mean_latency_seconds: float


def h2load(binary: str, url: str, body_file: Path, key: str, requests: int) -> H2loadRun:
    argv = [binary, "-n", str(requests), *H2LOAD_OPTIONS,
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            "-H", f"authorization: Bearer {key}", "-d", str(body_file), url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    text = result.stdout
    expect(result.returncode == 0, f"h2load exited {result.returncode}: {result.stderr[-1000:]}")
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed", text)
    latency = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    expect(finished and counts and latency, f"unexpected h2load output:\n{text[-2000:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    return H2loadRun(seconds, float(finished.group(3)), int(counts.group(3)),
                     int(counts.group(4)), int(counts.group(5)),
                     duration_seconds(latency.group(3)))


def duration_seconds(text: str) -> float:
    """h2load's durations: 850us, 12.34ms, 1.02s."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    expect(match is not None, f"h2load duration {text!r}")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]
