/* The call state machine of DESIGN §3, transition by transition, over HTTP
 * against a real p2prpc-broker process:
 *
 *   pushed --execute--> queued --claim--> running --> done | failed | terminated
 *
 * plus terminate (queued and running), delete, idempotent creation, and
 * pull_update after every step: the status it reports and a version that
 * grows with every change and only then. */
#include "broker_fixture.h"

#include <string.h>
#include <time.h>

static broker B;

/* Wall-clock ms, to compare with the broker's lease_expires_ms. */
static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* pull_update: asserts the status and a version strictly above `*version`,
 * which it updates. */
static void expect_step(fx_fn f, const char *id, const char *status, long long *version) {
    long long v = fx_expect_status(&B, f, id, status);
    if (v <= *version)
        TEST_FAIL_("%s: version %lld did not grow past %lld", status, v, *version);
    *version = v;
}

/* search_work?wait=0: asserts one call was handed out and returns it (the
 * caller frees the reply). */
static void claim(fx_fn f, const char *want_id, harness_reply *r) {
    fx_claim(&B, NULL, f, 0, "00000000-0000-4000-8000-00000000abcd", r);
    HARNESS_EXPECT(r, 200, NULL);
    if (want_id != NULL)
        ASSERT_STR_EQ(harness_reply_str(r, "identifier"), want_id);
    ASSERT_STR_EQ(harness_reply_str(r, "function"), fx_name(f));
    const char *token = harness_reply_str(r, "lease_token");
    ASSERT_TRUE(token != NULL && strlen(token) >= 16);
    ASSERT_GT(harness_reply_int(r, "lease_expires_ms", 0), wall_ms() - 5000);
    ASSERT_GE(harness_reply_int(r, "attempts", 0), 1);
}

static void test_pushed_queued_running_done(void) {
    json_t *args = fx_add_args(2, 3);
    char id[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    long long version = 0;

    /* push (execute false): pushed, new. */
    fx_push(&B, NULL, FX_ADD, args, false, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), id);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "pushed");
    ASSERT_TRUE(json_is_true(json_object_get(r.json, "created")));
    ASSERT_GT(harness_reply_int(&r, "version", 0), 0);
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "pushed", &version);

    /* The same push again: 200, not created, nothing changed. */
    fx_push(&B, NULL, FX_ADD, args, false, id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_TRUE(json_is_false(json_object_get(r.json, "created")));
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "pushed");
    harness_reply_cleanup(&r);
    ASSERT_EQ(fx_expect_status(&B, FX_ADD, id, "pushed"), version);

    /* Nothing is queued yet: a worker finds no work. */
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 204, NULL);
    harness_reply_cleanup(&r);

    /* execute_function: queued; a second one changes nothing. */
    fx_on_id(&B, NULL, FX_ADD, "execute_function", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "queued");
    ASSERT_TRUE(json_is_true(json_object_get(r.json, "changed")));
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "queued", &version);
    fx_on_id(&B, NULL, FX_ADD, "execute_function", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_TRUE(json_is_false(json_object_get(r.json, "changed")));
    harness_reply_cleanup(&r);
    ASSERT_EQ(fx_expect_status(&B, FX_ADD, id, "queued"), version);

    /* search_work: running, with the arguments as pushed and a lease. */
    claim(FX_ADD, id, &r);
    ASSERT_TRUE(json_equal(json_object_get(r.json, "args"), args));
    ASSERT_EQ(harness_reply_int(&r, "attempts", 0), 1);
    char token[128];
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "running", &version);

    /* progress: renews the lease, no terminate request. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:i}", "progress", 40), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "running");
    ASSERT_TRUE(json_is_false(json_object_get(r.json, "terminate_requested")));
    ASSERT_GT(harness_reply_int(&r, "lease_expires_ms", 0), wall_ms() - 5000);
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "running", &version);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_EQ((int)json_number_value(json_object_get(r.json, "progress")), 40);
    ASSERT_EQ(harness_reply_int(&r, "attempts", 0), 1);
    harness_reply_cleanup(&r);

    /* A bare heartbeat is accepted too. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:b}", "heartbeat", 1), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "running");
    harness_reply_cleanup(&r);
    version = fx_expect_status(&B, FX_ADD, id, "running");

    /* outputs: done, and the outputs come back from pull_update. */
    json_t *outputs = json_pack("{s:I}", "sum", (json_int_t)5);
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:O}", "outputs", outputs), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "done");
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "done", &version);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_TRUE(json_equal(json_object_get(r.json, "outputs"), outputs));
    ASSERT_STR_EQ(harness_reply_str(&r, "function"), fx_name(FX_ADD));
    ASSERT_GT(harness_reply_int(&r, "created_ms", 0), 0);
    ASSERT_GE(harness_reply_int(&r, "updated_ms", 0), harness_reply_int(&r, "created_ms", 0));
    harness_reply_cleanup(&r);

    /* Finished: the worker's lease is over, nothing is left to claim, and a
     * new push of the same call returns the result, never overwriting it. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:i}", "progress", 90), &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 204, NULL);
    harness_reply_cleanup(&r);
    fx_push(&B, NULL, FX_ADD, args, true, id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "done");
    harness_reply_cleanup(&r);
    ASSERT_EQ(fx_expect_status(&B, FX_ADD, id, "done"), version);
    json_decref(outputs);
    json_decref(args);
}

static void test_push_execute_then_error(void) {
    json_t *args = fx_add_args(7, -1);
    char id[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    long long version = 0;
    /* execute folded into the push: queued at once. */
    fx_push(&B, NULL, FX_ADD, args, true, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "queued");
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "queued", &version);

    claim(FX_ADD, id, &r);
    char token[128];
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "running", &version);

    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:s}", "error", "disk full on gpu7"),
                   &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "failed");
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "failed", &version);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_STR_EQ(harness_reply_str(&r, "error"), "disk full on gpu7");
    ASSERT_TRUE(json_object_get(r.json, "outputs") == NULL ||
                json_is_null(json_object_get(r.json, "outputs")));
    harness_reply_cleanup(&r);

    /* A failed call cannot be executed again through execute_function. */
    fx_on_id(&B, NULL, FX_ADD, "execute_function", id, &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    ASSERT_EQ(fx_expect_status(&B, FX_ADD, id, "failed"), version);
    json_decref(args);
}

