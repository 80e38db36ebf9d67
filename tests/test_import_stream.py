"""kamicore.domain.imports without a server: how an import stream groups its chunks into
commits, numbers rejected rows across them, and stops (the end-to-end side:
tests/test_e2e_import_stream.py)."""

from __future__ import annotations

import asyncio

from kamicore import limits
from kamicore.domain.imports import ImportStream
from kamicore.engine import AsyncEngine, Engine
from kamicore.statuses import ImportCodeStatus, ImportStatus

group_max = limits.codes_per_import_commit_max


class _Recording(AsyncEngine):
    """The engine's import, remembering how many codes each commit carried."""

    def __init__(self, engine: Engine):
        super().__init__(engine)
        self.commits: list[int] = []

    async def import_codes(self, sku, batch, codes, **options):
        self.commits.append(len(codes))
        return await super().import_codes(sku, batch, codes, **options)


def _run(engine: Engine, chunks, stop_invalid: bool = False, batch: str = "b-1"):
    api = _Recording(engine)
    stream = ImportStream(api, "sku-1", batch, {"supplier": "S-1"}, "test")

    async def feed():
        for chunk in chunks:
            if not await stream.add(chunk):
                break
        return await (stream.stop_at_invalid_chunk() if stop_invalid else stream.finish())
    return asyncio.run(feed()), api.commits


def _codes(start: int, count: int) -> list[str]:
    return [f"CODE-{row:08d}" for row in range(start, start + count)]


def test_chunks_commit_in_groups_that_never_pass_the_limit(tmp_path):
    chunk = group_max * 2 // 5  # two chunks fit a group, a third does not
    with Engine(tmp_path / "data") as engine:
        progress, commits = _run(engine, [_codes(n * chunk, chunk) for n in range(5)])
        assert commits == [2 * chunk, 2 * chunk, chunk]
        assert max(commits) <= group_max
        assert (progress.status, progress.imported, progress.rows_processed) == (
            ImportStatus.OK, 5 * chunk, 5 * chunk)


def test_rejected_rows_are_numbered_across_the_whole_stream(tmp_path):
    chunks = [_codes(n * 4_000, 4_000) for n in range(4)]
    chunks[0][1] = ""
    chunks[3][3_999] = "X" * (limits.code_bytes_max + 1)
    with Engine(tmp_path / "data") as engine:
        progress, _ = _run(engine, chunks)
        assert progress.rejected_rows == [(1, ImportCodeStatus.EMPTY),
                                          (15_999, ImportCodeStatus.TOO_LONG)]
        assert (progress.imported, progress.rejected) == (15_998, 2)


def test_listed_rejected_rows_stop_at_the_limit_and_the_count_goes_on(tmp_path):
    rows = limits.rejected_rows_listed_max + 5
    chunk = limits.codes_per_chunk_max
    chunks = [[""] * min(chunk, rows - start) for start in range(0, rows, chunk)]
    with Engine(tmp_path / "data") as engine:
        progress, _ = _run(engine, chunks)
        assert progress.rejected == rows
        assert len(progress.rejected_rows) == limits.rejected_rows_listed_max
        assert progress.rejected_rows[-1][0] == limits.rejected_rows_listed_max - 1


def test_an_invalid_chunk_commits_what_came_before_it_then_stops(tmp_path):
    with Engine(tmp_path / "data") as engine:
        progress, commits = _run(engine, [_codes(0, 300), _codes(300, 200)], stop_invalid=True)
        assert commits == [500]
        assert (progress.status, progress.imported, progress.rows_processed) == (
            ImportStatus.INVALID_CHUNK, 500, 500)
        again, _ = _run(engine, [_codes(0, 500)])  # re-sent: nothing twice
        assert (again.status, again.imported, again.duplicates) == (ImportStatus.OK, 0, 500)


def test_a_commit_that_cannot_land_stops_the_stream_where_it_was(tmp_path):
    with Engine(tmp_path / "data") as engine:
        _run(engine, [_codes(0, 1)], batch="b-taken")
        api = _Recording(engine)
        other_terms = ImportStream(api, "sku-1", "b-taken", {"supplier": "S-2"}, "test")

        async def feed():
            assert await other_terms.add(_codes(10, group_max))
            assert not await other_terms.add(_codes(20_000, 5))  # the first group failed
            return await other_terms.finish()
        progress = asyncio.run(feed())
        assert (progress.status, progress.imported, progress.rows_processed) == (
            ImportStatus.BATCH_MISMATCH, 0, 0)
        assert api.commits == [group_max]
