/* Futures as arguments (pipelines), against a real broker and worker; the
 * client talks to the broker through a relaying proxy (flaky_proxy, no cuts)
 * that counts the blob GETs it sees, so "no download between the calls" is
 * checked outside the client as well as by its own counter:
 * - copy(F, xor 1) then copy(its output, xor 2): the second output is F^3;
 *   the client downloaded one file (the last output), uploaded one (F); the
 *   first output never reached the client's cache;
 * - the dependent call's identifier is a function of the upstream's
 *   identifier and output name: another client with another cache makes the
 *   same chain and gets the same identifiers, attached, nothing runs again;
 *   it differs from the identifier of the same call given the file itself;
 * - an integer output feeds an integer input, and the waiting call survives
 *   a broker restart;
 * - an upstream that fails makes the dependent fail with
 *   "input NAME: upstream call ID failed". */
#include "client_fixture.h"
#include "flaky_proxy.h"

#include <stdio.h>
#include <string.h>

static broker B;
static worker W;
/* The worker reaches the broker through this relay, which counts its blob
 * GETs: the broker's p2prpc_blob_gets_total is then fully accounted for. */
static flaky_proxy *WPROXY;
static char DIR_[HARNESS_PATH_MAX];

static p2p_future *submit_ref(p2p_client *c, wf_fn f, p2p_value *args, size_t input,
                              const p2p_future *up, const char *output, p2p_error *err, int *rc) {
    p2p_arg_ref ref = {.input = input, .future = up, .output = output};
    p2p_future *fut = NULL;
    *rc = p2p_client_submit(c, wf_schema(f), args, &ref, 1, NULL, &fut, err);
    return fut;
}

/* copy(ref(up.output), xor) */
static p2p_future *copy_of(p2p_client *c, const p2p_future *up, int64_t xor_byte) {
    p2p_value args[2];
    p2p_value_init(&args[0]);
    p2p_value_init(&args[1]);
    p2p_value_set_int64(&args[1], xor_byte);
    p2p_error err = {0};
    int rc = 0;
    p2p_future *f = submit_ref(c, WF_COPY, args, 0, up, "output", &err, &rc);
    if (rc != 0)
        TEST_FAIL_("submit with a reference: %s (%s)", err.msg, p2p_error_name(rc));
    p2p_value_list_cleanup(args, 2);
    return f;
}

/* Writes `in` with each byte XORed with `x` to `out`; its hash to `hash`. */
static void write_xor(const char *in_path, const char *out_path, int x,
                      char hash[P2P_HASH_HEX_LEN + 1]) {
    FILE *in = fopen(in_path, "rb"), *out = fopen(out_path, "wb");
    ASSERT_TRUE(in != NULL && out != NULL);
    for (int ch; (ch = getc(in)) != EOF;)
        ASSERT_TRUE(putc(ch ^ x, out) != EOF);
    fclose(in);
    ASSERT_OK(fclose(out));
    ASSERT_OK(p2p_hash_file(out_path, hash, NULL));
}

/* Asserts that the cache holds neither a file nor a row naming `hash`. */
static void expect_not_in_cache(const char *cache, const char *hash) {
    char path[2 * HARNESS_PATH_MAX];
    int len = snprintf(path, sizeof(path), "%s/files/%.2s/%s", cache, hash, hash);
    ASSERT_TRUE(len > 0 && (size_t)len < sizeof(path));
    ASSERT_EQ(cf_file_size(path), -1);
    ASSERT_EQ(cf_cache_db_mentions(cache, hash), 0);
}

/* The chain copy(F, 1) -> copy(ref, 2) from another client and cache: the
 * same identifiers, attached, nothing runs again. The same bytes given as a
 * file are another call. */
static void same_chain_elsewhere(const p2p_value *a1, const p2p_future *f1, const p2p_future *f2,
                                 const char *input, const char *mid, double claims0) {
    char cache2[HARNESS_PATH_MAX];
    cf_path(cache2, DIR_, "pipe2");
    p2p_client *c2 = cf_client_for(&B, cache2);
    p2p_future *g1 = cf_submit(c2, WF_COPY, a1, NULL);
    p2p_future *g2 = copy_of(c2, g1, 2);
    ASSERT_STR_EQ(p2p_future_identifier(g1), p2p_future_identifier(f1));
    ASSERT_STR_EQ(p2p_future_identifier(g2), p2p_future_identifier(f2));
    cf_expect_xor_of(cf_get(g2, 2)[0].as.file.path, input, 3);
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, 2);
    p2p_client_stats st;
    p2p_client_get_stats(c2, &st);
    ASSERT_EQ(st.calls_created, 0);
    ASSERT_EQ(st.calls_attached, 2);
    p2p_value direct[2];
    cf_args_copy(direct, mid, 2);
    p2p_future *d = cf_submit(c2, WF_COPY, direct, NULL);
    ASSERT_TRUE(strcmp(p2p_future_identifier(d), p2p_future_identifier(f2)) != 0);
    fprintf(stderr, "dependent %s, the same bytes given directly %s\n", p2p_future_identifier(f2),
            p2p_future_identifier(d));
    p2p_future_free(d);
    p2p_value_list_cleanup(direct, 2);
    p2p_future_free(g2);
    p2p_future_free(g1);
    p2p_client_free(c2);
}

