/* Scale-out over MongoDB: two broker processes share one database, clients
 * push 300 calls split across both, and two workers each pull from both.
 *
 * - every call completes, with the right result;
 * - no call runs twice: each run of p2prpc_add is one line in a run log
 *   (worker_testapp's P2PRPC_TESTAPP_RUN_LOG), and no lease expired (both
 *   brokers' p2prpc_lease_requeued_total stay 0), so one line per call;
 * - each result is readable from either broker, and a long-poll on one broker
 *   learns of work done through the other (every call is awaited on the
 *   broker it was not pushed to);
 * - both brokers handed out work, and each worker ran calls it got from each
 *   broker (its log says "running call ... from URL").
 *
 * Then blobs across brokers (GridFS): an input uploaded to one broker is the
 * argument of a call pushed to the other; the worker's output, uploaded to
 * whichever broker it claimed from, downloads byte for byte from both. A
 * 48 MiB blob PUT to one broker and fetched from the other raises neither
 * broker's peak memory by more than 16 MiB: GridFS is streamed both ways
 * (not checked under ASan, whose allocator keeps freed memory).
 *
 * First, without workers, the latency of the cross-broker wake-ups: a
 * search_work parked on broker B answers a call pushed to broker A, and a
 * pull_update parked on A answers the completion pushed to B, each within
 * 5 s (generous for a loaded machine; the backend re-checks about every
 * 500 ms, docs/store.md). The latencies are printed. And 20 pull_updates
 * parked on B for 3 s on a call nobody changes cost B at most two store
 * reads each (the check before parking, the one at the deadline): the
 * re-check across brokers is not a per-waiter poll.
 *
 * On jongodb (the npm test server) concurrent findAndModify is not atomic, so
 * two brokers can hand out the same call: there everything else is asserted
 * and "no call runs twice" is skipped (exit 77) when a call did run twice.
 * Against a real MongoDB (P2PRPC_TEST_MONGO_URI) every check runs. */
#include "mongo_fixture.h"
#include "worker_fixture.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CALLS 300
#define B_ARG 7000

static mongo_fixture M;
static broker B[2];
static char ids[CALLS][P2P_HASH_HEX_LEN + 1];

/* Broker k pushes the calls i with i % 2 == k. */
static void *pusher_main(void *arg) {
    int k = *(const int *)arg;
    for (int i = k; i < CALLS; i += 2) {
        json_t *args = fx_add_args(i, B_ARG);
        wf_push(&B[k], WF_ADD, args, ids[i]);
        json_decref(args);
    }
    return NULL;
}

/* Both brokers on the fixture's database, with one secret as a deployment. */
static void start_brokers(void) {
    broker_config cfg = {.lease_seconds = 60};
    for (int k = 0; k < 2; k++) {
        wf_broker_init(&B[k], k == 0 ? "mmb_broker_a" : "mmb_broker_b", &cfg);
        snprintf(B[k].store, sizeof(B[k].store), "%s", M.uri);
    }
    ASSERT_OK(harness_write_file(B[1].secret_path, B[0].secret, B[0].secret_len, NULL));
    memcpy(B[1].secret, B[0].secret, B[0].secret_len);
    B[1].secret_len = B[0].secret_len;
    for (int k = 0; k < 2; k++)
        broker_start(&B[k]);
}

/* Counts the lines "add I B_ARG PPID" of the run log into runs[I], and the
 * runs of each worker (by its pid) into per_worker. */
static void count_runs(const char *path, int runs[CALLS], const worker w[2], int per_worker[2]) {
    memset(runs, 0, sizeof(int) * CALLS);
    per_worker[0] = per_worker[1] = 0;
    FILE *f = fopen(path, "r");
    ASSERT_TRUE(f != NULL);
    char line[128];
    for (int n = 0; n < 100 * CALLS && fgets(line, sizeof(line), f) != NULL; n++) {
        long long a = -1, b = -1;
        long ppid = -1;
        if (sscanf(line, "add %lld %lld %ld", &a, &b, &ppid) != 3)
            TEST_FAIL_("run log line \"%s\"", line);
        if (b == B_ARG && a >= 0 && a < CALLS)
            runs[a]++;
        for (int k = 0; k < 2; k++)
            per_worker[k] += ppid == (long)worker_pid(&w[k]);
    }
    fclose(f);
}

/* The call is done with sum i + B_ARG on broker `b`; returns its attempts
 * (claims that counted: 1 unless it was handed out twice). */
