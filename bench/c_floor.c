/* The C floor: a redeem's and an import's unavoidable work, in C over LMDB's C API and libcrypto,
 * on a store laid out like kamicore's. Nothing here checks states, counts, audits or answers:
 * what is left is what no engine can skip, so engine / floor says how close the engine is.
 *
 * Built and driven by bench/c_floor.py (cc -O2 c_floor.c -llmdb -lcrypto). Usage:
 *
 *   c_floor DIR --codes N [--record-bytes B] [--map-size BYTES]
 *
 * It first builds the store in DIR: N codes "SOLD-XXXX-XXXX-XXXX" with ids 1..N, each a record
 * of B bytes (kamicore's 64-byte header, the AES-256-GCM sealed code, padding for the order id)
 * keyed by its id (8 bytes big-endian) in `codes`, and its lookup key (HMAC-SHA256 of the
 * normalised code) -> id key in `lookup`; `redemptions` and `available` start empty; it answers
 * {"ready": true, ...}. Then one command per line on stdin, one JSON line per command on stdout
 * (the engine benchmark interleaves these rounds with its own; c_floor.py's main summarises
 * rounds of its own):
 *     redeem sale T | redeem random T   T write txns of 256 codes: normalise, HMAC, lookup get,
 *                                       record get, record put (state byte), request-id put
 *     lookups T                         T read txns of 256 codes: normalise, HMAC, 2 gets
 *     import T                          T write txns of 10,000 new codes: AES-256-GCM seal
 *                                       (random 12-byte nonce, code id as associated data),
 *                                       HMAC, record append, lookup put, availability put
 *   answering {"figure", "codes", "txns", "seconds", "txn_ms": [...]}.
 *
 * Every write txn is durable (LMDB's default: fsync at commit). Sale order takes the first half
 * of the ids upwards; random order a seeded shuffle of the second half (each code dirties its own
 * page); lookups cycle over all N in id order.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: HMAC from precomputed inner/outer states */
#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REDEEM_PER_TXN 256
#define LOOKUPS_PER_TXN 256
#define IMPORT_PER_TXN 10000
#define HEADER_BYTES 64 /* kamicore's code record header (ext/kamicore/_codec.py) */
#define STATE_AT 1      /* the record's state byte */
#define STATE_AVAILABLE 1
#define STATE_SOLD 3
#define STATE_REDEEMED 4
#define CODE_MAX 32
#define SEALED_MAX (12 + CODE_MAX + 16)
#define RECORD_MAX 512

static MDB_env *env;
static MDB_dbi codes_db, lookup_db, redemptions_db, available_db;
static SHA256_CTX hmac_inner, hmac_outer;
static unsigned char hmac_key[32], data_key[32];
static EVP_CIPHER_CTX *aead;
static uint64_t stored, next_id = 1, request_number, imported, sale_next, random_next, lookup_next;
static uint64_t *random_order;
static size_t record_bytes = 118;

static void fail(const char *what, int rc) {
    fprintf(stderr, "c_floor: %s: %s\n", what, rc ? mdb_strerror(rc) : "failed");
    exit(1);
}
#define CHECK(call) do { int rc_ = (call); if (rc_) fail(#call, rc_); } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void put_u64_be(unsigned char *out, uint64_t value) {
    for (int i = 7; i >= 0; i--, value >>= 8) out[i] = (unsigned char)value;
}

/* bench/common.py's code_of: the usual dashed groups */
static int code_text(char *out, const char *prefix, uint64_t number) {
    return sprintf(out, "%s-%04X-%04X-%04X", prefix, (unsigned)(number >> 32 & 0xFFFF),
                   (unsigned)(number >> 16 & 0xFFFF), (unsigned)(number & 0xFFFF));
}

/* kamicore's normalize_code: ASCII case, spaces and dashes ignored */
static size_t normalise(const char *raw, unsigned char *out) {
    size_t kept = 0;
    for (; *raw; raw++) {
        unsigned char byte = (unsigned char)*raw;
        if (byte == ' ' || byte == '-') continue;
        out[kept++] = (byte >= 'a' && byte <= 'z') ? byte - 32 : byte;
    }
    return kept;
}