static void test_terminate_pushed_and_queued(void) {
    char pushed[P2P_HASH_HEX_LEN + 1], queued[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    json_t *a1 = fx_add_args(100, 1), *a2 = fx_add_args(100, 2);
    fx_push(&B, NULL, FX_ADD, a1, false, pushed, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    fx_push(&B, NULL, FX_ADD, a2, true, queued, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    long long vp = fx_expect_status(&B, FX_ADD, pushed, "pushed");
    long long vq = fx_expect_status(&B, FX_ADD, queued, "queued");

    fx_on_id(&B, NULL, FX_ADD, "terminate", pushed, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "terminated");
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "terminate", queued, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "terminated");
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, pushed, "terminated", &vp);
    expect_step(FX_ADD, queued, "terminated", &vq);

    /* A terminated call is never handed to a worker, and stays terminated. */
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 204, NULL);
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "terminate", queued, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "terminated");
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "execute_function", pushed, &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    json_decref(a1);
    json_decref(a2);
}

static void test_terminate_running(void) {
    char id[P2P_HASH_HEX_LEN + 1], token[128];
    harness_reply r;
    json_t *args = fx_add_args(200, 1);
    long long version = 0;
    fx_push(&B, NULL, FX_ADD, args, true, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    claim(FX_ADD, id, &r);
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "running", &version);

    /* Before the request, progress says nothing about termination. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:i}", "progress", 10), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_TRUE(json_is_false(json_object_get(r.json, "terminate_requested")));
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "running", &version);

    /* terminate on a running call: still running, with the request noted. */
    fx_on_id(&B, NULL, FX_ADD, "terminate", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "running");
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "running", &version);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_TRUE(json_is_true(json_object_get(r.json, "terminate_requested")));
    harness_reply_cleanup(&r);

    /* The worker learns it from the reply to its next progress push... */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:i}", "progress", 20), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_TRUE(json_is_true(json_object_get(r.json, "terminate_requested")));
    harness_reply_cleanup(&r);
    /* ...and from a heartbeat as well. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:b}", "heartbeat", 1), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_TRUE(json_is_true(json_object_get(r.json, "terminate_requested")));
    harness_reply_cleanup(&r);
    version = fx_expect_status(&B, FX_ADD, id, "running");

    /* The worker killed the function: terminated. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:b}", "terminated", 1), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "terminated");
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "terminated", &version);
    json_decref(args);
}

static void test_delete(void) {
    char done[P2P_HASH_HEX_LEN + 1], running[P2P_HASH_HEX_LEN + 1], token[128];
    harness_reply r;
    json_t *a1 = fx_add_args(300, 1), *a2 = fx_add_args(300, 2);
    fx_push(&B, NULL, FX_ADD, a1, true, done, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    claim(FX_ADD, done, &r);
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    fx_worker_push(&B, NULL, FX_ADD, done, token, json_pack("{s:{s:i}}", "outputs", "sum", 301),
                   &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);

    /* Delete a finished call: gone, 404 afterwards, distinct from pending. */
    fx_on_id(&B, NULL, FX_ADD, "delete", done, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), done);
    ASSERT_TRUE(json_is_true(json_object_get(r.json, "deleted")));
    ASSERT_EQ(harness_reply_int(&r, "blobs_removed", -1), 0);
    harness_reply_cleanup(&r);
    fx_pull(&B, NULL, FX_ADD, done, -1, -1, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "delete", done, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);

    /* Delete a running call: terminated then deleted; the worker's next push
     * finds no call. */
    fx_push(&B, NULL, FX_ADD, a2, true, running, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    claim(FX_ADD, running, &r);
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "delete", running, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_worker_push(&B, NULL, FX_ADD, running, token, json_pack("{s:i}", "progress", 50), &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);

    /* A deleted call can be pushed again from scratch. */
    fx_push(&B, NULL, FX_ADD, a1, false, done, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "pushed");
    harness_reply_cleanup(&r);
    json_decref(a1);
    json_decref(a2);
}