static void test_file_pipeline_without_download(void) {
    flaky_proxy *proxy = NULL;
    ASSERT_OK(flaky_proxy_start(B.url, 0, 0, &proxy, NULL));
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX], mid[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "pipe");
    cf_path(input, DIR_, "pipe_input.bin");
    cf_path(mid, DIR_, "pipe_mid.bin");
    size_t size = 2 * 1024 * 1024 + 5;
    cf_write_random(input, size, 5);
    const char *urls[] = {flaky_proxy_url(proxy)};
    p2p_client_options o;
    cf_options(&o, urls, 1, B.secret_path, cache);
    p2p_client *c = cf_client(&o);
    double claims0 = cf_metric(&B, "p2prpc_claims_total");
    double gets0 = cf_metric(&B, "p2prpc_blob_gets_total");
    int worker_gets0 = flaky_proxy_blob_gets(WPROXY);

    p2p_value a1[2];
    cf_args_copy(a1, input, 1);
    p2p_future *f1 = cf_submit(c, WF_COPY, a1, NULL);
    p2p_future *f2 = copy_of(c, f1, 2);
    ASSERT_FALSE(p2p_future_cached(f2));
    const p2p_value *out = cf_get(f2, 2);
    cf_expect_xor_of(out[0].as.file.path, input, 1 ^ 2);
    ASSERT_EQ(out[1].as.i64, (int64_t)size);
    ASSERT_EQ(cf_metric(&B, "p2prpc_claims_total") - claims0, 2);

    /* One file up (F), one file down (the last output), seen on the wire. */
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    fprintf(stderr, "pipeline: uploaded %llu, downloaded %llu, proxy blob GETs %d\n",
            (unsigned long long)st.bytes_uploaded, (unsigned long long)st.bytes_downloaded,
            flaky_proxy_blob_gets(proxy));
    ASSERT_EQ(st.bytes_uploaded, size);
    ASSERT_EQ(st.bytes_downloaded, size);
    ASSERT_EQ(flaky_proxy_blob_gets(proxy), 1);
    ASSERT_EQ(flaky_proxy_blob_puts(proxy), 1);
    /* The broker's side: every blob GET it answered is the worker's (its
     * inputs) or that one download of the client's. */
    double broker_gets = cf_metric(&B, "p2prpc_blob_gets_total") - gets0;
    int worker_gets = flaky_proxy_blob_gets(WPROXY) - worker_gets0;
    fprintf(stderr, "broker blob GETs %g: worker %d, client %d\n", broker_gets, worker_gets,
            flaky_proxy_blob_gets(proxy));
    ASSERT_EQ(broker_gets, worker_gets + 1);
    /* The intermediate file F^1 is on the broker and never reached the cache. */
    ASSERT_EQ(cf_cache_files(cache), 1);
    char f_xor1[P2P_HASH_HEX_LEN + 1];
    write_xor(input, mid, 1, f_xor1);
    ASSERT_EQ(cf_blob_status(&B, f_xor1), 200);
    expect_not_in_cache(cache, f_xor1);
    json_t *call = wf_pull(&B, WF_COPY, p2p_future_identifier(f1));
    wf_expect_status(call, "done");
    json_decref(call);

    same_chain_elsewhere(a1, f1, f2, input, mid, claims0);
    p2p_future_free(f2);
    p2p_future_free(f1);
    p2p_value_list_cleanup(a1, 2);
    p2p_client_free(c);
    flaky_proxy_free(proxy);
}

static void test_value_pipeline_survives_broker_restart(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "pipe_restart");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value s[2];
    cf_args_slow(s, 4.0, 4);
    p2p_future *f1 = cf_submit(c, WF_SLOW, s, NULL);
    p2p_value add[2];
    cf_args_add(add, 0, 5);
    p2p_value_cleanup(&add[0]); /* given by the reference */
    p2p_error err = {0};
    int rc = 0;
    p2p_future *f2 = submit_ref(c, WF_ADD, add, 0, f1, "done", &err, &rc);
    if (rc != 0)
        TEST_FAIL_("submit with a reference: %s (%s)", err.msg, p2p_error_name(rc));
    char id2[P2P_HASH_HEX_LEN + 1];
    snprintf(id2, sizeof(id2), "%s", p2p_future_identifier(f2));
    json_t *call = wf_pull(&B, WF_ADD, id2);
    fprintf(stderr, "dependent while the upstream runs: %s\n", wf_str(call, "status"));
    ASSERT_STR_EQ(wf_str(call, "status"), "waiting");
    json_decref(call);

    wf_broker_restart_same_port(&B, 500);
    ASSERT_EQ(cf_get(f2, 1)[0].as.i64, 4 + 5);
    ASSERT_EQ(cf_get(f1, 1)[0].as.i64, 4);
    p2p_future_free(f2);
    p2p_future_free(f1);
    p2p_value_list_cleanup(s, 2);
    p2p_value_list_cleanup(add, 2);
    p2p_client_free(c);
}