/* HMAC-SHA256 from the key's precomputed inner and outer states (RFC 2104, 32-byte key) */
static void hmac_init(const unsigned char *key) {
    unsigned char pad[64];
    SHA256_Init(&hmac_inner);
    SHA256_Init(&hmac_outer);
    for (int i = 0; i < 64; i++) pad[i] = (i < 32 ? key[i] : 0) ^ 0x36;
    SHA256_Update(&hmac_inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = (i < 32 ? key[i] : 0) ^ 0x5C;
    SHA256_Update(&hmac_outer, pad, 64);
}

static void hmac(const unsigned char *data, size_t length, unsigned char *digest) {
    SHA256_CTX context = hmac_inner;
    SHA256_Update(&context, data, length);
    SHA256_Final(digest, &context);
    context = hmac_outer;
    SHA256_Update(&context, digest, 32);
    SHA256_Final(digest, &context);
}

/* AES-256-GCM under the data key (set once): nonce || ciphertext || tag; the code's id key is
 * the associated data */
static size_t seal(const unsigned char *nonce, const unsigned char *plain, size_t length,
                   const unsigned char *associated, unsigned char *out) {
    int written = 0, final = 0;
    memcpy(out, nonce, 12);
    if (EVP_EncryptInit_ex(aead, NULL, NULL, NULL, nonce) != 1
        || EVP_EncryptUpdate(aead, NULL, &written, associated, 8) != 1
        || EVP_EncryptUpdate(aead, out + 12, &written, plain, (int)length) != 1
        || EVP_EncryptFinal_ex(aead, out + 12 + written, &final) != 1
        || EVP_CIPHER_CTX_ctrl(aead, EVP_CTRL_GCM_GET_TAG, 16, out + 12 + written + final) != 1)
        fail("AES-256-GCM seal", 0);
    return 12 + (size_t)(written + final) + 16;
}

/* -- one round of a figure: `txns` transactions, per-transaction seconds into `latencies` -- */

static void redeem(const char *order, uint64_t txns, double *latencies) {
    int random = strcmp(order, "random") == 0;
    if (!random && strcmp(order, "sale") != 0) fail("redeem: the order is sale or random", 0);
    uint64_t count = txns * REDEEM_PER_TXN, half = stored / 2;
    uint64_t *next = random ? &random_next : &sale_next;
    if (*next + count > (random ? stored - half : half)) {
        fprintf(stderr, "c_floor: out of SOLD codes in %s order; raise N\n", order);
        exit(1);
    }
    char (*codes)[CODE_MAX] = malloc(count * CODE_MAX);
    for (uint64_t i = 0; i < count; i++) /* inputs ready before the clock starts */
        code_text(codes[i], "SOLD", random ? random_order[*next + i] - 1 : *next + i);
    *next += count;
    unsigned char normal[CODE_MAX], digest[32], id_key[8], record[RECORD_MAX];
    unsigned char request_key[40], redemption[17 + 32] = {STATE_REDEEMED};
    memcpy(request_key, "c-floor-pos", 12); /* terminal, NUL, request id */
    for (uint64_t t = 0; t < txns; t++) {
        double started = now();
        MDB_txn *txn;
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        for (uint64_t i = t * REDEEM_PER_TXN; i < (t + 1) * REDEEM_PER_TXN; i++) {
            hmac(normal, normalise(codes[i], normal), digest);
            MDB_val key = {32, digest}, value;
            CHECK(mdb_get(txn, lookup_db, &key, &value));
            memcpy(id_key, value.mv_data, 8);
            key = (MDB_val){8, id_key};
            CHECK(mdb_get(txn, codes_db, &key, &value));
            size_t length = value.mv_size;
            memcpy(record, value.mv_data, length);
            record[STATE_AT] = STATE_REDEEMED;
            value = (MDB_val){length, record};
            CHECK(mdb_put(txn, codes_db, &key, &value, 0));
            int id_length = sprintf((char *)request_key + 12, "%012llu",
                                    (unsigned long long)request_number++);
            memcpy(redemption + 1, id_key, 8);
            memcpy(redemption + 17, digest, 32);
            key = (MDB_val){12 + (size_t)id_length, request_key};
            value = (MDB_val){sizeof redemption, redemption};
            CHECK(mdb_put(txn, redemptions_db, &key, &value, MDB_NOOVERWRITE));
        }
        CHECK(mdb_txn_commit(txn));
        latencies[t] = now() - started;
    }
    free(codes);
}

static void lookups(uint64_t txns, double *latencies) {
    uint64_t count = txns * LOOKUPS_PER_TXN, touched = 0;
    char (*codes)[CODE_MAX] = malloc(count * CODE_MAX);
    for (uint64_t i = 0; i < count; i++, lookup_next = (lookup_next + 1) % stored)
        code_text(codes[i], "SOLD", lookup_next);
    unsigned char normal[CODE_MAX], digest[32];
    MDB_txn *txn;
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
    mdb_txn_reset(txn);
    for (uint64_t t = 0; t < txns; t++) {
        double started = now();
        CHECK(mdb_txn_renew(txn));
        for (uint64_t i = t * LOOKUPS_PER_TXN; i < (t + 1) * LOOKUPS_PER_TXN; i++) {
            hmac(normal, normalise(codes[i], normal), digest);
            MDB_val key = {32, digest}, value;
            CHECK(mdb_get(txn, lookup_db, &key, &value));
            key = value;
            CHECK(mdb_get(txn, codes_db, &key, &value));
            touched += ((unsigned char *)value.mv_data)[STATE_AT];
        }
        mdb_txn_reset(txn);
        latencies[t] = now() - started;
    }
    mdb_txn_abort(txn);
    free(codes);
    if (touched == 0) fail("lookups found no records", 0);
}

/* `txns` transactions of `per_txn` new codes with the next ids; `sold` pads records to
 * record_bytes (a SOLD record carries its order id) and skips the availability index */
static void import(const char *prefix, uint64_t txns, uint64_t per_txn, int sold,
                   double *latencies) {
    uint64_t count = txns * per_txn;
    char (*codes)[CODE_MAX] = malloc(count * CODE_MAX);
    for (uint64_t i = 0; i < count; i++) code_text(codes[i], prefix, imported + i);
    imported += count;
    unsigned char *nonces = malloc(per_txn * 12);
    unsigned char normal[CODE_MAX], digest[32], id_key[8], record[RECORD_MAX] = {1};
    unsigned char available_key[20] = {0, 0, 0, 1}; /* sku 1, valid until, code id */
    put_u64_be(available_key + 4, (uint64_t)1 << 62);
    record[STATE_AT] = sold ? STATE_SOLD : STATE_AVAILABLE;
    for (uint64_t t = 0; t < txns; t++) {
        double started = now();
        if (RAND_bytes(nonces, (int)(per_txn * 12)) != 1) fail("RAND_bytes", 0);
        MDB_txn *txn;
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        for (uint64_t i = 0; i < per_txn; i++) {
            size_t length = normalise(codes[t * per_txn + i], normal);
            put_u64_be(id_key, next_id++);
            size_t sealed = seal(nonces + 12 * i, normal, length, id_key, record + HEADER_BYTES);
            size_t size = HEADER_BYTES + sealed;
            if (sold && size < record_bytes) size = record_bytes;
            hmac(normal, length, digest);
            MDB_val key = {8, id_key}, value = {size, record};
            CHECK(mdb_put(txn, codes_db, &key, &value, MDB_APPEND));
            key = (MDB_val){32, digest};
            value = (MDB_val){8, id_key};
            CHECK(mdb_put(txn, lookup_db, &key, &value, MDB_NOOVERWRITE));
            if (!sold) {
                memcpy(available_key + 12, id_key, 8);
                key = (MDB_val){20, available_key};
                value = (MDB_val){0, record};
                CHECK(mdb_put(txn, available_db, &key, &value, 0));
            }
        }
        CHECK(mdb_txn_commit(txn));
        if (latencies) latencies[t] = now() - started;
    }
    free(nonces);
    free(codes);
}

/* -- the store and the commands -------------------------------------------------------------- */

static void open_store(const char *dir, size_t map_size) {
    MDB_txn *txn;
    CHECK(mdb_env_create(&env));
    CHECK(mdb_env_set_mapsize(env, map_size));
    CHECK(mdb_env_set_maxdbs(env, 32));
    CHECK(mdb_env_set_maxreaders(env, 1024));
    CHECK(mdb_env_open(env, dir, MDB_NOTLS | MDB_NORDAHEAD, 0644)); /* durable: fsync per commit */
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_dbi_open(txn, "codes", MDB_CREATE, &codes_db));
    CHECK(mdb_dbi_open(txn, "lookup", MDB_CREATE, &lookup_db));
    CHECK(mdb_dbi_open(txn, "redemptions", MDB_CREATE, &redemptions_db));
    CHECK(mdb_dbi_open(txn, "available", MDB_CREATE, &available_db));
    CHECK(mdb_txn_commit(txn));
}

