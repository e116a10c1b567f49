/* The worker end to end, in one process with a real broker: a call pushed by
 * a client is claimed, run in a child process (this program, executed again),
 * its file inputs downloaded and its file outputs uploaded, and the call is
 * done. Crashes and failures become failed calls and the worker goes on;
 * progress reaches the broker; a terminate request stops the child. */
#include "worker_test_util.h"

#include <dirent.h>
#include <sys/resource.h>

static wt_broker broker;
static p2p_worker *worker;

static void test_add(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    int64_t start = wt_now_ms();
    wt_call(broker.url, F_ADD, "{\"a\":2,\"b\":40}", id);
    json_t *j = wt_wait(broker.url, F_ADD, id, "done", 20000);
    fprintf(stderr, "add(2, 40) done %lld ms after the push\n", (long long)(wt_now_ms() - start));
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "outputs"), "sum")), 42);
    ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
    json_decref(j);
}

/* Downloads blob `hash` and compares it with `want`. */
static void expect_blob(const char *hash, const char *want, size_t len) {
    char url[512];
    snprintf(url, sizeof(url), "%sapi/v1/blobs/%s", broker.url, hash);
    p2p_http_call req = {.method = "GET", .url = url};
    p2p_http_reply resp;
    ASSERT_OK(p2p_http_client_request(wt_client, &req, &resp, NULL));
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.body_len, len);
    ASSERT_MEM_EQ(resp.body, want, len);
    p2p_http_reply_cleanup(&resp);
}

/* How many per-call directories the worker's own directory holds. */
static int count_call_dirs(const p2p_worker_options *o) {
    char work[800];
    snprintf(work, sizeof(work), "%s/work", o->data_dir);
    DIR *d = opendir(work);
    ASSERT_TRUE(d != NULL);
    int calls = 0, mine = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "w-", 2) != 0)
            continue;
        mine++;
        char sub[1200];
        snprintf(sub, sizeof(sub), "%s/%s", work, e->d_name);
        DIR *s = opendir(sub);
        ASSERT_TRUE(s != NULL);
        for (struct dirent *f; (f = readdir(s)) != NULL;)
            calls += strncmp(f->d_name, "call-", 5) == 0;
        closedir(s);
    }
    closedir(d);
    ASSERT_EQ(mine, 1);
    return calls;
}

/* The call is reported before its child is reaped and its directory
 * removed: that follows within moments. */
static void expect_no_call_dirs(const p2p_worker_options *o) {
    int calls = count_call_dirs(o);
    for (int i = 0; i < 500 && calls > 0; i++) {
        sleep_ms(10);
        calls = count_call_dirs(o);
    }
    ASSERT_EQ(calls, 0);
}

static void test_files(const p2p_worker_options *o) {
    /* 3 MiB and a bit: several transfer buffers each way. P2PRPC_TEST_FILE_MB
     * makes it bigger, to watch the children's memory. */
    const char *mb = getenv("P2PRPC_TEST_FILE_MB");
    size_t len = (mb != NULL ? (size_t)strtoul(mb, NULL, 10) << 20 : 3u << 20) + 123;
    char *data = malloc(len + 16);
    ASSERT_TRUE(data != NULL);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 7 + i / 4096);
    char hash[P2P_HASH_HEX_LEN + 1], id[P2P_HASH_HEX_LEN + 1], args[300];
    wt_put_blob(broker.url, data, len, hash);
    snprintf(args, sizeof(args), "{\"f\":{\"hash\":\"%s\",\"size\":%zu},\"s\":\"tail\"}", hash,
             len);
    wt_call(broker.url, F_CAT, args, id);
    json_t *j = wt_wait(broker.url, F_CAT, id, "done", 30000);
    const json_t *out = json_object_get(json_object_get(j, "outputs"), "out");
    memcpy(data + len, "tail", 4);
    char want[P2P_HASH_HEX_LEN + 1];
    ASSERT_OK(p2p_hash_bytes_hex(data, len + 4, want, NULL));
    ASSERT_STR_EQ(wt_str(out, "hash"), want);
    ASSERT_EQ(json_integer_value(json_object_get(out, "size")), len + 4);
    if (len < (8u << 20)) /* bigger: the broker checked the hash of what it got */
        expect_blob(want, data, len + 4);
    json_decref(j);
    free(data);
    expect_no_call_dirs(o);
    /* The largest child so far (the cat's among them): its memory does not
     * grow with the file, which it downloads, copies and uploads streaming. */
    struct rusage ru;
    ASSERT_EQ(getrusage(RUSAGE_CHILDREN, &ru), 0);
    fprintf(stderr, "file of %zu bytes: the largest child's peak RSS was %ld KiB\n", len,
            ru.ru_maxrss);
}

