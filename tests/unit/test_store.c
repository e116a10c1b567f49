/* The call store's contract, one transition at a time: each allowed
 * transition, each refused one, and what every operation returns. A
 * conformance test: it runs on a real SQLite file and (P2PRPC_TEST_STORE=
 * mongodb) on a MongoDB database, with the same expectations (see
 * store_test_util.h). Concurrency is in test_store_concurrency.c, crashes and
 * store errors in test_store_durability.c. */
#include "store_test_util.h"

#include <math.h>

static char dir[512];
static p2p_store *store;
static const char *const FN = "p2prpc_analyze";

static void open_fresh(const char *name, int max_attempts, int64_t ttl_ms) {
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    opts.max_attempts = max_attempts;
    opts.call_ttl_ms = ttl_ms;
    store = st_open(dir, name, &opts);
}

static void get(unsigned n, p2p_call *call) {
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, n);
    p2p_error err;
    int rc = p2p_store_get(store, id, call, &err);
    if (rc != 0)
        TEST_FAIL_("get %u: %s", n, err.msg);
}

static p2p_call_status status_of(unsigned n) {
    p2p_call call;
    p2p_call_init(&call);
    get(n, &call);
    p2p_call_status status = call.status;
    p2p_call_cleanup(&call);
    return status;
}

static uint64_t version_of(unsigned n) {
    p2p_call call;
    p2p_call_init(&call);
    get(n, &call);
    uint64_t version = call.version;
    p2p_call_cleanup(&call);
    return version;
}

/* Claims the next call of FN, which must be call `n`, and returns its token. */
static void claim(unsigned n, char token[P2P_STORE_TOKEN_LEN + 1]) {
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err;
    int rc = p2p_store_claim(store, FN, "worker-1", &call, &err);
    if (rc != 0)
        TEST_FAIL_("claim: %s", err.msg);
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, n);
    ASSERT_STR_EQ(call.identifier, id);
    memcpy(token, call.lease_token, P2P_STORE_TOKEN_LEN + 1);
    p2p_call_cleanup(&call);
}

static void test_names(void) {
    for (int i = 0; i < P2P_CALL_STATUS_COUNT; i++) {
        p2p_call_status parsed;
        ASSERT_OK(p2p_call_status_parse(p2p_call_status_name((p2p_call_status)i), &parsed));
        ASSERT_EQ(parsed, i);
    }
    p2p_call_status parsed = P2P_CALL_DONE;
    ASSERT_EQ(p2p_call_status_parse("Queued", &parsed), P2P_EINVAL);
    ASSERT_EQ(p2p_call_status_parse(NULL, &parsed), P2P_EINVAL);
    ASSERT_EQ(parsed, P2P_CALL_DONE);
    ASSERT_STR_EQ(p2p_call_status_name((p2p_call_status)42), "unknown");
    ASSERT_TRUE(p2p_call_status_finished(P2P_CALL_TERMINATED));
    ASSERT_FALSE(p2p_call_status_finished(P2P_CALL_RUNNING));
    p2p_store_sync sync;
    ASSERT_OK(p2p_store_sync_parse("full", &sync));
    ASSERT_EQ(sync, P2P_STORE_SYNC_FULL);
    ASSERT_OK(p2p_store_sync_parse("normal", &sync));
    ASSERT_EQ(sync, P2P_STORE_SYNC_NORMAL);
    ASSERT_EQ(p2p_store_sync_parse("off", &sync), P2P_EINVAL);
}

