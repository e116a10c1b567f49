/* Calls through the client library, against a real broker and worker:
 * - two clients with different cache paths make the same call at the same
 *   time: the function runs once (broker claims and creations), both get the
 *   result, and each cache then answers it;
 * - one client used by several threads at once: every answer right, a call
 *   shared by the threads created once;
 * - every value type comes back typed, bit for bit (a UTF-8 string, -0.0,
 *   INT64_MIN after a wrap), from the broker and again from the cache;
 * - the progress callback and getter follow the long-polls; the upload
 *   callback counts the bytes of a file argument to its size;
 * - an "in flight" cache entry sends a second client on the same cache to the
 *   broker that has the call, even when another broker comes first in its
 *   list (that broker never sees the call);
 * - a timed-out wait says P2P_ETIMEDOUT, the call goes on and a later wait
 *   gets it; a wait holds a long-poll instead of polling on a sleep (the
 *   broker's request count stays flat while nothing changes). */
#include "client_fixture.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static broker B;
static worker W;
static char DIR_[HARNESS_PATH_MAX];

/* ---- two clients, one call ---- */

typedef struct racer {
    p2p_client *c;
    pthread_barrier_t *start;
    double seconds;
    int64_t steps;
    int64_t result;
    char id[P2P_HASH_HEX_LEN + 1];
} racer;

static void *race(void *arg) {
    racer *r = arg;
    p2p_value args[2];
    cf_args_slow(args, r->seconds, r->steps);
    pthread_barrier_wait(r->start);
    p2p_future *f = cf_submit(r->c, WF_SLOW, args, NULL);
    snprintf(r->id, sizeof(r->id), "%s", p2p_future_identifier(f));
    r->result = cf_get(f, 1)[0].as.i64;
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    return NULL;
}

static void test_two_clients_same_call_runs_once(void) {
    char cache_a[HARNESS_PATH_MAX], cache_b[HARNESS_PATH_MAX];
    cf_path(cache_a, DIR_, "two_a");
    cf_path(cache_b, DIR_, "two_b");
    p2p_client *ca = cf_client_for(&B, cache_a), *cb = cf_client_for(&B, cache_b);
    double created0 = cf_metric(&B, "p2prpc_calls_created_total");
    double claims0 = cf_metric(&B, "p2prpc_claims_total");
    pthread_barrier_t start;
    ASSERT_OK(pthread_barrier_init(&start, NULL, 2));
    racer ra = {.c = ca, .start = &start, .seconds = 1.5, .steps = 3};
    racer rb = {.c = cb, .start = &start, .seconds = 1.5, .steps = 3};
    pthread_t ta, tb;
    ASSERT_OK(pthread_create(&ta, NULL, race, &ra));
    ASSERT_OK(pthread_create(&tb, NULL, race, &rb));
    ASSERT_OK(pthread_join(ta, NULL));
    ASSERT_OK(pthread_join(tb, NULL));
    pthread_barrier_destroy(&start);
    ASSERT_EQ(ra.result, 3);
    ASSERT_EQ(rb.result, 3);
    ASSERT_STR_EQ(ra.id, rb.id);
    /* The function ran once: one call created, one claim. */
    ASSERT_EQ(cf_metric(&B, "p2prpc_calls_created_total") - created0, 1);
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, 1);
    json_t *call = wf_pull(&B, WF_SLOW, ra.id);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    p2p_client_stats sa, sb;
    p2p_client_get_stats(ca, &sa);
    p2p_client_get_stats(cb, &sb);
    ASSERT_EQ(sa.calls_created + sb.calls_created, 1);
    ASSERT_EQ(sa.calls_attached + sb.calls_attached, 1);
    ASSERT_EQ(sa.cache_hits + sb.cache_hits, 0);

    /* Each cache now holds the answer. */
    p2p_client *clients[2] = {ca, cb};
    for (int i = 0; i < 2; i++) {
        p2p_value args[2];
        cf_args_slow(args, 1.5, 3);
        p2p_future *f = cf_submit(clients[i], WF_SLOW, args, NULL);
        ASSERT_TRUE(p2p_future_cached(f));
        ASSERT_EQ(cf_get(f, 1)[0].as.i64, 3);
        p2p_future_free(f);
        p2p_value_list_cleanup(args, 2);
    }
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, 1);
    p2p_client_free(ca);
    p2p_client_free(cb);
}

/* ---- one client, many threads ---- */

#define N_THREADS 4
#define N_PER_THREAD 25

typedef struct shared_run {
    p2p_client *c;
    pthread_barrier_t *start;
    int index;
    int wrong;
} shared_run;

