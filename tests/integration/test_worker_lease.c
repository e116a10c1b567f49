/* Leases through real workers, with a broker of --lease-seconds 2 and workers
 * renewing every 0.3 s:
 * - a worker killed with SIGKILL in the middle of a 10-second call: its child
 *   dies with it (no orphan keeps computing), the lease runs out, a second
 *   worker runs the call to the end, and the call is done once (two claims in
 *   all, nothing changes after done);
 * - a call that checkpoints: worker 2 resumes from worker 1's checkpoint,
 *   which the function's `started` output proves;
 * - a worker stalled (SIGSTOP) past its lease: once it runs again its push is
 *   refused, it stops its child, and the other worker's run completes;
 * - a long call whose function reports nothing for longer than the lease
 *   keeps its lease through the worker's heartbeats (one claim). */
#include "worker_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static broker B;
static const worker_config fast_renew = {.concurrency = 1, .lease_renew = "0.3", .grace = "1"};

/* The child of worker `w` that runs call `id`: exactly one. */
static size_t call_children(worker *w, const char *id, pid_t *pids, size_t max) {
    size_t n = wf_call_children(w, id, pids, max);
    if (n != 1)
        TEST_FAIL_("worker %d runs call %.12s in %zu child processes, not 1", (int)worker_pid(w),
                   id, n);
    fprintf(stderr, "  worker %d: call %.12s in child %d\n", (int)worker_pid(w), id, (int)pids[0]);
    /* It carries the worker's tag, so wf_assert_no_orphans sees it wherever
     * it is reparented. */
    pid_t tagged[64];
    size_t t = wf_tagged(w, tagged, 64);
    bool found = false;
    for (size_t i = 0; i < t; i++)
        found = found || tagged[i] == pids[0];
    ASSERT_TRUE(found);
    return n;
}

/* Waits `ms` for the call to change; asserts it does not. */
static void expect_no_change(const char *id, wf_fn f, long long version, int seconds) {
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/%s/pull_update?identifier=%s&since=%lld&wait=%d",
             wf_name(f), id, version, seconds);
    harness_reply r;
    harness_get(B.client, B.url, path, (seconds + 30) * 1000L, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(harness_reply_int(&r, "version", -1), version);
    harness_reply_cleanup(&r);
}

static void test_killed_worker_call_completes_elsewhere(void) {
    worker w1, w2;
    worker_start_for(&w1, "wlease_k1", &B, &fast_renew);
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 10.0, "steps", 20);
    wf_push(&B, WF_SLOW, args, id);
    json_decref(args);
    json_decref(wf_await_progress(&B, WF_SLOW, id, 5, 30000));
    pid_t kids[64];
    size_t n = call_children(&w1, id, kids, 64);

    /* Worker 2 is polling before worker 1 dies: it gets the call only once
     * the lease has run out. */
    worker_start_for(&w2, "wlease_k2", &B, &fast_renew);
    int64_t killed = harness_now_ms();
    worker_kill(&w1);
    wf_await_gone(kids, n, 5000);
    fprintf(stderr, "worker 1 killed; its %zu child(ren) gone within %lld ms\n", n,
            (long long)(harness_now_ms() - killed));
    wf_assert_no_orphans(&w1, 5000);

    json_t *call = wf_await_status(&B, WF_SLOW, id, "done|failed|terminated", 90000);
    fprintf(stderr, "done %lld ms after the kill\n", (long long)(harness_now_ms() - killed));
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "done"), 20);
    ASSERT_EQ(wf_int(call, "attempts", -1), 2);
    long long version = wf_int(call, "version", -1);
    json_decref(call);
    /* Done once: two claims in all, and nothing touches the call afterwards. */
    char *metrics = fx_metrics_text(&B);
    ASSERT_TRUE(fx_metric(metrics, "p2prpc_claims_total", NULL) == 2);
    ASSERT_TRUE(fx_metric(metrics, "p2prpc_lease_requeued_total", NULL) == 1);
    free(metrics);
    expect_no_change(id, WF_SLOW, version, 2);

    worker_stop(&w2, 30000);
    wf_assert_no_orphans(&w2, 5000);
    worker_cleanup(&w1);
    worker_cleanup(&w2);
}