/* Restart (a route the core added: docs/protocol.md): a finished call runs
 * again from scratch; an unfinished one cannot be restarted. */
static void test_restart(void) {
    char id[P2P_HASH_HEX_LEN + 1], token[128];
    harness_reply r;
    json_t *args = fx_add_args(400, 1);
    long long version = 0;
    fx_push(&B, NULL, FX_ADD, args, false, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    /* pushed and queued are not finished. */
    fx_on_id(&B, NULL, FX_ADD, "restart", id, &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "execute_function", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "restart", id, &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);

    /* done -> restart -> queued, with outputs, attempts and progress cleared. */
    claim(FX_ADD, id, &r);
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "restart", id, &r); /* running: not finished either */
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:i}", "progress", 70), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:{s:i}}", "outputs", "sum", 401), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    version = fx_expect_status(&B, FX_ADD, id, "done");
    fx_on_id(&B, NULL, FX_ADD, "restart", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "queued");
    harness_reply_cleanup(&r);
    expect_step(FX_ADD, id, "queued", &version);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_EQ(harness_reply_int(&r, "attempts", -1), 0);
    ASSERT_EQ((int)json_number_value(json_object_get(r.json, "progress")), 0);
    ASSERT_TRUE(json_object_get(r.json, "outputs") == NULL ||
                json_is_null(json_object_get(r.json, "outputs")));
    harness_reply_cleanup(&r);
    /* The old lease is dead; the new claim is attempt 1 again. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:i}", "progress", 1), &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    claim(FX_ADD, id, &r);
    ASSERT_EQ(harness_reply_int(&r, "attempts", 0), 1);
    ASSERT_TRUE(strcmp(harness_reply_str(&r, "lease_token"), token) != 0);
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);

    /* failed and terminated restart too. */
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:s}", "error", "again"), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "restart", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "queued");
    ASSERT_TRUE(json_object_get(r.json, "error") == NULL ||
                json_is_null(json_object_get(r.json, "error")));
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "terminate", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "restart", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_expect_status(&B, FX_ADD, id, "queued");
    fx_on_id(&B, NULL, FX_ADD, "terminate", id, &r); /* leave the queue empty */
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "restart",
             "0123456789abcdef0123456789abcdef0123456789abcdef"
             "0123456789abcdef",
             &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    json_decref(args);
}

/* Calls of different functions never mix: a worker of one function does not
 * see the other's queue. */
static void test_functions_are_separate_queues(void) {
    json_t *args = json_pack("{s:s, s:f, s:b}", "text", "héllo", "scale", 0.5, "flag", 1);
    char id[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    fx_push(&B, NULL, FX_ECHO, args, true, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 204, NULL);
    harness_reply_cleanup(&r);
    /* pull_update under another function's route does not find it. */
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    claim(FX_ECHO, id, &r);
    ASSERT_TRUE(json_equal(json_object_get(r.json, "args"), args));
    harness_reply_cleanup(&r);
    json_decref(args);
}

int main(void) {
    broker_init(&B, "broker_state_machine", NULL);
    broker_start(&B);
    TEST_RUN(test_pushed_queued_running_done);
    TEST_RUN(test_push_execute_then_error);
    TEST_RUN(test_terminate_pushed_and_queued);
    TEST_RUN(test_terminate_running);
    TEST_RUN(test_delete);
    TEST_RUN(test_restart);
    TEST_RUN(test_functions_are_separate_queues);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
