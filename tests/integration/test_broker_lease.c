/* Leases over HTTP, with a broker started with --lease-seconds 1 and
 * --max-attempts 2: a claimed call whose lease runs out is queued again and
 * claimed by another worker (attempts 2, a new token); the first worker's
 * late pushes are refused with 409 whatever they carry; past the maximum the
 * call fails with a clear error; heartbeats keep a lease alive; a checkpoint
 * saved by the first worker is what the second one resumes from. The second
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

/* POST checkpoint {identifier, lease_token, name, hash}. */
static void save_checkpoint(const char *id, const char *token, const char *name, const char *hash,
                            harness_reply *r) {
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "identifier", id, "lease_token", token, "name",
                             name, "hash", hash);
    fx_post(&B, NULL, FX_ADD, "checkpoint", NULL, body, r);
    json_decref(body);
}

static void load_checkpoint(const char *id, const char *name, harness_reply *r) {
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/%s/checkpoint?identifier=%s&name=%s", fx_name(FX_ADD), id,
             name);
    harness_get(B.client, B.url, path, 0, r);
}

/* A worker saves its state, loses its lease; the next worker resumes from
 * that state, and the first one can no longer save. Restart forgets it. */
static void test_checkpoint_survives_a_lost_lease(void) {
    char id[P2P_HASH_HEX_LEN + 1], t1[128], t2[128], state[P2P_HASH_HEX_LEN + 1];
    char later[P2P_HASH_HEX_LEN + 1], absent[P2P_HASH_HEX_LEN + 1];
    static const char saved[] = "frame 1234 of 5000, accumulator 0x5eed";
    push_queued(4, id);
    claim(id, 0, 1, t1, sizeof(t1), NULL);
    harness_reply r;
    /* The state blob must be on the broker first. */
    ASSERT_OK(p2p_hash_bytes_hex("not uploaded", 12, absent, NULL));
    save_checkpoint(id, t1, "progress.state", absent, &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    fx_blob_put(&B, NULL, saved, sizeof(saved) - 1, state, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    save_checkpoint(id, t1, "progress.state", state, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "hash"), state);
    ASSERT_EQ(harness_reply_int(&r, "size", -1), (long long)sizeof(saved) - 1);
    harness_reply_cleanup(&r);
    load_checkpoint(id, "other", &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);

    /* Worker 1 stalls; worker 2 gets the call and its checkpoint. */
    claim(id, 30, 2, t2, sizeof(t2), NULL);
    load_checkpoint(id, "progress.state", &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_STR_EQ(harness_reply_str(&r, "hash"), state);
    harness_reply_cleanup(&r);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/blobs/%s", state);
    harness_get(B.client, B.url, path, 0, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    ASSERT_EQ(r.body_len, sizeof(saved) - 1);
    ASSERT_MEM_EQ(r.body, saved, r.body_len);
    harness_reply_cleanup(&r);

    /* Worker 1's save is refused: its lease is stale. */
    ASSERT_OK(p2p_hash_bytes_hex("frame 9", 7, later, NULL));
    fx_blob_put(&B, NULL, "frame 9", 7, later, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    save_checkpoint(id, t1, "progress.state", later, &r);
    HARNESS_EXPECT(&r, 409, "conflict");
    harness_reply_cleanup(&r);
    /* Worker 2 replaces it: the old state blob had no other reference. */
    save_checkpoint(id, t2, "progress.state", later, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    harness_request(B.client, B.url, "HEAD", path, NULL, NULL, 0, 0, &r);
    HARNESS_EXPECT(&r, 404, NULL);
    harness_reply_cleanup(&r);

    /* Finished and restarted: the checkpoint is gone. */
    fx_worker_push(&B, NULL, FX_ADD, id, t2, json_pack("{s:{s:i}}", "outputs", "sum", 4), &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "restart", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    load_checkpoint(id, "progress.state", &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    fx_on_id(&B, NULL, FX_ADD, "terminate", id, &r);
    HARNESS_EXPECT(&r, 200, NULL);
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
    TEST_RUN(test_checkpoint_survives_a_lost_lease);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
