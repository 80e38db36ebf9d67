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
actor_bytes_max = 96  # who made a change ("<role>:<binding>"), as the audit log records it

# -- risk (kamicore.domain.risk_rules) ------------------------------------------------------------
risk_rules_max = 100  # rules in one rule set
risk_list_items_max = 100  # SKUs, or block-list entries, of one rule; off channels of a set
risk_weight_max = 1000  # one rule's weight
risk_score_max = risk_rules_max * risk_weight_max  # a score threshold
risk_count_max = 1_000_000  # a velocity or quantity rule's max
risk_account_age_hours_max = 24 * 365  # a new_account rule's age
verifications_per_order_max = 8  # verifications a CreateOrder may assert
reviews_page_max = 100  # reviews in one ListReviews reply
risk_counters_per_sweep_max = 1000  # risk counters the hold sweeper looks at per commit

# -- suppliers (kamicore.domain.suppliers, routing) ----------------------------------------------
routes_per_supplier_max = 100  # SKU routes of one supplier
routes_per_sku_max = 1_000  # routes of one SKU routing weighs (the first, in supplier id order)
supplier_address_bytes_max = 200  # host:port or base URL
supplier_secret_bytes_min = 16  # a signing secret (HMAC-SHA256 key)
supplier_secret_bytes_max = 256
supplier_timeout_ms_max = 60_000  # one call to a supplier
suppliers_per_page_max = 100
suppliers_per_page_default = 20
suppliers_page_bytes_max = 2**20  # a ListSuppliers page ends before its suppliers pass this
supplier_stats_skus_listed_max = 100  # SKUs in one GetSupplierStats reply; the rest counted
supplier_stats_batches_listed_max = 100  # batches with invalid-code reports, per SKU
# the circuit breaker: this many failed or unanswered calls in a row, each within the window of
# the one before, open it for the cool-down; then one trial call (held this long at most) decides
circuit_failures_to_open = 5
circuit_failure_window_seconds = 60
circuit_cool_down_seconds = 30
circuit_trial_seconds = 60  # a half-open trial whose outcome never came frees the slot after
# HIGHEST_SUCCESS_RATE and FASTEST rank by recent outcomes: counts decaying by half this often
supplier_recent_half_life_seconds = 600
supplier_recent_prior_outcomes = 2  # weight of the average a supplier starts from (no history)
# latency buckets of the stored statistics (upper bounds, ms; the last is open-ended)
supplier_latency_buckets_ms = (5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000,
                               30_000, 60_000)

# -- time ------------------------------------------------------------------------------------------
time_ms_max = 2**62  # "never expires"
hold_seconds_max = 24 * 3600  # how long an unpaid order may hold its codes

# -- money (integer micro-units of the currency) ---------------------------------------------------
price_micros_max = 10**14  # 100 million of a currency's units, so an order's total fits int64
unit_cost_micros_max = 10**15
ledger_entries_per_page_max = 10_000  # ledger entries one read returns (kamicore.domain.ledger)
ledger_entries_per_page_default = 1_000
payment_provider_bytes_max = 64  # ConfirmPayment's payment_provider (a ledger account's name)

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
codes_per_replenishment_max = 10_000  # codes one replenishment buys (a supplier's answer)

# -- replenishment (kamicore.domain.replenishment, kamicore.runtime.replenisher) -------------------
replenishment_check_interval_seconds = 2  # the periodic below-threshold check and retry pass
# expired and not-yet-valid codes CreateOrder counts at most to see a SKU's sellable stock
# (past that, the periodic check decides, off the order's commit)
sellable_keys_counted_max = 1_000
skus_per_replenishment_check_max = 1_000  # catalog entries the periodic check reads per commit
replenishments_per_pass_max = 100  # open requests one replenisher pass works on
replenishment_retry_seconds_min = 1  # backoff after a purchase's first failure; doubles
replenishment_retry_seconds_max = 300  # the backoff's cap
regions_per_sku_max = 300
skus_per_page_max = 1_000
skus_per_page_default = 100
skus_page_bytes_max = 2**20  # a ListSkus page ends before its SKUs pass this (a token follows)
codes_per_reply_max = 10_000  # an order's codes in one reply (GetOrder/GetDelivery page on)
batches_listed_max = 1_000  # GetStock's batches of a SKU; the rest are counted
stream_redemptions_in_flight_max = 256  # per RedeemStream: requests read ahead of answers

