/* terminate, restart and delete through a future, against a real broker and
 * worker:
 * - terminate: a running call stops (its child process is gone) and the
 *   wait says P2P_ETERMINATED; the broker says terminated;
 * - restart of a done call: the function runs again (a new claim), the
 *   cached answer is forgotten (the next submit is not a hit), the future
 *   follows the new run; restart of a running call: terminated, then run
 *   again to its end;
 * - delete: no trace on the broker (pull_update 404, the input and output
 *   blobs gone, the per-function call gauges back where they were) nor in
 *   the cache (no row mentions the identifier or the output hash, the output
 *   file removed); the future then says P2P_ENOTFOUND; an output file
 *   another cache entry still uses stays. */
#include "client_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static broker B;
static worker W;
static char DIR_[HARNESS_PATH_MAX];

static void test_terminate_running_call(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "terminate");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_slow(args, 60.0, 600);
    p2p_future *f = cf_submit(c, WF_SLOW, args, NULL);
    char id[P2P_HASH_HEX_LEN + 1];
    snprintf(id, sizeof(id), "%s", p2p_future_identifier(f));
    json_t *call = wf_await_progress(&B, WF_SLOW, id, 1.0, 60000);
    json_decref(call);
    pid_t kids[8];
    ASSERT_EQ(wf_call_children(&W, id, kids, 8), 1);

    int64_t t0 = harness_now_ms();
    ASSERT_OK(p2p_future_terminate(f, NULL));
    p2p_error err = {0};
    int rc = p2p_future_wait(f, 60000, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ETERMINATED, NULL);
    fprintf(stderr, "terminated after %lld ms\n", (long long)(harness_now_ms() - t0));
    ASSERT_LT(harness_now_ms() - t0, 50000);
    ASSERT_EQ(p2p_future_status(f), P2P_CALL_TERMINATED);
    call = wf_pull(&B, WF_SLOW, id);
    wf_expect_status(call, "terminated");
    json_decref(call);
    wf_await_gone(kids, 1, 30000);
    /* get says the same, and terminating again is harmless. */
    const p2p_value *out = NULL;
    size_t n = 0;
    rc = p2p_future_get(f, 1000, &out, &n, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ETERMINATED, NULL);
    p2p_future_free(f);
    /* A terminated call is no cached answer: the same call submitted again
     * runs again (the core's choice: the user asks for it anew). */
    double claims0 = cf_metric(&B, "p2prpc_claims_total");
    f = cf_submit(c, WF_SLOW, args, NULL);
    ASSERT_FALSE(p2p_future_cached(f));
    ASSERT_STR_EQ(p2p_future_identifier(f), id);
    call = wf_await_progress(&B, WF_SLOW, id, 1.0, 60000);
    json_decref(call);
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, 1);
    ASSERT_OK(p2p_future_terminate(f, NULL));
    rc = p2p_future_wait(f, 60000, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ETERMINATED, NULL);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_restart_done_call(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "restart_done");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_slow(args, 2.0, 2);
    p2p_future *f = cf_submit(c, WF_SLOW, args, NULL);
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 2);
    double claims0 = cf_metric(&B, "p2prpc_claims_total");
    p2p_future *hit = cf_submit(c, WF_SLOW, args, NULL);
    ASSERT_TRUE(p2p_future_cached(hit));
    p2p_future_free(hit);

    ASSERT_OK(p2p_future_restart(f, 30000, NULL));
    /* The cached answer is forgotten at once: the same call attaches to the
     * new run instead of being a hit. */
    p2p_future *again = cf_submit(c, WF_SLOW, args, NULL);
    ASSERT_FALSE(p2p_future_cached(again));
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 2);
    ASSERT_EQ(cf_get(again, 1)[0].as.i64, 2);
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, 1);
    json_t *call = wf_pull(&B, WF_SLOW, p2p_future_identifier(f));
    wf_expect_status(call, "done");
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    p2p_future_free(again);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_restart_running_call(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "restart_running");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_slow(args, 5.0, 50);
    p2p_future *f = cf_submit(c, WF_SLOW, args, NULL);
    const char *id = p2p_future_identifier(f);
    json_t *call = wf_await_progress(&B, WF_SLOW, id, 10.0, 60000);
    json_decref(call);
    double claims0 = cf_metric(&B, "p2prpc_claims_total");
    ASSERT_OK(p2p_future_restart(f, 60000, NULL));
    ASSERT_EQ(cf_get(f, 1)[0].as.i64, 50);
    /* It was stopped and ran again from the start: one more claim. */
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, 1);
    call = wf_pull(&B, WF_SLOW, id);
    wf_expect_status(call, "done");
    json_decref(call);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_delete_leaves_no_trace(void) {
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "delete");
    cf_path(input, DIR_, "delete_input.bin");
    cf_write_random(input, 150000, 77);
    p2p_client *c = cf_client_for(&B, cache);
    long long calls0 = cf_calls_total(&B, WF_COPY);
    double blobs0 = cf_metric(&B, "p2prpc_blobs");
    p2p_value args[2];
    cf_args_copy(args, input, 0x33);
    p2p_future *f = cf_submit(c, WF_COPY, args, NULL);
    const p2p_value *out = cf_get(f, 2);
    char id[P2P_HASH_HEX_LEN + 1], in_hash[P2P_HASH_HEX_LEN + 1], out_hash[P2P_HASH_HEX_LEN + 1];
    char out_path[HARNESS_PATH_MAX];
    snprintf(id, sizeof(id), "%s", p2p_future_identifier(f));
    snprintf(out_hash, sizeof(out_hash), "%s", out[0].as.file.hash);
    snprintf(out_path, sizeof(out_path), "%s", out[0].as.file.path);
    ASSERT_OK(p2p_hash_file(input, in_hash, NULL));
    /* Everything is there before the delete. */
    ASSERT_EQ(cf_pull_status(&B, WF_COPY, id), 200);
    ASSERT_EQ(cf_blob_status(&B, in_hash), 200);
    ASSERT_EQ(cf_blob_status(&B, out_hash), 200);
    ASSERT_EQ(cf_calls_total(&B, WF_COPY), calls0 + 1);
    ASSERT_EQ(cf_metric(&B, "p2prpc_blobs"), blobs0 + 2);
    ASSERT_GE(cf_cache_db_mentions(cache, id), 1);
    ASSERT_GE(cf_cache_db_mentions(cache, out_hash), 1);
    ASSERT_EQ(cf_file_size(out_path), 150000);

    ASSERT_OK(p2p_future_delete(f, NULL));
    ASSERT_EQ(cf_pull_status(&B, WF_COPY, id), 404);
    ASSERT_EQ(cf_blob_status(&B, in_hash), 404);
    ASSERT_EQ(cf_blob_status(&B, out_hash), 404);
    ASSERT_EQ(cf_calls_total(&B, WF_COPY), calls0);
    ASSERT_EQ(cf_metric(&B, "p2prpc_blobs"), blobs0);
    ASSERT_EQ(cf_cache_db_mentions(cache, id), 0);
    ASSERT_EQ(cf_cache_db_mentions(cache, out_hash), 0);
    ASSERT_EQ(cf_file_size(out_path), -1);
    ASSERT_EQ(cf_cache_files(cache), 0);
    p2p_error err = {0};
    int rc = p2p_future_wait(f, 1000, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ENOTFOUND, NULL);
    rc = p2p_future_terminate(f, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ENOTFOUND, NULL);
    p2p_future_free(f);

    /* The next identical call is new again: not a hit, created anew. */
    f = cf_submit(c, WF_COPY, args, NULL);
    ASSERT_FALSE(p2p_future_cached(f));
    cf_expect_xor_of(cf_get(f, 2)[0].as.file.path, input, 0x33);
    p2p_future_free(f);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    ASSERT_EQ(st.calls_created, 2);
    ASSERT_EQ(st.cache_hits, 0);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_delete_running_call(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "delete_running");
    p2p_client *c = cf_client_for(&B, cache);
    long long calls0 = cf_calls_total(&B, WF_SLOW);
    p2p_value args[2];
    cf_args_slow(args, 61.0, 610); /* not the terminated call above */
    p2p_future *f = cf_submit(c, WF_SLOW, args, NULL);
    char id[P2P_HASH_HEX_LEN + 1];
    snprintf(id, sizeof(id), "%s", p2p_future_identifier(f));
    json_t *call = wf_await_progress(&B, WF_SLOW, id, 1.0, 60000);
    json_decref(call);
    pid_t kids[8];
    ASSERT_EQ(wf_call_children(&W, id, kids, 8), 1);
    ASSERT_OK(p2p_future_delete(f, NULL));
    ASSERT_EQ(cf_pull_status(&B, WF_SLOW, id), 404);
    ASSERT_EQ(cf_calls_total(&B, WF_SLOW), calls0);
    ASSERT_EQ(cf_cache_db_mentions(cache, id), 0);
    wf_await_gone(kids, 1, 30000);
    p2p_error err = {0};
    int rc = p2p_future_wait(f, 1000, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ENOTFOUND, NULL);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

