"""An import stream: chunks of codes committed in order, in bounded groups; and the rule
every importer (the API's ImportCodes, `kamicore import`) applies before it starts one.

The contract is resumable, not all-or-nothing. Chunks are committed in the order they arrive,
in groups of at most `limits.codes_per_import_commit_max` codes, so a stream of any length
holds one group in memory. When a commit cannot land (BATCH_MISMATCH, STORAGE_FULL) or the
caller stops the stream at a bad chunk (INVALID_CHUNK), the import ends there: every row before
`rows_processed` is settled (imported, a duplicate or rejected) and none after it is touched.
Re-sending the stream is safe because the engine's import is idempotent per code: a code
already stored, in this batch or any other, answers DUPLICATE and is not stored again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .. import limits
from ..engine import AsyncEngine
from ..statuses import ImportCodeStatus, ImportStatus
from .catalog import Catalog


def refusal(catalog: Catalog, sku_id: str) -> ImportStatus | None:
    """Why no code may go into `sku_id` (then nothing is imported), or None when codes may.
    Codes of a SKU outside the catalog could never be priced, sold or listed."""
    if catalog.get(sku_id) is None:
        return ImportStatus.SKU_NOT_FOUND
    return None


@dataclasses.dataclass
class ImportProgress:
    """Where an import stream stands; its answer once the stream ends."""

    status: ImportStatus = ImportStatus.OK
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    # (row in the whole stream, why): the first limits.rejected_rows_listed_max only
    rejected_rows: list[tuple[int, ImportCodeStatus]] = dataclasses.field(default_factory=list)
    rows_processed: int = 0  # every row before this one is settled; none after it


class ImportStream:
    """Feed it chunks with `add`, then `finish` (or `stop_at_invalid_chunk`)."""

    def __init__(self, api: AsyncEngine, sku: str, batch: str, terms: dict, actor: str):
        """terms: the engine import's options (supplier, unit_cost_micros, valid_from_ms,
        valid_until_ms), already checked."""
        self.api = api
        self.sku = sku
        self.batch = batch
        self.terms = terms
        self.actor = actor
        self.progress = ImportProgress()
        self.group: list[str] = []  # read, not yet committed: rows from progress.rows_processed

    @property
    def stopped(self) -> bool:
        return self.progress.status != ImportStatus.OK

    async def add(self, codes: Sequence[str]) -> bool:
        """Queue one chunk (at most limits.codes_per_chunk_max codes), committing the group
        first when the chunk would not fit in it. False once the import has stopped."""
        assert len(codes) <= limits.codes_per_chunk_max
        if self.stopped:
            return False
        if len(self.group) + len(codes) > limits.codes_per_import_commit_max:
            await self._commit()
            if self.stopped:
                return False
        self.group.extend(codes)
        return True

    async def finish(self) -> ImportProgress:
        """The stream ended: commit what is queued."""
        if not self.stopped:
            await self._commit()
        return self.progress

    async def stop_at_invalid_chunk(self) -> ImportProgress:
        """The next message was not a valid chunk: commit the chunks before it, then stop."""
        await self.finish()
        if not self.stopped:
            self.progress.status = ImportStatus.INVALID_CHUNK
        return self.progress

    async def _commit(self) -> None:
        if not self.group:
            return
        codes, self.group = self.group, []
        result = await self.api.import_codes(self.sku, self.batch, codes, actor=self.actor,
                                             **self.terms)
        progress = self.progress
        if result.status != ImportStatus.OK:  # nothing of this group landed
            progress.status = result.status
            return
        first_row = progress.rows_processed
        progress.imported += result.imported
        progress.duplicates += result.duplicates
        progress.rejected += len(result.rejected)
        room = limits.rejected_rows_listed_max - len(progress.rejected_rows)
        progress.rejected_rows += [(first_row + index, status)
                                   for index, status in result.rejected[:max(room, 0)]]
        progress.rows_processed += len(codes)


__all__ = ["ImportProgress", "ImportStream", "refusal"]