# -- guessing at the till: consecutive misses (codes not found, or never sold) per terminal --------
# NIST SP 800-63B bounds online guessing at 100 consecutive failures; a terminal locks far below.
terminal_misses_slow_min = 5  # from this many misses on, every answer waits (see below)
terminal_miss_delay_seconds = 0.2  # the wait grows by this per miss past the one before slow_min
terminal_miss_delay_seconds_max = 2.0
terminal_misses_lock = 20  # this miss locks the terminal: TERMINAL_LOCKED until cool-down/unlock
terminal_lock_seconds = 15 * 60  # the cool-down: a locked terminal starts afresh after it
assert terminal_misses_slow_min < terminal_misses_lock < 100

# -- the engine ------------------------------------------------------------------------------------
map_size_bytes_default = 64 * 2**30  # address space reserved; the file grows as it fills
map_size_bytes_min = 2**20
map_size_bytes_max = 2**48
sub_databases_max = 64  # the engine's own sub-databases and every domain table (TABLES)
readers_max = 1024
operations_per_commit_max = 4096  # one commit never holds more queued operations than this
holds_per_sweep_max = 1_000  # orders one sweep commit expires; the sweeper repeats until done
batches_max = 2**24  # batch numbers fit 24 bits of a transition key (the engine's Tx.move)

# -- replies (bytes of their protobuf encoding) ----------------------------------------------------
reply_bytes_max = 4 * 2**20  # what a gRPC client accepts by default: no reply may need more
reply_margin_bytes = reply_bytes_max // 16  # every reply's worst case stays this far below it
code_states_max = 8  # members of CodeState (UNSPECIFIED too): GetStock counts each state

# -- the server ------------------------------------------------------------------------------------
verified_keys_cached_max = 10_000  # per process; the map is emptied when it is full
skus_decoded_cached_max = 10_000  # per process, the same way
batch_terms_cached_max = 10_000  # per engine: batches whose terms the ledger decoded (same way)
worker_restart_delay_seconds = 1.0
# per worker: at most one log line per (method, reason) of refused requests this often; the
# refusals in between are counted (kamicore_bad_requests_total) and summed in the next line.
# The same bound holds for the traceback of an unexpected error, per (method, error type)
bad_request_log_interval_seconds = 60.0

# grpc-core holds calls that have arrived but that the worker's event loop has not taken yet (it
# takes one per turn); past its default of 1,000 it cancels new ones at random, with CANCELLED,
# before kamicore sees them. Raised so that every call reaches the gate, which refuses the excess
# with RESOURCE_EXHAUSTED and counts it; this bound only guards the worker's memory.
calls_queued_in_grpc_max = 16_384  # per worker
call_queued_in_grpc_seconds_max = 30  # a call not taken by then is cancelled by grpc-core

