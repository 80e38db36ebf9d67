"""The group-commit writer: callers share commits, hear "done" only once their change is
durable and visible, and a failing operation never leaves part of itself behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest

from kamicore.engine import AsyncEngine, Engine, EngineClosed
from kamicore.statuses import (
    CodeState, ConfirmStatus, ImportStatus, RedeemStatus, ReserveStatus,
)


def sold_codes(engine, count, prefix="G"):
    codes = [f"{prefix}-{number:06d}" for number in range(count)]
    engine.import_codes("sku", f"batch-{prefix}", codes)
    engine.reserve([(f"order-{prefix}", [("sku", count)], 600)])
    engine.confirm([f"order-{prefix}"])
    return codes


def test_concurrent_callers_share_commits_and_each_sees_its_answer(engine):
    codes = sold_codes(engine, 320)
    commits_before = engine.commits
    results = {}

    def terminal(number):
        for code in codes[number::16]:
            [result] = engine.redeem([(code, f"req-{code}")], f"T-{number}")
            results[code] = (number, result)

    threads = [threading.Thread(target=terminal, args=(number,)) for number in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 320
    assert all(result.status == RedeemStatus.REDEEMED and result.redeemed_by == f"T-{number}"
               for number, result in results.values())
    # 320 single-code calls from 16 threads: the writer grouped them into fewer commits
    assert engine.commits - commits_before < 320
    assert engine.stock("sku").counts[CodeState.REDEEMED] == 320


def test_a_change_is_visible_when_its_call_returns_also_to_another_process(engine):
    codes = sold_codes(engine, 5)
    for code in codes:
        [result] = engine.redeem([(code, "r-" + code)], "T-1")
        assert result.status == RedeemStatus.REDEEMED
        [seen] = engine.verify([code])  # a new read transaction
        assert seen.code.state == CodeState.REDEEMED
    script = (
        "import sys; from kamicore.engine import Engine\n"
        "with Engine(sys.argv[1]) as e:\n"
        "    print(sorted(r.code.state.name for r in e.verify(sys.argv[2:])))\n")
    output = subprocess.run([sys.executable, "-c", script, str(engine.path), *codes],
                            capture_output=True, text=True, check=True).stdout
    assert output.strip() == str(["REDEEMED"] * 5)


def test_async_api_shares_the_writer(engine):
    codes = sold_codes(engine, 50)

    async def main():
        api = AsyncEngine(engine)
        return await asyncio.gather(*(api.redeem([(code, "r-" + code)], "T-A") for code in codes))

    results = asyncio.run(main())
    assert [result.status for [result] in results] == [RedeemStatus.REDEEMED] * 50


def test_a_failing_operation_leaves_nothing_and_spares_its_neighbours(engine):
    def write_then_fail(transaction):
        transaction.put("catalog", b"half-done", b"x")
        raise RuntimeError("bug in the middle of an operation")

    engine.import_codes("sku", "batch", ["A-1"])
    failing = engine.submit(engine.plan(write_then_fail, (), "test", full=lambda: None))
    neighbour = engine.submit(engine.plan_reserve([("o1", [("sku", 1)], 60)], actor="test"))
    with pytest.raises(RuntimeError, match="bug in the middle"):
        failing.result()
    assert neighbour.result()[0][0] == ReserveStatus.RESERVED
    assert engine.get("catalog", b"half-done") is None
    assert engine.check() == []


def test_a_full_map_refuses_the_batch_and_keeps_the_file_sound(tmp_path, clock, implementation):
    path = tmp_path / "small"
    with Engine(path, map_size_bytes=2**21, clock=clock,
                implementation=implementation) as small:
        accepted = 0
        for number in range(200):
            result = small.import_codes("sku", "batch",
                                        [f"FULL-{number:04d}-{row:05d}" for row in range(500)])
            if result.status == ImportStatus.STORAGE_FULL:
                break
            accepted += result.imported
        else:
            pytest.fail("a 2 MiB map never filled")
        assert accepted > 0
        assert small.stock("sku").counts[CodeState.AVAILABLE] == accepted
        assert small.check() == []
        # smaller work still fits and is applied whole
        [held] = small.reserve([("o1", [("sku", 3)], 60)])
        assert held.status in (ReserveStatus.RESERVED, ReserveStatus.STORAGE_FULL)
    with Engine(path, map_size_bytes=2**24, clock=clock,
                implementation=implementation) as bigger:
        assert bigger.check() == []
        assert bigger.import_codes("sku", "batch", ["AFTER-1"]).imported == 1
        assert bigger.stock("sku").counts[CodeState.AVAILABLE] + bigger.stock(
            "sku").counts[CodeState.RESERVED] == accepted + 1


def test_close_commits_what_is_queued_then_refuses(tmp_path, clock):
    engine = Engine(tmp_path / "data", clock=clock)
    engine.import_codes("sku", "batch", ["A-1", "B-2"])
    pending = [engine.submit(engine.plan_reserve([(f"o{n}", [("sku", 1)], 1)], actor="test"))
               for n in range(2)]
    engine.close()
    assert [future.result()[0][0] for future in pending] == [ReserveStatus.RESERVED] * 2
    with pytest.raises(EngineClosed):
        engine.confirm(["o0"])
    with Engine(tmp_path / "data", clock=clock) as reopened:
        assert reopened.confirm(["o0", "o1"])[1].status == ConfirmStatus.SOLD


def test_an_engine_opened_before_fork_refuses_to_write_in_the_child(engine):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must not use the parent's environment
        try:
            engine.import_codes("sku", "batch", ["CHILD-1"])
            os.write(write_end, b"wrote")
        except RuntimeError as error:
            os.write(write_end, b"refused" if "fork" in str(error) else b"other")
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 100) == b"refused"
    os.close(read_end)
    assert engine.stock("sku") is None


def test_a_caller_that_gives_up_leaves_the_writer_running(engine):
    """A cancelled call (client deadline or disconnect) that had not started is not applied,
    one that had started completes, and the writer keeps serving everyone else."""
    import time as clock_time
    engine.import_codes("sku", "batch", ["A-1", "B-2", "C-3"])
    started = threading.Event()

    def slow(transaction):
        started.set()
        clock_time.sleep(0.3)
        return transaction.reserve(b"slow", [(b"sku", 1)], 60_000)

    async def main():
        api = AsyncEngine(engine)
        running = asyncio.ensure_future(engine.run_async(engine.plan(slow, (), "test",
                                                                     full=lambda: None)))
        await asyncio.get_running_loop().run_in_executor(None, started.wait)
        abandoned = asyncio.ensure_future(api.reserve([("abandoned", [("sku", 1)], 60)]))
        await asyncio.sleep(0.05)  # queued behind the slow operation
        abandoned.cancel()
        running.cancel()  # already running: it completes anyway
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        return await asyncio.wait_for(api.reserve([("after", [("sku", 1)], 60)]), 10)

    [after] = asyncio.run(main())
    assert after.status == ReserveStatus.RESERVED
    assert engine.order("abandoned") is None
    assert engine.order("slow") is not None
    assert engine.stock("sku").counts[CodeState.RESERVED] == 2
    assert engine.check() == []