/* add(a = ref(up.done), b = 1) */
static p2p_future *add_of(p2p_client *c, const p2p_future *up, p2p_error *err, int *rc) {
    p2p_value args[2];
    cf_args_add(args, 0, 1);
    p2p_value_cleanup(&args[0]);
    p2p_future *f = submit_ref(c, WF_ADD, args, 0, up, "done", err, rc);
    p2p_value_list_cleanup(args, 2);
    return f;
}

static void test_upstream_failure_fails_the_dependent(void) {
    char cache[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "pipe_fail");
    p2p_client *c = cf_client_for(&B, cache);
    /* The upstream runs; the dependent waits; the upstream is terminated. */
    p2p_value s[2];
    cf_args_slow(s, 60.0, 600);
    p2p_future *f1 = cf_submit(c, WF_SLOW, s, NULL);
    json_t *call = wf_await_status(&B, WF_SLOW, p2p_future_identifier(f1), "running", 60000);
    json_decref(call);
    p2p_error err = {0};
    int rc = 0;
    p2p_future *f2 = add_of(c, f1, &err, &rc);
    if (rc != 0)
        TEST_FAIL_("submit with a reference: %s (%s)", err.msg, p2p_error_name(rc));
    ASSERT_OK(p2p_future_terminate(f1, NULL));
    rc = p2p_future_wait(f2, CF_CALL_TIMEOUT_MS, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EFAILED, "upstream call");
    ASSERT_STR_CONTAINS(err.msg, "input a");
    ASSERT_STR_CONTAINS(err.msg, p2p_future_identifier(f1));
    call = wf_pull(&B, WF_ADD, p2p_future_identifier(f2));
    wf_expect_status(call, "failed");
    json_decref(call);
    rc = p2p_future_wait(f1, CF_CALL_TIMEOUT_MS, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_ETERMINATED, NULL);
    p2p_future_free(f2);

    /* A function that fails (p2p_fail), then a call that depends on it:
     * refused at submit or failed, either way naming the upstream. */
    p2p_value b[2];
    cf_args_slow(b, -1.0, 1); /* seconds < 0: p2p_fail */
    p2p_future *f3 = cf_submit(c, WF_SLOW, b, NULL);
    rc = p2p_future_wait(f3, CF_CALL_TIMEOUT_MS, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EFAILED, "seconds must be");
    err = (p2p_error){0};
    p2p_future *f4 = add_of(c, f3, &err, &rc);
    if (rc == 0) {
        rc = p2p_future_wait(f4, CF_CALL_TIMEOUT_MS, &err);
        CF_EXPECT_ERROR(rc, &err, P2P_EFAILED, p2p_future_identifier(f3));
    } else {
        fprintf(stderr, "refused at submit: %s: %s\n", p2p_error_name(rc), err.msg);
        ASSERT_TRUE(rc == P2P_EFAILED || rc == P2P_ECONFLICT || rc == P2P_EINVAL);
        ASSERT_STR_CONTAINS(err.msg, p2p_future_identifier(f3));
        ASSERT_TRUE(f4 == NULL);
    }
    p2p_future_free(f4);
    p2p_future_free(f3);
    p2p_future_free(f1);
    p2p_value_list_cleanup(s, 2);
    p2p_value_list_cleanup(b, 2);
    p2p_client_free(c);
}

int main(void) {
    cf_broker_init(&B, "cpipe_b", NULL, NULL);
    broker_start(&B);
    ASSERT_OK(flaky_proxy_start(B.url, 0, 0, &WPROXY, NULL));
    worker_init(&W, "cpipe_w", B.secret_path, &(worker_config){.concurrency = 2});
    worker_discover(&W, (const char *[]){flaky_proxy_url(WPROXY), NULL});
    worker_start(&W);
    p2p_error err;
    if (harness_scratch_dir("cpipe_c", DIR_, sizeof(DIR_), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_file_pipeline_without_download);
    TEST_RUN(test_upstream_failure_fails_the_dependent);
    TEST_RUN(test_value_pipeline_survives_broker_restart);
    worker_stop(&W, 30000);
    worker_cleanup(&W);
    flaky_proxy_free(WPROXY);
    broker_cleanup(&B);
    if (harness_rmtree(DIR_, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