static void *many(void *arg) {
    shared_run *s = arg;
    pthread_barrier_wait(s->start);
    p2p_future *fs[N_PER_THREAD + 1];
    p2p_value args[N_PER_THREAD + 1][2];
    /* Submit everything first, then collect: futures live side by side. */
    for (int i = 0; i < N_PER_THREAD; i++) {
        cf_args_add(args[i], 1000 * s->index + i, 500000);
        fs[i] = cf_submit(s->c, WF_ADD, args[i], NULL);
    }
    cf_args_add(args[N_PER_THREAD], 31337, 31337);
    fs[N_PER_THREAD] = cf_submit(s->c, WF_ADD, args[N_PER_THREAD], NULL);
    for (int i = 0; i <= N_PER_THREAD; i++) {
        int64_t want = i < N_PER_THREAD ? 1000 * s->index + i + 500000 : 62674;
        if (cf_get(fs[i], 1)[0].as.i64 != want)
            s->wrong++;
        p2p_future_free(fs[i]);
        p2p_value_list_cleanup(args[i], 2);
    }
    return NULL;
}

static void test_one_client_many_threads(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "threads");
    p2p_client *c = cf_client_for(&B, cache);
    double claims0 = cf_metric(&B, "p2prpc_claims_total");
    pthread_barrier_t start;
    ASSERT_OK(pthread_barrier_init(&start, NULL, N_THREADS));
    shared_run runs[N_THREADS];
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        runs[i] = (shared_run){.c = c, .start = &start, .index = i};
        ASSERT_OK(pthread_create(&t[i], NULL, many, &runs[i]));
    }
    for (int i = 0; i < N_THREADS; i++) {
        ASSERT_OK(pthread_join(t[i], NULL));
        ASSERT_EQ(runs[i].wrong, 0);
    }
    pthread_barrier_destroy(&start);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    fprintf(stderr, "threads: created %llu attached %llu hits %llu\n",
            (unsigned long long)st.calls_created, (unsigned long long)st.calls_attached,
            (unsigned long long)st.cache_hits);
    ASSERT_EQ(st.calls_created, N_THREADS * N_PER_THREAD + 1);
    ASSERT_EQ(st.calls_created + st.calls_attached + st.cache_hits, N_THREADS * (N_PER_THREAD + 1));
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, N_THREADS * N_PER_THREAD + 1);
    p2p_client_free(c);
}

/* ---- typed values ---- */

static void expect_typed(const p2p_value *out, const char *text, double x, bool flag) {
    ASSERT_EQ(out[0].type, P2P_TYPE_STRING);
    ASSERT_STR_EQ(out[0].as.str, text);
    ASSERT_EQ(out[1].type, P2P_TYPE_DOUBLE);
    ASSERT_MEM_EQ(&out[1].as.f64, &x, sizeof(double)); /* bit for bit: -0.0 is not 0.0 */
    ASSERT_EQ(out[2].type, P2P_TYPE_BOOL);
    ASSERT_EQ(out[2].as.boolean, flag);
}

static void test_typed_values(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "typed");
    static const char text[] = "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\" \\ tab\t";
    static const char want[] = "h\xc3\xa9llo \xe2\x9c\x93 \"quoted\" \\ tab\t!";
    const double xs[2] = {1.25, 0.0};
    const double outs[2] = {-2.5, -0.0};
    for (int round = 0; round < 2; round++) {
        p2p_client *c = cf_client_for(&B, cache);
        for (int i = 0; i < 2; i++) {
            p2p_value args[3];
            for (int k = 0; k < 3; k++)
                p2p_value_init(&args[k]);
            ASSERT_OK(p2p_value_set_string(&args[0], text, NULL));
            ASSERT_OK(p2p_value_set_double(&args[1], xs[i], NULL));
            p2p_value_set_bool(&args[2], i == 0);
            p2p_future *f = cf_submit(c, WF_TYPED, args, NULL);
            ASSERT_EQ(p2p_future_cached(f), round == 1);
            expect_typed(cf_get(f, 3), want, outs[i], i != 0);
            p2p_future_free(f);
            p2p_value_list_cleanup(args, 3);
        }
        p2p_value add[2];
        cf_args_add(add, INT64_MAX, 1);
        p2p_future *f = cf_submit(c, WF_ADD, add, NULL);
        ASSERT_EQ(p2p_future_cached(f), round == 1);
        ASSERT_TRUE(cf_get(f, 1)[0].as.i64 == INT64_MIN);
        p2p_future_free(f);
        p2p_value_list_cleanup(add, 2);
        p2p_client_free(c);
    }
}

/* ---- progress and upload callbacks ---- */

