/* A worker's capacity and its shutdown:
 * - can_do_work: while the test app's busy file exists the worker claims
 *   nothing (the call stays queued); once it is gone the call is done;
 * - SIGTERM with a call that ends within the grace period: the call is done,
 *   then the worker exits 0;
 * - SIGTERM with a call that would run long past the grace period: the call
 *   is released, queued again at once (not after the 60 s lease), its child
 *   is gone, the worker exits 0, and another worker takes the call;
 * - SIGTERM on an idle worker: exit 0 at once. */
#include "worker_fixture.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static broker B;

static void test_busy_worker_claims_nothing(void) {
    worker w;
    worker_init(&w, "wshut_busy", B.secret_path, &(worker_config){.concurrency = 1});
    char busy[HARNESS_PATH_MAX + 16];
    snprintf(busy, sizeof(busy), "%s/busy", w.dir);
    ASSERT_OK(harness_write_file(busy, "1", 1, NULL));
    w.cfg.busy_file = busy;
    worker_discover(&w, (const char *[]){B.url, NULL});
    worker_start(&w);

    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(11, 31);
    wf_push(&B, WF_ADD, args, id);
    json_decref(args);
    json_t *call = wf_pull(&B, WF_ADD, id);
    long long version = wf_int(call, "version", -1);
    json_decref(call);
    /* Nothing happens to the call for 3 s (the absence of an event: a fixed
     * long-poll is the only way to see it). */
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s&since=%lld&wait=3",
             wf_name(WF_ADD), id, version);
    harness_reply r;
    harness_get(B.client, B.url, path, 33000, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "queued");
    ASSERT_EQ(harness_reply_int(&r, "version", -1), version);
    harness_reply_cleanup(&r);

    ASSERT_OK(unlink(busy));
    int64_t t0 = harness_now_ms();
    call = wf_await_status(&B, WF_ADD, id, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), 42);
    json_decref(call);
    fprintf(stderr, "busy file removed: call done %lld ms later\n",
            (long long)(harness_now_ms() - t0));
    worker_stop(&w, 30000);
    worker_cleanup(&w);
}

static void test_sigterm_lets_a_short_call_finish(void) {
    worker w;
    worker_start_for(&w, "wshut_finish", &B, &(worker_config){.concurrency = 1, .grace = "10"});
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 2.0, "steps", 4);
    wf_push(&B, WF_SLOW, args, id);
    json_decref(args);
    json_decref(wf_await_progress(&B, WF_SLOW, id, 25, 30000));
    long took = worker_stop(&w, 30000);
    json_t *call = wf_pull(&B, WF_SLOW, id);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "done"), 4);
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    /* It waited for the call (about 1.5 s left), not for the whole grace. */
    ASSERT_LT(took, 9000);
    wf_assert_no_orphans(&w, 5000);
    worker_cleanup(&w);
}

static void test_sigterm_releases_a_long_call(void) {
    worker w;
    worker_start_for(&w, "wshut_release", &B, &(worker_config){.concurrency = 1, .grace = "1"});
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 60.0, "steps", 60);
    wf_push(&B, WF_SLOW, args, id);
    json_decref(args);
    json_decref(wf_await_progress(&B, WF_SLOW, id, 1, 30000));
    pid_t kids[64];
    ASSERT_EQ(wf_call_children(&w, id, kids, 64), 1);
    /* The call's child and the spare ones: all must go with the worker. */
    size_t n = wf_children(worker_pid(&w), kids, 64);

    int64_t t0 = harness_now_ms();
    long took = worker_stop(&w, 30000);
    ASSERT_LT(took, 10000);
    wf_await_gone(kids, n, 5000);
    wf_assert_no_orphans(&w, 5000);
    /* Released: queued at once, not 60 s later when the lease would end. */
    json_t *call = wf_await_status(&B, WF_SLOW, id, "queued|done|failed|terminated", 10000);
    long requeued = (long)(harness_now_ms() - t0);
    wf_expect_status(call, "queued");
    fprintf(stderr,
            "released by SIGTERM: worker exit in %ld ms, queued after %ld ms, "
            "attempts %lld\n",
            took, requeued, wf_int(call, "attempts", -1));
    ASSERT_LT(requeued, 15000);
    ASSERT_TRUE(wf_str(call, "error") == NULL);
    /* A release gives the claim back: it is not an attempt (protocol.md). */
    ASSERT_EQ(wf_int(call, "attempts", -1), 0);
    json_decref(call);
    char *metrics = fx_metrics_text(&B);
    ASSERT_TRUE(fx_metric(metrics, "p2prpc_lease_requeued_total", NULL) == 0);
    free(metrics);

    /* Another worker takes it. */
    worker w2;
    worker_start_for(&w2, "wshut_release2", &B, &(worker_config){.concurrency = 1, .grace = "1"});
    call = wf_await_progress(&B, WF_SLOW, id, 1, 60000);
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    json_decref(wf_on_id(&B, WF_SLOW, "terminate", id));
    call = wf_await_status(&B, WF_SLOW, id, "done|failed|terminated", 30000);
    wf_expect_status(call, "terminated");
    json_decref(call);
    worker_stop(&w2, 30000);
    wf_assert_no_orphans(&w2, 5000);
    worker_cleanup(&w);
    worker_cleanup(&w2);
}

static void test_sigterm_idle(void) {
    worker w;
    worker_start_for(&w, "wshut_idle", &B, &(worker_config){.poll_wait = "30"});
    /* Parked in a 30 s long-poll: the stop must not wait for it. */
    long took = worker_stop(&w, 30000);
    ASSERT_LT(took, 5000);
    wf_assert_no_orphans(&w, 5000);
    worker_cleanup(&w);
}

int main(void) {
    /* A long lease, so that only a release can requeue a call quickly. */
    wf_broker_init(&B, "wshut_broker", &(broker_config){.lease_seconds = 60});
    broker_start(&B);
    TEST_RUN(test_busy_worker_claims_nothing);
    TEST_RUN(test_sigterm_idle);
    TEST_RUN(test_sigterm_lets_a_short_call_finish);
    TEST_RUN(test_sigterm_releases_a_long_call);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
