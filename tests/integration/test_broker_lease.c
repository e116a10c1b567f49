/* Leases over HTTP, with a broker started with --lease-seconds 1 and
 * --max-attempts 2: a claimed call whose lease runs out is queued again and
 * claimed by another worker (attempts 2, a new token); the first worker's
 * late pushes are refused with 409 whatever they carry; past the maximum the
 * call fails with a clear error; heartbeats keep a lease alive. The second
 * claim waits in search_work, so the requeue is awaited, not slept for. */
#include "broker_fixture.h"

#include <string.h>
#include <time.h>

static broker B;

static void push_queued(long long a, char id[P2P_HASH_HEX_LEN + 1]) {
    json_t *args = fx_add_args(a, 0);
    harness_reply r;
    fx_push(&B, NULL, FX_ADD, args, true, id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(args);
}

/* search_work?wait=WAIT for `id`; returns its token and checks attempts. */
static void claim(const char *id, int wait, int attempts, char *token, size_t len,
                  const char *worker) {
    harness_reply r;
    fx_claim(&B, NULL, FX_ADD, wait, worker, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "identifier"), id);
    ASSERT_EQ(harness_reply_int(&r, "attempts", 0), attempts);
    snprintf(token, len, "%s", harness_reply_str(&r, "lease_token"));
    fprintf(stderr, "  claim %d of %.12s after %lld ms\n", attempts, id, (long long)r.ms);
    harness_reply_cleanup(&r);
}

static void expect_refused(const char *id, const char *token, json_t *update) {
    harness_reply r;
    fx_worker_push(&B, NULL, FX_ADD, id, token, update, &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
}

static void test_expired_lease_is_claimed_again(void) {
    char id[P2P_HASH_HEX_LEN + 1], t1[128], t2[128];
    push_queued(1, id);
    claim(id, 0, 1, t1, sizeof(t1), "00000000-0000-4000-8000-000000000001");
    int64_t claimed = harness_now_ms();

    /* Worker 2 waits; the maintenance timer requeues the call after ~1 s. */
    claim(id, 30, 2, t2, sizeof(t2), "00000000-0000-4000-8000-000000000002");
    int64_t took = harness_now_ms() - claimed;
    fprintf(stderr, "lease of 1 s: requeued and claimed again %lld ms after the first claim\n",
            (long long)took);
    ASSERT_GE(took, 900);
    ASSERT_TRUE(strcmp(t1, t2) != 0);
    long long version = fx_expect_status(&B, FX_ADD, id, "running");

    /* Worker 1 comes back late: every kind of push is refused, nothing changes. */
    expect_refused(id, t1, json_pack("{s:i}", "progress", 50));
    expect_refused(id, t1, json_pack("{s:b}", "heartbeat", 1));
    expect_refused(id, t1, json_pack("{s:{s:i}}", "outputs", "sum", 1));
    expect_refused(id, t1, json_pack("{s:s}", "error", "late failure"));
    expect_refused(id, t1, json_pack("{s:b}", "terminated", 1));
    ASSERT_EQ(fx_expect_status(&B, FX_ADD, id, "running"), version);

    /* Worker 2 owns it. */
    harness_reply r;
    fx_worker_push(&B, NULL, FX_ADD, id, t2, json_pack("{s:{s:i}}", "outputs", "sum", 1), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "done");
    harness_reply_cleanup(&r);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_EQ(harness_reply_int(&r, "attempts", 0), 2);
    harness_reply_cleanup(&r);
}

static void test_max_attempts_fails_the_call(void) {
    char id[P2P_HASH_HEX_LEN + 1], t1[128], t2[128];
    push_queued(2, id);
    claim(id, 0, 1, t1, sizeof(t1), NULL);
    claim(id, 30, 2, t2, sizeof(t2), NULL);
    long long version = fx_expect_status(&B, FX_ADD, id, "running");

    /* The second lease runs out too: past --max-attempts 2, the call fails.
     * Await the change with pull_update (bounded: a few long-polls). */
    harness_reply r = {0};
    const char *status = "running";
    for (int i = 0; i < 5 && strcmp(status, "failed") != 0; i++) {
        harness_reply_cleanup(&r);
        fx_pull(&B, NULL, FX_ADD, id, version, 20, &r);
        HARNESS_EXPECT(&r, 200, NULL);
        status = harness_reply_str(&r, "status");
        ASSERT_TRUE(status != NULL);
        version = harness_reply_int(&r, "version", version);
    }
    ASSERT_STR_EQ(status, "failed");
    const char *msg = harness_reply_str(&r, "error");
    ASSERT_TRUE(msg != NULL && strlen(msg) > 10);
    fprintf(stderr, "failed after 2 expired leases: \"%s\"\n", msg);
    ASSERT_TRUE(strstr(msg, "lease") != NULL || strstr(msg, "attempt") != NULL);
    ASSERT_EQ(harness_reply_int(&r, "attempts", 0), 2);
    harness_reply_cleanup(&r);

    /* Nobody gets it again, and the last worker's push is refused. */
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 204, NULL);
    harness_reply_cleanup(&r);
    expect_refused(id, t2, json_pack("{s:{s:i}}", "outputs", "sum", 2));
    fx_expect_status(&B, FX_ADD, id, "failed");
}

static void test_heartbeats_keep_the_lease(void) {
    char id[P2P_HASH_HEX_LEN + 1], token[128];
    push_queued(3, id);
    claim(id, 0, 1, token, sizeof(token), NULL);
    /* Three lease lengths of heartbeats, one every 200 ms. */
    for (int i = 0; i < 15; i++) {
        nanosleep(&(struct timespec){0, 200000000}, NULL);
        harness_reply r;
        fx_worker_push(
            &B, NULL, FX_ADD, id, token,
            i % 2 ? json_pack("{s:b}", "heartbeat", 1) : json_pack("{s:i}", "progress", i * 5), &r);
        HARNESS_EXPECT(&r, 200, NULL);
        ASSERT_STR_EQ(harness_reply_str(&r, "status"), "running");
        harness_reply_cleanup(&r);
    }
    harness_reply r;
    fx_worker_push(&B, NULL, FX_ADD, id, token, json_pack("{s:{s:i}}", "outputs", "sum", 3), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_pull(&B, NULL, FX_ADD, id, -1, -1, &r);
    ASSERT_STR_EQ(harness_reply_str(&r, "status"), "done");
    ASSERT_EQ(harness_reply_int(&r, "attempts", 0), 1);
    harness_reply_cleanup(&r);
}

int main(void) {
    broker_config cfg = {.lease_seconds = 1, .max_attempts = 2};
    broker_init(&B, "broker_lease", &cfg);
    broker_start(&B);
    TEST_RUN(test_expired_lease_is_claimed_again);
    TEST_RUN(test_max_attempts_fails_the_call);
    TEST_RUN(test_heartbeats_keep_the_lease);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