typedef struct progress_log {
    int calls;
    double last;
    int backwards;
    int out_of_range;
    const p2p_future *future;
    int wrong_future;
} progress_log;

static void on_progress(const p2p_future *f, double percent, void *ctx) {
    progress_log *p = ctx;
    if (p->future != NULL && f != p->future)
        p->wrong_future++;
    if (percent < 0 || percent > 100)
        p->out_of_range++;
    if (percent < p->last)
        p->backwards++;
    p->last = percent;
    p->calls++;
}

typedef struct upload_log {
    int calls;
    int64_t last_sent;
    int64_t total;
    int backwards;
    char input[32];
} upload_log;

static void on_upload(const char *input, int64_t sent, int64_t total, void *ctx) {
    upload_log *u = ctx;
    if (sent < u->last_sent)
        u->backwards++;
    u->last_sent = sent;
    u->total = total;
    snprintf(u->input, sizeof(u->input), "%s", input);
    u->calls++;
}

static void test_progress_callback_and_getter(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "progress");
    p2p_client *c = cf_client_for(&B, cache);

    progress_log pl = {0};
    p2p_call_options co = {.on_progress = on_progress, .progress_ctx = &pl};
    p2p_value args[2];
    cf_args_slow(args, 3.0, 6);
    p2p_future *f = cf_submit(c, WF_SLOW, args, &co);
    pl.future = f;
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 6);
    fprintf(stderr, "progress: %d callbacks, last %g\n", pl.calls, pl.last);
    ASSERT_GE(pl.calls, 1);
    ASSERT_EQ(pl.backwards + pl.out_of_range + pl.wrong_future, 0);
    ASSERT_TRUE(p2p_future_progress(f) == 100.0);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);

    /* Progress seen while the call runs, from the getter. */
    cf_args_slow(args, 4.0, 4);
    f = cf_submit(c, WF_SLOW, args, NULL);
    double seen = 0;
    int rc = P2P_ETIMEDOUT;
    for (int i = 0; i < 200 && rc == P2P_ETIMEDOUT; i++) {
        rc = p2p_future_wait(f, 200, NULL);
        double p = p2p_future_progress(f);
        if (rc == P2P_ETIMEDOUT && p > 0 && p < 100)
            seen = p;
    }
    ASSERT_OK(rc);
    fprintf(stderr, "progress seen while running: %g\n", seen);
    ASSERT_TRUE(seen > 0 && seen < 100);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);

    p2p_client_free(c);
}

static void test_upload_callback(void) {
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "upload");
    cf_path(input, DIR_, "upload.bin");
    p2p_client *c = cf_client_for(&B, cache);
    /* Upload progress of a 3 MiB file argument. */
    size_t size = 3 * 1024 * 1024 + 11;
    cf_write_random(input, size, 40);
    upload_log ul = {0};
    p2p_call_options cu = {.on_upload = on_upload, .upload_ctx = &ul};
    p2p_value copy[2];
    cf_args_copy(copy, input, 0);
    p2p_future *f = cf_submit(c, WF_COPY, copy, &cu);
    fprintf(stderr, "upload: %d callbacks, %lld of %lld\n", ul.calls, (long long)ul.last_sent,
            (long long)ul.total);
    ASSERT_GE(ul.calls, 1);
    ASSERT_EQ(ul.backwards, 0);
    ASSERT_EQ(ul.total, (int64_t)size);
    ASSERT_EQ(ul.last_sent, (int64_t)size);
    ASSERT_STR_EQ(ul.input, "input");
    cf_expect_xor_of(cf_get(f, 2)[0].as.file.path, input, 0);
    p2p_future_free(f);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.bytes_uploaded, size);

    /* The blob is on the broker now: the same file in another call is not
     * uploaded again. */
    ul = (upload_log){0};
    p2p_value copy2[2];
    cf_args_copy(copy2, input, 9);
    f = cf_submit(c, WF_COPY, copy2, &cu);
    cf_expect_xor_of(cf_get(f, 2)[0].as.file.path, input, 9);
    p2p_future_free(f);
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.bytes_uploaded, size);
    p2p_value_list_cleanup(copy, 2);
    p2p_value_list_cleanup(copy2, 2);
    p2p_client_free(c);
}

/* ---- an in-flight entry names the broker ---- */

