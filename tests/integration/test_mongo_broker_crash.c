/* kill -9 of one of two brokers sharing a MongoDB database, mid-run: the
 * other finishes the work.
 *
 * Brokers A and B (--lease-seconds 3) share the fixture's database; two
 * workers pull from both. 120 calls of p2prpc_slow (0.3 s each, in steps
 * that report progress) are pushed, half to each broker. Once a third of them
 * are done, A gets SIGKILL. Then, through B alone:
 * - every call pushed to A before the kill (acknowledged 201) is there;
 * - every call ends done with its result, including the ones that were
 *   running through A: their worker can no longer renew through A, so their
 *   lease expires and B's maintenance queues them again (counted by B's
 *   p2prpc_lease_requeued_total);
 * - B still takes new work after the crash;
 * - blobs: an uploader PUTs 4 MiB blobs to A until it dies. Through B, every
 *   upload A acknowledged (201) is there whole, and every other one is either
 *   absent or whole: a blob cut by the crash is never served in part.
 * Nothing here depends on atomic concurrent claims, so it runs in full on
 * jongodb too. */
#include "mongo_fixture.h"
#include "worker_fixture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CALLS 120
#define SECONDS 0.3

static mongo_fixture M;
static broker B[2];
static char ids[CALLS][P2P_HASH_HEX_LEN + 1];

/* ---- blobs uploaded to A while it dies ---- */

#define BLOBS 32
#define BLOB_LEN (4u << 20)

static char blob_hash[BLOBS][P2P_HASH_HEX_LEN + 1];
static int blob_acked[BLOBS];
static atomic_int blobs_tried;

static void fill_blob(unsigned char *data, int k) {
    for (size_t i = 0; i < BLOB_LEN; i++)
        data[i] = (unsigned char)(((i + (size_t)k * 7919u) * 2654435761u) >> 11);
}

/* PUTs blob after blob to A until a request gets no answer (A died). */
static void *uploader_main(void *arg) {
    (void)arg;
    unsigned char *data = malloc(BLOB_LEN);
    ASSERT_TRUE(data != NULL);
    p2p_http_client *c = broker_client(&B[0], 30000);
    for (int k = 0; k < BLOBS; k++) {
        fill_blob(data, k);
        harness_reply r;
        fx_blob_put(&B[0], c, data, BLOB_LEN, blob_hash[k], &r);
        atomic_store(&blobs_tried, k + 1);
        bool answered = r.rc == 0;
        blob_acked[k] = answered && r.status == 201;
        harness_reply_cleanup(&r);
        if (!answered)
            break;
    }
    p2p_http_client_free(c);
    free(data);
    return NULL;
}

/* Through B: acknowledged blobs whole, the others absent or whole. */
static void check_blobs(void) {
    unsigned char *want = malloc(BLOB_LEN);
    ASSERT_TRUE(want != NULL);
    int acked = 0, absent = 0, whole = 0;
    for (int k = 0; k < atomic_load(&blobs_tried); k++) {
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/blobs/%s", blob_hash[k]);
        harness_reply r;
        ASSERT_OK(harness_get(B[1].client, B[1].url, path, 60000, &r));
        acked += blob_acked[k];
        if (r.status == 404 && !blob_acked[k]) {
            absent++;
        } else {
            HARNESS_EXPECT(&r, 200, NULL);
            fill_blob(want, k);
            ASSERT_EQ(r.body_len, BLOB_LEN);
            ASSERT_MEM_EQ(r.body, want, BLOB_LEN);
            whole++;
        }
        harness_reply_cleanup(&r);
    }
    fprintf(stderr, "blobs PUT to A: %d tried, %d acknowledged; through B %d whole, %d absent\n",
            atomic_load(&blobs_tried), acked, whole, absent);
    ASSERT_GT(acked, 0);
    free(want);
}

static json_t *slow_args(int i) {
    /* Distinct step counts make distinct calls. */
    json_t *args = json_pack("{s:f, s:i}", "seconds", SECONDS, "steps", 3 + i);
    ASSERT_TRUE(args != NULL);
    return args;
}

static void *pusher_main(void *arg) {
    int k = *(const int *)arg;
    for (int i = k; i < CALLS; i += 2) {
        json_t *args = slow_args(i);
        wf_push(&B[k], WF_SLOW, args, ids[i]);
        json_decref(args);
    }
    return NULL;
}

static double metric(broker *b, const char *name, const char *const *labels) {
    char *text = fx_metrics_text(b);
    double v = fx_metric(text, name, labels);
    free(text);
    return v;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded) until broker `b` counts at least `min` done calls of
 * p2prpc_slow, reading its metrics every 100 ms. */