static long long expect_result(broker *b, int i) {
    json_t *call = wf_pull(b, WF_ADD, ids[i]);
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_output_int(call, "sum"), i + B_ARG);
    long long attempts = wf_int(call, "attempts", -1);
    json_decref(call);
    return attempts;
}

static double metric(broker *b, const char *name) {
    char *text = fx_metrics_text(b);
    double v = fx_metric(text, name, NULL);
    free(text);
    return v;
}

typedef struct parked {
    broker *b;
    const char *id;  /* pull_update: the call; NULL: search_work */
    long long since; /* pull_update: the version seen */
    harness_reply r;
} parked;

/* One long-poll of up to 20 s on p->b, with a client of its own. */
static void *park_main(void *arg) {
    parked *p = arg;
    p2p_http_client *c = broker_client(p->b, 60000);
    if (p->id == NULL)
        fx_claim(p->b, c, FX_ADD, 20, "mmb-waiter", &p->r);
    else
        fx_pull(p->b, c, FX_ADD, p->id, p->since, 20, &p->r);
    p2p_http_client_free(c);
    return NULL;
}

/* Parks `p` on its broker and returns once the broker counts it waiting. */
static void park(parked *p, pthread_t *t) {
    ASSERT_EQ(pthread_create(t, NULL, park_main, p), 0);
    fx_await_metric(p->b, "p2prpc_longpoll_waiting", 1, 30000);
}

static void test_cross_broker_wakeups(void) {
    /* A claim parked on B gets the call pushed to A. */
    parked claim = {.b = &B[1]};
    pthread_t t;
    park(&claim, &t);
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(-5, 5);
    int64_t pushed = harness_now_ms();
    wf_push(&B[0], WF_ADD, args, id);
    json_decref(args);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    HARNESS_EXPECT(&claim.r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&claim.r, "identifier"), id);
    int64_t claim_ms = claim.r.end_ms - pushed;
    char token[64];
    snprintf(token, sizeof(token), "%s", harness_reply_str(&claim.r, "lease_token"));
    harness_reply_cleanup(&claim.r);

    /* A pull_update parked on A learns of the completion pushed to B. */
    json_t *now = wf_pull(&B[0], WF_ADD, id);
    wf_expect_status(now, "running");
    parked pull = {.b = &B[0], .id = id, .since = wf_int(now, "version", -1)};
    json_decref(now);
    park(&pull, &t);
    harness_reply r;
    int64_t completed = harness_now_ms();
    fx_worker_push(&B[1], NULL, FX_ADD, id, token, json_pack("{s:{s:i}}", "outputs", "sum", 0), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    HARNESS_EXPECT(&pull.r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&pull.r, "status"), "done");
    int64_t pull_ms = pull.r.end_ms - completed;
    harness_reply_cleanup(&pull.r);
    fprintf(stderr,
            "cross-broker wake-ups: search_work on B got A's push in %lld ms, "
            "pull_update on A saw B's completion in %lld ms\n",
            (long long)claim_ms, (long long)pull_ms);
    ASSERT_LT(claim_ms, 5000);
    ASSERT_LT(pull_ms, 5000);
}

/* Two workers, each pulling from both brokers (in the other order). */
static void start_workers(worker w[2]) {
    for (int k = 0; k < 2; k++) {
        worker_init(&w[k], k == 0 ? "mmb_worker_1" : "mmb_worker_2", B[0].secret_path,
                    &(worker_config){.concurrency = 4, .log_level = "info"});
        worker_discover(&w[k], (const char *[]){B[k].url, B[1 - k].url, NULL});
        worker_start(&w[k]);
        ASSERT_EQ(w[k].brokers, 2);
    }
}

/* Pushes the CALLS calls, half to each broker from a thread each, and awaits
 * each one on the broker it was not pushed to (cross-broker long-polls). */
static void push_and_await_all(void) {
    int64_t t0 = harness_now_ms();
    pthread_t pushers[2];
    int which[2] = {0, 1};
    for (int k = 0; k < 2; k++)
        ASSERT_EQ(pthread_create(&pushers[k], NULL, pusher_main, &which[k]), 0);
    for (int k = 0; k < 2; k++)
        ASSERT_EQ(pthread_join(pushers[k], NULL), 0);
    int64_t pushed = harness_now_ms();
    for (int i = 0; i < CALLS; i++) {
        json_t *call =
            wf_await_status(&B[1 - i % 2], WF_ADD, ids[i], "done|failed|terminated", 120000);
        wf_expect_status(call, "done");
        json_decref(call);
    }
    fprintf(stderr, "%d calls pushed in %lld ms, all done after %lld ms\n", CALLS,
            (long long)(pushed - t0), (long long)(harness_now_ms() - t0));
}