static void setup(void) {
    if (RAND_bytes(hmac_key, 32) != 1 || RAND_bytes(data_key, 32) != 1) fail("RAND_bytes", 0);
    hmac_init(hmac_key);
    aead = EVP_CIPHER_CTX_new();
    if (!aead || EVP_EncryptInit_ex(aead, EVP_aes_256_gcm(), NULL, data_key, NULL) != 1)
        fail("AES-256-GCM key", 0);
    unsigned char normal[CODE_MAX], mine[32], theirs[32];
    size_t length = normalise("sold-0000-0000-0001", normal); /* the shortcut is HMAC-SHA256 */
    hmac(normal, length, mine);
    HMAC(EVP_sha256(), hmac_key, 32, normal, length, theirs, NULL);
    if (memcmp(mine, theirs, 32) != 0) fail("HMAC from precomputed states differs", 0);
    for (uint64_t done = 0; done < stored; done += IMPORT_PER_TXN) {
        uint64_t count = stored - done < IMPORT_PER_TXN ? stored - done : IMPORT_PER_TXN;
        import("SOLD", 1, count, 1, NULL);
    }
    uint64_t half = stored / 2, state = 20241122;
    random_order = malloc((stored - half) * sizeof *random_order);
    for (uint64_t i = 0; i < stored - half; i++) random_order[i] = half + i + 1; /* ids */
    for (uint64_t i = stored - half - 1; i > 0; i--) {
        uint64_t j = splitmix(&state) % (i + 1), kept = random_order[i];
        random_order[i] = random_order[j];
        random_order[j] = kept;
    }
}

