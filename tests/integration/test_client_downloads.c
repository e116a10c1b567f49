/* Output files, against a real broker and worker:
 * - a download cut in the middle (a proxy closes the connection after part
 *   of the blob) is resumed with Range, and the file in the cache is right;
 * - a blob that does not match its hash (damaged on the broker's disk) is
 *   P2P_EHASH, and nothing of it stays in the cache (files/ and files/tmp/
 *   empty), and the call is not recorded as done in the cache;
 * - a one-byte flip on the wire is caught the same way (or fetched again);
 * - memory stays flat: a client process uploads and downloads a file of
 *   P2PRPC_TEST_FILE_MB MiB (default 128) and its peak RSS grows by far
 *   less than the file (not checked under AddressSanitizer, whose
 *   quarantine keeps freed memory). */
#include "client_fixture.h"
#include "flaky_proxy.h"
#include "fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CF_ASAN 1
#endif
#endif

static broker B;
static worker W;
static char DIR_[HARNESS_PATH_MAX];

static void test_download_resumed_with_range(void) {
    flaky_proxy *proxy = NULL;
    ASSERT_OK(flaky_proxy_start(B.url, 2, 300000, &proxy, NULL));
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "resume");
    cf_path(input, DIR_, "resume.bin");
    size_t size = 4 * 1024 * 1024 + 3;
    cf_write_random(input, size, 11);
    const char *urls[] = {flaky_proxy_url(proxy)};
    p2p_client_options o;
    cf_options(&o, urls, 1, B.secret_path, cache);
    p2p_client *c = cf_client(&o);
    p2p_value args[2];
    cf_args_copy(args, input, 0x42);
    p2p_future *f = cf_submit(c, WF_COPY, args, NULL);
    const p2p_value *out = cf_get(f, 2);
    fprintf(stderr, "cuts %d, range requests %d, blob GETs %d\n", flaky_proxy_cuts(proxy),
            flaky_proxy_range_requests(proxy), flaky_proxy_blob_gets(proxy));
    ASSERT_EQ(flaky_proxy_cuts(proxy), 2);
    ASSERT_GE(flaky_proxy_range_requests(proxy), 1);
    cf_expect_xor_of(out[0].as.file.path, input, 0x42);
    p2p_client_stats st;
    p2p_client_get_stats(c, &st);
    /* Resumed, not started over: about one file's worth of bytes. */
    ASSERT_GE(st.bytes_downloaded, size);
    ASSERT_LT(st.bytes_downloaded, size + 2 * 300000);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    flaky_proxy_free(proxy);
}

/* Overwrites the middle byte of the broker's blob file `hash`. */
static void damage_blob(const char *hash) {
    char path[2 * HARNESS_PATH_MAX];
    int len = snprintf(path, sizeof(path), "%s/%.2s/%s", B.blobs, hash, hash);
    ASSERT_TRUE(len > 0 && (size_t)len < sizeof(path));
    long long size = cf_file_size(path);
    ASSERT_GT(size, 0);
    FILE *fp = fopen(path, "r+b");
    ASSERT_TRUE(fp != NULL);
    ASSERT_OK(fseek(fp, (long)(size / 2), SEEK_SET));
    int ch = getc(fp);
    ASSERT_OK(fseek(fp, (long)(size / 2), SEEK_SET));
    ASSERT_TRUE(putc((ch ^ 0xff) & 0xff, fp) != EOF);
    ASSERT_OK(fclose(fp));
}

static void test_damaged_blob_is_a_hash_error(void) {
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "damaged");
    cf_path(input, DIR_, "damaged.bin");
    cf_write_random(input, 500000, 12);
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_copy(args, input, 0x11);
    p2p_future *f = cf_submit(c, WF_COPY, args, NULL);
    /* Done on the broker, not yet fetched by the client. */
    json_t *call = wf_await_status(&B, WF_COPY, p2p_future_identifier(f), "done|failed", 60000);
    wf_expect_status(call, "done");
    const char *hash = json_string_value(
        json_object_get(json_object_get(json_object_get(call, "outputs"), "output"), "hash"));
    ASSERT_TRUE(hash != NULL);
    damage_blob(hash);
    json_decref(call);
    p2p_error err = {0};
    int rc = p2p_future_wait(f, CF_CALL_TIMEOUT_MS, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EHASH, NULL);
    ASSERT_EQ(cf_cache_files(cache), 0);
    p2p_future_free(f);
    /* Not recorded as done: the next submit is no hit. */
    f = cf_submit(c, WF_COPY, args, NULL);
    ASSERT_FALSE(p2p_future_cached(f));
    err = (p2p_error){0};
    rc = p2p_future_wait(f, CF_CALL_TIMEOUT_MS, &err);
    CF_EXPECT_ERROR(rc, &err, P2P_EHASH, NULL);
    ASSERT_EQ(cf_cache_files(cache), 0);
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
}

