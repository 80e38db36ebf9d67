"""ImportCodes streams of any length, end to end, on a server of their own (so the memory
measured is this module's): chunks are checked and committed as they arrive, in bounded groups;
a bad chunk stops the import with an answer that says how far it got; a re-sent stream imports
nothing twice (the contract: the ImportCodes comment in proto/kamicore/v1/inventory.proto)."""

from __future__ import annotations

import grpc
import pytest
from kamicore.v1 import inventory_pb2

from .e2e_support import uid, wait_until
from .server_harness import Server, counts, create_sku

I = inventory_pb2  # noqa: E741 - the enums below, shorter
long_stream_codes = 200_000
long_stream_chunk_codes = 5_000
code_chars = 120  # long codes: holding a stream of them whole takes room worth measuring
stream_timeout_seconds = 120.0


@pytest.fixture(scope="module")
def importer(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("import-stream") / "data",
                    name="import-stream").start()
    try:
        yield server
    finally:
        assert server.stop() == 0


def _codes(prefix: str, start: int, count: int) -> list[str]:
    """Distinct codes of `code_chars` characters, rows start .. start + count - 1."""
    return [f"{prefix}-{row:09d}".rjust(code_chars, "X") for row in range(start, start + count)]


def _stream(sku_id: str, batch_id: str, chunks, before_chunk=None):
    """The messages of an import: the header, then each chunk (a list of codes, or raw bytes
    for a message that is not a valid request); before_chunk(index) runs before each."""
    yield I.ImportCodesRequest(header=I.ImportHeader(
        sku_id=sku_id, batch_id=batch_id, supplier_id="S-1", unit_cost_micros=1_000_000))
    for index, chunk in enumerate(chunks):
        if before_chunk is not None:
            before_chunk(index)
        yield chunk if isinstance(chunk, bytes) else I.ImportCodesRequest(
            chunk=I.CodeChunk(codes=chunk))


def _import(server: Server, messages) -> I.ImportCodesResponse:
    """One ImportCodes call; messages may mix requests and raw bytes."""
    call = server.channel().stream_unary(
        "/kamicore.v1.Inventory/ImportCodes",
        request_serializer=lambda message: (message if isinstance(message, bytes)
                                            else message.SerializeToString()),
        response_deserializer=I.ImportCodesResponse.FromString)
    return call(messages, metadata=[("authorization", f"Bearer {server.admin_key}")],
                timeout=stream_timeout_seconds)


def _available(server: Server, sku_id: str) -> int:
    return counts(server.client(server.admin_key).stock(sku_id))["AVAILABLE"]


def test_a_long_stream_commits_as_it_arrives_and_a_resent_one_holds_no_more_memory(importer):
    admin = importer.client(importer.admin_key)
    sku_id = uid("long")
    create_sku(admin, sku_id)
    chunk_count = long_stream_codes // long_stream_chunk_codes

    def chunks():
        for index in range(chunk_count):
            yield _codes(sku_id, index * long_stream_chunk_codes, long_stream_chunk_codes)

    def before_chunk(index):
        if index == chunk_count - 1:  # the stream is not over, yet most of it is in stock
            wait_until(lambda: _available(importer, sku_id) >= long_stream_codes // 2, 30.0,
                       "the chunks sent so far to be committed")

    first = _import(importer, _stream(sku_id, "long-batch", chunks(), before_chunk))
    assert (first.status, first.imported, first.duplicates, first.rejected,
            first.rows_processed) == (I.IMPORT_STATUS_OK, long_stream_codes, 0, 0,
                                      long_stream_codes)
    assert _available(importer, sku_id) == long_stream_codes

    # the same stream again: every code a duplicate, so the data file barely changes and what
    # the workers hold is the stream itself; holding it whole would take more than its bytes
    stream_bytes = long_stream_codes * code_chars
    baseline = importer.worker_memory_bytes()
    peak = [baseline]
    again = _import(importer, _stream(sku_id, "long-batch", chunks(),
                                      lambda index: peak.append(importer.worker_memory_bytes())))
    peak.append(importer.worker_memory_bytes())
    assert (again.status, again.imported, again.duplicates, again.rows_processed) == (
        I.IMPORT_STATUS_OK, 0, long_stream_codes, long_stream_codes)
    growth = max(peak) - baseline
    assert growth < stream_bytes // 2, (
        f"the workers grew by {growth >> 20} MiB during a {stream_bytes >> 20} MiB stream")
    assert _available(importer, sku_id) == long_stream_codes