/* Every result, read from either broker, is the same; returns how many
 * calls counted more than one claim. */
static int check_results_on_both(void) {
    int reclaimed = 0;
    for (int i = 0; i < CALLS; i++) {
        long long attempts = expect_result(&B[0], i);
        ASSERT_EQ(expect_result(&B[1], i), attempts);
        ASSERT_GE(attempts, 1);
        reclaimed += attempts > 1;
    }
    return reclaimed;
}

/* Lines of worker `w`'s log that say it ran a call of p2prpc_add it got
 * from broker `b`. */
static int runs_from(const worker *w, const broker *b) {
    char from[HARNESS_URL_MAX + 32];
    snprintf(from, sizeof(from), " of p2prpc_add from %s/ ", b->url);
    FILE *f = fopen(w->log, "r");
    ASSERT_TRUE(f != NULL);
    char line[1024];
    int n = 0;
    for (int i = 0; i < 1000000 && fgets(line, sizeof(line), f) != NULL; i++)
        n += strstr(line, "worker: running call ") != NULL && strstr(line, from) != NULL;
    fclose(f);
    return n;
}

/* Both brokers handed out work, each worker ran calls from each broker, no
 * lease expired; returns the claims of both. */
static double check_sharing(const worker w[2], const int per_worker[2]) {
    double claims[2];
    for (int k = 0; k < 2; k++) {
        claims[k] = metric(&B[k], "p2prpc_claims_total");
        ASSERT_EQ(metric(&B[k], "p2prpc_lease_requeued_total"), 0);
    }
    fprintf(stderr, "claims by broker: %.0f + %.0f; runs by worker %d: %d, %d: %d\n", claims[0],
            claims[1], (int)worker_pid(&w[0]), per_worker[0], (int)worker_pid(&w[1]),
            per_worker[1]);
    ASSERT_GT(per_worker[0], 0);
    ASSERT_GT(per_worker[1], 0);
    ASSERT_GT(claims[0], 0);
    ASSERT_GT(claims[1], 0);
    for (int k = 0; k < 2; k++) {
        int from_a = runs_from(&w[k], &B[0]), from_b = runs_from(&w[k], &B[1]);
        fprintf(stderr, "worker %d ran %d calls from broker A, %d from broker B\n", k + 1, from_a,
                from_b);
        ASSERT_GT(from_a, 0);
        ASSERT_GT(from_b, 0);
    }
    return claims[0] + claims[1];
}

static void test_two_brokers_one_database(void) {
    char run_log[HARNESS_PATH_MAX];
    snprintf(run_log, sizeof(run_log), "%s/runs.log", B[0].dir);
    ASSERT_EQ(setenv("P2PRPC_TESTAPP_RUN_LOG", run_log, 1), 0); /* the workers inherit it */
    worker w[2];
    start_workers(w);
    push_and_await_all();
    int reclaimed = check_results_on_both();
    static int runs[CALLS];
    int per_worker[2];
    count_runs(run_log, runs, w, per_worker);
    double claims = check_sharing(w, per_worker);
    for (int k = 0; k < 2; k++) {
        worker_stop(&w[k], 30000);
        worker_cleanup(&w[k]);
        broker_stop(&B[k]);
        broker_cleanup(&B[k]);
    }
    int twice = 0, never = 0, first_twice = -1;
    for (int i = 0; i < CALLS; i++) {
        never += runs[i] == 0;
        twice += runs[i] > 1;
        if (runs[i] > 1 && first_twice < 0)
            first_twice = i;
    }
    /* Claims can outnumber runs: a worker gives back (release) what it
     * claimed beyond its free slots, and a release does not count. */
    fprintf(stderr,
            "runs: %d calls ran more than once, %d never, %d claimed more than once "
            "(claims %.0f)\n",
            twice, never, reclaimed, claims);
    ASSERT_EQ(never, 0);
    if ((twice > 0 || reclaimed > 0) && M.jongodb)
        mongo_fixture_skip_jongodb(&M, "no call runs twice",
                                   "its concurrent findAndModify is not atomic, so two brokers "
                                   "handed out the same call");
    if (twice > 0)
        TEST_FAIL_("%d calls ran more than once without a lease expiry (call %d: %d runs)", twice,
                   first_twice, runs[first_twice]);
    ASSERT_EQ(reclaimed, 0); /* no call was handed out twice */
}