static void test_in_flight_entry_names_the_broker(void) {
    broker other; /* first in the second client's list; up, but not where the call is */
    cf_broker_init(&other, "ccalls_other", NULL, &B);
    broker_start(&other);
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "inflight");
    p2p_client *c1 = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_slow(args, 2.0, 2);
    p2p_future *f1 = cf_submit(c1, WF_SLOW, args, NULL);
    const char *urls[] = {other.url, B.url};
    p2p_client_options o;
    cf_options(&o, urls, 2, B.secret_path, cache);
    p2p_client *c2 = cf_client(&o);
    double created0 = cf_metric(&B, "p2prpc_calls_created_total");
    p2p_future *f2 = cf_submit(c2, WF_SLOW, args, NULL);
    CF_EXPECT_BROKER(f2, B.url);
    ASSERT_FALSE(p2p_future_cached(f2));
    ASSERT_EQ(cf_get(f2, 1)[0].as.i64, 2);
    ASSERT_EQ(cf_get(f1, 1)[0].as.i64, 2);
    ASSERT_EQ(cf_metric(&B, "p2prpc_calls_created_total") - created0, 0);
    ASSERT_EQ(cf_metric(&other, "p2prpc_calls_created_total"), 0);
    ASSERT_EQ(cf_calls_total(&other, WF_SLOW), 0);
    p2p_client_stats st;
    p2p_client_get_stats(c2, &st);
    ASSERT_EQ(st.calls_attached, 1);
    ASSERT_EQ(st.calls_created, 0);
    p2p_future_free(f2);
    p2p_future_free(f1);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c2);
    p2p_client_free(c1);
    broker_cleanup(&other);
}

/* ---- timeouts, and no polling ---- */

static void test_wait_timeout_then_done(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "timeout");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_slow(args, 6.0, 3); /* long enough for a loaded machine */
    p2p_future *f = cf_submit(c, WF_SLOW, args, NULL);
    p2p_error err = {0};
    int64_t t0 = harness_now_ms();
    int rc = p2p_future_wait(f, 0, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ETIMEDOUT, NULL);
    int64_t t1 = harness_now_ms();
    rc = p2p_future_wait(f, 500, &err);
    int64_t t2 = harness_now_ms();
    CF_EXPECT_ERROR(rc, &err, P2P_ETIMEDOUT, NULL);
    fprintf(stderr, "wait(0) %lld ms, wait(500) %lld ms\n", (long long)(t1 - t0),
            (long long)(t2 - t1));
    ASSERT_LT(t1 - t0, 2000);
    ASSERT_GE(t2 - t1, 450);
    ASSERT_LT(t2 - t1, 5000);
    p2p_call_status s = p2p_future_status(f);
    ASSERT_TRUE(s == P2P_CALL_QUEUED || s == P2P_CALL_RUNNING);
    const p2p_value *out = NULL;
    size_t n = 0;
    rc = p2p_future_get(f, 100, &out, &n, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ETIMEDOUT, NULL);
    /* A timed-out wait may be repeated: the call went on. */
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 3);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_wait_is_a_long_poll(void) {
    /* A broker without any worker: the call stays queued, and nothing but
     * the client talks to the broker. */
    broker idle;
    cf_broker_init(&idle, "ccalls_idle", NULL, &B);
    broker_start(&idle);
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "idle");
    p2p_client *c = cf_client_for(&idle, cache);
    p2p_value args[2];
    cf_args_add(args, 5, 6);
    p2p_future *f = cf_submit(c, WF_ADD, args, NULL);
    const char *name = "p2prpc_http_request_duration_seconds_count";
    double before = cf_metric(&idle, name);
    p2p_error err = {0};
    int rc = p2p_future_wait(f, 3000, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ETIMEDOUT, NULL);
    double requests = cf_metric(&idle, name) - before;
    /* One long-poll (maybe cut into a few) plus our metrics read; a client
     * polling on a 100 ms sleep would have made 30. */
    fprintf(stderr, "requests during a 3 s wait: %g\n", requests);
    ASSERT_LE(requests, 6);
    ASSERT_EQ(p2p_future_status(f), P2P_CALL_QUEUED);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    broker_cleanup(&idle);
}

int main(void) {
    cf_broker_init(&B, "ccalls_b", NULL, NULL);
    broker_start(&B);
    worker_start_for(&W, "ccalls_w", &B, &(worker_config){.concurrency = 4});
    p2p_error err;
    if (harness_scratch_dir("ccalls_c", DIR_, sizeof(DIR_), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_two_clients_same_call_runs_once);
    TEST_RUN(test_one_client_many_threads);
    TEST_RUN(test_typed_values);
    TEST_RUN(test_progress_callback_and_getter);
    TEST_RUN(test_upload_callback);
    TEST_RUN(test_in_flight_entry_names_the_broker);
    TEST_RUN(test_wait_timeout_then_done);
    TEST_RUN(test_wait_is_a_long_poll);
    worker_stop(&W, 30000);
    worker_cleanup(&W);
    broker_cleanup(&B);
    if (harness_rmtree(DIR_, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