def test_a_bad_chunk_stops_the_import_and_the_corrected_stream_completes(importer):
    admin = importer.client(importer.admin_key)
    sku_id = uid("resume")
    create_sku(admin, sku_id)
    good = [_codes(sku_id, start, 1_000) for start in range(0, 12_000, 1_000)]
    good[0][3] = "bad\x01code"  # rejected rows, in the first group of commits and the second
    good[11][500] = "bad\x01code"
    rejected_rows = [(3, I.IMPORT_CODE_STATUS_CONTROL_CHARACTER),
                     (11_500, I.IMPORT_CODE_STATUS_CONTROL_CHARACTER)]
    oversized = _codes(sku_id, 12_000, 10_001)
    stopped = _import(importer, _stream(sku_id, "resume-batch", [*good, oversized]))
    assert (stopped.status, stopped.imported, stopped.duplicates, stopped.rejected,
            stopped.rows_processed) == (I.IMPORT_STATUS_INVALID_CHUNK, 11_998, 0, 2, 12_000)
    assert [(row.row, row.status) for row in stopped.rejected_rows] == rejected_rows
    assert stopped.invalid_chunk.startswith("chunk.codes: ")
    assert _available(importer, sku_id) == 11_998

    # resumed from rows_processed: the corrected chunk only
    corrected = oversized[:1_000]
    resumed = _import(importer, _stream(sku_id, "resume-batch", [corrected]))
    assert (resumed.status, resumed.imported, resumed.duplicates, resumed.rows_processed) == (
        I.IMPORT_STATUS_OK, 1_000, 0, 1_000)
    # or the whole corrected stream re-sent: what landed counts as duplicates, nothing twice
    resent = _import(importer, _stream(sku_id, "resume-batch", [*good, corrected]))
    assert (resent.status, resent.imported, resent.duplicates, resent.rejected,
            resent.rows_processed) == (I.IMPORT_STATUS_OK, 0, 12_998, 2, 13_000)
    assert [(row.row, row.status) for row in resent.rejected_rows] == rejected_rows
    assert _available(importer, sku_id) == 12_998


def test_a_message_that_does_not_decode_stops_the_import_after_the_chunks_before_it(importer):
    admin = importer.client(importer.admin_key)
    sku_id = uid("undecodable")
    create_sku(admin, sku_id)
    # a chunk whose one code is not UTF-8: not a valid ImportCodesRequest
    undecodable = b"\x12\x04\x0a\x02\xff\xfe"
    with pytest.raises(Exception) as caught:
        I.ImportCodesRequest.FromString(undecodable)
    assert "DecodeError" in type(caught.value).__name__
    reply = _import(importer, _stream(sku_id, "undecodable-batch", [
        _codes(sku_id, 0, 700), undecodable, _codes(sku_id, 700, 300)]))
    assert (reply.status, reply.imported, reply.rows_processed) == (
        I.IMPORT_STATUS_INVALID_CHUNK, 700, 700)
    assert reply.invalid_chunk
    assert _available(importer, sku_id) == 700


def test_a_header_for_an_unknown_sku_answers_without_reading_the_stream(importer):
    """The answer comes after the header: a stream that never ends still gets it."""
    sku_id = uid("missing")

    def endless():
        index = 0
        while True:
            yield _codes(sku_id, index * 1_000, 1_000)
            index += 1

    try:
        reply = _import(importer, _stream(sku_id, "missing-batch", endless()))
    except grpc.RpcError as error:  # pragma: no cover - the assertion below explains
        raise AssertionError(f"the call failed: {error.code()} {error.details()}") from None
    assert (reply.status, reply.imported, reply.rows_processed) == (
        I.IMPORT_STATUS_SKU_NOT_FOUND, 0, 0)
