/* What only the MongoDB backend promises, beyond the conformance tests that
 * every backend passes (test_store*.c): run only with P2PRPC_TEST_STORE=
 * mongodb (registered once, as unit.test_store_mongo.mongodb).
 *
 * - locations: a malformed URI or database name is P2P_EINVAL before any
 *   connection; a server nobody answers on is P2P_EUNAVAIL "database
 *   unavailable: ..." within the URI's serverSelectionTimeoutMS; a URI without
 *   a database uses "p2prpc";
 * - a write the server refuses (a call document over MongoDB's 16 MiB) is
 *   P2P_ESTORE with the server's reason, changes nothing, and the next write
 *   works;
 * - the layout docs/store.md describes: one collection per function, with the
 *   indexes that claiming, lease requeue and expiry search;
 * - two handles on one database (two brokers): each one's on_change reports
 *   what the other changed, within a bounded time (printed), and a change is
 *   reported once, not again by the watcher.
 * Maintenance by two handles at once is in test_store_mongo_concurrency.c. */
#include "store_test_util.h"

#include <pthread.h>

static char dir[512];
static const char *const FN = "p2prpc_mongo";
/* A few periods of the backend's watcher (about 500 ms, docs/store.md). */
#define WATCH_PERIODS_MS 2000

/* ---- locations ---- */

static void test_locations(void) {
    p2p_store *store = NULL;
    p2p_error err;
    ASSERT_EQ(p2p_store_open("mongodb://127.0.0.1:1/bad$name", NULL, &store, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_open("mongodb://127.0.0.1:1/a.b", NULL, &store, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_open("mongodb://[::1", NULL, &store, &err), P2P_EINVAL);
    ASSERT_TRUE(store == NULL);
    /* Port 1: nothing listens; the driver gives up after 300 ms. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ASSERT_EQ(p2p_store_open("mongodb://127.0.0.1:1/p2pt?serverSelectionTimeoutMS=300", NULL,
                             &store, &err),
              P2P_EUNAVAIL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ASSERT_STR_CONTAINS(err.msg, "database unavailable");
    ASSERT_TRUE(store == NULL);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    fprintf(stderr, "   unreachable server: %ld ms: %s\n", ms, err.msg);
    ASSERT_LT(ms, 10000);

    /* No database in the URI: "p2prpc". A call of a function of its own,
     * deleted again, so that a real server's p2prpc database keeps nothing. */
    char uri[600];
    st_mongo_uri_with_db(st_mongo_base_uri(), "", uri, sizeof(uri));
    ASSERT_OK(p2p_store_open(uri, NULL, &store, &err));
    ASSERT_STR_EQ(p2p_store_backend(store), "mongodb");
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xdef, (unsigned)getpid());
    p2p_store_new_call in = {.identifier = id, .function = "p2prpc_default_db", .args = "{}"};
    ASSERT_OK(p2p_store_create(store, &in, NULL, NULL, NULL));
    mongoc_client_t *client = mongoc_client_new(st_mongo_base_uri());
    mongoc_collection_t *coll =
        mongoc_client_get_collection(client, "p2prpc", "calls_p2prpc_default_db");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    ASSERT_EQ(mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, NULL), 1);
    ASSERT_OK(p2p_store_delete(store, id, NULL, NULL));
    ASSERT_EQ(mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, NULL), 0);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    p2p_store_free(store);
}

/* ---- a write the server refuses ---- */

static void test_refused_write(void) {
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    p2p_store *store = st_open(dir, "refused", &opts);
    size_t n = 17u << 20;
    char *args = malloc(n + 16);
    ASSERT_TRUE(args != NULL);
    memcpy(args, "{\"a\":\"", 6);
    memset(args + 6, 'x', n);
    memcpy(args + 6 + n, "\"}", 3);
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 7);
    p2p_store_new_call in = {.identifier = id, .function = FN, .args = args};
    p2p_error err;
    ASSERT_EQ(p2p_store_create(store, &in, NULL, NULL, &err), P2P_ESTORE);
    fprintf(stderr, "   17 MiB of arguments: %s\n", err.msg);
    ASSERT_STR_CONTAINS(err.msg, "too large");
    free(args);
    p2p_call call;
    p2p_call_init(&call);
    ASSERT_EQ(p2p_store_get(store, id, &call, &err), P2P_ENOTFOUND);
    st_create(store, FN, 7, true);
    ASSERT_OK(p2p_store_get(store, id, &call, NULL));
    ASSERT_STR_EQ(call.args, "{\"n\":1}");
    p2p_call_cleanup(&call);
    p2p_store_free(store);
}

/* ---- layout ---- */

/* True when collection `coll` of `db` has an index whose key is exactly the
 * fields `keys` (NULL-terminated), in that order. */