static void test_create_idempotent(void) {
    char id[P2P_STORE_ID_LEN + 1], blob[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 1);
    st_hex(blob, 0xb10b, 1);
    const char *blobs[] = {blob};
    p2p_store_new_call in = {
        .identifier = id, .function = FN, .args = "{\"a\":1}", .blobs = blobs, .nblobs = 1};
    p2p_call call;
    p2p_call_init(&call);
    bool created = false;
    ASSERT_OK(p2p_store_create(store, &in, &call, &created, NULL));
    ASSERT_TRUE(created);
    ASSERT_STR_EQ(call.identifier, id);
    ASSERT_STR_EQ(call.function, FN);
    ASSERT_STR_EQ(call.args, "{\"a\":1}");
    ASSERT_EQ(call.status, P2P_CALL_PUSHED);
    ASSERT_EQ(call.version, 1);
    ASSERT_EQ(call.attempts, 0);
    ASSERT_EQ(call.created_ms, st_clock(NULL));
    ASSERT_EQ(call.expires_ms, 0);
    ASSERT_TRUE(call.outputs == NULL && call.error == NULL && call.worker == NULL);
    ASSERT_STR_EQ(call.lease_token, "");

    /* Again, with other arguments: the existing call comes back, untouched. */
    in.args = "{\"a\":2}";
    ASSERT_OK(p2p_store_create(store, &in, &call, &created, NULL));
    ASSERT_FALSE(created);
    ASSERT_STR_EQ(call.args, "{\"a\":1}");
    ASSERT_EQ(call.version, 1);
    uint64_t refs = 0;
    ASSERT_OK(p2p_store_blob_refcount(store, blob, &refs, NULL));
    ASSERT_EQ(refs, 1);

    /* The same identifier for another function is a conflict. */
    p2p_error err;
    in.function = "p2prpc_other";
    ASSERT_EQ(p2p_store_create(store, &in, &call, &created, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "exists for function p2prpc_analyze");

    /* Creating an existing pushed call with `available` queues it. */
    in.function = FN;
    in.available = true;
    ASSERT_OK(p2p_store_create(store, &in, &call, &created, NULL));
    ASSERT_FALSE(created);
    ASSERT_EQ(call.status, P2P_CALL_QUEUED);
    ASSERT_EQ(call.version, 2);
    p2p_call_cleanup(&call);

    /* A new call created available starts queued. */
    st_create(store, FN, 2, true);
    ASSERT_EQ(status_of(2), P2P_CALL_QUEUED);
}

static void test_validation(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    st_hex(id, 0xca11, 100);
    p2p_error err;
    p2p_call call;
    p2p_call_init(&call);
    const char *bad_ids[] = {"", "abc",
                             "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
                             "../3456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        ASSERT_EQ(p2p_store_get(store, bad_ids[i], &call, &err), P2P_EINVAL);
        ASSERT_STR_CONTAINS(err.msg, "64 lowercase hex");
    }
    ASSERT_EQ(p2p_store_get(store, NULL, &call, &err), P2P_EINVAL);
    p2p_store_new_call in = {.identifier = id, .function = "bad name", .args = "{}"};
    ASSERT_EQ(p2p_store_create(store, &in, NULL, NULL, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "function name");
    in.function = FN;
    in.args = NULL;
    ASSERT_EQ(p2p_store_create(store, &in, NULL, NULL, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "arguments missing");
    const char *blobs[] = {"nothex"};
    in.args = "{}";
    in.blobs = blobs;
    in.nblobs = 1;
    ASSERT_EQ(p2p_store_create(store, &in, NULL, NULL, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "blob hash");
    ASSERT_EQ(p2p_store_get(store, id, &call, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, id);
    ASSERT_EQ(p2p_store_renew(store, id, "XYZ", NULL, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "lease token");
    memset(token, 'a', P2P_STORE_TOKEN_LEN);
    token[P2P_STORE_TOKEN_LEN] = '\0';
    ASSERT_EQ(p2p_store_progress(store, id, token, NAN, NULL, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_progress(store, id, token, -1, NULL, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_progress(store, id, token, 100.5, NULL, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "0 to 100");
    ASSERT_EQ(p2p_store_renew(store, id, token, NULL, &err), P2P_ENOTFOUND);
    ASSERT_EQ(p2p_store_claim(store, FN, "bad worker", &call, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_claim(store, FN, "w", NULL, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_checkpoint_put(store, id, token, "a/b", id, NULL, &err), P2P_EINVAL);
    p2p_store_query q = {.function = NULL, .status = 9, .limit = 10};
    p2p_call_list list;
    p2p_call_list_init(&list);
    ASSERT_EQ(p2p_store_list(store, &q, &list, &err), P2P_EINVAL);
    q.status = -1;
    q.limit = 0;
    ASSERT_EQ(p2p_store_list(store, &q, &list, &err), P2P_EINVAL);
}

static void test_make_available(void) {
    st_create(store, FN, 3, false);
    bool changed = false;
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 3);
    ASSERT_OK(p2p_store_make_available(store, id, &changed, NULL));
    ASSERT_TRUE(changed);
    ASSERT_EQ(status_of(3), P2P_CALL_QUEUED);
    uint64_t version = version_of(3);
    /* Twice: nothing moves, nothing is bumped. */
    ASSERT_OK(p2p_store_make_available(store, id, &changed, NULL));
    ASSERT_FALSE(changed);
    ASSERT_EQ(version_of(3), version);
    p2p_error err;
    st_hex(id, 0xca11, 999);
    ASSERT_EQ(p2p_store_make_available(store, id, &changed, &err), P2P_ENOTFOUND);
}

/* Drains whatever the earlier tests left queued. */
static void drain(void) {
    p2p_call call;
    p2p_call_init(&call);
    for (int i = 0; i < 100 && p2p_store_claim(store, FN, "drain", &call, NULL) == 0; i++)
        ASSERT_OK(p2p_store_fail(store, call.identifier, call.lease_token, "drained", NULL));
    p2p_call_cleanup(&call);
}

static void test_claim(void) {
    drain();
    p2p_call call;
    p2p_call_init(&call);
    p2p_error err;
    ASSERT_EQ(p2p_store_claim(store, FN, "w1", &call, &err), P2P_ENOTFOUND);
    ASSERT_STR_CONTAINS(err.msg, "no queued call of p2prpc_analyze");
    st_create(store, FN, 10, false); /* pushed: never claimed */
    st_create(store, FN, 11, true);
    st_create(store, "p2prpc_other", 12, true);
    st_create(store, FN, 13, true);
    ASSERT_OK(p2p_store_claim(store, FN, "w1", &call, &err));
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 11);
    ASSERT_STR_EQ(call.identifier, id); /* the oldest queued one */
    ASSERT_EQ(call.status, P2P_CALL_RUNNING);
    ASSERT_STR_EQ(call.args, "{\"n\":1}");
    ASSERT_EQ(strlen(call.lease_token), P2P_STORE_TOKEN_LEN);
    ASSERT_EQ(strspn(call.lease_token, "0123456789abcdef"), P2P_STORE_TOKEN_LEN);
    ASSERT_EQ(call.lease_expires_ms, st_clock(NULL) + 10000);
    ASSERT_EQ(call.attempts, 1);
    ASSERT_STR_EQ(call.worker, "w1");
    ASSERT_EQ(call.version, 2);
    char first_token[P2P_STORE_TOKEN_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    memcpy(first_token, call.lease_token, sizeof(first_token));
    claim(13, token);
    ASSERT_TRUE(strcmp(first_token, token) != 0);
    ASSERT_EQ(p2p_store_claim(store, FN, "w1", &call, &err), P2P_ENOTFOUND);
    ASSERT_EQ(status_of(10), P2P_CALL_PUSHED);
    /* Finish them, so that later lease expiries concern only their own calls. */
    ASSERT_OK(p2p_store_complete(store, id, first_token, "{}", NULL, 0, NULL));
    st_hex(id, 0xca11, 13);
    ASSERT_OK(p2p_store_complete(store, id, token, "{}", NULL, 0, NULL));
    ASSERT_OK(p2p_store_claim(store, "p2prpc_other", "w1", &call, &err));
    ASSERT_OK(p2p_store_complete(store, call.identifier, call.lease_token, "{}", NULL, 0, NULL));
    p2p_call_cleanup(&call);
}

static void test_lease_operations(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    char stale[P2P_STORE_TOKEN_LEN + 1] = "00000000000000000000000000000000";
    st_hex(id, 0xca11, 20);
    st_create(store, FN, 20, true);
    claim(20, token);
    p2p_store_lease lease;
    p2p_error err;
    st_advance(4000);
    ASSERT_OK(p2p_store_renew(store, id, token, &lease, NULL));
    ASSERT_FALSE(lease.terminate_requested);
    ASSERT_EQ(lease.expires_ms, st_clock(NULL) + 10000);
    ASSERT_EQ(p2p_store_renew(store, id, stale, &lease, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "stale lease");
    st_advance(1000);
    ASSERT_OK(p2p_store_progress(store, id, token, 42.5, &lease, NULL));
    ASSERT_EQ(lease.expires_ms, st_clock(NULL) + 10000);
    p2p_call call;
    p2p_call_init(&call);
    get(20, &call);
    ASSERT_TRUE(fabs(call.progress - 42.5) < 1e-9);
    ASSERT_EQ(call.lease_expires_ms, lease.expires_ms);
    ASSERT_EQ(p2p_store_progress(store, id, stale, 50, &lease, &err), P2P_ECONFLICT);
    /* Complete with a stale lease: refused, nothing changes. */
    uint64_t version = version_of(20);
    ASSERT_EQ(p2p_store_complete(store, id, stale, "{}", NULL, 0, &err), P2P_ECONFLICT);
    ASSERT_EQ(version_of(20), version);
    ASSERT_EQ(status_of(20), P2P_CALL_RUNNING);
    ASSERT_OK(p2p_store_complete(store, id, token, "{\"r\":7}", NULL, 0, &err));
    get(20, &call);
    ASSERT_EQ(call.status, P2P_CALL_DONE);
    ASSERT_STR_EQ(call.outputs, "{\"r\":7}");
    ASSERT_TRUE(call.progress == 100);
    ASSERT_EQ(call.lease_expires_ms, 0);
    /* A retry of the same completion succeeds and changes nothing; any other
     * lease operation on a finished call is stale. */
    ASSERT_OK(p2p_store_complete(store, id, token, "{\"r\":8}", NULL, 0, &err));
    ASSERT_EQ(version_of(20), call.version);
    ASSERT_EQ(p2p_store_renew(store, id, token, &lease, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "the call is done");
    ASSERT_EQ(p2p_store_fail(store, id, token, "late", &err), P2P_ECONFLICT);
    ASSERT_EQ(p2p_store_mark_terminated(store, id, token, &err), P2P_ECONFLICT);
    bool changed = true;
    ASSERT_OK(p2p_store_make_available(store, id, &changed, NULL)); /* done: left as is */
    ASSERT_FALSE(changed);
    p2p_call_cleanup(&call);
}

/* running -> failed, with its message. */
static void test_fail(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    p2p_error err;
    bool changed = true;
    p2p_call call;
    p2p_call_init(&call);
    st_hex(id, 0xca11, 21);
    st_create(store, FN, 21, true);
    claim(21, token);
    ASSERT_OK(p2p_store_fail(store, id, token, "division by zero", NULL));
    get(21, &call);
    ASSERT_EQ(call.status, P2P_CALL_FAILED);
    ASSERT_STR_EQ(call.error, "division by zero");
    ASSERT_OK(p2p_store_fail(store, id, token, "division by zero", NULL));
    ASSERT_EQ(p2p_store_complete(store, id, token, "{}", NULL, 0, &err), P2P_ECONFLICT);
    ASSERT_EQ(p2p_store_make_available(store, id, &changed, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "restart");
    p2p_call_cleanup(&call);
}

static void test_terminate(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    p2p_call_status status;
    p2p_error err;
    /* pushed and queued calls stop at once; a queued one is no longer claimable. */
    st_create(store, FN, 30, false);
    st_create(store, FN, 31, true);
    st_hex(id, 0xca11, 30);
    ASSERT_OK(p2p_store_terminate(store, id, &status, NULL));
    ASSERT_EQ(status, P2P_CALL_TERMINATED);
    st_hex(id, 0xca11, 31);
    ASSERT_OK(p2p_store_terminate(store, id, &status, NULL));
    ASSERT_EQ(status, P2P_CALL_TERMINATED);
    ASSERT_EQ(status_of(31), P2P_CALL_TERMINATED);
    p2p_call call;
    p2p_call_init(&call);
    ASSERT_EQ(p2p_store_claim(store, FN, "w", &call, &err), P2P_ENOTFOUND);
    /* A running call only gets the flag; its worker sees it on renew and progress. */
    st_create(store, FN, 32, true);
    claim(32, token);
    st_hex(id, 0xca11, 32);
    ASSERT_OK(p2p_store_terminate(store, id, &status, NULL));
    ASSERT_EQ(status, P2P_CALL_RUNNING);
    uint64_t version = version_of(32);
    ASSERT_OK(p2p_store_terminate(store, id, &status, NULL)); /* asking twice: no change */
    ASSERT_EQ(version_of(32), version);
    p2p_store_lease lease = {0};
    ASSERT_OK(p2p_store_renew(store, id, token, &lease, NULL));
    ASSERT_TRUE(lease.terminate_requested);
    lease.terminate_requested = false;
    ASSERT_OK(p2p_store_progress(store, id, token, 10, &lease, NULL));
    ASSERT_TRUE(lease.terminate_requested);
    ASSERT_OK(p2p_store_mark_terminated(store, id, token, NULL));
    ASSERT_EQ(status_of(32), P2P_CALL_TERMINATED);
    /* Finished calls are left as they are, and say what they are. */
    st_hex(id, 0xca11, 20);
    ASSERT_OK(p2p_store_terminate(store, id, &status, NULL));
    ASSERT_EQ(status, P2P_CALL_DONE);
    st_hex(id, 0xca11, 998);
    ASSERT_EQ(p2p_store_terminate(store, id, &status, &err), P2P_ENOTFOUND);
}

static void test_lease_expiry(void) {
    char id[P2P_STORE_ID_LEN + 1], first[P2P_STORE_TOKEN_LEN + 1];
    char second[P2P_STORE_TOKEN_LEN + 1];
    p2p_error err;
    size_t requeued = 9, failed = 9;
    st_hex(id, 0xca11, 40);
    st_create(store, FN, 40, true);
    claim(40, first);
    st_advance(9999);
    ASSERT_OK(p2p_store_requeue_expired(store, &requeued, &failed, NULL));
    ASSERT_EQ(requeued, 0); /* not yet */
    st_advance(1);
    ASSERT_OK(p2p_store_requeue_expired(store, &requeued, &failed, NULL));
    ASSERT_EQ(requeued, 1);
    ASSERT_EQ(failed, 0);
    ASSERT_EQ(status_of(40), P2P_CALL_QUEUED);
    ASSERT_EQ(p2p_store_renew(store, id, first, NULL, &err), P2P_ECONFLICT);
    claim(40, second);
    ASSERT_TRUE(strcmp(first, second) != 0);
    ASSERT_EQ(p2p_store_complete(store, id, first, "{}", NULL, 0, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "claimed again");
    ASSERT_OK(p2p_store_renew(store, id, second, NULL, NULL));
    p2p_call call;
    p2p_call_init(&call);
    get(40, &call);
    ASSERT_EQ(call.attempts, 2);
    p2p_call_cleanup(&call);
    ASSERT_OK(p2p_store_complete(store, id, second, "{}", NULL, 0, NULL));

    /* Termination requested, then the worker vanished: terminated, not requeued. */
    st_create(store, FN, 41, true);
    claim(41, first);
    st_hex(id, 0xca11, 41);
    ASSERT_OK(p2p_store_terminate(store, id, NULL, NULL));
    st_advance(10001);
    ASSERT_OK(p2p_store_requeue_expired(store, &requeued, &failed, NULL));
    ASSERT_EQ(requeued, 0);
    ASSERT_EQ(failed, 1);
    ASSERT_EQ(status_of(41), P2P_CALL_TERMINATED);
}

static void test_attempts_limit(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    size_t requeued = 0, failed = 0;
    st_hex(id, 0xca11, 50);
    st_create(store, FN, 50, true);
    for (int attempt = 1; attempt <= 3; attempt++) {
        claim(50, token);
        st_advance(10000);
        ASSERT_OK(p2p_store_requeue_expired(store, &requeued, &failed, NULL));
        ASSERT_EQ(requeued, attempt < 3 ? 1 : 0);
        ASSERT_EQ(failed, attempt < 3 ? 0 : 1);
    }
    p2p_call call;
    p2p_call_init(&call);
    get(50, &call);
    ASSERT_EQ(call.status, P2P_CALL_FAILED);
    ASSERT_STR_EQ(call.error, "lease expired 3 times");
    ASSERT_EQ(call.attempts, 3);
    p2p_call_cleanup(&call);
}

/* A worker gives its call back on shutdown: queued at once, in its old place,
 * and the claim does not count as an attempt. */
static void test_release(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    char other[P2P_STORE_TOKEN_LEN + 1];
    p2p_call_status status = P2P_CALL_DONE;
    p2p_error err;
    st_hex(id, 0xca11, 55);
    st_create(store, FN, 55, true);
    st_create(store, FN, 56, true);
    /* More releases than max_attempts: never failed, attempts stay at 0. */
    for (int i = 0; i < 5; i++) {
        claim(55, token);
        ASSERT_OK(p2p_store_progress(store, id, token, 30, NULL, NULL));
        ASSERT_OK(p2p_store_release(store, id, token, &status, &err));
        ASSERT_EQ(status, P2P_CALL_QUEUED);
    }
    p2p_call call;
    p2p_call_init(&call);
    get(55, &call);
    ASSERT_EQ(call.status, P2P_CALL_QUEUED);
    ASSERT_EQ(call.attempts, 0);
    ASSERT_EQ(call.lease_expires_ms, 0);
    ASSERT_EQ(call.progress, 0);
    p2p_call_cleanup(&call);
    /* A retry with the same token changes nothing; the lease is over for renewals. */
    uint64_t v = version_of(55);
    ASSERT_OK(p2p_store_release(store, id, token, &status, NULL));
    ASSERT_EQ(status, P2P_CALL_QUEUED);
    ASSERT_EQ(version_of(55), v);
    ASSERT_EQ(p2p_store_renew(store, id, token, NULL, &err), P2P_ECONFLICT);
    /* Claimed again by someone else: the old token is stale. */
    claim(55, other);
    ASSERT_EQ(p2p_store_release(store, id, token, NULL, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "stale lease");
    /* Asked to stop: releasing it ends it as terminated. */
    ASSERT_OK(p2p_store_terminate(store, id, NULL, NULL));
    ASSERT_OK(p2p_store_release(store, id, other, &status, NULL));
    ASSERT_EQ(status, P2P_CALL_TERMINATED);
    ASSERT_EQ(status_of(55), P2P_CALL_TERMINATED);
    ASSERT_OK(p2p_store_release(store, id, other, &status, NULL));
    ASSERT_EQ(status, P2P_CALL_TERMINATED);
    /* A finished call cannot be released; bad input is refused first. */
    claim(56, token);
    st_hex(id, 0xca11, 56);
    ASSERT_OK(p2p_store_complete(store, id, token, "{}", NULL, 0, NULL));
    ASSERT_EQ(p2p_store_release(store, id, token, NULL, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "done");
    ASSERT_EQ(p2p_store_release(store, id, "xyz", NULL, &err), P2P_EINVAL);
    ASSERT_EQ(p2p_store_release(store, "0", token, NULL, &err), P2P_EINVAL);
    st_hex(id, 0xca11, 997);
    ASSERT_EQ(p2p_store_release(store, id, token, NULL, &err), P2P_ENOTFOUND);
}

static void test_versions(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1], hash[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 60);
    st_hex(hash, 0xb10b, 60);
    st_create(store, FN, 60, false);
    uint64_t v = version_of(60);
    ASSERT_EQ(v, 1);
    ASSERT_OK(p2p_store_make_available(store, id, NULL, NULL));
    ASSERT_EQ(version_of(60), ++v);
    claim(60, token);
    ASSERT_EQ(version_of(60), ++v);
    ASSERT_OK(p2p_store_renew(store, id, token, NULL, NULL));
    ASSERT_EQ(version_of(60), ++v);
    ASSERT_OK(p2p_store_progress(store, id, token, 5, NULL, NULL));
    ASSERT_EQ(version_of(60), ++v);
    ASSERT_OK(p2p_store_checkpoint_put(store, id, token, "state", hash, NULL, NULL));
    ASSERT_EQ(version_of(60), ++v);
    ASSERT_OK(p2p_store_terminate(store, id, NULL, NULL));
    ASSERT_EQ(version_of(60), ++v);
    /* Refused operations change nothing. */
    ASSERT_EQ(p2p_store_renew(store, id, "11111111111111111111111111111111", NULL, NULL),
              P2P_ECONFLICT);
    ASSERT_EQ(version_of(60), v);
    ASSERT_OK(p2p_store_mark_terminated(store, id, token, NULL));
    ASSERT_EQ(version_of(60), ++v);
    ASSERT_OK(p2p_store_restart(store, id, NULL, NULL));
    ASSERT_EQ(version_of(60), ++v);
    ASSERT_OK(p2p_store_terminate(store, id, NULL, NULL)); /* out of the queue */
    ASSERT_EQ(version_of(60), ++v);
}

static void test_delete_orphans(void) {
    char a[P2P_STORE_ID_LEN + 1], b[P2P_STORE_ID_LEN + 1], c[P2P_STORE_ID_LEN + 1];
    char d[P2P_STORE_ID_LEN + 1], id1[P2P_STORE_ID_LEN + 1], id2[P2P_STORE_ID_LEN + 1];
    char token[P2P_STORE_TOKEN_LEN + 1];
    st_hex(a, 0xb10b, 0xa);
    st_hex(b, 0xb10b, 0xb);
    st_hex(c, 0xb10b, 0xc);
    st_hex(d, 0xb10b, 0xd);
    st_hex(id1, 0xca11, 70);
    st_hex(id2, 0xca11, 71);
    const char *args1[] = {a, b, a}, *args2[] = {b}, *outs[] = {c, a};
    p2p_store_new_call in1 = {.identifier = id1,
                              .function = FN,
                              .args = "{}",
                              .blobs = args1,
                              .nblobs = 3,
                              .available = true};
    p2p_store_new_call in2 = {
        .identifier = id2, .function = FN, .args = "{}", .blobs = args2, .nblobs = 1};
    ASSERT_OK(p2p_store_create(store, &in1, NULL, NULL, NULL));
    ASSERT_OK(p2p_store_create(store, &in2, NULL, NULL, NULL));
    claim(70, token);
    ASSERT_OK(p2p_store_checkpoint_put(store, id1, token, "ckpt", d, NULL, NULL));
    ASSERT_OK(p2p_store_complete(store, id1, token, "{}", outs, 2, NULL));
    uint64_t n = 0;
    ASSERT_OK(p2p_store_blob_refcount(store, a, &n, NULL));
    ASSERT_EQ(n, 2); /* one argument reference (deduplicated) and one output */
    ASSERT_OK(p2p_store_blob_refcount(store, b, &n, NULL));
    ASSERT_EQ(n, 2);
    p2p_store_hashes orphans;
    p2p_store_hashes_init(&orphans);
    ASSERT_OK(p2p_store_delete(store, id1, &orphans, NULL));
    /* b is still an argument of call 71. */
    ASSERT_EQ(orphans.count, 3);
    int seen = 0;
    for (size_t i = 0; i < orphans.count; i++) {
        seen |= strcmp(orphans.items[i], a) == 0 ? 1 : 0;
        seen |= strcmp(orphans.items[i], c) == 0 ? 2 : 0;
        seen |= strcmp(orphans.items[i], d) == 0 ? 4 : 0;
    }
    ASSERT_EQ(seen, 7);
    ASSERT_OK(p2p_store_blob_refcount(store, b, &n, NULL));
    ASSERT_EQ(n, 1);
    ASSERT_OK(p2p_store_blob_refcount(store, a, &n, NULL));
    ASSERT_EQ(n, 0);
    p2p_error err;
    ASSERT_EQ(p2p_store_delete(store, id1, &orphans, &err), P2P_ENOTFOUND);
    ASSERT_EQ(orphans.count, 3);
    /* Deleting the last reference of b returns it; a running call can go too. */
    ASSERT_OK(p2p_store_make_available(store, id2, NULL, NULL));
    claim(71, token);
    ASSERT_OK(p2p_store_delete(store, id2, &orphans, NULL));
    ASSERT_EQ(orphans.count, 4);
    ASSERT_STR_EQ(orphans.items[3], b);
    p2p_store_hashes_cleanup(&orphans);
}

static void test_restart_and_checkpoints(void) {
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    char arg[P2P_STORE_ID_LEN + 1], out[P2P_STORE_ID_LEN + 1], ck1[P2P_STORE_ID_LEN + 1];
    char ck2[P2P_STORE_ID_LEN + 1], got[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 80);
    st_hex(arg, 0xb10b, 0x80);
    st_hex(out, 0xb10b, 0x81);
    st_hex(ck1, 0xb10b, 0x82);
    st_hex(ck2, 0xb10b, 0x83);
    const char *args[] = {arg}, *outs[] = {out};
    p2p_store_new_call in = {.identifier = id,
                             .function = FN,
                             .args = "{}",
                             .blobs = args,
                             .nblobs = 1,
                             .available = true};
    ASSERT_OK(p2p_store_create(store, &in, NULL, NULL, NULL));
    p2p_error err;
    p2p_store_hashes orphans;
    p2p_store_hashes_init(&orphans);
    ASSERT_EQ(p2p_store_restart(store, id, &orphans, &err), P2P_ECONFLICT);
    claim(80, token);
    ASSERT_EQ(p2p_store_checkpoint_get(store, id, "state", got, &err), P2P_ENOTFOUND);
    ASSERT_OK(p2p_store_checkpoint_put(store, id, token, "state", ck1, &orphans, NULL));
    ASSERT_OK(p2p_store_checkpoint_get(store, id, "state", got, NULL));
    ASSERT_STR_EQ(got, ck1);
    ASSERT_OK(p2p_store_checkpoint_put(store, id, token, "state", ck1, &orphans, NULL));
    ASSERT_EQ(orphans.count, 0);
    ASSERT_OK(p2p_store_checkpoint_put(store, id, token, "state", ck2, &orphans, NULL));
    ASSERT_EQ(orphans.count, 1); /* ck1 lost its only reference */
    ASSERT_STR_EQ(orphans.items[0], ck1);
    ASSERT_EQ(p2p_store_checkpoint_put(store, id, "22222222222222222222222222222222", "state", ck1,
                                       &orphans, &err),
              P2P_ECONFLICT);
    ASSERT_EQ(p2p_store_restart(store, id, &orphans, &err), P2P_ECONFLICT);
    ASSERT_STR_CONTAINS(err.msg, "running");
    ASSERT_OK(p2p_store_complete(store, id, token, "{\"o\":1}", outs, 1, NULL));
    orphans.count = 0;
    ASSERT_OK(p2p_store_restart(store, id, &orphans, NULL));
    ASSERT_EQ(orphans.count, 2); /* the output and the checkpoint; the argument stays */
    p2p_call call;
    p2p_call_init(&call);
    get(80, &call);
    ASSERT_EQ(call.status, P2P_CALL_QUEUED);
    ASSERT_TRUE(call.outputs == NULL && call.progress == 0 && call.attempts == 0);
    uint64_t n = 9;
    ASSERT_OK(p2p_store_blob_refcount(store, arg, &n, NULL));
    ASSERT_EQ(n, 1);
    ASSERT_EQ(p2p_store_checkpoint_get(store, id, "state", got, &err), P2P_ENOTFOUND);
    p2p_call_cleanup(&call);
    p2p_store_hashes_cleanup(&orphans);
}

static void test_count_and_list(void) {
    p2p_store_free(store);
    open_fresh("count.db", 3, 0);
    char token[P2P_STORE_TOKEN_LEN + 1], id[P2P_STORE_ID_LEN + 1];
    for (unsigned i = 0; i < 5; i++)
        st_create(store, FN, i, i > 0);
    st_create(store, "p2prpc_other", 5, false);
    claim(1, token);
    st_hex(id, 0xca11, 1);
    ASSERT_OK(p2p_store_complete(store, id, token, "{}", NULL, 0, NULL));
    claim(2, token);
    uint64_t counts[P2P_CALL_STATUS_COUNT];
    ASSERT_OK(p2p_store_count(store, FN, counts, NULL));
    uint64_t want[P2P_CALL_STATUS_COUNT] = {1, 2, 1, 1, 0, 0};
    for (int i = 0; i < P2P_CALL_STATUS_COUNT; i++)
        ASSERT_EQ(counts[i], want[i]);
    ASSERT_OK(p2p_store_count(store, NULL, counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_PUSHED], 2);
    ASSERT_OK(p2p_store_count(store, "p2prpc_none", counts, NULL));
    ASSERT_EQ(counts[P2P_CALL_QUEUED], 0);

    p2p_call_list list;
    p2p_call_list_init(&list);
    p2p_store_query q = {.function = NULL, .status = -1, .limit = 10};
    ASSERT_OK(p2p_store_list(store, &q, &list, NULL));
    ASSERT_EQ(list.count, 6);
    st_hex(id, 0xca11, 5);
    ASSERT_STR_EQ(list.items[0].identifier, id); /* newest first */
    q.function = FN;
    q.status = P2P_CALL_QUEUED;
    ASSERT_OK(p2p_store_list(store, &q, &list, NULL));
    ASSERT_EQ(list.count, 2);
    st_hex(id, 0xca11, 4);
    ASSERT_STR_EQ(list.items[0].identifier, id);
    q.offset = 1;
    q.limit = 1;
    ASSERT_OK(p2p_store_list(store, &q, &list, NULL));
    ASSERT_EQ(list.count, 1);
    st_hex(id, 0xca11, 3);
    ASSERT_STR_EQ(list.items[0].identifier, id);
    q.function = NULL;
    q.status = P2P_CALL_RUNNING;
    q.offset = 0;
    ASSERT_OK(p2p_store_list(store, &q, &list, NULL));
    ASSERT_EQ(list.count, 1);
    ASSERT_EQ(list.items[0].status, P2P_CALL_RUNNING);
    p2p_call_list_cleanup(&list);
}

static void test_expire(void) {
    p2p_store_free(store);
    open_fresh("expire.db", 3, 1000);
    char token[P2P_STORE_TOKEN_LEN + 1], blob[P2P_STORE_ID_LEN + 1], id[P2P_STORE_ID_LEN + 1];
    st_hex(blob, 0xb10b, 0x90);
    int64_t t0 = st_clock(NULL);
    const char *blobs[] = {blob};
    st_hex(id, 0xca11, 90);
    p2p_store_new_call in = {
        .identifier = id, .function = FN, .args = "{}", .blobs = blobs, .nblobs = 1};
    ASSERT_OK(p2p_store_create(store, &in, NULL, NULL, NULL));
    st_create(store, FN, 91, true);
    st_advance(500);
    st_create(store, FN, 92, false);
    claim(91, token);
    p2p_call call;
    p2p_call_init(&call);
    get(90, &call);
    ASSERT_EQ(call.expires_ms, t0 + 1000);
    p2p_call_cleanup(&call);
    size_t deleted = 9;
    p2p_store_hashes orphans;
    p2p_store_hashes_init(&orphans);
    ASSERT_OK(p2p_store_expire(store, t0 + 999, 0, &deleted, &orphans, NULL));
    ASSERT_EQ(deleted, 0);
    /* Past everyone's expiry: the running call stays, the others go. */
    ASSERT_OK(p2p_store_expire(store, t0 + 1, 1, &deleted, &orphans, NULL));
    ASSERT_EQ(deleted, 0);
    ASSERT_OK(p2p_store_expire(store, t0 + 100000, 1, &deleted, &orphans, NULL));
    ASSERT_EQ(deleted, 1); /* the limit */
    ASSERT_EQ(orphans.count, 1);
    ASSERT_STR_EQ(orphans.items[0], blob);
    ASSERT_OK(p2p_store_expire(store, t0 + 100000, 0, &deleted, &orphans, NULL));
    ASSERT_EQ(deleted, 1);
    ASSERT_EQ(status_of(91), P2P_CALL_RUNNING);
    p2p_error err;
    ASSERT_EQ(p2p_store_get(store, id, &call, &err), P2P_ENOTFOUND);
    p2p_store_hashes_cleanup(&orphans);
}

typedef struct seen_changes {
    int count;
    int deleted;
    uint64_t last_version;
    p2p_call_status last_status;
} seen_changes;

static void on_change(void *ctx, const p2p_store_change *change) {
    seen_changes *seen = ctx;
    seen->count++;
    seen->deleted += change->deleted;
    seen->last_version = change->version;
    seen->last_status = change->status;
    ASSERT_STR_EQ(change->function, FN);
    ASSERT_EQ(strlen(change->identifier), P2P_STORE_ID_LEN);
}

static void test_on_change(void) {
    p2p_store_free(store);
    seen_changes seen = {0};
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    opts.on_change = on_change;
    opts.on_change_ctx = &seen;
    store = st_open(dir, "hook.db", &opts);
    char id[P2P_STORE_ID_LEN + 1], token[P2P_STORE_TOKEN_LEN + 1];
    st_hex(id, 0xca11, 100);
    st_create(store, FN, 100, true);
    ASSERT_EQ(seen.count, 1);
    ASSERT_EQ(seen.last_status, P2P_CALL_QUEUED);
    claim(100, token);
    ASSERT_EQ(seen.count, 2);
    ASSERT_EQ(seen.last_version, 2);
    ASSERT_EQ(p2p_store_renew(store, id, "33333333333333333333333333333333", NULL, NULL),
              P2P_ECONFLICT);
    ASSERT_EQ(seen.count, 2); /* refused: nothing to report */
    ASSERT_OK(p2p_store_delete(store, id, NULL, NULL));
    ASSERT_EQ(seen.count, 3);
    ASSERT_EQ(seen.deleted, 1);
}

/* Locations each backend refuses, and data that outlives the handle. */
static void test_open_locations(void) {
    p2p_store *other = NULL;
    p2p_error err;
    ASSERT_EQ(p2p_store_open("mongodb://127.0.0.1/bad.name", NULL, &other, &err), P2P_EINVAL);
    ASSERT_STR_CONTAINS(err.msg, "MongoDB");
    ASSERT_EQ(p2p_store_open("", NULL, &other, &err), P2P_EINVAL);
    p2p_store_options opts;
    st_options(&opts, P2P_STORE_SYNC_NORMAL);
    opts.max_attempts = 0;
    ASSERT_EQ(p2p_store_open(st_mongo() ? "mongodb://127.0.0.1:1/x" : "sqlite:/nonexistent/x.db",
                             &opts, &other, &err),
              P2P_EINVAL);
    ASSERT_TRUE(other == NULL);
    char path[1024];
    if (st_mongo()) {
        ASSERT_EQ(p2p_store_open("mongodb://", NULL, &other, &err), P2P_EINVAL);
        ASSERT_EQ(p2p_store_open("mongodb://127.0.0.1:1/bad.name", NULL, &other, &err), P2P_EINVAL);
        ASSERT_TRUE(other == NULL);
        st_location(dir, "persist", path, sizeof(path));
    } else {
        /* "sqlite:" prefix, a missing directory created. */
        snprintf(path, sizeof(path), "sqlite:%s/sub/dir/persist.db", dir);
    }
    st_options(&opts, P2P_STORE_SYNC_FULL);
    ASSERT_OK(p2p_store_open(path, &opts, &other, &err));
    ASSERT_STR_EQ(p2p_store_backend(other), st_mongo() ? "mongodb" : "sqlite");
    st_create(other, FN, 7, true);
    p2p_store_free(other);
    ASSERT_OK(p2p_store_open(path, &opts, &other, &err));
    char id[P2P_STORE_ID_LEN + 1];
    st_hex(id, 0xca11, 7);
    p2p_call call;
    p2p_call_init(&call);
    ASSERT_OK(p2p_store_get(other, id, &call, NULL));
    ASSERT_EQ(call.status, P2P_CALL_QUEUED);
    p2p_call_cleanup(&call);
    p2p_store_stats stats;
    p2p_store_get_stats(other, &stats);
    ASSERT_EQ(stats.writes, 0);
    ASSERT_EQ(stats.reads, 1);
    p2p_store_free(other);
    p2p_store_free(NULL);
}

int main(void) {
    st_make_dir(dir, sizeof(dir), "test_store");
    open_fresh("calls.db", 3, 0);
    TEST_RUN(test_names);
    TEST_RUN(test_create_idempotent);
    TEST_RUN(test_validation);
    TEST_RUN(test_make_available);
    TEST_RUN(test_claim);
    TEST_RUN(test_lease_operations);
    TEST_RUN(test_fail);
    TEST_RUN(test_terminate);
    TEST_RUN(test_lease_expiry);
    TEST_RUN(test_attempts_limit);
    TEST_RUN(test_release);
    TEST_RUN(test_versions);
    TEST_RUN(test_delete_orphans);
    TEST_RUN(test_restart_and_checkpoints);
    TEST_RUN(test_count_and_list);
    TEST_RUN(test_expire);
    TEST_RUN(test_on_change);
    TEST_RUN(test_open_locations);
    p2p_store_free(store);
    st_remove_dir(dir);
    return st_exit_status();
}