static void test_crash_and_failure(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_SEGV, "{\"x\":1}", id);
    json_t *j = wt_wait(broker.url, F_SEGV, id, "failed", 20000);
    ASSERT_STR_CONTAINS(wt_str(j, "error"), "SIGSEGV");
    ASSERT_STR_CONTAINS(wt_str(j, "error"), "p2prpc_segv");
    json_decref(j);
    wt_call(broker.url, F_BAD_FRAME, "{\"x\":1}", id);
    j = wt_wait(broker.url, F_BAD_FRAME, id, "failed", 20000);
    ASSERT_STR_EQ(wt_str(j, "error"), "bad frame");
    json_decref(j);
    /* The worker itself goes on. */
    wt_call(broker.url, F_ADD, "{\"a\":-5,\"b\":5}", id);
    j = wt_wait(broker.url, F_ADD, id, "done", 20000);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "outputs"), "sum")), 0);
    json_decref(j);
    ASSERT_GE(WT_STAT(worker, failed, 2), 2);
}

static void test_progress_and_terminate(void) {
    char id[P2P_HASH_HEX_LEN + 1];
    wt_call(broker.url, F_SLOW, "{\"ms\":30000,\"steps\":300}", id);
    json_t *j = wt_wait(broker.url, F_SLOW, id, "running", 20000);
    json_decref(j);
    /* Progress arrives, throttled: at most a few versions a second. */
    int64_t deadline = wt_now_ms() + 10000;
    double progress = 0;
    json_int_t v0 = -1, v1 = 0;
    int64_t t0 = 0;
    while (progress < 5 && wt_now_ms() < deadline) {
        sleep_ms(200);
        j = wt_pull(broker.url, F_SLOW, id);
        progress = json_number_value(json_object_get(j, "progress"));
        v1 = json_integer_value(json_object_get(j, "version"));
        if (v0 < 0 && progress > 0) {
            v0 = v1;
            t0 = wt_now_ms();
        }
        json_decref(j);
    }
    ASSERT_GE(progress, 5);
    int64_t elapsed = wt_now_ms() - t0;
    fprintf(stderr, "progress %.1f%%: %lld versions in %lld ms\n", progress, (long long)(v1 - v0),
            (long long)elapsed);
    /* 100 steps a second reported; at most 4 pushes a second (plus slack). */
    ASSERT_LE(v1 - v0, elapsed / 250 + 2);
    char body[200];
    snprintf(body, sizeof(body), "{\"identifier\":\"%s\"}", id);
    int64_t asked = wt_now_ms();
    ASSERT_EQ(wt_api(broker.url, "POST", "api/v1/p2prpc_slow/terminate", body, NULL), 200);
    j = wt_wait(broker.url, F_SLOW, id, "terminated", 15000);
    fprintf(stderr, "terminated %lld ms after the request\n", (long long)(wt_now_ms() - asked));
    json_decref(j);
    ASSERT_EQ(WT_STAT(worker, terminated, 1), 1);
}

/* No-op calls one at a time, with a pause between them, push to done as a
 * client sees it (long-poll): the latency the worker adds to a small call,
 * with and without spare children. Returns the mean in ms. */
static double latency(int spares, int x0) {
    p2p_worker_options o;
    wt_worker_options(&o, spares == 0 ? "latency0" : "latency", broker.url);
    o.spare_children = spares;
    p2p_worker *w = wt_worker_start(&o);
    enum { N = 30 };
    int64_t total = 0;
    for (int i = 0; i < N; i++) {
        char id[P2P_HASH_HEX_LEN + 1], args[64];
        snprintf(args, sizeof(args), "{\"x\":%d}", x0 + i);
        sleep_ms(30);
        int64_t start = wt_now_ms();
        wt_call(broker.url, F_NOOP, args, id);
        json_decref(wt_wait(broker.url, F_NOOP, id, "done", 20000));
        total += wt_now_ms() - start;
    }
    p2p_worker_free(w);
    return (double)total / N;
}

static void test_latency(void) {
    double without = latency(0, 1000), with = latency(-1, 2000);
    fprintf(stderr,
            "no-op call, push to done: %.1f ms with a child started per call, %.1f ms "
            "with a spare child\n",
            without, with);
}

int main(int argc, char **argv) {
    WT_CHILD_MAIN(argc, argv);
    wt_setup("worker_e2e");
    wt_broker_start(&broker, "broker", 0, 60000, NULL);
    p2p_worker_options o;
    wt_worker_options(&o, "worker", broker.url);
    o.concurrency = 2;
    worker = wt_worker_start(&o);
    ASSERT_TRUE(p2p_worker_node_id(worker) != NULL);
    ASSERT_EQ(p2p_worker_broker_count(worker), 1);
    TEST_RUN(test_add);
    test_files(&o);
    TEST_RUN(test_crash_and_failure);
    TEST_RUN(test_progress_and_terminate);
    p2p_worker_free(worker);
    TEST_RUN(test_latency);
    wt_broker_stop(&broker);
    return wt_teardown();
}