static void test_checkpoint_resumes_on_another_worker(void) {
    worker w1, w2;
    worker_start_for(&w1, "wlease_c1", &B, &fast_renew);
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:i, s:f}", "steps", 20, "step_seconds", 0.3);
    wf_push(&B, WF_RESUME, args, id);
    json_decref(args);
    /* Progress is reported after each step's checkpoint is saved. */
    json_decref(wf_await_progress(&B, WF_RESUME, id, 25, 60000));
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/%s/checkpoint?identifier=%s&name=state",
             wf_name(WF_RESUME), id);
    harness_reply r;
    harness_get(B.client, B.url, path, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    fprintf(stderr, "checkpoint before the kill: %s\n", r.body);
    harness_reply_cleanup(&r);

    pid_t kids[64];
    size_t n = call_children(&w1, id, kids, 64);
    worker_start_for(&w2, "wlease_c2", &B, &fast_renew);
    worker_kill(&w1);
    wf_await_gone(kids, n, 5000);

    json_t *call = wf_await_status(&B, WF_RESUME, id, "done|failed|terminated", 90000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "done"), 20);
    long long started = wf_output_int(call, "started");
    fprintf(stderr, "worker 2 started at step %lld of 20\n", started);
    ASSERT_GE(started, 5);
    ASSERT_LT(started, 20);
    ASSERT_EQ(wf_int(call, "attempts", -1), 2);
    json_decref(call);

    worker_stop(&w2, 30000);
    wf_assert_no_orphans(&w2, 5000);
    worker_cleanup(&w1);
    worker_cleanup(&w2);
}

static bool attempts_at_least_2(const json_t *call, void *ctx) {
    (void)ctx;
    return wf_int(call, "attempts", 0) >= 2;
}

/* A worker that stalls (SIGSTOP) past its lease and comes back: its next push
 * is refused as stale, so it stops its child and reports nothing; the other
 * worker's run is the one that counts, and the stalled worker goes on. */
static void test_stalled_worker_drops_its_stale_call(void) {
    worker w1, w2;
    worker_start_for(&w1, "wlease_s1", &B, &fast_renew);
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 8.0, "steps", 16);
    wf_push(&B, WF_SLOW, args, id);
    json_decref(args);
    json_decref(wf_await_progress(&B, WF_SLOW, id, 5, 30000));
    pid_t kids[64];
    size_t n = call_children(&w1, id, kids, 64);
    worker_start_for(&w2, "wlease_s2", &B, &fast_renew);

    ASSERT_OK(harness_proc_signal(w1.proc, SIGSTOP, NULL));
    json_t *call = wf_watch(&B, WF_SLOW, id, 30000, attempts_at_least_2, NULL);
    wf_expect_status(call, "running");
    json_decref(call);
    int64_t resumed = harness_now_ms();
    ASSERT_OK(harness_proc_signal(w1.proc, SIGCONT, NULL));
    /* Its first renewal after the stall is refused: the child goes. */
    wf_await_gone(kids, n, 10000);
    fprintf(stderr, "stalled worker: stale child gone %lld ms after SIGCONT\n",
            (long long)(harness_now_ms() - resumed));

    call = wf_await_status(&B, WF_SLOW, id, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_int(call, "attempts", -1), 2);
    ASSERT_EQ(wf_output_int(call, "done"), 16);
    json_decref(call);

    /* Worker 1 is still a working worker. */
    worker_stop(&w2, 30000);
    ASSERT_TRUE(harness_proc_running(w1.proc));
    args = fx_add_args(5, 5);
    wf_push(&B, WF_ADD, args, id);
    json_decref(args);
    call = wf_await_status(&B, WF_ADD, id, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), 10);
    json_decref(call);
    worker_stop(&w1, 30000);
    wf_assert_no_orphans(&w1, 5000);
    wf_assert_no_orphans(&w2, 5000);
    worker_cleanup(&w1);
    worker_cleanup(&w2);
}

static void test_silent_call_keeps_its_lease(void) {
    worker w;
    worker_start_for(&w, "wlease_silent", &B, &fast_renew);
    char id[P2P_HASH_HEX_LEN + 1];
    /* One step: no progress at all for 5 s, 2.5 lease lengths. */
    json_t *args = json_pack("{s:f, s:i}", "seconds", 5.0, "steps", 1);
    wf_push(&B, WF_SLOW, args, id);
    json_decref(args);
    json_t *call = wf_await_status(&B, WF_SLOW, id, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
}

int main(void) {
    broker_config cfg = {.lease_seconds = 2, .max_attempts = 5};
    wf_broker_init(&B, "wlease_broker", &cfg);
    broker_start(&B);
    TEST_RUN(test_killed_worker_call_completes_elsewhere);
    TEST_RUN(test_checkpoint_resumes_on_another_worker);
    TEST_RUN(test_silent_call_keeps_its_lease);
    TEST_RUN(test_stalled_worker_drops_its_stale_call);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
