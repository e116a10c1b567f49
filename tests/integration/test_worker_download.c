/* Input blobs over a connection that drops: a proxy between the worker and
 * the broker cuts the first two blob downloads after 1 MiB. The worker
 * resumes them with a Range request (the proxy sees one), verifies the whole
 * file's hash and completes the call with the right output. The broker names
 * the proxy as its public URL, so that the worker never learns a direct way
 * round it from the nodes route. */
#include "flaky_proxy.h"
#include "worker_fixture.h"

#include <stdio.h>
#include <string.h>

static void test_download_resumes_after_cuts(void) {
    int port = wf_free_port();
    char upstream[64], listen[64];
    snprintf(upstream, sizeof(upstream), "http://127.0.0.1:%d", port);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    flaky_proxy *proxy = NULL;
    p2p_error err;
    if (flaky_proxy_start(upstream, 2, (1L << 20) + 1000, &proxy, &err) != 0)
        TEST_FAIL_("%s", err.msg);
    const char *extra[] = {"--listen", listen, "--public-url", flaky_proxy_url(proxy), NULL};
    broker b;
    wf_broker_init(&b, "wdl_broker", &(broker_config){.extra_args = extra});
    broker_start(&b);

    /* 8 MiB of bytes that differ everywhere, uploaded straight to the broker. */
    size_t len = 8u << 20;
    unsigned char *data = malloc(len);
    ASSERT_TRUE(data != NULL);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)((i * 2654435761u) >> 13);
    char hash[P2P_HASH_HEX_LEN + 1];
    harness_reply r;
    fx_blob_put(&b, NULL, data, len, hash, &r);
    HARNESS_EXPECT(&r, 201, NULL);
    harness_reply_cleanup(&r);
    free(data);

    worker w;
    worker_init(&w, "wdl_worker", b.secret_path, &(worker_config){.concurrency = 1});
    worker_discover(&w, (const char *[]){flaky_proxy_url(proxy), NULL});
    worker_start(&w);
    char id[P2P_HASH_HEX_LEN + 1];
    json_t *args =
        json_pack("{s:{s:s, s:I}, s:i}", "input", "hash", hash, "size", (json_int_t)len, "xor", 0);
    wf_push(&b, WF_COPY, args, id);
    json_decref(args);
    json_t *call = wf_await_status(&b, WF_COPY, id, "done|failed|terminated", 120000);
    fprintf(stderr, "proxy: %d blob GETs, %d cut, %d with Range\n", flaky_proxy_blob_gets(proxy),
            flaky_proxy_cuts(proxy), flaky_proxy_range_requests(proxy));
    wf_expect_status(call, "done");
    json_t *out = json_object_get(json_object_get(call, "outputs"), "output");
    ASSERT_STR_EQ(json_string_value(json_object_get(out, "hash")), hash);
    ASSERT_EQ(wf_output_int(call, "size"), (long long)len);
    ASSERT_EQ(wf_int(call, "attempts", -1), 1);
    json_decref(call);
    ASSERT_EQ(flaky_proxy_cuts(proxy), 2);
    ASSERT_GE(flaky_proxy_range_requests(proxy), 2);

    worker_stop(&w, 30000);
    wf_assert_no_orphans(&w, 5000);
    ASSERT_EQ(harness_count_files(w.work_dir, true), 0);
    worker_cleanup(&w);
    broker_stop(&b);
    broker_cleanup(&b);
    flaky_proxy_free(proxy);
}

int main(void) {
    TEST_RUN(test_download_resumes_after_cuts);
    return 0;
}