static void await_done(broker *b, double min, long timeout_ms) {
    static const char *const labels[] = {"function=\"p2prpc_slow\"", "status=\"done\"", NULL};
    int64_t deadline = harness_now_ms() + timeout_ms;
    double done = 0;
    while ((done = metric(b, "p2prpc_calls", labels)) < min) {
        if (harness_now_ms() > deadline)
            TEST_FAIL_("only %.0f of %.0f calls done after %ld ms", done, min, timeout_ms);
        sleep_ms(100);
    }
}

/* Brokers A and B on the fixture's database with one secret, and two
 * workers that pull from both. */
static void start_all(worker w[2]) {
    broker_config cfg = {.lease_seconds = 3};
    for (int k = 0; k < 2; k++) {
        wf_broker_init(&B[k], k == 0 ? "mcr_broker_a" : "mcr_broker_b", &cfg);
        snprintf(B[k].store, sizeof(B[k].store), "%s", M.uri);
    }
    ASSERT_OK(harness_write_file(B[1].secret_path, B[0].secret, B[0].secret_len, NULL));
    memcpy(B[1].secret, B[0].secret, B[0].secret_len);
    B[1].secret_len = B[0].secret_len;
    for (int k = 0; k < 2; k++)
        broker_start(&B[k]);
    for (int k = 0; k < 2; k++) {
        worker_init(&w[k], k == 0 ? "mcr_worker_1" : "mcr_worker_2", B[0].secret_path,
                    &(worker_config){.concurrency = 3, .log_level = "info", .lease_renew = "1"});
        worker_discover(&w[k], (const char *[]){B[k].url, B[1 - k].url, NULL});
        worker_start(&w[k]);
    }
}

/* SIGKILL of A once a third of the calls are done, with work in flight. */
static int64_t kill_a_mid_run(void) {
    await_done(&B[1], CALLS / 3, 120000);
    static const char *const running[] = {"function=\"p2prpc_slow\"", "status=\"running\"", NULL};
    double running_at_kill = metric(&B[1], "p2prpc_calls", running);
    double a_claims = metric(&B[0], "p2prpc_claims_total", NULL);
    int64_t killed = harness_now_ms();
    broker_kill(&B[0]);
    fprintf(stderr, "broker A killed after %.0f claims, with %.0f calls running\n", a_claims,
            running_at_kill);
    /* Mid-run: A had handed out work, and work was in flight. */
    ASSERT_GT(a_claims, 0);
    ASSERT_GT(running_at_kill, 0);
    return killed;
}

/* Waits (bounded) until A acknowledged a first blob, so that the kill falls
 * among the uploads. */
static void await_first_blob(long timeout_ms) {
    int64_t deadline = harness_now_ms() + timeout_ms;
    while (atomic_load(&blobs_tried) < 2 && harness_now_ms() < deadline)
        sleep_ms(50);
    ASSERT_GE(atomic_load(&blobs_tried), 2);
}

static void test_kill_one_broker(void) {
    worker w[2];
    start_all(w);
    pthread_t pushers[2];
    int which[2] = {0, 1};
    for (int k = 0; k < 2; k++)
        ASSERT_EQ(pthread_create(&pushers[k], NULL, pusher_main, &which[k]), 0);
    for (int k = 0; k < 2; k++)
        ASSERT_EQ(pthread_join(pushers[k], NULL), 0);
    pthread_t uploader;
    ASSERT_EQ(pthread_create(&uploader, NULL, uploader_main, NULL), 0);
    await_first_blob(60000);
    int64_t killed = kill_a_mid_run();
    ASSERT_EQ(pthread_join(uploader, NULL), 0);
    check_blobs();

    /* B alone: every call, whichever broker took it, ends done. */
    for (int i = 0; i < CALLS; i++) {
        json_t *call = wf_await_status(&B[1], WF_SLOW, ids[i], "done|failed|terminated", 180000);
        wf_expect_status(call, "done");
        ASSERT_EQ(wf_output_int(call, "done"), 3 + i);
        json_decref(call);
    }
    double requeued = metric(&B[1], "p2prpc_lease_requeued_total", NULL);
    fprintf(stderr, "all %d calls done %lld ms after the kill; B requeued %.0f expired leases\n",
            CALLS, (long long)(harness_now_ms() - killed), requeued);

    /* New work after the crash, on B. */
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args = slow_args(CALLS + 1);
    wf_push(&B[1], WF_SLOW, args, id);
    json_decref(args);
    json_t *call = wf_await_status(&B[1], WF_SLOW, id, "done|failed|terminated", 60000);
    wf_expect_status(call, "done");
    json_decref(call);

    for (int k = 0; k < 2; k++) {
        worker_stop(&w[k], 30000);
        worker_cleanup(&w[k]);
    }
    broker_stop(&B[1]);
    for (int k = 0; k < 2; k++)
        broker_cleanup(&B[k]);
}

int main(void) {
    mongo_fixture_start(&M, "broker_crash");
    TEST_RUN(test_kill_one_broker);
    mongo_fixture_cleanup(&M);
    return 0;
}