# -- direct top-ups and supplier callbacks (kamicore.domain.topups, kamicore.runtime) -------------
callback_backlog_max = 128  # connections the callback listener queues before accepting them
recipient_bytes_max = 128  # the account or phone number a top-up credits
topup_attempts_per_order_max = 8  # suppliers one order tries before it is refund-required
topup_request_id_hex_chars = 32  # of the SHA-256 an attempt's request id is derived from
topup_request_id_bytes_max = len("tu--") + topup_request_id_hex_chars + 3  # "tu-<hex>-<n>"
topup_answer_grace_ms = 2_000  # past a call's timeout, its attempt is asked about by another
topup_query_delay_ms_min = 500  # an unknown outcome is asked about after this, then doubling
topup_query_delay_ms_max = 60_000  # ... up to this
topup_follow_up_seconds_default = 30.0  # a PENDING top-up with no callback is asked about then
topup_callbacks_remembered_max = 8  # signatures kept per attempt, to tell replays
callback_signature_chars_max = 64  # the hex HMAC-SHA256 a SupplierCallback carries
topup_wait_grace_seconds = 0.5  # ConfirmPayment waits the first supplier's timeout and this
topup_due_scan_max = 256  # unsettled attempts one scan looks at
topup_due_per_tick_max = 64  # attempts one dispatcher task asks about per tick
topup_calls_in_flight_max = 64  # supplier calls one dispatcher task makes at once

# -- fair use of a worker (defaults of settings in core/config.py; see core/grpc/gate.py) ---------
in_flight_rpcs_default = 512  # calls in flight in one worker; the excess gets RESOURCE_EXHAUSTED
key_in_flight_fraction_default = 0.25  # of them, one key's most: the rest stays for other keys
key_streams_default = 16  # RedeemStream, ImportCodes and WatchEvents calls of one key in one worker
stream_idle_seconds_default = 60.0  # a stream whose client sent nothing for this long is ended
idle_checks_per_timeout = 4  # a stream is ended 1 to 1.25 timeouts after its last message
busy_retry_after_ms = 100  # grpc-retry-pushback-ms sent with a refusal for calls in flight
streams_retry_after_ms = 1000  # ... and with one for too many open streams

# -- suppliers (kamicore.connectors) --------------------------------------------------------------
# a signed answer or callback whose timestamp is further than this from kamicore's clock is
# refused ("stale_timestamp"): a captured callback cannot be replayed later
callback_clock_skew_seconds_max = 300
supplier_request_id_bytes_max = 128  # an attempt's request id, the supplier's idempotency key
supplier_reference_bytes_max = 128  # a supplier's own reference of a top-up
supplier_message_bytes_max = 500  # a supplier's message; longer ones are cut
supplier_codes_per_purchase_max = 10_000  # codes one PurchaseCodes call may buy
supplier_answer_bytes_max = 4 * 2**20  # an answer of a supplier (gRPC or HTTP) kamicore reads
callback_bytes_max = 64 * 2**10  # a callback body the HTTP callback listener accepts
# HTTP calls in flight to one supplier at once (aiohttp's default of 100 would cap a supplier
# answering in 200 ms at 500 calls/s); a PENDING top-up holds none
supplier_http_connections_max = 1024

# -- webhooks (kamicore.domain.webhooks, kamicore.runtime.webhooks) ------------------------------
webhooks_max = 1_000  # endpoints registered at once (the dispatcher runs one delivery loop each)
webhooks_per_page_max = 100
webhooks_per_page_default = 20
webhook_url_bytes_max = 500
webhook_secret_bytes_min = 16  # a signing secret (HMAC-SHA256 key)
webhook_secret_bytes_max = 256
webhook_retry_seconds_min = 1  # an endpoint's retry window: how long until it counts as FAILING
webhook_retry_seconds_max = 7 * 24 * 3600
webhook_retry_seconds_default = 3 * 24 * 3600
webhook_error_bytes_max = 200  # the last error kept per endpoint ("http_503", "timeout", ...)
webhook_event_types_max = 16  # event types one endpoint may list (every type there is)
event_type_bytes_max = 32  # an event type's name ("supplier.attempt_flagged")
webhook_request_seconds_max = 10.0  # one POST, connecting included; longer: a failed attempt
webhook_backoff_seconds_default = 1.0  # the first retry's delay; doubling (with jitter) ...
webhook_backoff_seconds_max = 300.0  # ... up to this, which is also a FAILING endpoint's pace
webhook_retention_seconds_default = 7 * 24 * 3600  # outbox events older than this are pruned
#   unless an enabled endpoint has not acknowledged them yet
webhook_prune_interval_seconds = 60.0  # how often the dispatcher prunes the outbox
webhook_cursor_save_seconds = 5.0  # a cursor passing only events not for it is saved this often
webhook_connections_max = 1_000  # HTTP connections open at once, over every endpoint
webhook_poll_seconds = 0.05  # how often the sender looks for events other processes committed
assert webhook_retry_seconds_min <= webhook_retry_seconds_default <= webhook_retry_seconds_max
assert webhook_secret_bytes_min >= 16, "an HMAC key of at least 128 bits"
assert webhooks_max <= webhook_connections_max, "a POST in flight to every endpoint at once"

