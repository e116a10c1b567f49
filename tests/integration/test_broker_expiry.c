/* Expiry over HTTP: a broker started with --expire-hours 0.0005 (1.8 s).
 * Calls expire that long after their last change and take their blobs
 * (arguments and outputs) with them, files on disk included; a blob no call
 * refers to is swept once it was not PUT or HEADed for that long; a call
 * that keeps changing (a worker reporting progress every 100 ms) stays. The maintenance thread does
 * this on its own: the test awaits the broker's counters, bounded, and never sleeps blind. */
#include "broker_fixture.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static broker B;

static void blob_file(const char *hash, char *out, size_t len) {
    snprintf(out, len, "%s/%.2s/%s", B.blobs, hash, hash);
}

static void put(const char *text, char hash[P2P_HASH_HEX_LEN + 1]) {
    harness_reply r;
    fx_blob_put(&B, NULL, text, strlen(text), hash, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
}

/* Waits, bounded, until the file at `path` is gone. */
static void await_gone(const char *path, long timeout_ms) {
    int64_t deadline = harness_now_ms() + timeout_ms;
    for (long i = 0; i <= timeout_ms / 20 && harness_now_ms() <= deadline; i++) {
        if (access(path, F_OK) != 0)
            return;
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    TEST_FAIL_("%s still exists after %ld ms", path, timeout_ms);
}

static void test_calls_and_their_blobs_expire(void) {
    char video[P2P_HASH_HEX_LEN + 1], o1[P2P_HASH_HEX_LEN + 1], o2[P2P_HASH_HEX_LEN + 1];
    char lone[P2P_HASH_HEX_LEN + 1], done_id[P2P_HASH_HEX_LEN + 1], pushed_id[P2P_HASH_HEX_LEN + 1];
    put("the video", video);
    put("output one", o1);
    put("output two", o2);
    put("nobody refers to me", lone);

    harness_reply r;
    json_t *args =
        json_pack("{s:{s:s, s:i}, s:i}", "video_handle", "hash", video, "size", 9, "arg2", 1);
    fx_push(&B, NULL, FX_ANALYZE, args, true, done_id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(args);
    fx_claim(&B, NULL, FX_ANALYZE, 0, NULL, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    char token[128];
    snprintf(token, sizeof(token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);
    fx_worker_push(&B, NULL, FX_ANALYZE, done_id, token,
                   json_pack("{s:{s:{s:s, s:i}, s:{s:s, s:i}, s:i}}", "outputs", "results_file1",
                             "hash", o1, "size", 10, "results_file2", "hash", o2, "size", 10,
                             "res_var", 7),
                   &r);
    HARNESS_EXPECT(&r, 200, NULL);
    harness_reply_cleanup(&r);
    args = fx_add_args(1, 1);
    fx_push(&B, NULL, FX_ADD, args, false, pushed_id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(args);

    /* A running call with a worker heartbeating keeps changing: it stays. */
    char live_id[P2P_HASH_HEX_LEN + 1], live_token[128];
    args = fx_add_args(2, 2);
    fx_push(&B, NULL, FX_ADD, args, true, live_id, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    json_decref(args);
    fx_claim(&B, NULL, FX_ADD, 0, NULL, &r);
    HARNESS_EXPECT(&r, 200, NULL);
    snprintf(live_token, sizeof(live_token), "%s", harness_reply_str(&r, "lease_token"));
    harness_reply_cleanup(&r);

    int64_t t0 = harness_now_ms();
    char *text = NULL;
    for (int i = 0; i < 600; i++) {
        text = fx_metrics_text(&B);
        double expired = fx_metric(text, "p2prpc_calls_expired_total", NULL);
        free(text);
        if (expired >= 2)
            break;
        ASSERT_LT(harness_now_ms() - t0, 60000);
        fx_worker_push(&B, NULL, FX_ADD, live_id, live_token,
                       json_pack("{s:i}", "progress", i % 100), &r);
        HARNESS_EXPECT(&r, 200, NULL);
        harness_reply_cleanup(&r);
        nanosleep(&(struct timespec){0, 100000000}, NULL);
    }
    fprintf(stderr, "two calls expired %lld ms after their last change\n",
            (long long)(harness_now_ms() - t0));
    fx_pull(&B, NULL, FX_ANALYZE, done_id, -1, -1, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    fx_pull(&B, NULL, FX_ADD, pushed_id, -1, -1, &r);
    HARNESS_EXPECT(&r, 404, "not_found");
    harness_reply_cleanup(&r);
    fx_expect_status(&B, FX_ADD, live_id, "running");

    /* Their blobs went with them, and the lone blob was swept. */
    const char *hashes[] = {video, o1, o2, lone};
    for (int i = 0; i < 4; i++) {
        char path[HARNESS_PATH_MAX + 80];
        blob_file(hashes[i], path, sizeof(path));
        await_gone(path, 60000);
    }
    text = fx_metrics_text(&B);
    ASSERT_GE(fx_metric(text, "p2prpc_blobs_removed_total", NULL), 4);
    ASSERT_EQ((long long)fx_metric(text, "p2prpc_blobs", NULL), 0);
    free(text);
}

int main(void) {
    const char *expire[] = {"--expire-hours", "0.0005", NULL};
    broker_config cfg = {.extra_args = expire};
    broker_init(&B, "broker_expiry", &cfg);
    broker_start(&B);
    TEST_RUN(test_calls_and_their_blobs_expire);
    broker_stop(&B);
    broker_cleanup(&B);
    return 0;
}
