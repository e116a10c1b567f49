/* SIGTERM and SIGINT: the broker exits 0 promptly, even with a long-poll
 * parked, and a restart on the same store and blob directory keeps every
 * call (in every status, with its version, outputs, error and lease) and
 * every blob. */
#include "broker_fixture.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

static broker B;

typedef struct call_ref {
    fx_fn f;
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *seen; /* pull_update before the restart */
} call_ref;

enum { C_PUSHED, C_QUEUED, C_RUNNING, C_DONE, C_FAILED, C_TERMINATED, C_FILE, C_COUNT };
static call_ref calls[C_COUNT];
static char running_token[128];
static char blob_hash[P2P_HASH_HEX_LEN + 1];
static const char blob_data[] = "the content of a video, pretend it is large";

static void push(int which, json_t *args, bool execute) {
    harness_reply r;
    fx_push(&B, NULL, calls[which].f, args, execute, calls[which].id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(args);
}

/* Claims the only queued call of FX_ADD and returns its token. */
static void claim_token(const char *id, char *token, size_t len) {
    harness_reply r;
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), id);
    snprintf(token, len, "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
}

static void finish(int which, json_t *update) {
    char token[128];
    claim_token(calls[which].id, token, sizeof(token));
    harness_reply r;
    fx_worker_push(&B, NULL, FX_ADD, calls[which].id, token, update, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
}

static void make_every_state(void) {
    for (int i = 0; i < C_COUNT; i++)
        calls[i].f = FX_ADD;
    calls[C_FILE].f = FX_ANALYZE;
    push(C_PUSHED, fx_add_args(1, 0), false);
    push(C_DONE, fx_add_args(4, 0), true);
    finish(C_DONE, json_pack("{s:{s:i}}", "outputs", "sum", 4));
    push(C_FAILED, fx_add_args(5, 0), true);
    finish(C_FAILED, json_pack("{s:s}", "error", "it broke"));
    push(C_RUNNING, fx_add_args(3, 0), true);
    claim_token(calls[C_RUNNING].id, running_token, sizeof(running_token));
    harness_reply r;
    fx_worker_push(&B, NULL, FX_ADD, calls[C_RUNNING].id, running_token,
                   json_pack("{s:f}", "progress", 62.5), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    push(C_TERMINATED, fx_add_args(6, 0), true);
    fx_on_id(&B, NULL, FX_ADD, "terminate", calls[C_TERMINATED].id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    push(C_QUEUED, fx_add_args(2, 0), true);

    fx_blob_put(&B, NULL, blob_data, sizeof(blob_data) - 1, blob_hash, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    push(C_FILE,
         json_pack("{s:{s:s, s:I}, s:I}", "video_handle", "hash", blob_hash, "size",
                   (json_int_t)(sizeof(blob_data) - 1), "arg2", (json_int_t)9),
         false);

    for (int i = 0; i < C_COUNT; i++) {
        fx_pull(&B, NULL, calls[i].f, calls[i].id, -1, -1, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        calls[i].seen = json_incref(r.json);
        harness_reply_cleanup(&r);
    }
}

static void *park_forever(void *arg) {
    (void)arg;
    p2p_http_client *c = broker_client(&B, 120000);
    harness_reply *r = calloc(1, sizeof(*r));
    ASSERT_TRUE(r != NULL);
    fx_claim(&B, c, FX_ECHO, 60, NULL, r);
    p2p_http_client_free(c);
    return r;
}

static void test_sigterm_with_a_parked_long_poll(void) {
    make_every_state();
    pthread_t t;
    ASSERT_OK(pthread_create(&t, NULL, park_forever, NULL));
    fx_await_metric(&B, "p2prpc_longpoll_waiting", 1, 20000);
    int64_t t0 = harness_now_ms();
    broker_stop(&B); /* asserts exit status 0 */
    int64_t took = harness_now_ms() - t0;
    fprintf(stderr, "SIGTERM to exit with one parked long-poll: %lld ms\n", (long long)took);
    ASSERT_LT(took, 15000);
    harness_reply *r = NULL;
    ASSERT_OK(pthread_join(t, (void **)&r));
    /* The parked worker got an answer or a closed connection, not its 60 s. */
    fprintf(stderr, "parked search_work ended after %lld ms: rc %d status %ld\n", (long long)r->ms,
            r->rc, r->status);
    ASSERT_LT(r->ms, 30000);
    harness_reply_cleanup(r);
    free(r);
}

static void test_restart_keeps_everything(void) {
    broker_start(&B);
    for (int i = 0; i < C_COUNT; i++) {
        harness_reply r;
        fx_pull(&B, NULL, calls[i].f, calls[i].id, -1, -1, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        if (!json_equal(r.json, calls[i].seen)) {
            char *before = json_dumps(calls[i].seen, JSON_COMPACT);
            TEST_FAIL_("call %d changed across the restart:\n before %s\n after  %s", i, before,
                       r.body);
        }
        harness_reply_cleanup(&r);
    }
    /* The blob: same size, same bytes. */
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", blob_hash);
    harness_reply r;
    harness_request(B.client, B.url, "HEAD", path, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    harness_get(B.client, B.url, path, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(r.body_len, sizeof(blob_data) - 1);
    ASSERT_MEM_EQ(r.body, blob_data, r.body_len);
    harness_reply_cleanup(&r);

    /* The lease survived: the worker finishes the running call. */
    fx_worker_push(&B, NULL, FX_ADD, calls[C_RUNNING].id, running_token,
                   json_pack("{s:{s:i}}", "outputs", "sum", 3), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "done");
    harness_reply_cleanup(&r);
    /* The queue survived: the queued call is the next one handed out. */
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), calls[C_QUEUED].id);
    harness_reply_cleanup(&r);
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 204, NULL);
    harness_reply_cleanup(&r);
}

static void test_sigint_exits_zero(void) {
    p2p_error err;
    ASSERT_OK(harness_proc_signal(B.proc, SIGINT, &err));
    int st = 0;
    if (harness_proc_wait(B.proc, 30000, &st, &err) != 0)
        TEST_FAIL_("%s", err.msg);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    harness_proc_free(B.proc);
    B.proc = NULL;
    /* And once more, to see the second restart read the same data. */
    broker_start(&B);
    fx_expect_status(&B, FX_ADD, calls[C_RUNNING].id, "done");
    fx_expect_status(&B, FX_ADD, calls[C_QUEUED].id, "running");
    fx_expect_status(&B, FX_ANALYZE, calls[C_FILE].id, "pushed");
    broker_stop(&B);
}

int main(void) {
    broker_init(&B, "broker_restart", NULL);
    broker_start(&B);
    TEST_RUN(test_sigterm_with_a_parked_long_poll);
    TEST_RUN(test_restart_keeps_everything);
    TEST_RUN(test_sigint_exits_zero);
    for (int i = 0; i < C_COUNT; i++)
        json_decref(calls[i].seen);
    broker_cleanup(&B);
    return 0;
}