# -- the command line ------------------------------------------------------------------------------
cli_call_timeout_seconds = 30.0  # `kamicore call`: the deadline of its one call
cli_probe_timeout_seconds = 2.0  # `kamicore demo`: how long it asks whether a server answers
cli_rejected_lines_listed_max = 100  # `kamicore import` names these; it counts the rest

# -- what ties them --------------------------------------------------------------------------------
assert order_id_bytes_max <= 255, "a code record keeps the order id's length in one byte"
assert terminal_bytes_max <= 255, "a code record keeps the terminal's length in one byte"
owner_bytes_max = len("storefront:") + binding_bytes_max  # the longest order namespace
assert owner_bytes_max + 1 + idempotency_key_bytes_max <= order_id_bytes_max, \
    "every owner namespace plus an idempotency key must fit an order id"
assert owner_bytes_max <= actor_bytes_max <= 255, \
    "a key's role and binding name it in full as an actor; audit events keep its length in a byte"
assert codes_per_order_max <= lines_per_order_max * codes_per_line_max
assert codes_per_order_max <= codes_per_import_max, "one order's codes fit one commit's work"
assert codes_per_chunk_max <= codes_per_import_commit_max <= codes_per_import_max, \
    "a chunk fits one group, and a group is imported by one engine call"
assert holds_per_sweep_max <= orders_per_call_max
assert supplier_timeout_ms_max <= supplier_latency_buckets_ms[-1], "a timed-out call has a bucket"
assert circuit_trial_seconds * 1000 >= supplier_timeout_ms_max, "a trial outlives its call"
assert circuit_failures_to_open >= 1
assert map_size_bytes_min <= map_size_bytes_default <= map_size_bytes_max
assert price_micros_max * codes_per_order_max < 2**63, "an order's total fits an int64"
assert hold_seconds_max * 1000 < time_ms_max
assert codes_per_order_max <= codes_per_reply_max, "a new order's codes fit one reply"
assert 0 < key_in_flight_fraction_default <= 0.5, "one key never holds most of a worker"
assert key_streams_default <= in_flight_rpcs_default * key_in_flight_fraction_default, \
    "a key's open streams fit in its share of the calls in flight"
assert in_flight_rpcs_default < calls_queued_in_grpc_max, "overload reaches the gate"
assert supplier_codes_per_purchase_max * (code_bytes_max + 3) \
    <= supplier_answer_bytes_max, "a purchase of the longest codes fits an answer kamicore reads"
assert cli_rejected_lines_listed_max <= rejected_rows_listed_max, \
    "`kamicore import` names rejected lines from the import stream's list"


# -- the largest reply of each RPC, from the limits above ------------------------------------------
# An upper bound of each reply's encoding: a field costs its tag (every field number of
# kamicore.v1 is below 16: one byte), then a varint, or a length and that many bytes. A text
# field counts its limit in bytes; a masked code is no longer than the longest code (a star
# stands for each hidden character, of one byte or more). tests/test_reply_bounds.py builds each
# reply at these limits, field by field from the .proto descriptors, and holds it under these.

def varint_bytes(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)

