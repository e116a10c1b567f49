/* Progress from the function (p2p_progress_hook in the child) to the broker,
 * watched from outside with pull_update long-polls (since=version):
 * - it arrives in order (never goes back) and ends at 100 with the call done;
 * - several intermediate values arrive while the call runs;
 * - the worker throttles it: 300 reports in 3 s do not become 300 updates
 *   (the call's version counts every change, renewals included);
 * - two calls at once (--concurrency 2) each get their own progress. */
#include "worker_fixture.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static broker B;

typedef struct seen {
    double values[4096];
    int n;
    int distinct_mid; /* distinct values strictly between 0 and 100 */
    long long first_running_version;
    long long last_version;
} seen;

static bool collect(const json_t *call, void *ctx) {
    seen *s = ctx;
    const char *status = wf_str(call, "status");
    ASSERT_TRUE(status != NULL);
    double p = wf_num(call, "progress", -1);
    ASSERT_TRUE(p >= 0 && p <= 100);
    if (s->n > 0 && p < s->values[s->n - 1])
        TEST_FAIL_("progress went back from %g to %g (status %s)", s->values[s->n - 1], p, status);
    if (p > 0 && p < 100 && (s->n == 0 || p != s->values[s->n - 1]))
        s->distinct_mid++;
    if (s->n < 4096)
        s->values[s->n++] = p;
    if (strcmp(status, "running") == 0 && s->first_running_version == 0)
        s->first_running_version = wf_int(call, "version", -1);
    s->last_version = wf_int(call, "version", -1);
    return strcmp(status, "running") != 0 && strcmp(status, "queued") != 0;
}

static void print_seen(const char *what, const seen *s) {
    fprintf(stderr, "%s: %d states seen, progress", what, s->n);
    for (int i = 0; i < s->n && i < 40; i++)
        fprintf(stderr, " %.4g", s->values[i]);
    fprintf(stderr, "%s; versions %lld..%lld\n", s->n > 40 ? " ..." : "", s->first_running_version,
            s->last_version);
}

static void test_progress_in_order_to_100(void) {
    worker w;
    worker_start_for(&w, "wprog_w", &B, &(worker_config){.concurrency = 1});
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = json_pack("{s:f, s:i}", "seconds", 3.0, "steps", 300);
    wf_push(&B, WF_SLOW, args, id);
    json_decref(args);
    static seen s;
    memset(&s, 0, sizeof(s));
    json_t *call = wf_watch(&B, WF_SLOW, id, 60000, collect, &s);
    print_seen("3 s, 300 reports", &s);
    wf_expect_status(call, "done");
    ASSERT_TRUE(wf_num(call, "progress", -1) == 100.0);
    ASSERT_EQ(wf_output_int(call, "done"), 300);
    json_decref(call);
    /* Several values on the way, not just the end. */
    ASSERT_GE(s.distinct_mid, 3);
    /* Throttled: a few updates per second (say at most 10), plus renewals,
     * claim and completion; 300 unthrottled reports would be 300 versions. */
    ASSERT_GT(s.first_running_version, 0);
    long long updates = s.last_version - s.first_running_version;
    fprintf(stderr, "versions from claim to done: %lld\n", updates);
    ASSERT_LE(updates, 3 * 10 + 3 * 5 + 10);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
}

typedef struct watch_job {
    char id[P2P_HASH_HEX_LEN + 1];
    seen s;
    json_t *last;
} watch_job;

static void *watch_thread(void *arg) {
    watch_job *j = arg;
    j->last = wf_watch(&B, WF_SLOW, j->id, 60000, collect, &j->s);
    return NULL;
}

static void test_two_calls_at_once(void) {
    worker w;
    worker_start_for(&w, "wprog_two", &B, &(worker_config){.concurrency = 2});
    static watch_job jobs[2];
    memset(jobs, 0, sizeof(jobs));
    pthread_t threads[2];
    int64_t t0 = harness_now_ms();
    for (int i = 0; i < 2; i++) {
        json_t *args = json_pack("{s:f, s:i}", "seconds", 2.0 + i * 0.5, "steps", 20 + i);
        wf_push(&B, WF_SLOW, args, jobs[i].id);
        json_decref(args);
    }
    for (int i = 0; i < 2; i++)
        ASSERT_OK(pthread_create(&threads[i], NULL, watch_thread, &jobs[i]));
    for (int i = 0; i < 2; i++)
        ASSERT_OK(pthread_join(threads[i], NULL));
    long took = (long)(harness_now_ms() - t0);
    for (int i = 0; i < 2; i++) {
        print_seen(i ? "second call" : "first call", &jobs[i].s);
        wf_expect_status(jobs[i].last, "done");
        ASSERT_EQ(wf_output_int(jobs[i].last, "done"), 20 + i);
        ASSERT_GE(jobs[i].s.distinct_mid, 2);
        json_decref(jobs[i].last);
    }
    /* Side by side: both in well under 2 + 2.5 s run one after the other. */
    fprintf(stderr, "two calls of 2 s and 2.5 s with --concurrency 2: %ld ms\n", took);
    ASSERT_LT(took, 4300);
    worker_stop(&w, 30000);
    worker_cleanup(&w);
}

int main(void) {
    wf_broker_init(&B, "wprog_broker", NULL);
    broker_start(&B);
    TEST_RUN(test_progress_in_order_to_100);
    TEST_RUN(test_two_calls_at_once);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
