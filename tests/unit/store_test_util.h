/* Helpers shared by the store's test programs (test_store*.c): a scratch
 * directory, a clock the tests drive, identifiers and hashes from numbers, and
 * the backend under test.
 *
 * The conformance tests (P2P_STORE_CONFORMANCE in tests/CMakeLists.txt: the
 * store, blob store and in-process broker tests) are written once and
 * registered twice: once on SQLite (and the disk blob store), once with
 * P2PRPC_TEST_STORE=mongodb (and GridFS).
 * Then st_location() names a MongoDB database of the server at
 * $P2PRPC_TEST_MONGO_URI (a real MongoDB), else the one the ctest fixture
 * started (tests/mongo/server.sh writes its URI to $P2PRPC_TEST_MONGO_STATE/uri).
 * Each store name gets its own database, so the tests never see each other's
 * calls; on a real server those databases are dropped at exit. */
#ifndef P2PRPC_STORE_TEST_UTIL_H
#define P2PRPC_STORE_TEST_UTIL_H

#include "fsutil.h"
#include "store.h"
#include "test.h"

#include <mongoc/mongoc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Exit status CTest reads as "skipped" (SKIP_RETURN_CODE). */
#define ST_SKIP 77

/* True when the conformance tests run against MongoDB. */
static inline bool st_mongo(void) {
    const char *b = getenv("P2PRPC_TEST_STORE");
    return b != NULL && strcmp(b, "mongodb") == 0;
}

/* The server's URI, read once: $P2PRPC_TEST_MONGO_URI, else the fixture's
 * file. No server: skip (exit 77), or fail when P2PRPC_TEST_MONGO_REQUIRED=1
 * (make test), so that a broken install cannot pass as a skip. */
static inline const char *st_mongo_base_uri(void) {
    static char uri[512];
    if (uri[0] != '\0')
        return uri;
    const char *env = getenv("P2PRPC_TEST_MONGO_URI");
    if (env != NULL && env[0] != '\0') {
        snprintf(uri, sizeof(uri), "%s", env);
        return uri;
    }
    const char *state = getenv("P2PRPC_TEST_MONGO_STATE");
    char path[600];
    snprintf(path, sizeof(path), "%s/uri", state != NULL ? state : ".");
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(uri, sizeof(uri), f) == NULL) {
        if (f != NULL)
            fclose(f);
        const char *req = getenv("P2PRPC_TEST_MONGO_REQUIRED");
        if (req != NULL && strcmp(req, "1") == 0)
            TEST_FAIL_("no MongoDB test server (%s): run 'bash tests/mongo/server.sh install'",
                       path);
        fprintf(stderr, "SKIPPED: no MongoDB server (%s missing, P2PRPC_TEST_MONGO_URI unset)\n",
                path);
        exit(ST_SKIP);
    }
    fclose(f);
    uri[strcspn(uri, "\r\n")] = '\0';
    return uri;
}

/* Writes `base` with its database (the path) replaced by `db` into `out`,
 * keeping the hosts, credentials and ?options. */
static inline void st_mongo_uri_with_db(const char *base, const char *db, char *out, size_t size) {
    const char *hosts = strstr(base, "://");
    ASSERT_TRUE(hosts != NULL);
    hosts += 3;
    size_t host_len = strcspn(hosts, "/?");
    const char *opts = strchr(hosts + host_len, '?');
    int n = snprintf(out, size, "%.*s/%s%s", (int)(hosts + host_len - base), base, db,
                     opts != NULL ? opts : "");
    ASSERT_TRUE(n > 0 && (size_t)n < size);
}

/* The databases this program made, dropped at exit on a real server. */
static char st_mongo_dbs[32][64];
static int st_mongo_ndbs;

/* True when the server is jongodb, the npm test server: its buildInfo says
 * so. Its known gaps: concurrent findAndModify (and conditional updates) are
 * not atomic, projections are ignored, dropDatabase does not exist. */
static inline bool st_mongo_is_jongodb(void) {
    static int known = -1;
    if (known >= 0)
        return known == 1;
    mongoc_init();
    mongoc_client_t *client = mongoc_client_new(st_mongo_base_uri());
    ASSERT_TRUE(client != NULL);
    bson_t *cmd = BCON_NEW("buildInfo", BCON_INT32(1));
    bson_t reply;
    bson_error_t error;
    if (!mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &error))
        TEST_FAIL_("buildInfo on %s: %s", st_mongo_base_uri(), error.message);
    bson_iter_t it;
    known = bson_iter_init_find(&it, &reply, "gitVersion") && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), "jongodb") == 0;
    bson_destroy(&reply);
    bson_destroy(cmd);
    mongoc_client_destroy(client);
    return known == 1;
}