/* Two cache entries share one output file: copy(F, xor 1) and copy(F^1,
 * xor 0) both output F^1. Deleting the first keeps the file for the
 * second. */
static void test_delete_keeps_a_shared_file(void) {
    char cache[HARNESS_PATH_MAX], f_path[HARNESS_PATH_MAX], g_path[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "shared");
    cf_path(f_path, DIR_, "shared_f.bin");
    cf_path(g_path, DIR_, "shared_g.bin");
    cf_write_random(f_path, 64000, 91);
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value a1[2];
    cf_args_copy(a1, f_path, 1);
    p2p_future *f1 = cf_submit(c, WF_COPY, a1, NULL);
    const p2p_value *o1 = cf_get(f1, 2);
    /* G = F^1, the first call's output. */
    char *g_data = NULL;
    size_t g_len = 0;
    FILE *fp = fopen(o1[0].as.file.path, "rb");
    ASSERT_TRUE(fp != NULL);
    g_data = malloc(64000);
    ASSERT_TRUE(g_data != NULL);
    g_len = fread(g_data, 1, 64000, fp);
    fclose(fp);
    ASSERT_EQ(g_len, 64000);
    ASSERT_OK(harness_write_file(g_path, g_data, g_len, NULL));
    free(g_data);
    p2p_value a2[2];
    cf_args_copy(a2, g_path, 0);
    p2p_future *f2 = cf_submit(c, WF_COPY, a2, NULL);
    const p2p_value *o2 = cf_get(f2, 2);
    ASSERT_STR_EQ(o2[0].as.file.hash, o1[0].as.file.hash);
    char shared_hash[P2P_HASH_HEX_LEN + 1];
    snprintf(shared_hash, sizeof(shared_hash), "%s", o1[0].as.file.hash);
    p2p_future_free(f2);

    ASSERT_OK(p2p_future_delete(f1, NULL));
    p2p_future_free(f1);
    /* The second entry is still a hit, with its file intact. */
    f2 = cf_submit(c, WF_COPY, a2, NULL);
    ASSERT_TRUE(p2p_future_cached(f2));
    o2 = cf_get(f2, 2);
    ASSERT_STR_EQ(o2[0].as.file.hash, shared_hash);
    cf_expect_xor_of(o2[0].as.file.path, g_path, 0);
    p2p_future_free(f2);
    /* The broker keeps the blob the second call references. */
    ASSERT_EQ(cf_blob_status(&B, shared_hash), 200);
    p2p_value_list_cleanup(a1, 2);
    p2p_value_list_cleanup(a2, 2);
    p2p_client_free(c);
}

int main(void) {
    cf_broker_init(&B, "clife_b", NULL, NULL);
    broker_start(&B);
    worker_start_for(&W, "clife_w", &B,
                     &(worker_config){.concurrency = 2, .lease_renew = "1", .grace = "2"});
    p2p_error err;
    if (harness_scratch_dir("clife_c", DIR_, sizeof(DIR_), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_terminate_running_call);
    TEST_RUN(test_restart_done_call);
    TEST_RUN(test_restart_running_call);
    TEST_RUN(test_delete_leaves_no_trace);
    TEST_RUN(test_delete_running_call);
    TEST_RUN(test_delete_keeps_a_shared_file);
    worker_stop(&W, 30000);
    worker_cleanup(&W);
    broker_cleanup(&B);
    if (harness_rmtree(DIR_, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
