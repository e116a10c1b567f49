/* Input blobs over a connection that drops: a proxy between the worker and
 * the broker cuts the first two blob downloads after 1 MiB. The worker
 * resumes them with a Range request (the proxy sees one), verifies the whole
 * file's hash and completes the call with the right output. The broker names
 * the proxy as its public URL, so that the worker never learns a direct way
 * round it from the nodes route. Through it, outputs are seen checked with
 * HEAD first and uploaded only when new. The same proxy then flips a byte of blob
 * answers: once (the worker downloads again and the call is done with the
 * right content), and every time (the call fails, saying the hash is wrong;
 * it is never done with wrong content). */
#include "flaky_proxy.h"
#include "worker_fixture.h"

#include <stdio.h>
#include <string.h>

static flaky_proxy *proxy;
static broker B;

/* 8 MiB of bytes that differ everywhere (seeded), uploaded straight to the
 * broker; writes the hash. */
static size_t upload_input(unsigned seed, char hash[P2P_HASH_HEX_LEN + 1]) {
    size_t len = 8u << 20;
    unsigned char *data = malloc(len);
    ASSERT_TRUE(data != NULL);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(((i + seed) * 2654435761u) >> 13);
    harness_reply r;
    fx_blob_put(&B, NULL, data, len, hash, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    free(data);
    return len;
}

/* p2prpc_copy(input, x) through a worker that knows only the proxy. */
static json_t *copy_through_proxy_xor(const char *name, const char *hash, size_t len, int x) {
    worker w;
    worker_init(&w, name, B.secret_path, &(worker_config){.concurrency = 1});
    worker_discover(&w, (const char *[]){flaky_proxy_url(proxy), NULL});
    worker_start(&w);
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args =
        json_pack("{s:{s:s, s:I}, s:i}", "input", "hash", hash, "size", (json_int_t)len, "xor", x);
    wf_push(&B, WF_COPY, args, id);
    json_decref(args);
    json_t *call = wf_await_status(&B, WF_COPY, id, "done|failed|terminated", 120000);
    fprintf(stderr, "proxy: %d blob GETs, %d cut, %d with Range, %d corrupted\n",
            flaky_proxy_blob_gets(proxy), flaky_proxy_cuts(proxy),
            flaky_proxy_range_requests(proxy), flaky_proxy_corrupted(proxy));
    worker_stop(&w, 30000);
    wf_assert_no_orphans(&w, 5000);
    ASSERT_EQ(harness_count_files(w.work_dir, true), 0);
    worker_cleanup(&w);
    return call;
}

static json_t *copy_through_proxy(const char *name, const char *hash, size_t len) {
    return copy_through_proxy_xor(name, hash, len, 0);
}

/* One flipped byte: the worker sees the hash is wrong, downloads again, and
 * the function only ever sees the right content. */
static void test_corrupted_download_is_fetched_again(void) {
    char hash[P2P_HASH_HEX_LEN + 1];
    size_t len = upload_input(7, hash);
    flaky_proxy_corrupt(proxy, 1, 3L << 20);
    json_t *call = copy_through_proxy("wdl_corrupt1", hash, len);
    ASSERT_EQ(flaky_proxy_corrupted(proxy), 1);
    wf_expect_status(call, "done");
    json_t *out = json_object_get(json_object_get(call, "outputs"), "output");
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "hash")), hash);
    json_decref(call);
}

/* Every download corrupted: the call must not be done with wrong content;
 * it fails, saying why. */
static void test_corrupted_every_time_fails(void) {
    char hash[P2P_HASH_HEX_LEN + 1];
    size_t len = upload_input(11, hash);
    flaky_proxy_corrupt(proxy, 1000, 3L << 20);
    json_t *call = copy_through_proxy("wdl_corrupt_all", hash, len);
    flaky_proxy_corrupt(proxy, 0, 0);
    fprintf(stderr, "always corrupted: %s, error \"%s\"\n", wf_str(call, "status"),
            wf_str(call, "error") ? wf_str(call, "error") : "");
    wf_expect_status(call, "failed");
    ASSERT_STR_CONTAINS(wf_str(call, "error"), "hash");
    json_decref(call);
}

static void test_download_resumes_after_cuts(void) {
    char hash[P2P_HASH_HEX_LEN + 1];
    size_t len = upload_input(3, hash);
    json_t *call = copy_through_proxy("wdl_cuts", hash, len);
    wf_expect_status(call, "done");
    json_t *out = json_object_get(json_object_get(call, "outputs"), "output");
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "hash")), hash);
    ASSERT_EQ(wf_output_int(call, "size"), (long long)len);
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    ASSERT_EQ(flaky_proxy_cuts(proxy), 2);
    ASSERT_GE(flaky_proxy_range_requests(proxy), 2);
    /* The output is the input: HEAD finds it, nothing is uploaded. */
    ASSERT_GE(flaky_proxy_blob_heads(proxy), 1);
    ASSERT_EQ(flaky_proxy_blob_puts(proxy), 0);
}

/* A new output is uploaded once, after its HEAD said it is missing. */
static void test_new_output_is_uploaded(void) {
    char hash[P2P_HASH_HEX_LEN + 1];
    size_t len = upload_input(5, hash);
    int heads = flaky_proxy_blob_heads(proxy), puts = flaky_proxy_blob_puts(proxy);
    json_t *call = copy_through_proxy_xor("wdl_upload", hash, len, 0x33);
    wf_expect_status(call, "done");
    const char *out = json_string_value(
        json_object_get(json_object_get(json_object_get(call, "outputs"), "output"), "hash"));
    ASSERT_TRUE(out != NULL && strcmp(out, hash) != 0);
    json_decref(call);
    fprintf(stderr, "new output: %d HEAD, %d PUT\n", flaky_proxy_blob_heads(proxy) - heads,
            flaky_proxy_blob_puts(proxy) - puts);
    ASSERT_GE(flaky_proxy_blob_heads(proxy) - heads, 1);
    ASSERT_EQ(flaky_proxy_blob_puts(proxy) - puts, 1);
}

int main(void) {
    int port = wf_free_port();
    char upstream[64], listen[64];
    snprintf(upstream, sizeof(upstream), "http://127.0.0.1:%d", port);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    p2p_error err;
    if (flaky_proxy_start(upstream, 2, (1L << 20) + 1000, &proxy, &err) != 0)
        TEST_FAIL_("%s", err.msg);
    const char *extra[] = {"--listen", listen, "--public-url", flaky_proxy_url(proxy), NULL};
    wf_broker_init(&B, "wdl_broker", &(broker_config){.extra_args = extra});
    broker_start(&B);
    TEST_RUN(test_download_resumes_after_cuts);
    TEST_RUN(test_new_output_is_uploaded);
    TEST_RUN(test_corrupted_download_is_fetched_again);
    TEST_RUN(test_corrupted_every_time_fails);
    broker_stop(&B);
    broker_cleanup(&B);
    flaky_proxy_free(proxy);
    return 0;
}
