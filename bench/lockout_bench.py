"""What lockout tracking costs a normal till: server CPU per unary Redeem, with and without it,
measured in one run.

"Without" is the server of a checkout from before lockout tracking (`--baseline-python`: the
python of that checkout's .venv, e.g. a clone at the commit before it, `make install`ed);
"with" is this checkout's (the miss record read in every redeem's commit, and the look for
leaked codes in its answers). Both serve side by side (2 workers each, on free 127.0.0.1 ports,
fresh data dirs under bench/results/tmp), each seeded alike: the catalog and keys with its own
CLI, codes imported and sold over the API (bench/server_seed.py). Then, in R rounds after a
warm-up, each server in turn takes N unary Redeem calls of distinct SOLD codes (every call a
durable write and a hit: the normal till, which is what the tracking must not slow) with C
calls in flight; a server's CPU is user + system time of its process tree over its turn. The
with / without ratio of CPU per call is taken round by round (drift on this shared machine hits
both alike) and its median reported; every reply must be REDEEMED.

    KAMICORE_EXT_DIR=$PWD/ext .venv/bin/python bench/lockout_bench.py \
        --baseline-python /path/to/baseline/.venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

from common import expect, log
from processes import Children, cpu_seconds
from rpcs import CHANNEL, METHOD_REDEEM, PRICES, bearer, call_timeout_seconds
from server_plan import FACE_VALUE_MICROS, SKU, TERMINAL
from server_seed import seed
from servers import RISK_OFF_SETTINGS, SINGLE_CLIENT_SETTINGS, free_port, wait_serving

HOST = "127.0.0.1"
RESULTS = Path(__file__).resolve().parent / "results"


def run_cli(python: str, data_dir: Path, *args: str) -> str:
    import subprocess
    from processes import clean_environment
    result = subprocess.run([python, "-m", "kamicore.cli", "--data-dir", str(data_dir), *args],
                            capture_output=True, text=True, env=clean_environment(),
                            timeout=120, check=False)
    expect(result.returncode == 0, f"kamicore {' '.join(args[:3])}: {result.stderr}")
    return result.stdout.strip()


class Server:
    def __init__(self, name: str, python: str, children: Children, root: Path):
        self.name, self.python, self.children = name, python, children
        self.data_dir = root / name
        self.data_dir.mkdir(parents=True)
        self.port, self.metrics_port = free_port(), free_port()
        self.process = None

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def prepare(self) -> dict[str, str]:
        run_cli(self.python, self.data_dir, "sku", "create", SKU, "--name", "Bench gift card",
                "--currency", "CNY", "--face-value", f"{FACE_VALUE_MICROS / 1e6:.2f}",
                *[f"--price={channel}={micros / 1e6:.2f}" for channel, micros in PRICES.items()])
        return {
            "pos": run_cli(self.python, self.data_dir, "keys", "create", "--role", "pos",
                           "--terminal", TERMINAL),
            "storefront": run_cli(self.python, self.data_dir, "keys", "create", "--role",
                                  "storefront", "--channel", CHANNEL)}

    def _knows_risk(self) -> bool:
        """A checkout from before risk scoring refuses a [risk] table in its settings."""
        import subprocess
        return subprocess.run([self.python, "-c", "import kamicore.domain.risk"],
                              capture_output=True, check=False).returncode == 0

    def start(self) -> None:
        settings = dict(SINGLE_CLIENT_SETTINGS)
        if self._knows_risk():  # the seed's orders must not be challenged (bench/servers.py)
            settings_file = self.data_dir.parent / f"{self.name}.risk.toml"
            settings_file.write_text(RISK_OFF_SETTINGS)
            settings["KAMICORE_CONFIG"] = str(settings_file)
        self.process = self.children.start(self.name, [
            self.python, "-m", "kamicore.cli", "--data-dir", str(self.data_dir), "serve",
            "--workers", "2", "--listen", self.target,
            "--metrics-listen", f"{HOST}:{self.metrics_port}"], settings=settings)
        wait_serving(self.process, self.target, self.name, self.children, health=True)

    def cpu(self) -> float:
        return cpu_seconds([self.process.pid])


async def redeem_all(target: str, key: str, codes: list[str], in_flight: int) -> None:
    import grpc
    from kamicore.v1 import redemption_pb2
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD_REDEEM, request_serializer=redemption_pb2.RedeemRequest.SerializeToString,
            response_deserializer=redemption_pb2.RedeemResponse.FromString)
        pending = iter(codes)
        statuses: list[int] = []

        async def lane():
            for code in pending:
                reply = await call(redemption_pb2.RedeemRequest(
                    code=code, request_id=uuid.uuid4().hex), metadata=bearer(key),
                    timeout=call_timeout_seconds)
                statuses.append(reply.status)

        await asyncio.gather(*(lane() for _ in range(in_flight)))
    expect(statuses.count(redemption_pb2.REDEEM_STATUS_REDEEMED) == len(codes),
           f"every Redeem REDEEMED: {len(codes) - statuses.count(1)} were not")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-python", required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3000, help="per server per round")
    parser.add_argument("--in-flight", type=int, default=16)
    args = parser.parse_args()
    root = RESULTS / "tmp" / f"lockout-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    children = Children(root)
    servers = [Server("without", args.baseline_python, children, root),
               Server("with", sys.executable, children, root)]
    per_server = args.calls * (args.rounds + 1)
    try:
        codes = {}
        for server in servers:
            keys = server.prepare()
            server.start()
            keys["admin"] = (server.data_dir / "admin.key").read_text().strip()
            codes[server.name] = (keys["pos"], seed(server.target, keys, per_server, 0))
        ratios, cpu_per_call = [], {server.name: [] for server in servers}
        for round_number in range(args.rounds + 1):  # round 0 warms up
            measured = {}
            for server in (servers if round_number % 2 else servers[::-1]):
                key, sold = codes[server.name]
                batch = sold[round_number * args.calls:(round_number + 1) * args.calls]
                before, started = server.cpu(), time.perf_counter()
                asyncio.run(redeem_all(server.target, key, batch, args.in_flight))
                seconds = time.perf_counter() - started
                measured[server.name] = (server.cpu() - before) / len(batch)
                log(f"round {round_number} {server.name}: {len(batch) / seconds:,.0f} calls/s, "
                    f"{measured[server.name] * 1e6:,.0f} µs server CPU per call")
            if round_number:
                ratios.append(measured["with"] / measured["without"])
                for name, value in measured.items():
                    cpu_per_call[name].append(value)
        median = statistics.median(ratios)
        log(f"server CPU per Redeem, median over {args.rounds} rounds: without "
            f"{statistics.median(cpu_per_call['without']) * 1e6:,.0f} µs, with "
            f"{statistics.median(cpu_per_call['with']) * 1e6:,.0f} µs; with / without "
            f"{median:.3f} (rounds: {', '.join(f'{ratio:.3f}' for ratio in ratios)}); "
            f"target ≤ 1.05: {'met' if median <= 1.05 else 'MISSED'}")
    finally:
        for server in servers:
            children.stop(server.process)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