static bool has_index(const char *db, const char *coll_name, const char *const *keys) {
    mongoc_client_t *client = mongoc_client_new(st_mongo_base_uri());
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, coll_name);
    mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(coll, NULL);
    const bson_t *index;
    bool found = false;
    while (!found && mongoc_cursor_next(cursor, &index)) {
        bson_iter_t it, key;
        if (!bson_iter_init_find(&it, index, "key") || !bson_iter_recurse(&it, &key))
            continue;
        size_t i = 0;
        bool same = true;
        while (same && bson_iter_next(&key))
            same = keys[i] != NULL && strcmp(bson_iter_key(&key), keys[i++]) == 0;
        found = same && keys[i] == NULL;
    }
    bson_error_t error;
    if (mongoc_cursor_error(cursor, &error))
        TEST_FAIL_("listIndexes %s.%s: %s", db, coll_name, error.message);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return found;
}

static void test_layout(void) {
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    p2p_store *store = st_open(dir, "layout", &opts);
    st_create(store, FN, 1, true);
    char location[1024], db[64];
    st_location(dir, "layout", location, sizeof(location));
    const char *slash = strrchr(location, '/');
    snprintf(db, sizeof(db), "%.*s", (int)strcspn(slash + 1, "?"), slash + 1);
    char coll[160];
    snprintf(coll, sizeof(coll), "calls_%s", FN);
    /* Claim: the oldest queued call; requeue: running calls by lease end;
     * expiry: calls by expiry time (docs/store.md, "The MongoDB backend"). */
    ASSERT_TRUE(has_index(db, coll, (const char *[]){"status", "seq", NULL}));
    ASSERT_TRUE(has_index(db, coll, (const char *[]){"status", "lease_expires_ms", NULL}));
    ASSERT_TRUE(has_index(db, coll, (const char *[]){"expires_ms", NULL}));
    ASSERT_FALSE(has_index(db, coll, (const char *[]){"no_such_field", NULL}));
    p2p_store_free(store);
}

/* ---- two handles ---- */

typedef struct events {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int count;
    char last_id[P2P_STORE_ID_LEN + 1];
    p2p_call_status last_status;
} events;

static void on_change(void *ctx, const p2p_store_change *change) {
    events *e = ctx;
    pthread_mutex_lock(&e->lock);
    e->count++;
    snprintf(e->last_id, sizeof(e->last_id), "%s", change->identifier);
    e->last_status = change->status;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits up to `timeout_ms` for an event on `id` with `status`; returns how
 * long it took, or fails. */
static int64_t await_event(events *e, const char *id, p2p_call_status status, long timeout_ms) {
    int64_t start = mono_ms();
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    pthread_mutex_lock(&e->lock);
    while (strcmp(e->last_id, id) != 0 || e->last_status != status) {
        if (pthread_cond_timedwait(&e->cond, &e->lock, &deadline) != 0) {
            pthread_mutex_unlock(&e->lock);
            TEST_FAIL_("no change of %.12s to %s within %ld ms", id, p2p_call_status_name(status),
                       timeout_ms);
        }
    }
    pthread_mutex_unlock(&e->lock);
    return mono_ms() - start;
}

static int event_count(events *e) {
    pthread_mutex_lock(&e->lock);
    int n = e->count;
    pthread_mutex_unlock(&e->lock);
    return n;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_two_handles(void) {
    static events ea = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, "", 0};
    static events eb = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, "", 0};
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    opts.on_change = on_change;
    opts.on_change_ctx = &ea;
    p2p_store *a = st_open(dir, "pair", &opts);
    opts.on_change_ctx = &eb;
    p2p_store *b = st_open(dir, "pair", &opts);

    /* A's own change: reported once, at once, and not again by its watcher. */
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 1);
    st_create(a, FN, 1, true);
    ASSERT_EQ(event_count(&ea), 1);
    int64_t queued_ms = await_event(&eb, id, P2P_CALL_QUEUED, 5000);
    /* B claims, A completes: each hears of the other's change. */
    p2p_call call;
    p2p_call_init(&call);
    ASSERT_OK(p2p_store_claim(b, FN, "w", &call, NULL));
    ASSERT_STR_EQ(call.identifier, id);
    int64_t running_ms = await_event(&ea, id, P2P_CALL_RUNNING, 5000);
    ASSERT_OK(p2p_store_complete(a, id, call.lease_token, "{}", NULL, 0, NULL));
    int64_t done_ms = await_event(&eb, id, P2P_CALL_DONE, 5000);
    p2p_call_cleanup(&call);
    fprintf(stderr,
            "   other handle's change seen after: queued %lld ms, running %lld ms, "
            "done %lld ms\n",
            (long long)queued_ms, (long long)running_ms, (long long)done_ms);
    /* Three changes, each reported once to each handle, even after a few
     * periods of the watcher. */
    sleep_ms(WATCH_PERIODS_MS);
    ASSERT_EQ(event_count(&ea), 3);
    ASSERT_EQ(event_count(&eb), 3);
    p2p_store_free(b);
    p2p_store_free(a);
}

int main(void) {
    if (!st_mongo()) {
        fprintf(stderr, "SKIPPED: MongoDB only (P2PRPC_TEST_STORE=mongodb)\n");
        return ST_SKIP;
    }
    st_make_dir(dir, sizeof(dir), "test_store_mongo");
    TEST_RUN(test_locations);
    TEST_RUN(test_refused_write);
    TEST_RUN(test_layout);
    TEST_RUN(test_two_handles);
    st_remove_dir(dir);
    return st_exit_status();
}