static void answer(const char *figure, uint64_t codes, uint64_t txns, double seconds,
                   const double *latencies) {
    printf("{\"figure\": \"%s\", \"codes\": %llu, \"txns\": %llu, \"seconds\": %.6f, \"txn_ms\": [",
           figure, (unsigned long long)codes, (unsigned long long)txns, seconds);
    for (uint64_t t = 0; t < txns; t++) printf("%s%.4f", t ? ", " : "", latencies[t] * 1000);
    printf("]}\n");
    fflush(stdout);
}

/* one round of one figure, per-transaction seconds into `latencies`, and its answer */
static void run(const char *figure, const char *order, uint64_t txns, double *latencies) {
    char name[32];
    uint64_t per_txn = strcmp(figure, "import") == 0 ? IMPORT_PER_TXN
                       : strcmp(figure, "lookups") == 0 ? LOOKUPS_PER_TXN : REDEEM_PER_TXN;
    double started = now();
    if (strcmp(figure, "redeem") == 0) redeem(order, txns, latencies);
    else if (strcmp(figure, "lookups") == 0) lookups(txns, latencies);
    else import("IMPT", txns, IMPORT_PER_TXN, 0, latencies);
    double seconds = now() - started;
    snprintf(name, sizeof name, order ? "%s-%s" : "%s", figure, order);
    answer(name, txns * per_txn, txns, seconds, latencies);
}

int main(int argc, char **argv) {
    size_t map_size = (size_t)64 << 30;
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR --codes N [--record-bytes B] [--map-size BYTES]\n",
                argv[0]);
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--codes") == 0) stored = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--record-bytes") == 0) record_bytes = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--map-size") == 0) map_size = strtoull(argv[i + 1], NULL, 10);
        else { fprintf(stderr, "c_floor: unknown option %s\n", argv[i]); return 2; }
    }
    if (stored < 2 || record_bytes > RECORD_MAX) {
        fprintf(stderr, "c_floor: need --codes >= 2 and --record-bytes <= %d\n", RECORD_MAX);
        return 2;
    }
    open_store(argv[1], map_size);
    double started = now();
    setup();
    int major, minor, patch;
    mdb_version(&major, &minor, &patch);
    printf("{\"ready\": true, \"setup_seconds\": %.3f, \"codes\": %llu, \"lmdb\": \"%d.%d.%d\", "
           "\"openssl\": \"%s\"}\n", now() - started, (unsigned long long)stored, major, minor,
           patch, OpenSSL_version(OPENSSL_VERSION));
    fflush(stdout);
    char line[128], figure[16], order[16];
    unsigned long long txns;
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "redeem %15s %llu", order, &txns) == 2) {
            strcpy(figure, "redeem");
        } else if (sscanf(line, "%15s %llu", figure, &txns) == 2
                   && (strcmp(figure, "lookups") == 0 || strcmp(figure, "import") == 0)) {
            order[0] = 0;
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            fprintf(stderr, "c_floor: unknown command %s", line);
            return 2;
        }
        double *latencies = malloc((txns ? txns : 1) * sizeof(double));
        run(figure, order[0] ? order : NULL, txns, latencies);
        free(latencies);
    }
    mdb_env_close(env);
    return 0;
}