def length_delimited_bytes(content_bytes: int) -> int:
    """A string or message field of `content_bytes` bytes (or an item of a repeated one)."""
    return 1 + varint_bytes(content_bytes) + content_bytes

_number = 1 + 10  # an int64 or uint64 field: the longest varint
_small_number = 1 + 5  # a uint32 field
_enum = 1 + 1  # every enum number is below 128
_flag = 1 + 1
_text = length_delimited_bytes
_name = _text(name_bytes_max)
_money = _text(3) + _number  # an ISO 4217 currency and an amount
sku_bytes_max = (
    _name + _text(display_name_bytes_max) + _text(_money) + _enum
    + prices_per_sku_max * _text(_name + _number) + 2 * _small_number
    + regions_per_sku_max * _text(region_bytes_max) + 2 * _number
    + suppliers_per_sku_max * _name + _enum  # routing_strategy
    + _small_number + _flag)  # replenish_quantity, buy_on_payment
delivered_code_bytes_max = (_number + _name + 2 * _text(code_bytes_max) + _enum + _number)
order_bytes_max = (
    _text(order_id_bytes_max) + _enum
    + _text(_text(account_bytes_max) + 2 * _text(buyer_field_bytes_max) + _flag + _number)
    + lines_per_order_max * _text(_name + _small_number) + _text(_money) + 2 * _number
    + codes_per_reply_max * _text(delivered_code_bytes_max)
    + _text(payment_reference_bytes_max) + _text(binding_bytes_max) + _small_number
    + _text(recipient_bytes_max) + _enum + _flag  # a top-up order: and its attempts
    + topup_attempts_per_order_max * _text(
        _name + _text(topup_request_id_bytes_max) + _enum + 2 * _number
        + _text(supplier_reference_bytes_max) + _flag + _text(supplier_message_bytes_max)
        + _small_number))
_state_count = _text(_enum + _number)
_redeemed = (_enum + 2 * _number + _text(terminal_bytes_max) + _text(request_id_bytes_max))
_code_op = _text(_enum + _number + _enum)
_risk_assessment = (_enum + _small_number + _number + risk_rules_max * _text(
    _text(name_bytes_max) + _small_number + _enum) + risk_rules_max * _text(name_bytes_max))
_risk_value_bytes_max = max(buyer_field_bytes_max, 5 + 2 * 16)  # an entry or "hash:<hex>"
_review = (_text(order_id_bytes_max) + _enum + _text(_risk_assessment) + 3 * _number
           + _text(actor_bytes_max))
risk_kind_bytes_max = 16  # the longest name of a rule kind
_risk_rule = (4 * _text(name_bytes_max) + _text(risk_kind_bytes_max) + 3 * _small_number
              + _enum + _number + risk_list_items_max * _text(name_bytes_max)
              + risk_list_items_max * _text(_risk_value_bytes_max))
risk_rule_set_bytes_max = (3 * _small_number + risk_list_items_max * _text(name_bytes_max)
                           + risk_rules_max * _text(_risk_rule))
_double = 1 + 8
_supplier_route = _text(2 * _name + _text(_money) + _small_number + _flag)
supplier_bytes_max = (  # a supplier as replies show it: never with its signing secret
    _name + _text(display_name_bytes_max) + _enum + _text(supplier_address_bytes_max)
    + _small_number + _flag + routes_per_supplier_max * _supplier_route + 2 * _number)
_batch_invalid = _text(_name + 2 * _number + _double)
_supplier_sku_stats = _text(
    _name + 6 * _number + _double + 4 * _small_number + _text(_money)
    + supplier_stats_batches_listed_max * _batch_invalid)
_webhook = (  # a webhook endpoint as replies show it: never with its signing secret
    _name + _text(webhook_url_bytes_max) + _enum + _text(binding_bytes_max)
    + webhook_event_types_max * _text(event_type_bytes_max) + _small_number + _flag
    + 2 * _number)