#define PARKED 20

static void *park_quiet_main(void *arg) {
    parked *p = arg;
    p2p_http_client *c = broker_client(p->b, 60000);
    fx_pull(p->b, c, FX_ADD, p->id, p->since, 3, &p->r);
    p2p_http_client_free(c);
    return NULL;
}

static void test_parked_waiters_do_not_poll(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = fx_add_args(-7, 7);
    json_t *body = json_pack("{s:s, s:s, s:O}", "identifier", "", "fingerprint",
                             p2p_schema_fingerprint(wf_schema(WF_ADD)), "args", args);
    wf_call_id(WF_ADD, args, id);
    ASSERT_OK(json_object_set_new(body, "identifier", json_string(id)));
    harness_reply r;
    fx_post(&B[0], NULL, FX_ADD, "push_update", NULL, body, &r); /* pushed: nobody claims it */
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(body);
    json_decref(args);
    /* Past a few periods of B's watcher, which reports the new call once
     * (that would wake the waiters for one more check each). */
    struct timespec settle = {3, 0};
    nanosleep(&settle, NULL);
    /* What reading the metrics costs by itself (the calls gauge reads the
     * store), to take it out of the count. */
    double before = metric(&B[1], "p2prpc_store_reads_total");
    double reads0 = metric(&B[1], "p2prpc_store_reads_total");
    double overhead = reads0 - before;
    /* What the broker reads by itself over the same 3 s with nobody parked
     * (maintenance passes: expired leases, waiting pipeline calls), to take
     * it out of the count as well. */
    nanosleep(&settle, NULL);
    double idle_reads = metric(&B[1], "p2prpc_store_reads_total") - reads0 - overhead;
    reads0 = metric(&B[1], "p2prpc_store_reads_total");
    static parked p[PARKED];
    pthread_t t[PARKED];
    for (int i = 0; i < PARKED; i++) {
        p[i] = (parked){.b = &B[1], .id = id, .since = 1};
        ASSERT_EQ(pthread_create(&t[i], NULL, park_quiet_main, &p[i]), 0);
    }
    for (int i = 0; i < PARKED; i++) {
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
        HARNESS_EXPECT(&p[i].r, 200, NULL);
        ASSERT_STR_EQ(harness_reply_str(&p[i].r, "status"), "pushed");
        harness_reply_cleanup(&p[i].r);
    }
    double reads = metric(&B[1], "p2prpc_store_reads_total") - reads0 - overhead - idle_reads;
    fprintf(stderr,
            "%d pull_updates parked 3 s on broker B: %.0f store reads (%.0f more for the "
            "metrics, %.0f more that the broker makes in 3 s with nobody parked)\n",
            PARKED, reads, overhead, idle_reads);
    /* A re-check per waiter every watcher period would be ~6 reads each. */
    ASSERT_LE(reads, 2 * PARKED + 2);
}

/* `len` bytes that differ everywhere, from `seed` (caller frees). */
static unsigned char *blob_data(unsigned seed, size_t len) {
    unsigned char *data = malloc(len);
    ASSERT_TRUE(data != NULL);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(((i + seed) * 2654435761u) >> 13);
    return data;
}

/* GET blob `hash` from broker `b`: 200 with exactly `len` bytes of `want`. */
static void expect_blob(broker *b, const char *hash, const unsigned char *want, size_t len) {
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    harness_reply r;
    ASSERT_OK(harness_get(b->client, b->url, path, 60000, &r));
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(r.body_len, len);
    ASSERT_MEM_EQ(r.body, want, len);
    harness_reply_cleanup(&r);
}

/* The peak resident memory (VmHWM) of broker `b`, in KiB. */
static long peak_kib(const broker *b) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)harness_proc_pid(b->proc));
    FILE *f = fopen(path, "r");
    ASSERT_TRUE(f != NULL);
    long kib = -1;
    for (int i = 0; i < 200 && fgets(line, sizeof(line), f) != NULL; i++)
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    ASSERT_GT(kib, 0);
    return kib;
}

/* GET blob `hash` from broker `b` in 8 MiB Range requests (the client keeps
 * at most 16 MiB of a body in memory): 206 and exactly those bytes each. */