static void test_flipped_byte_on_the_wire(void) {
    flaky_proxy *proxy = NULL;
    ASSERT_OK(flaky_proxy_start(B.url, 0, 0, &proxy, NULL));
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "flip");
    cf_path(input, DIR_, "flip.bin");
    cf_write_random(input, 400000, 13);
    const char *urls[] = {flaky_proxy_url(proxy)};
    p2p_client_options o;
    cf_options(&o, urls, 1, B.secret_path, cache);
    p2p_client *c = cf_client(&o);
    p2p_value args[2];
    cf_args_copy(args, input, 0x21);
    p2p_future *f = cf_submit(c, WF_COPY, args, NULL);
    json_t *call = wf_await_status(&B, WF_COPY, p2p_future_identifier(f), "done|failed", 60000);
    wf_expect_status(call, "done");
    json_decref(call);
    flaky_proxy_corrupt(proxy, 1, 100000);
    p2p_error err = {0};
    int rc = p2p_future_wait(f, CF_CALL_TIMEOUT_MS, &err);
    fprintf(stderr, "one flipped byte: %s %s (corrupted %d, GETs %d)\n", p2p_error_name(rc),
            err.msg, flaky_proxy_corrupted(proxy), flaky_proxy_blob_gets(proxy));
    ASSERT_EQ(flaky_proxy_corrupted(proxy), 1);
    if (rc == 0) {
        /* Fetched again: then the file must be right. */
        const p2p_value *out = cf_get(f, 2);
        cf_expect_xor_of(out[0].as.file.path, input, 0x21);
        ASSERT_GE(flaky_proxy_blob_gets(proxy), 2);
    } else {
        CF_EXPECT_ERROR(rc, &err, P2P_EHASH, NULL);
        ASSERT_EQ(cf_cache_files(cache), 0);
    }
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    flaky_proxy_free(proxy);
}

/* A line "NAME:   N kB" of /proc/self/status, in KiB; -1 when missing. */
static long status_kib(const char *name) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (fp == NULL)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return v;
}

/* In a forked child: the whole call with a big file; exits 0 when the
 * output is right, and writes the peak RSS growth (KiB) to `report`. */
static int big_call(const char *cache, const char *input, const char *report) {
    long before = status_kib("VmRSS");
    p2p_client *c = cf_client_for(&B, cache);
    p2p_value args[2];
    cf_args_copy(args, input, 0x77);
    p2p_future *f = cf_submit(c, WF_COPY, args, NULL);
    const p2p_value *out = cf_get(f, 2);
    cf_expect_xor_of(out[0].as.file.path, input, 0x77);
    long peak = status_kib("VmHWM");
    char text[64];
    int n = snprintf(text, sizeof(text), "%ld\n", peak - before);
    ASSERT_OK(harness_write_file(report, text, (size_t)n, NULL));
    p2p_future_free(f);
    p2p_value_list_cleanup(args, 2);
    p2p_client_free(c);
    return 0;
}

static void test_memory_stays_flat(void) {
    long mib = 128;
    const char *env = getenv("P2PRPC_TEST_FILE_MB");
    if (env != NULL && env[0] != '\0')
        mib = strtol(env, NULL, 10);
    ASSERT_TRUE(mib > 0 && mib <= 65536);
    char cache[HARNESS_PATH_MAX], input[HARNESS_PATH_MAX], report[HARNESS_PATH_MAX];
    cf_path(cache, DIR_, "big");
    cf_path(input, DIR_, "big.bin");
    cf_path(report, DIR_, "big.rss");
    cf_write_random(input, (size_t)mib << 20, 14);
    /* A fresh process, so that its peak is this call's alone. */
    fflush(NULL);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0)
        _exit(big_call(cache, input, report));
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(p2p_fs_read_file(report, 64, &text, &len, NULL));
    long growth = strtol(text, NULL, 10);
    free(text);
    fprintf(stderr, "%ld MiB through the client: peak RSS grew by %ld KiB\n", mib, growth);
#ifndef CF_ASAN
    ASSERT_LT(growth, 48 * 1024);
    ASSERT_LT(growth, mib * 1024 / 2);
#endif
    ASSERT_OK(unlink(input));
}

int main(void) {
    cf_broker_init(&B, "cdl_b", NULL, NULL);
    broker_start(&B);
    worker_start_for(&W, "cdl_w", &B, &(worker_config){.concurrency = 2});
    p2p_error err;
    if (harness_scratch_dir("cdl_c", DIR_, sizeof(DIR_), &err) != 0)
        TEST_FAIL_("%s", err.msg);
    TEST_RUN(test_download_resumed_with_range);
    TEST_RUN(test_damaged_blob_is_a_hash_error);
    TEST_RUN(test_flipped_byte_on_the_wire);
    TEST_RUN(test_memory_stays_flat);
    worker_stop(&W, 30000);
    worker_cleanup(&W);
    broker_cleanup(&B);
    if (harness_rmtree(DIR_, &err) != 0)
        fprintf(stderr, "warning: %s\n", err.msg);
    return 0;
}
