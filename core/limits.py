"""Every limit of kamicore, in one place, named with its unit last.

A limit is a promise to callers (bad input beyond it is refused with INVALID_ARGUMENT naming
the field) and a bound the code relies on (record layouts, batch sizes, memory per call). The
assertions at the end tie limits that depend on each other, so changing one alone fails at
import time instead of corrupting a record later. The compiled engine reads the limits it
checks from here when its module loads.
"""

from __future__ import annotations

# -- identifiers and text (bytes of UTF-8) ---------------------------------------------------------
code_bytes_max = 128  # a code's plaintext
name_bytes_max = 64  # SKU, batch and supplier ids, sales channels
terminal_bytes_max = 64  # a POS terminal id
request_id_bytes_max = 64  # a redemption's request id, per terminal
order_id_bytes_max = 200  # "<owner>/<idempotency key>"; a code record keeps its length in a byte
idempotency_key_bytes_max = 64
account_bytes_max = 64  # a buyer's account id
buyer_field_bytes_max = 128  # a buyer's IP address or device id
payment_reference_bytes_max = 128
display_name_bytes_max = 200  # a SKU's name
region_bytes_max = 8  # ISO 3166 codes and subdivisions
binding_bytes_max = 64  # what an API key is bound to (channel, terminal, supplier) and its name
actor_bytes_max = 64  # who made a change, as the audit log records it

# -- time ------------------------------------------------------------------------------------------
time_ms_max = 2**62  # "never expires"
hold_seconds_max = 24 * 3600  # how long an unpaid order may hold its codes

# -- money (integer micro-units of the currency) ---------------------------------------------------
price_micros_max = 10**14  # 100 million of a currency's units, so an order's total fits int64
unit_cost_micros_max = 10**15

# -- per call --------------------------------------------------------------------------------------
codes_per_import_max = 100_000  # per engine import call; a client stream sends several calls
codes_per_chunk_max = 10_000  # per ImportCodes stream message
# an ImportCodes stream commits its chunks in order, in groups of at most this many codes: the
# most of a stream a worker holds at once, whatever the stream's length
codes_per_import_commit_max = 10_000
rejected_rows_listed_max = 10_000  # rows named in one ImportCodes answer
error_bytes_max = 200  # what was wrong with an import's bad chunk, as its answer says
codes_per_batch_max = 1_000  # redeem, verify, freeze, unfreeze, void per call
orders_per_call_max = 1_000
lines_per_order_max = 100
codes_per_line_max = 1_000
codes_per_order_max = 10_000
prices_per_sku_max = 100
suppliers_per_sku_max = 100  # supplier ids a SKU lists as allowed to import into it
regions_per_sku_max = 300
skus_per_page_max = 1_000
skus_per_page_default = 100
stream_redemptions_in_flight_max = 256  # per RedeemStream: requests read ahead of answers

# -- the engine ------------------------------------------------------------------------------------
map_size_bytes_default = 64 * 2**30  # address space reserved; the file grows as it fills
map_size_bytes_min = 2**20
map_size_bytes_max = 2**48
sub_databases_max = 32
readers_max = 1024
operations_per_commit_max = 4096  # one commit never holds more queued operations than this
holds_per_sweep_max = 1_000  # orders one sweep commit expires; the sweeper repeats until done
batches_max = 2**24  # batch numbers fit 24 bits of a transition key (the engine's Tx.move)

# -- the server ------------------------------------------------------------------------------------
verified_keys_cached_max = 10_000  # per process; the map is emptied when it is full
skus_decoded_cached_max = 10_000  # per process, the same way
worker_restart_delay_seconds = 1.0

# -- what ties them --------------------------------------------------------------------------------
assert order_id_bytes_max <= 255, "a code record keeps the order id's length in one byte"
assert terminal_bytes_max <= 255, "a code record keeps the terminal's length in one byte"
owner_bytes_max = len("storefront:") + binding_bytes_max  # the longest order namespace
assert owner_bytes_max + 1 + idempotency_key_bytes_max <= order_id_bytes_max, \
    "every owner namespace plus an idempotency key must fit an order id"
assert codes_per_order_max <= lines_per_order_max * codes_per_line_max
assert codes_per_order_max <= codes_per_import_max, "one order's codes fit one commit's work"
assert codes_per_chunk_max <= codes_per_import_commit_max <= codes_per_import_max, \
    "a chunk fits one group, and a group is imported by one engine call"
assert holds_per_sweep_max <= orders_per_call_max
assert map_size_bytes_min <= map_size_bytes_default <= map_size_bytes_max
assert price_micros_max * codes_per_order_max < 2**63, "an order's total fits an int64"
assert hold_seconds_max * 1000 < time_ms_max
