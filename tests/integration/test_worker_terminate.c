/* Terminating running calls through a real worker (--grace-seconds 1,
 * --lease-renew-seconds 0.3):
 * - a long call is asked to stop (POST terminate): the worker learns it in the
 *   reply to its next push, stops the child (SIGTERM) and reports the call
 *   terminated, well within the grace period;
 * - a function that ignores SIGTERM is killed once the grace period is over:
 *   terminated after about one second, not after its 60 s;
 * - a running call deleted under the worker: its child is stopped;
 * - no process of the call is left, and the same worker runs the next call. */
#include "worker_fixture.h"

#include <stdio.h>
#include <string.h>

static broker B;
static worker W;

/* Pushes `f(args)` (taken), waits until its child runs and returns the
 * child pids. */
static size_t start_long_call(wf_fn f, json_t *args, char id[P2P_HASH_HEX_LEN + 1], pid_t *kids,
                              size_t max) {
    wf_push(&B, f, args, id);
    json_decref(args);
    json_decref(wf_await_status(&B, f, id, "running", 30000));
    size_t n = 0;
    /* The claim comes before the child exists: wait for the child through the
     * first progress or heartbeat (a new version), bounded. */
    json_t *call = wf_pull(&B, f, id);
    long long v = wf_int(call, "version", -1);
    json_decref(call);
    for (int i = 0; i < 50 && n == 0; i++) {
        char path[512];
        snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s&since=%lld&wait=5",
                 wf_name(f), id, v);
        harness_reply r;
        harness_get(B.client, B.url, path, 35000, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        v = harness_reply_int(&r, "version", v);
        harness_reply_cleanup(&r);
        n = wf_call_children(&W, id, kids, max);
    }
    if (n == 0)
        TEST_FAIL_("no child process while call %.12s runs", id);
    return n;
}

/* POST terminate, then waits for the terminated status; returns the ms it
 * took. */
static long terminate_and_wait(wf_fn f, const char *id) {
    int64_t t0 = harness_now_ms();
    json_t *reply = wf_on_id(&B, f, "terminate", id);
    ASSERT_STR_EQ(wf_str(reply, "status"), "running");
    ASSERT_TRUE(json_is_true(json_object_get(reply, "terminate_requested")));
    json_decref(reply);
    json_t *call = wf_await_status(&B, f, id, "done|failed|terminated", 30000);
    long took = (long)(harness_now_ms() - t0);
    wf_expect_status(call, "terminated");
    json_decref(call);
    return took;
}

static void test_terminate_stops_the_child(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    pid_t kids[64];
    size_t n = start_long_call(WF_SLOW, json_pack("{s:f, s:i}", "seconds", 60.0, "steps", 600), id,
                               kids, 64);
    long took = terminate_and_wait(WF_SLOW, id);
    fprintf(stderr, "terminate of a 60 s call: terminated after %ld ms\n", took);
    /* Learnt within a renewal (0.3 s), stopped by SIGTERM at once: well inside
     * the 1 s grace plus slack for a loaded machine. */
    ASSERT_LT(took, 5000);
    wf_await_gone(kids, n, 5000);
    wf_assert_no_orphans(&W, 5000);
}

static void test_terminate_kills_after_the_grace_period(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    pid_t kids[64];
    size_t n = start_long_call(WF_STUBBORN, json_pack("{s:f}", "seconds", 60.0), id, kids, 64);
    long took = terminate_and_wait(WF_STUBBORN, id);
    fprintf(stderr, "terminate of a call that ignores SIGTERM: terminated after %ld ms\n", took);
    /* SIGTERM is ignored, so only SIGKILL after the 1 s grace ends it. */
    ASSERT_GE(took, 900);
    ASSERT_LT(took, 8000);
    wf_await_gone(kids, n, 5000);
    wf_assert_no_orphans(&W, 5000);
}

/* The worker runs p2prpc_add(a, 2). */
static void expect_add_works(long long a) {
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(a, 2);
    wf_push(&B, WF_ADD, args, id);
    json_decref(args);
    json_t *call = wf_await_status(&B, WF_ADD, id, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), a + 2);
    json_decref(call);
}

static void test_worker_carries_on(void) {
    expect_add_works(40);
}

/* A running call deleted under the worker: its next push gets 404, so it
 * stops the child; the call is gone and the worker goes on. */
static void test_delete_running_call(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    pid_t kids[64];
    size_t n = start_long_call(WF_SLOW, json_pack("{s:f, s:i}", "seconds", 60.0, "steps", 60), id,
                               kids, 64);
    int64_t t0 = harness_now_ms();
    json_t *reply = wf_on_id(&B, WF_SLOW, "delete", id);
    ASSERT_TRUE(json_is_true(json_object_get(reply, "deleted")));
    json_decref(reply);
    wf_await_gone(kids, n, 10000);
    fprintf(stderr, "deleted while running: child gone after %lld ms\n",
            (long long)(harness_now_ms() - t0));
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s", wf_name(WF_SLOW), id);
    harness_reply r;
    harness_get(B.client, B.url, path, 0, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    expect_add_works(44);
}

/* A terminate that arrives while the call is still queued never reaches a
 * worker: the call is terminated at once. */
static void test_terminate_before_claim(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 30.0, "steps", 3);
    wf_call_id(WF_SLOW, args, id);
    json_t *body = json_pack("{s:s, s:s, s:O}", "identifier", id, "fingerprint",
                             p2p_schema_fingerprint(wf_schema(WF_SLOW)), "args", args);
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/%s/push_update", wf_name(WF_SLOW));
    harness_reply r;
    harness_post_json(B.client, B.url, path, body, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(body);
    json_decref(args);
    json_t *reply = wf_on_id(&B, WF_SLOW, "terminate", id);
    ASSERT_STR_EQ(wf_str(reply, "status"), "terminated");
    json_decref(reply);
    expect_add_works(41);
}

int main(void) {
    wf_broker_init(&B, "wterm_broker", NULL);
    broker_start(&B);
    worker_start_for(&W, "wterm_worker", &B,
                     &(worker_config){.concurrency = 1, .lease_renew = "0.3", .grace = "1"});
    TEST_RUN(test_terminate_stops_the_child);
    TEST_RUN(test_worker_carries_on);
    TEST_RUN(test_terminate_kills_after_the_grace_period);
    TEST_RUN(test_terminate_before_claim);
    TEST_RUN(test_delete_running_call);
    expect_add_works(43);
    worker_stop(&W, 30000);
    wf_assert_no_orphans(&W, 5000);
    ASSERT_EQ(harness_count_files(W.work_dir, true), 0);
    worker_cleanup(&W);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