_webhook_delivery = (_enum + _number + _small_number + _text(webhook_error_bytes_max)
                     + 5 * _number)
reply_bytes_worst = {  # method -> its largest reply
    "Catalog/CreateSku": _enum + _text(sku_bytes_max),  # also GetSku and UpdateSku
    "Catalog/ListSkus": skus_page_bytes_max + _name,
    "Inventory/ImportCodes": (
        _enum + 4 * _number + rejected_rows_listed_max * _text(_number + _enum)
        + _text(error_bytes_max)),
    "Inventory/GetStock": (
        _enum + code_states_max * _state_count + 3 * _number + _flag + _small_number
        + batches_listed_max * _text(2 * _name + code_states_max * _state_count + _number)),
    "Inventory/FreezeCodes": codes_per_batch_max * _code_op,  # also Unfreeze and Void
    "Inventory/RotateKeys": _small_number + _enum,
    "Orders/ConfirmPayment": _enum + _text(order_bytes_max) + _flag,  # and every Order reply
    "Orders/ReportInvalidCode": _enum + _text(delivered_code_bytes_max),
    "Orders/CreateOrder": _enum + _text(order_bytes_max) + _text(_risk_assessment),
    "Risk/GetRiskRules": _text(risk_rule_set_bytes_max) + 2 * _number + _text(actor_bytes_max),
    "Risk/SetRiskRules": _enum + _number,
    "Risk/ListReviews": (reviews_page_max * _text(_review)
                         + _text(2 * (8 + order_id_bytes_max))),  # the token: hex of a key
    "Risk/DecideReview": _enum + _text(_review),
    "Redemption/Redeem": _redeemed,  # also each RedeemStream reply
    "Redemption/RedeemBatch": codes_per_batch_max * _text(_redeemed),
    "Redemption/VerifyCode": (
        2 * _enum + _name + 3 * _number + _text(terminal_bytes_max) + _text(code_bytes_max)
        + _number),
    "Redemption/UnlockTerminal": _enum + 2 * _number,
    "Suppliers/SupplierCallback": _enum,
    "Suppliers/RegisterSupplier": _enum + _text(supplier_bytes_max) + _name,  # and Update
    "Suppliers/ListSuppliers": suppliers_page_bytes_max + _name,
    "Suppliers/GetSupplierStats": (2 * _enum + _number + 2 * _small_number
                                   + supplier_stats_skus_listed_max * _supplier_sku_stats),
    "Webhooks/RegisterWebhook": _enum + _text(_webhook),  # and UpdateWebhook
    "Webhooks/ListWebhooks": (webhooks_per_page_max * _text(_text(_webhook) + _text(
        _webhook_delivery)) + _name),
    "Webhooks/DeleteWebhook": _enum,
}
assert all(size <= reply_bytes_max - reply_margin_bytes for size in reply_bytes_worst.values()), \
    "every reply fits what a client accepts, with a margin"
assert _text(sku_bytes_max) <= skus_page_bytes_max, "a ListSkus page holds at least one SKU"
assert _text(supplier_bytes_max) <= suppliers_page_bytes_max, \
    "a ListSuppliers page holds at least one supplier"
assert _text(codes_per_chunk_max * _text(code_bytes_max)) + 1 + 5 \
    <= reply_bytes_max - reply_margin_bytes, "a chunk of the longest codes fits a message"