static inline void st_mongo_drop_all(void) {
    if (st_mongo_ndbs == 0 || st_mongo_is_jongodb()) /* in memory, and no dropDatabase */
        return;
    mongoc_client_t *client = mongoc_client_new(st_mongo_base_uri());
    for (int i = 0; client != NULL && i < st_mongo_ndbs; i++) {
        mongoc_database_t *db = mongoc_client_get_database(client, st_mongo_dbs[i]);
        if (!mongoc_database_drop(db, NULL))
            fprintf(stderr, "could not drop test database %s\n", st_mongo_dbs[i]);
        mongoc_database_destroy(db);
    }
    mongoc_client_destroy(client);
}

/* Skipped tests of this program: main() returns st_exit_status(). */
static int st_skipped;

/* True (and says so) when the server is jongodb, which cannot honour the test
 * for `why`: the caller returns at once. Only ever on that server; with a real
 * MongoDB every test runs in full. */
static inline bool st_skip_on_jongodb(const char *test, const char *why) {
    if (!st_mongo() || !st_mongo_is_jongodb())
        return false;
    fprintf(stderr, "   SKIPPED on jongodb: %s: %s\n", test, why);
    st_skipped++;
    return true;
}

/* 77 (skipped) when a test was skipped, so that CTest does not count a
 * partial run as a pass; else 0. */
static inline int st_exit_status(void) {
    return st_skipped > 0 ? ST_SKIP : 0;
}

/* The store location of the store `name` under `dir`: the SQLite file
 * DIR/NAME, or with P2PRPC_TEST_STORE=mongodb a database of its own,
 * p2pt_PID_TIME_NAME (the same one each time this program asks for `name`). */
static inline void st_location(const char *dir, const char *name, char *out, size_t size) {
    if (!st_mongo()) {
        int n = snprintf(out, size, "%s/%s", dir, name);
        ASSERT_TRUE(n > 0 && (size_t)n < size);
        return;
    }
    static long stamp;
    if (stamp == 0)
        stamp = (long)time(NULL) % 100000;
    char db[64];
    int n = snprintf(db, sizeof(db), "p2pt_%ld_%ld_%s", (long)getpid(), stamp, name);
    ASSERT_TRUE(n > 0 && (size_t)n < sizeof(db));
    for (char *c = db; *c != '\0'; c++)
        if (*c == '.' || *c == '/' || *c == ' ')
            *c = '_';
    bool seen = false;
    for (int i = 0; i < st_mongo_ndbs; i++)
        seen = seen || strcmp(st_mongo_dbs[i], db) == 0;
    if (!seen) {
        ASSERT_LT(st_mongo_ndbs, 32);
        if (st_mongo_ndbs == 0)
            atexit(st_mongo_drop_all);
        memcpy(st_mongo_dbs[st_mongo_ndbs++], db, sizeof(db));
    }
    st_mongo_uri_with_db(st_mongo_base_uri(), db, out, size);
}

/* Creates a fresh directory under $P2PRPC_TEST_TMP (or /tmp) into `out`. */
static inline void st_make_dir(char *out, size_t size, const char *tag) {
    const char *base = getenv("P2PRPC_TEST_TMP");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    ASSERT_OK(p2p_fs_mkdirs(base, 0700, NULL));
    snprintf(out, size, "%s/%s.XXXXXX", base, tag);
    ASSERT_TRUE(mkdtemp(out) != NULL);
}

static inline void st_remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

/* The tests' clock, in ms; starts at an arbitrary fixed time. */
static atomic_llong st_now = 1700000000000LL;

static inline int64_t st_clock(void *ctx) {
    (void)ctx;
    return (int64_t)atomic_load(&st_now);
}

static inline void st_advance(int64_t ms) {
    atomic_fetch_add(&st_now, ms);
}

/* A 64-hex identifier (or blob hash) made from `tag` and `n`. */
static inline void st_hex(char out[P2P_STORE_ID_LEN + 1], unsigned tag, unsigned n) {
    snprintf(out, P2P_STORE_ID_LEN + 1, "%08x%056x", tag, n);
}

/* Options with the test clock, a 10 s lease and 3 attempts. */
static inline void st_options(p2p_store_options *opts, p2p_store_sync sync) {
    p2p_store_options_init(opts);
    opts->sync = sync;
    opts->clock = st_clock;
    opts->lease_ms = 10000;
    opts->max_attempts = 3;
}

/* Opens the store `name` of the backend under test (st_location). */
static inline p2p_store *st_open(const char *dir, const char *name, const p2p_store_options *opts) {
    char location[1024];
    st_location(dir, name, location, sizeof(location));
    p2p_store *store = NULL;
    p2p_error err;
    int rc = p2p_store_open(location, opts, &store, &err);
    if (rc != 0)
        TEST_FAIL_("cannot open %s: %s", location, err.msg);
    return store;
}

/* Creates call `n` of `function` with no blobs; `available` queues it. */
static inline void st_create(p2p_store *store, const char *function, unsigned n, bool available) {
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, n);
    p2p_store_new_call in = {
        .identifier = id, .function = function, .args = "{\"n\":1}", .available = available};
    p2p_error err;
    int rc = p2p_store_create(store, &in, NULL, NULL, &err);
    if (rc != 0)
        TEST_FAIL_("create %u: %s", n, err.msg);
}

#endif
