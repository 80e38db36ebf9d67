"""bench/RESULTS.md: three blocks, each rewritten only by its own benchmark.

- the `make bench` summary at the top (bench/report.py): the latest figures against their
  targets, and a history line per run;
- '# Engine benchmark results' (bench/engine_bench.py), before the server's block;
- '## Server' (bench/server_bench.py), at the end.

A block is its heading, an intro, a Latest part (replaced) and a History part (one line per run,
kept and appended to); a block runs up to the next heading that is not its own. Everything
outside the block being written stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common import RESULTS_FILE

TOP_HEADING = "# Benchmark results"


@dataclass(frozen=True)
class Block:
    heading: str
    intro: str
    latest_heading: str
    history_heading: str
    insert_before: str | None = None  # where a missing block goes: before this line, else last
    first: bool = False  # a missing block goes first

    def own(self, line: str) -> bool:
        return line.strip() in (self.latest_heading, self.history_heading)


MAKE_BENCH = Block(
    TOP_HEADING,
    "`make bench` runs everything below (engine, server, concurrency sweep, Locust, pool and "
    "worker scaling) and writes a report with plots to bench/results/. The machine is shared "
    "and noisy: compare ratios taken in one run rather than absolutes across runs.",
    "## Latest `make bench`", "## `make bench` history", first=True)

ENGINE = Block(
    "# Engine benchmark results",
    "Written by `make bench-engine` (bench/engine_bench.py; its docstring says what is measured "
    "and how). The machine is shared and noisy: compare ratios taken in one run (engine vs the "
    "C floor, bench/c_floor.c; compiled vs interpreted) rather than absolutes across runs. "
    "Targets (issue 8): redeem-256 ≥ 0.85× the C floor in sale and in random order, "
    "import-10000 ≥ 0.8× the C floor's import.",
    "## Latest", "## History", insert_before="## Server")

SERVER = Block(
    "## Server",
    "Written by `make bench-server` (bench/server_bench.py; its docstring says what is measured "
    "and how). kamicore (2 workers unless --workers) and a do-nothing grpc.aio server (as many "
    "processes, empty replies) are measured back to back in one run; compare the kamicore / "
    "do-nothing ratios rather than absolutes across runs (the 2-core machine is shared with the "
    "client and h2load). Targets (issue 8): kamicore / do-nothing ≥ 0.85 for unary Redeem "
    "(distinct codes and the h2load replay) and RedeemStream, ≥ 0.9 VerifyCode, ≥ 0.7 "
    "CreateOrder + ConfirmPayment; RedeemBatch ≥ 150,000 codes/s; open loop at 80% of each "
    "unary peak: p99 < 20 ms.",
    "### Latest", "### History")


def write_block(block: Block, latest: list[str], history_line: str,
                path: Path = RESULTS_FILE) -> None:
    """Replace `block`'s Latest part with `latest` and append `history_line` to its History."""
    lines = path.read_text().splitlines() if path.exists() else [TOP_HEADING]
    if block.heading in lines:
        start = lines.index(block.heading)
        end = next((index for index in range(start + 1, len(lines))
                    if lines[index].startswith("#") and not block.own(lines[index])),
                   len(lines))
    elif block.first:
        start = end = 0
    else:
        start = end = (lines.index(block.insert_before) if block.insert_before in lines
                       else len(lines))
    history, in_history = [], False
    for line in lines[start:end]:
        if line.startswith("#"):
            in_history = line.strip() == block.history_heading
        elif in_history and line.startswith("- "):
            history.append(line)
    history.append(history_line)
    before, after = lines[:start], lines[end:]
    while before and not before[-1].strip():
        before.pop()
    while after and not after[0].strip():
        after.pop(0)
    text = [block.heading, "", block.intro, "", block.latest_heading, "", *latest, "",
            block.history_heading, "", *history, ""]
    path.write_text("\n".join(before + [""] * bool(before) + text + after).rstrip("\n") + "\n")