# -- events (kamicore.domain.events) -------------------------------------------------------
events_per_page_max = 256  # outbox entries one read looks at (a stream's or a webhook's page)
events_pruned_per_commit_max = 1_000  # outbox records one pruning commit drops
# WatchEvents (kamicore.grpc.events): a watcher reads the outbox itself, after its own cursor,
# so the outbox is its queue and a slow one costs the server no memory past one page
events_poll_seconds = 0.05  # a watcher looks for other workers' commits this often
watch_buffered_events_max = events_per_page_max  # events one stream holds: the page it writes
# a write to a watcher that cannot progress this long (the client stopped reading and gRPC's
# flow-control window is full) ends it RESOURCE_EXHAUSTED, naming the last event sent
watch_write_timeout_seconds_default = 10.0
watch_skus_max = 100  # SKU ids one WatchEvents request may filter by
event_detail_bytes_max = 32  # an event's detail: a short machine reason ("late_success", ...)
reply_bytes_worst["Events/WatchEvents"] = watch_buffered_events_max * _text(  # a page of events
    _number + _enum + _number + _name + _text(binding_bytes_max) + _text(owner_bytes_max)
    + _text(order_id_bytes_max) + _number + _text(terminal_bytes_max) + _name
    + _text(supplier_request_id_bytes_max) + _number + _text(event_detail_bytes_max))
assert reply_bytes_worst["Events/WatchEvents"] <= reply_bytes_max - reply_margin_bytes, \
    "a page of events fits a reply"

# -- reports and reconciliation (kamicore.domain.reports, kamicore.domain.reconciliation) ----
report_records_scanned_max = 2_000  # ledger entries, orders or outbox entries one report call reads
report_rows_per_reply_max = 4_000  # rows of one report reply; a cursor continues the scan
report_expiring_days_max = 3_650  # StockExpiring's within_days
settlement_file_bytes_max = 3 * 2**20  # one settlement CSV (it travels in one request)
settlement_rows_max = 50_000  # rows of one settlement file
settlement_entries_scanned_max = 200_000  # ledger entries read for one file's period
reconciliation_lines_per_page_max = 2_000  # lines of one GetReconciliation reply
reconciliations_per_page_max = 100  # runs of one ListReconciliations reply
currency_bytes_max = 3  # an ISO 4217 code
report_cursor_bytes_max = 2 * order_id_bytes_max  # the longest: an order id in hex
report_words_bytes_max = 16  # a report's fixed words: a day, a decision, a reason
sha256_hex_bytes = 64
assert report_rows_per_reply_max > 2 * lines_per_order_max, "one order's rows always fit a reply"
_report_cursor = _text(report_cursor_bytes_max)
_currency = _text(currency_bytes_max)
_word = _text(report_words_bytes_max)
_batch_value = _text(3 * _name + _currency + 5 * _number)
_reconciliation = _text(_number + _text(sha256_hex_bytes) + _text(payment_provider_bytes_max)
                        + 9 * _number)
reply_bytes_worst.update({
    "Reports/SalesReport": report_rows_per_reply_max * _text(
        _word + _name + _text(binding_bytes_max) + _currency + 5 * _number) + _report_cursor,
    "Reports/SupplierStatement": report_rows_per_reply_max * (
        _text(_name + _currency + 6 * _number)
        + _text(2 * _name + _text(supplier_request_id_bytes_max) + _text(order_id_bytes_max)
                + _word + _currency + 2 * _number)) + _report_cursor,
    "Reports/StockValuation": report_rows_per_reply_max * _batch_value + _report_cursor,
    "Reports/RedemptionsByTerminal": report_rows_per_reply_max * _text(
        _text(terminal_bytes_max) + _name + 2 * _number) + _report_cursor,
    "Reports/RiskDecisions": report_rows_per_reply_max * _text(_name + _word + _number)
        + _report_cursor,
    "Reports/ReconcileSettlement": _enum + _reconciliation,
    "Reports/ListReconciliations": reconciliations_per_page_max * _reconciliation,
    "Reports/GetReconciliation": _enum + _reconciliation + reconciliation_lines_per_page_max
        * _text(3 * _number + _enum + _text(payment_reference_bytes_max)
                + _text(order_id_bytes_max) + 2 * _text(_money)),
})
assert all(size <= reply_bytes_max - reply_margin_bytes for size in reply_bytes_worst.values()), \
    "every report's reply fits what a client accepts, with a margin"
