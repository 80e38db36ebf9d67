// Every default of the client, as a named constant with its unit in the name.

/** Deadline of a call without one of its own (reads, catalog and operator calls). */
export const DEFAULT_DEADLINE_MS = 10_000;
/** CreateOrder: risk scoring and reserving up to 10,000 codes. */
export const CREATE_ORDER_DEADLINE_MS = 15_000;
/** ConfirmPayment: a DIRECT_TOPUP order waits about its first supplier's timeout. */
export const CONFIRM_PAYMENT_DEADLINE_MS = 60_000;
/** Redeem and VerifyCode: a guessing terminal's answers are delayed up to 2 s. */
export const REDEEM_DEADLINE_MS = 10_000;
/** RedeemBatch: up to 1,000 codes, each maybe delayed for a guessing terminal. */
export const REDEEM_BATCH_DEADLINE_MS = 60_000;
/** A whole ImportCodes stream (any length: pass a longer deadline for millions of codes). */
export const IMPORT_DEADLINE_MS = 600_000;
/** A whole RedeemStream (a busy terminal's session). */
export const REDEEM_STREAM_DEADLINE_MS = 3_600_000;
/** One WatchEvents connection; EventStream then reconnects from its cursor, so a watch runs on. */
export const WATCH_DEADLINE_MS = 3_600_000;
/** A watch gives up after this many failures in a row with no event and no headers between. */
export const WATCH_RECONNECTS_MAX = 8;
/** RotateKeys re-wraps every batch key. */
export const ROTATE_KEYS_DEADLINE_MS = 60_000;

/** Attempts of a retried call in all (the first one included). */
export const RETRY_ATTEMPTS_MAX = 4;
/** Wait before the first retry; doubled before each next one (with jitter), up to the max. */
export const RETRY_BACKOFF_INITIAL_MS = 200;
export const RETRY_BACKOFF_MAX_MS = 3_000;

/** Codes per ImportCodes chunk message (the server takes 1-10,000). */
export const IMPORT_CHUNK_CODES = 1_000;
/** The server's cap on one chunk. */
export const IMPORT_CHUNK_CODES_MAX = 10_000;