static void expect_blob_ranges(broker *b, const char *hash, const unsigned char *want, size_t len) {
    const size_t piece = 8u << 20;
    char path[128], range[96];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", hash);
    for (size_t at = 0; at < len; at += piece) {
        size_t end = at + piece < len ? at + piece : len;
        snprintf(range, sizeof(range), "Range: bytes=%zu-%zu", at, end - 1);
        const char *headers[] = {range, NULL};
        harness_reply r;
        ASSERT_OK(harness_request_headers(b->client, b->url, "GET", path, headers, NULL, NULL, 0,
                                          60000, &r));
        HARNESS_EXPECT(&r, 206, NULL);
        ASSERT_EQ(r.body_len, end - at);
        ASSERT_MEM_EQ(r.body, want + at, end - at);
        harness_reply_cleanup(&r);
    }
}

/* 48 MiB up to A, down from B, in constant memory on both brokers. */
static void big_blob_across(void) {
    const size_t len = 48u << 20;
    unsigned char *data = blob_data(4242, len);
    long peak[2] = {peak_kib(&B[0]), peak_kib(&B[1])};
    char hash[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    fx_blob_put(&B[0], NULL, data, len, hash, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    expect_blob_ranges(&B[1], hash, data, len);
    free(data);
    long grew[2] = {peak_kib(&B[0]) - peak[0], peak_kib(&B[1]) - peak[1]};
    fprintf(stderr, "48 MiB blob PUT to A, GET from B: peak memory +%ld KiB (A), +%ld KiB (B)\n",
            grew[0], grew[1]);
#if !defined(__SANITIZE_ADDRESS__)
    ASSERT_LT(grew[0], 16 * 1024);
    ASSERT_LT(grew[1], 16 * 1024);
#endif
}

static void test_blobs_across_brokers(void) {
    enum { COPIES = 6 };
    const size_t len = (1u << 20) + 777; /* several GridFS chunks */
    worker w;
    worker_init(&w, "mmb_worker_blobs", B[0].secret_path,
                &(worker_config){.concurrency = 2, .log_level = "info"});
    worker_discover(&w, (const char *[]){B[0].url, B[1].url, NULL});
    worker_start(&w);
    for (int k = 0; k < COPIES; k++) {
        broker *up = &B[k % 2], *other = &B[1 - k % 2];
        unsigned char *data = blob_data((unsigned)k, len);
        char in_hash[P2P_HASH_HEX_LEN + 1], id[P2P_HASH_HEX_LEN + 1];
        harness_reply r;
        fx_blob_put(up, NULL, data, len, in_hash, &r);
        HARNESS_EXPECT(&r, 201, NULL);
        harness_reply_cleanup(&r);
        expect_blob(other, in_hash, data, len);
        /* Pushed to the broker that did not receive the upload. */
        json_t *args = json_pack("{s:{s:s, s:I}, s:i}", "input", "hash", in_hash, "size",
                                 (json_int_t)len, "xor", k + 1);
        wf_push(other, WF_COPY, args, id);
        json_decref(args);
        json_t *call = wf_await_status(up, WF_COPY, id, "done|failed|terminated", 120000);
        wf_expect_status(call, "done");
        json_t *out = json_object_get(json_object_get(call, "outputs"), "output");
        const char *out_hash = json_string_value(json_object_get(out, "hash"));
        ASSERT_TRUE(out_hash != NULL);
        for (size_t i = 0; i < len; i++)
            data[i] ^= (unsigned char)(k + 1);
        char want_hash[P2P_HASH_HEX_LEN + 1];
        ASSERT_OK(p2p_hash_bytes_hex(data, len, want_hash, NULL));
        ASSERT_STR_EQ(out_hash, want_hash);
        expect_blob(&B[0], out_hash, data, len);
        expect_blob(&B[1], out_hash, data, len);
        json_decref(call);
        free(data);
    }
    fprintf(stderr,
            "%d copies of 1 MiB blobs across the two brokers: inputs and outputs "
            "served by both\n",
            COPIES);
    big_blob_across();
    worker_stop(&w, 30000);
    worker_cleanup(&w);
}

int main(void) {
    mongo_fixture_start(&M, "multi_broker");
    start_brokers();
    TEST_RUN(test_cross_broker_wakeups);
    TEST_RUN(test_parked_waiters_do_not_poll);
    TEST_RUN(test_blobs_across_brokers);
    TEST_RUN(test_two_brokers_one_database);
    mongo_fixture_cleanup(&M);
    return 0;
}
