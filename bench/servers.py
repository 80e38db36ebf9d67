"""The servers under load, on free 127.0.0.1 ports: kamicore (`kamicore serve --workers W` over a
data dir, scraped on its /metrics) and the do-nothing server (bench/do_nothing.py); both are
waited for until fresh connections answer."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Self

import do_nothing
from kamicore_access import CLI, in_flight_rpcs_default
from processes import Children, descendants
from rpcs import CHANNEL, METHOD_HEALTH

HOST = "127.0.0.1"
start_timeout_seconds = 60.0
# The benchmarks load the server through one API key per client kind: the fair-use share of a
# worker's calls per key (a quarter by default) would refuse part of that one client's load, so
# the bench server lets a key use the whole worker, as an operator serving one big partner would.
SINGLE_CLIENT_SETTINGS = {"KAMICORE_KEY_IN_FLIGHT_RPCS_MAX": str(in_flight_rpcs_default)}
# One bench client buys thousands of times a minute from one account, IP and device, which the
# default risk rules would challenge: the benches run with risk off on their channel (the
# settings file's [risk] table); bench/risk_bench.py turns the rules on at runtime to price them.
RISK_OFF_SETTINGS = f'[risk]\noff_channels = ["{CHANNEL}"]\n'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_serving(process: subprocess.Popen, target: str, name: str, children: Children,
                 health: bool) -> None:
    """Until 8 fresh connections in a row answer (health SERVING for kamicore; any answer for
    do-nothing): each lands on one of the workers."""
    import grpc
    from grpc_health.v1 import health_pb2
    deadline = time.monotonic() + start_timeout_seconds
    in_a_row = 0
    while in_a_row < 8:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} while starting:\n"
                               f"{children.log_tail(name)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not serving after {start_timeout_seconds:.0f} s:"
                               f"\n{children.log_tail(name)}")
        serving = False
        with (grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
              as channel, contextlib.suppress(grpc.RpcError)):
            reply = channel.unary_unary(METHOD_HEALTH)(
                health_pb2.HealthCheckRequest().SerializeToString(), timeout=2)
            serving = not health or health_pb2.HealthCheckResponse.FromString(
                reply).status == health_pb2.HealthCheckResponse.SERVING
        if serving:
            in_a_row += 1
        else:
            in_a_row = 0
            time.sleep(0.2)


class KamicoreServer:
    """`kamicore serve` on free ports over a data dir; stopped with SIGTERM (it drains)."""

    def __init__(self, children: Children, data_dir: Path, workers: int, name: str = "kamicore"):
        self.children, self.workers, self.name = children, workers, name
        self.data_dir = Path(data_dir).resolve()  # the server runs in the log dir
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        settings_file = self.data_dir.parent / f"{self.data_dir.name}.risk.toml"
        settings_file.parent.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(RISK_OFF_SETTINGS)
        self.process = self.children.start(self.name, [
            *CLI, "--data-dir", str(self.data_dir), "serve", "--workers", str(self.workers),
            "--listen", self.target, "--metrics-listen", f"{HOST}:{self.metrics_port}"],
            settings={**SINGLE_CLIENT_SETTINGS, "KAMICORE_CONFIG": str(settings_file)})
        wait_serving(self.process, self.target, self.name, self.children, health=True)

    def stop(self) -> None:
        self.children.stop(self.process)
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def worker_pids(self) -> list[int]:
        """For profiling (py-spy, perf): the supervisor's children."""
        return descendants([self.process.pid])[1:] if self.process else []

    def metrics(self) -> dict:
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics",
                                    timeout=10) as reply:
            return parse_metrics(reply.read().decode())


def start_nothing(children: Children, workers: int, name: str = "do-nothing"
                  ) -> tuple[str, list[subprocess.Popen]]:
    """The do-nothing server, `workers` processes on one free port: (its target, them)."""
    target = f"{HOST}:{free_port()}"
    processes = []
    for number in range(workers):
        process_name = f"{name}-{number}"
        process = children.start(process_name, [sys.executable, do_nothing.__file__, target])
        wait_serving(process, target, process_name, children, health=False)
        processes.append(process)
    return target, processes


def parse_metrics(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    samples = {}
    pattern = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = pattern.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def metric_sum(samples: dict, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and wanted <= sample_labels)
